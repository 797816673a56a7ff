"""Sharpness of the loss at the current weights: top Hessian eigenvalue, Hessian trace, SAM value.

Every function measures the *mean loss over a fixed set of batches*,

    L(w) = sum_b n_b * loss_fn(model(x_b), y_b) / sum_b n_b,        n_b = len(y_b),

so batches of different sizes are weighted by their size and ``L`` is the mean loss per sample
(``loss_fn`` must return the mean loss of its batch, as ``F.cross_entropy`` does). Weight decay is
not part of ``L``. Derivatives are taken with respect to the parameters that require grad.

Side effects: none. The model runs in eval mode (BatchNorm uses its running statistics and updates
nothing, dropout is off), without autocast and without TF32 on CUDA (plain fp32); afterwards every
module's train/eval flag is restored, the parameters and buffers are bit-identical, ``.grad`` is not
touched, and the global random-number generators are not used (random vectors come from a local
generator), so a measurement inside a training run does not change the run.

Hessian-vector products use double backward (Pearlmutter's trick): for each batch one forward, one
backward with ``create_graph=True`` and one backward of ``<grad, v>``; nothing is kept between
products, so the autograd memory is that of one batch (Lanczos also keeps one vector of the size of
the parameters per step).
"""

from __future__ import annotations

import contextlib
import math
import time
import warnings
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

Batch = tuple[torch.Tensor, torch.Tensor]
LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]

__all__ = [
    "SharpnessProbe",
    "batch_grad_norms",
    "compare_histories",
    "fixed_batches",
    "hessian_top_eigenvalue",
    "hessian_trace",
    "hessian_vector_product",
    "sam_sharpness",
]


# ---------------------------------------------------------------------------- public measurements
def hessian_top_eigenvalue(
    model: nn.Module, loss_fn: LossFn, batches: Iterable[Batch], iters: int = 100, tol: float = 1e-3
) -> float:
    """The largest (most positive, not largest in magnitude) eigenvalue of the Hessian of ``L``.

    Lanczos iteration with full reorthogonalisation on Hessian-vector products, from a fixed random
    start (seed 0, a local generator). Lanczos approximates the top of the spectrum directly, so a
    negative eigenvalue of larger magnitude (a saddle) does not mislead it, unlike plain power
    iteration, which finds the eigenvalue of largest magnitude. If every eigenvalue is negative the
    (negative) largest one is returned.

    Args:
        model, loss_fn, batches: see the module docstring; ``batches`` is read once into a list.
        iters: at most this many Hessian-vector products (Lanczos steps).
        tol: stop when the top Ritz pair ``(theta, x)`` has ``||H x - theta x|| <= tol * |theta|``,
            which guarantees an eigenvalue of ``H`` within ``tol * |theta|`` of ``theta``. A
            ``RuntimeWarning`` says so when ``iters`` steps did not reach ``tol``.

    Returns:
        ``theta`` as a Python float.
    """
    if iters < 1:
        raise ValueError(f"iters must be >= 1, got {iters}")
    if not tol > 0:
        raise ValueError(f"tol must be > 0, got {tol}")
    with _measuring(model, loss_fn, batches) as obj:
        return _lanczos_top(obj.hvp_flat, _start_vector(obj), iters, tol)


def hessian_trace(
    model: nn.Module, loss_fn: LossFn, batches: Iterable[Batch], samples: int = 100, seed: int = 0
) -> tuple[float, float]:
    """Hutchinson's estimate of the trace of the Hessian of ``L``, and its standard error.

    ``tr H = E[z^T H z]`` for Rademacher ``z`` (entries +-1); the estimate is the mean of ``samples``
    draws (one Hessian-vector product each) and the standard error is their standard deviation
    (``ddof=1``) over ``sqrt(samples)`` (``nan`` for one sample). The draws come from a CPU generator
    seeded with ``seed``, so the estimate does not depend on the device. A diagonal Hessian gives
    the exact trace with standard error 0.
    """
    if samples < 1:
        raise ValueError(f"samples must be >= 1, got {samples}")
    with _measuring(model, loss_fn, batches) as obj:
        gen = torch.Generator().manual_seed(seed)
        draws = []
        for _ in range(samples):
            z = (torch.randint(0, 2, (obj.dim,), generator=gen, dtype=obj.dtype) * 2 - 1).to(obj.device)
            draws.append(torch.dot(z, obj.hvp_flat(z)).item())
    values = np.asarray(draws, dtype=np.float64)
    se = float(values.std(ddof=1) / math.sqrt(samples)) if samples > 1 else float("nan")
    return float(values.mean()), se


