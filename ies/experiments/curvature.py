"""Curvature of the loss at the current weights: top Hessian eigenvalue (Lanczos), Hessian trace
(Hutchinson), SAM value, Hessian-vector products and per-batch gradient norms.

The during-training probe built on these, and the comparison of two runs' histories, are in
:mod:`ies.experiments.sharpness` (which re-exports everything here).

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
import warnings
from collections.abc import Callable, Iterable, Iterator

import numpy as np
import torch
from torch import nn

from ..models.modes import plain_eval

Batch = tuple[torch.Tensor, torch.Tensor]
LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]

__all__ = [
    "Batch",
    "LossFn",
    "batch_grad_norms",
    "hessian_top_eigenvalue",
    "hessian_trace",
    "hessian_vector_product",
    "measure_sharpness",
    "sam_sharpness",
]


def hessian_top_eigenvalue(
    model: nn.Module, loss_fn: LossFn, batches: Iterable[Batch], iters: int = 100, tol: float = 1e-3
) -> float:
    """The largest (most positive, not largest in magnitude) eigenvalue of the Hessian of ``L``.

    Lanczos iteration with full reorthogonalisation on Hessian-vector products, from a fixed random
    start (seed 0, a local generator). Lanczos approximates the top of the spectrum directly, so a
    negative eigenvalue of larger magnitude (a saddle) does not mislead it, unlike plain power
    iteration, which finds the eigenvalue of largest magnitude. If every eigenvalue is negative the
    (negative) largest one is returned. (The paper's Fig. 4 used 20 power iterations: the same number when
    the largest eigenvalue is also the one of largest magnitude and the iteration has converged.)

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


def measure_sharpness(model: nn.Module, loss_fn: LossFn, batches: Iterable[Batch], *, rho: float = 0.05,
                      iters: int = 100, tol: float = 1e-3) -> dict[str, float]:
    """Everything of one look at the weights, on one objective: ``loss`` (``L``), ``grad_norm``
    (``||grad L||``), ``sam_sharpness`` (:func:`sam_sharpness` with ``rho``), ``top_eigenvalue`` and
    ``lanczos_steps`` (:func:`hessian_top_eigenvalue` with ``iters``, ``tol``)."""
    with _measuring(model, loss_fn, batches) as obj:
        sam, loss, gnorm = obj.sam(rho)
        top, steps = _lanczos_top(obj.hvp_flat, _start_vector(obj), iters, tol, with_steps=True)
    return {"loss": loss, "grad_norm": gnorm, "sam_sharpness": sam, "top_eigenvalue": top, "lanczos_steps": steps}


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
def _measuring(model: nn.Module, loss_fn: LossFn, batches: Iterable[Batch]) -> Iterator[_Objective]:
    """:func:`ies.models.modes.plain_eval` with grad enabled, and the objective ``L`` over ``batches``."""
    with plain_eval(model), torch.enable_grad():
        yield _Objective(model, loss_fn, list(batches))



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