def sam_sharpness(model: nn.Module, loss_fn: LossFn, batches: Iterable[Batch], rho: float = 0.05) -> float:
    """The SAM sharpness ``L(w + rho g / ||g||) - L(w)`` with ``g = grad L(w)``.

    This is the first-order solution of ``max_{||e|| <= rho} L(w + e) - L(w)`` used by SAM (Foret et
    al., 2021), with the ball taken over all trainable parameters together (one L2 norm) and ``L``
    the mean over *all* ``batches`` (not per mini-batch). The weights are perturbed in place and
    then copied back from a saved copy, so they are restored bit for bit. Returns 0.0 when ``g = 0``
    (no ascent direction).
    """
    if not rho >= 0:
        raise ValueError(f"rho must be >= 0, got {rho}")
    with _measuring(model, loss_fn, batches) as obj:
        return obj.sam(rho)[0]


def hessian_vector_product(
    model: nn.Module, loss_fn: LossFn, batches: Iterable[Batch], vectors: list[torch.Tensor]
) -> list[torch.Tensor]:
    """``H v`` for the Hessian of ``L``; ``vectors`` has one tensor per trainable parameter (in
    ``model.parameters()`` order, same shapes), and so has the result."""
    with _measuring(model, loss_fn, batches) as obj:
        if len(vectors) != len(obj.params):
            raise ValueError(f"expected {len(obj.params)} tensors (one per trainable parameter), got {len(vectors)}")
        flat = torch.cat([v.detach().reshape(-1).to(obj.device, obj.dtype) for v in vectors])
        return [h.clone() for h in obj.unflatten(obj.hvp_flat(flat))]


def batch_grad_norms(model: nn.Module, loss_fn: LossFn, batches: Iterable[Batch]) -> list[float]:
    """``||grad loss_fn(model(x_b), y_b)||`` of each batch on its own, at the current weights, without
    side effects. Eval mode: BatchNorm normalises with its running statistics, not with the batch's
    own as a training step does."""
    with _measuring(model, loss_fn, batches) as obj:
        norms = []
        for x, y in obj.batches:
            grads = obj.grad(obj.loss_fn(obj.model(x), y))
            norms.append(torch.linalg.vector_norm(torch.stack([g.norm() for g in grads])))
        return torch.stack(norms).tolist() if norms else []


# ---------------------------------------------------------------------------- data for the measurements
def fixed_batches(
    dataset, size: int, batch_size: int = 1024, device: str | torch.device = "cpu", seed: int = 0
) -> list[Batch]:
    """A fixed random subset of ``size`` training samples of an :class:`ies.data.ArrayDataset`,
    served as a list of ``(inputs, targets)`` batches on ``device``, normalised as in training and
    without augmentation (``size <= 0`` or larger than the split: every training sample)."""
    from .data import DeviceLoader

    n = dataset.num_train
    gen = torch.Generator().manual_seed(seed)
    idx = torch.randperm(n, generator=gen)[: size if 0 < size < n else n].sort().values
    loader = DeviceLoader(dataset.x_train[idx], dataset.y_train[idx], torch.device(device),
                          mean=dataset.mean, std=dataset.std)
    return [(x, y) for x, y, _ in loader.batches(None, batch_size)]


@dataclass
class SharpnessProbe:
    """An ``on_epoch_end`` callback for :func:`ies.train`: sharpness on fixed batches, and the
    mini-batch gradient norm with and without the mastered samples at the same weights.

    On epoch 1, every ``every`` epochs and on ``last_epoch`` (if given) it returns the columns

    - ``probe_loss`` (``L`` on ``batches``), ``probe_grad_norm`` (``||grad L||``), ``top_eigenvalue``,
      ``lanczos_steps``, ``sam_sharpness`` and, if ``trace_samples > 0``, ``hessian_trace`` and
      ``hessian_trace_se``;
    - if ``train_data`` (an :class:`ies.data.DeviceLoader` over the whole training split) is given:
      ``train_loss_all``, the eval-mode mean loss over every training sample (the same kind of number
      for any run, unlike the history's ``tracked_loss``); ``grad_norm_all`` and ``grad_norm_active``,
      the mean gradient norm of ``grad_batches`` random mini-batches of ``grad_batch_size`` drawn from
      every training sample, and of the same draw with the mastered samples (``tracker.mastered``: those
      the next epoch leaves out) replaced by further unmastered ones (see :meth:`active_grad_norms`);
      they coincide when nothing is mastered. Eval mode, no augmentation: a same-weights comparison,
      not the training steps' own norms;
    - ``probe_seconds``;

    and on other epochs the same keys with NaN. :meth:`measure` gives the sharpness columns for any
    weights (e.g. the initial ones). Nothing here changes the run (see the module docstring).
    """

    batches: list[Batch]
    every: int = 5
    loss_fn: LossFn = field(default=F.cross_entropy)
    iters: int = 100
    tol: float = 1e-3
    rho: float = 0.05
    trace_samples: int = 0
    last_epoch: int = 0
    train_data: object = None
    grad_batches: int = 8
    grad_batch_size: int = 64
    seed: int = 0

    def __post_init__(self) -> None:
        self.batches = list(self.batches)
        if self.every < 1:
            raise ValueError(f"every must be >= 1, got {self.every}")

    @property
    def keys(self) -> list[str]:
        keys = ["probe_loss", "probe_grad_norm", "top_eigenvalue", "lanczos_steps", "sam_sharpness"]
        if self.trace_samples > 0:
            keys += ["hessian_trace", "hessian_trace_se"]
        if self.train_data is not None:
            keys += ["train_loss_all", "grad_norm_all", "grad_norm_active"]
        return [*keys, "probe_seconds"]

    def measure(self, model: nn.Module) -> dict[str, float]:
        """The sharpness columns at the model's current weights."""
        with _measuring(model, self.loss_fn, self.batches) as obj:
            sam, loss, gnorm = obj.sam(self.rho)
            top, steps = _lanczos_top(obj.hvp_flat, _start_vector(obj), self.iters, self.tol, with_steps=True)
        row = {"probe_loss": loss, "probe_grad_norm": gnorm, "top_eigenvalue": top, "lanczos_steps": steps,
               "sam_sharpness": sam}
        if self.trace_samples > 0:
            row["hessian_trace"], row["hessian_trace_se"] = hessian_trace(
                model, self.loss_fn, self.batches, samples=self.trace_samples, seed=self.seed)
        return row

    def active_grad_norms(self, model: nn.Module, mastered: torch.Tensor, epoch: int = 0) -> dict[str, float]:
        """``grad_norm_all`` and ``grad_norm_active`` (see the class docstring) for the mask ``mastered``.

        Paired draws: one random order of every training sample (seeded by ``seed`` and ``epoch``); the
        "all" mini-batches are its first ``grad_batches * grad_batch_size`` samples, the "active" ones
        the first as many *unmastered* samples in the same order, so the two sets differ only by the
        mastered samples swapped for unmastered ones.
        """
        data = self.train_data
        mastered = mastered.to(data.device)
        k = self.grad_batches * self.grad_batch_size
        gen = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        order = torch.randperm(len(data), generator=gen).to(data.device)
        row = {}
        for name, picks in (("all", order[:k]), ("active", order[~mastered[order]][:k])):
            batches = [(data.inputs(idx, augment=False), data.y[idx]) for idx in picks.split(self.grad_batch_size)
                       if idx.numel()]
            norms = batch_grad_norms(model, self.loss_fn, batches) if batches else []
            row[f"grad_norm_{name}"] = float(np.mean(norms)) if norms else float("nan")
        return row

    def __call__(self, epoch: int, model: nn.Module, tracker=None) -> dict[str, float]:
        if not (epoch == 1 or epoch % self.every == 0 or epoch == self.last_epoch):
            return dict.fromkeys(self.keys, float("nan"))
        t0 = time.perf_counter()
        row = self.measure(model)
        if self.train_data is not None:
            mastered = tracker.mastered if tracker is not None else torch.zeros(len(self.train_data), dtype=torch.bool)
            row["train_loss_all"] = _streamed_loss(model, self.loss_fn, self.train_data)
            row.update(self.active_grad_norms(model, mastered, epoch))
        row["probe_seconds"] = time.perf_counter() - t0
        return row


def compare_histories(baseline, ies) -> dict[str, float]:
    """The numbers that check the paper's two claims, from the histories of a baseline and an IES run
    of the same configuration and seed, both trained with a :class:`SharpnessProbe` (rows matched by
    ``epoch``; rows without a training epoch, e.g. an epoch-0 measurement, are ignored where the
    quantity needs one).

    Claim 1 (gradient norms), over the epochs that IES trained with samples left out:
    ``step_epochs``, ``step_ratio_median`` (IES / baseline ``grad_norm_mean``), ``step_ies_larger``
    (fraction of those epochs with a ratio > 1); the loss over all training samples, IES / baseline:
    ``loss_count`` comparisons, ``loss_ratio_median``, ``loss_ies_lower`` (fraction < 1),
    ``loss_ratio_final`` (the last one), from ``train_loss_all`` at the probes after the first mastery
    if the probe recorded it, else from ``tracked_loss`` over the epochs above; at the same weights
    (the IES run's probes taken with samples mastered): ``same_probes``, ``same_ratio_median``
    (``grad_norm_active / grad_norm_all``), ``same_above_1`` (fraction > 1).

    Claim 2 (sharpness), over the probes after the first epoch that ended with samples mastered, for
    each of ``top_eigenvalue``, ``sam_sharpness`` and (if measured) ``hessian_trace``:
    ``{col}_probes``, ``{col}_ies_lower`` (fraction with IES < baseline), ``{col}_ratio_median`` and
    ``{col}_ratio_final`` (IES / baseline at the last probe). Fractions and medians are NaN when
    there is nothing to count.
    """
    both = baseline.merge(ies, on="epoch", suffixes=("_b", "_i"))
    out: dict[str, float] = {}

    def share(x):
        return float((x > 1).mean()) if len(x) else float("nan")

    def median(x):
        return float(x.median()) if len(x) else float("nan")

    trained = both[both["forward_only_samples_i"] > 0]
    step = trained["grad_norm_mean_i"] / trained["grad_norm_mean_b"]
    out.update(step_epochs=float(len(trained)), step_ratio_median=median(step), step_ies_larger=share(step))
    mastered_epochs = ies.loc[ies["n_mastered"] > 0, "epoch"]
    after = both[both["epoch"] > mastered_epochs.min()] if len(mastered_epochs) else both.iloc[:0]
    if "train_loss_all" in ies and "train_loss_all" in baseline:
        rows = after.dropna(subset=["train_loss_all_b", "train_loss_all_i"])
        loss = rows["train_loss_all_i"] / rows["train_loss_all_b"]
    else:
        loss = trained["tracked_loss_i"] / trained["tracked_loss_b"]
    out.update(loss_count=float(len(loss)), loss_ratio_median=median(loss), loss_ies_lower=share(1 / loss),
               loss_ratio_final=float(loss.iloc[-1]) if len(loss) else float("nan"))
    if "grad_norm_active" in ies:
        probes = ies.dropna(subset=["grad_norm_active"])
        probes = probes[probes["n_mastered"] > 0]
        same = probes["grad_norm_active"] / probes["grad_norm_all"]
        out.update(same_probes=float(len(same)), same_ratio_median=median(same), same_above_1=share(same))
    for col in ("top_eigenvalue", "sam_sharpness", "hessian_trace"):
        if col not in ies:
            continue
        rows = after.dropna(subset=[f"{col}_b", f"{col}_i"])
        ratio = rows[f"{col}_i"] / rows[f"{col}_b"]
        out[f"{col}_probes"] = float(len(ratio))
        out[f"{col}_ies_lower"] = float((ratio < 1).mean()) if len(ratio) else float("nan")
        out[f"{col}_ratio_median"] = median(ratio)
        out[f"{col}_ratio_final"] = float(ratio.iloc[-1]) if len(ratio) else float("nan")
    return out


# ---------------------------------------------------------------------------- internals
class _Objective:
    """``L`` over a list of batches on the model's device, with its gradient and Hessian-vector products."""

    def __init__(self, model: nn.Module, loss_fn: LossFn, batches: list[Batch]) -> None:
        self.model, self.loss_fn = model, loss_fn
        self.params = [p for p in model.parameters() if p.requires_grad]
        if not self.params:
            raise ValueError("the model has no parameter that requires grad")
        dtypes = {p.dtype for p in self.params}
        if len(dtypes) != 1 or next(iter(dtypes)) not in (torch.float32, torch.float64):
            raise ValueError(f"the trainable parameters must all be float32 (or all float64), got {dtypes}")
        self.dtype = next(iter(dtypes))
        self.device = self.params[0].device
        self.batches = [(_usable(x, self.device), _usable(y, self.device)) for x, y in batches]
        sizes = [int(y.shape[0]) if y.dim() else 1 for _, y in self.batches]
        total = sum(sizes)
        if total == 0:
            raise ValueError("batches is empty: nothing to measure")
        self.weights = [s / total for s in sizes]
        self.shapes = [p.shape for p in self.params]
        self.dim = sum(p.numel() for p in self.params)

    def unflatten(self, flat: torch.Tensor) -> list[torch.Tensor]:
        return [t.view(s) for t, s in zip(flat.split([math.prod(s) for s in self.shapes]), self.shapes, strict=True)]

    def grad(self, loss: torch.Tensor, create_graph: bool = False) -> list[torch.Tensor]:
        """d loss / d params, zeros for parameters the loss does not depend on."""
        if not loss.requires_grad:
            return [torch.zeros_like(p) for p in self.params]
        grads = torch.autograd.grad(loss, self.params, create_graph=create_graph, allow_unused=True)
        return [g if g is not None else torch.zeros_like(p) for g, p in zip(grads, self.params, strict=True)]

    def hvp_flat(self, v: torch.Tensor) -> torch.Tensor:
        vs = self.unflatten(v)
        out = torch.zeros_like(v)
        for (x, y), w in zip(self.batches, self.weights, strict=True):
            grads = self.grad(self.loss_fn(self.model(x), y) * w, create_graph=True)
            dot = sum((g * u).sum() for g, u in zip(grads, vs, strict=True))
            out += torch.cat([h.reshape(-1) for h in self.grad(dot)])
        return out

    def loss_and_grad(self) -> tuple[torch.Tensor, list[torch.Tensor]]:
        total = torch.zeros((), dtype=torch.float64, device=self.device)
        grad = [torch.zeros_like(p) for p in self.params]
        for (x, y), w in zip(self.batches, self.weights, strict=True):
            loss = self.loss_fn(self.model(x), y) * w
            for acc, g in zip(grad, self.grad(loss), strict=True):
                acc += g
            total += loss.detach().double()
        return total, grad

    @torch.no_grad()
    def loss(self) -> torch.Tensor:
        total = torch.zeros((), dtype=torch.float64, device=self.device)
        for (x, y), w in zip(self.batches, self.weights, strict=True):
            total += (self.loss_fn(self.model(x), y) * w).double()
        return total

    def sam(self, rho: float) -> tuple[float, float, float]:
        """(SAM sharpness, L(w), ||grad L(w)||), weights restored bit for bit."""
        loss0, grad = self.loss_and_grad()
        gnorm = torch.linalg.vector_norm(torch.stack([g.norm() for g in grad]))
        loss0_f, gnorm_f = loss0.item(), gnorm.item()
        if gnorm_f == 0 or rho == 0:
            return 0.0, loss0_f, gnorm_f
        saved = [p.detach().clone() for p in self.params]
        try:
            with torch.no_grad():
                torch._foreach_add_(self.params, [g * (rho / gnorm) for g in grad])
            loss1 = self.loss().item()
        finally:
            with torch.no_grad():
                for p, s in zip(self.params, saved, strict=True):
                    p.copy_(s)
        return loss1 - loss0_f, loss0_f, gnorm_f


def _start_vector(obj: _Objective) -> torch.Tensor:
    """The fixed random start of Lanczos (seed 0, CPU generator: the same on every device)."""
    return torch.randn(obj.dim, generator=torch.Generator().manual_seed(0), dtype=obj.dtype).to(obj.device)


def _usable(t: torch.Tensor, device: torch.device) -> torch.Tensor:
    t = t.to(device)
    return t.clone() if t.is_inference() else t


@contextlib.contextmanager
def _plain_eval(model: nn.Module) -> Iterator[torch.device]:
    """Eval mode, no autocast, strict fp32; restores every module's train/eval flag afterwards."""
    modes = [(m, m.training) for m in model.modules()]
    device = next(model.parameters()).device
    try:
        model.eval()
        with torch.autocast(device.type, enabled=False), _strict_fp32(device):
            yield device
    finally:
        for m, mode in modes:
            m.training = mode


@contextlib.contextmanager
def _measuring(model: nn.Module, loss_fn: LossFn, batches: Iterable[Batch]) -> Iterator[_Objective]:
    """:func:`_plain_eval` with grad enabled, and the objective ``L`` over ``batches``."""
    with _plain_eval(model), torch.enable_grad():
        yield _Objective(model, loss_fn, list(batches))


def _streamed_loss(model: nn.Module, loss_fn: LossFn, loader, batch_size: int = 1024) -> float:
    """The eval-mode mean loss over every sample of a DeviceLoader, one batch in memory at a time."""
    total, count = 0.0, 0
    with _plain_eval(model), torch.no_grad():
        for x, y, _ in loader.batches(None, batch_size):
            total += loss_fn(model(x), y).double() * len(y)
            count += len(y)
    return float(total / max(count, 1))


@contextlib.contextmanager
def _strict_fp32(device: torch.device) -> Iterator[None]:
    """Turn TF32 off for CUDA matmuls and convolutions (on by default for cuDNN convolutions)."""
    if device.type != "cuda":
        yield
        return
    matmul, conv = torch.backends.cuda.matmul, torch.backends.cudnn
    if hasattr(matmul, "fp32_precision"):  # torch >= 2.9
        old = (matmul.fp32_precision, conv.conv.fp32_precision)
        matmul.fp32_precision, conv.conv.fp32_precision = "ieee", "ieee"
        try:
            yield
        finally:
            matmul.fp32_precision, conv.conv.fp32_precision = old
    else:
        old = (matmul.allow_tf32, conv.allow_tf32)
        matmul.allow_tf32, conv.allow_tf32 = False, False
        try:
            yield
        finally:
            matmul.allow_tf32, conv.allow_tf32 = old


def _lanczos_top(matvec: Callable[[torch.Tensor], torch.Tensor], v0: torch.Tensor, iters: int, tol: float,
                 with_steps: bool = False):
    """Largest eigenvalue of the symmetric operator ``matvec`` by Lanczos with full reorthogonalisation
    (and the number of steps taken if ``with_steps``)."""
    dim = v0.numel()
    basis: list[torch.Tensor] = []
    alphas: list[float] = []
    betas: list[float] = []
    v = v0 / v0.norm()
    theta, resid = float("nan"), float("inf")
    for step in range(min(iters, dim)):
        basis.append(v)
        w = matvec(v)
        alpha = torch.dot(w, v).item()
        w = w - alpha * v
        if betas:
            w = w - betas[-1] * basis[-2]
        for _ in range(2):  # twice is enough (Kahan, Parlett)
            for u in basis:
                w = w - torch.dot(u, w) * u
        beta = w.norm().item()
        if not (math.isfinite(alpha) and math.isfinite(beta)):
            raise FloatingPointError(f"Lanczos step {step + 1}: a non-finite Hessian-vector product (is L finite?)")
        alphas.append(alpha)
        t = np.diag(alphas) + np.diag(betas, 1) + np.diag(betas, -1)
        evals, evecs = np.linalg.eigh(t)
        theta = float(evals[-1])
        resid = beta * abs(float(evecs[-1, -1]))
        scale = max(abs(a) for a in alphas) + max(betas, default=0.0)
        if resid <= tol * abs(theta) or beta <= 1e-6 * scale:
            return (theta, len(alphas)) if with_steps else theta
        betas.append(beta)
        v = w / beta
    if len(alphas) < dim:
        warnings.warn(f"hessian_top_eigenvalue: {len(alphas)} Lanczos steps reached a residual of {resid:.3g} "
                      f"(relative {resid / max(abs(theta), 1e-300):.3g} > tol); raise iters", RuntimeWarning,
                      stacklevel=3)
    return (theta, len(alphas)) if with_steps else theta
