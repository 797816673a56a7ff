"""Transfer: is a network pretrained with IES a better starting point for another task?

The paper (Yuan et al., 2025) reports that models pretrained with IES transfer better than models
pretrained with plain training (about +1.5 % accuracy on average when fine-tuned on other tasks).
The protocol here, :func:`transfer_experiment`:

1. pretrain on a *source* task with the baseline (``threshold=0``) and with IES, same seed and same
   number of epochs, through :func:`ies.train`;
2. measure each pretrained network on a *target* task in two ways:

   - **linear probe** (:func:`linear_probe`): freeze the network, take its penultimate features (the
     input of its final linear layer, :func:`extract_features`), standardise them and fit an
     L2-regularised multinomial logistic regression by full-batch L-BFGS, the strength of the L2 term
     chosen on a validation split carved from the target's training set (:func:`fit_probe`);
   - **fine-tuning** (:func:`fine_tune`): a new head, every layer trained for a few epochs with its
     own short schedule (:class:`FineTuneConfig`);

   both return the accuracy on the target's test split;
3. repeat over seeds and report mean and spread (:func:`summary_table`) and the paired difference
   IES - baseline (:func:`paired_difference`, :func:`claim_verdict`).

Data: :func:`split_classes` makes a split-class pair out of one data set (the offline default:
MNIST-1D classes 0-4 -> 5-9, :func:`load_pair`); the full-size pair is CIFAR-100 -> CIFAR-10.
"""

from __future__ import annotations

import contextlib
import copy
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from .config import Config
from .data import ArrayDataset, DeviceLoader, load_dataset
from .models import Float32Linear, build_model
from .training import RunResult, train

#: The strengths of the L2 term tried by the probe (on the mean cross-entropy, standardised features).
DEFAULT_L2_GRID = (1.0, 1e-1, 1e-2, 1e-3, 1e-4, 1e-5)

#: Named source -> target pairs for :func:`load_pair`.
PAIRS = ("mnist1d-split", "cifar100-cifar10", "cifar10-cifar100")

#: Metrics of one row of :func:`transfer_experiment` that :func:`summary_table` aggregates.
METRICS = ("source_accuracy", "backprop_saved", "pretrain_seconds", "probe_accuracy", "finetune_accuracy")


# ---------------------------------------------------------------------------------------------- data
def split_classes(data: ArrayDataset, classes: Sequence[int], name: str | None = None) -> ArrayDataset:
    """The samples of ``data`` whose label is in ``classes``, relabelled ``0 .. len(classes)-1``.

    Class ``classes[j]`` becomes label ``j``; samples keep their order; train and test are both
    filtered. ``mean``/``std`` (image normalisation) are kept.
    """
    classes = [int(c) for c in classes]
    if not classes or len(set(classes)) != len(classes):
        raise ValueError(f"classes must be a non-empty list of distinct labels, got {classes}")
    bad = [c for c in classes if not 0 <= c < data.num_classes]
    if bad:
        raise ValueError(f"classes {bad} are not labels of {data.name} (0 .. {data.num_classes - 1})")
    relabel = torch.full((data.num_classes,), -1, dtype=torch.int64)
    relabel[torch.tensor(classes)] = torch.arange(len(classes))

    def pick(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        new = relabel[y]
        keep = new >= 0
        return x[keep], new[keep]

    x_train, y_train = pick(data.x_train, data.y_train)
    x_test, y_test = pick(data.x_test, data.y_test)
    if y_train.numel() == 0 or y_test.numel() == 0:
        raise ValueError(f"{data.name} has no {'training' if y_train.numel() == 0 else 'test'} sample of classes "
                         f"{classes}")
    if name is None:
        name = f"{data.name}[{','.join(map(str, classes))}]"
    return ArrayDataset(x_train, y_train, x_test, y_test, len(classes), name, data.mean, data.std)


def load_pair(pair: str, data_dir: str = "", size: int = 0) -> tuple[ArrayDataset, ArrayDataset]:
    """A ``(source, target)`` pair by name (see :data:`PAIRS`).

    - ``mnist1d-split``: MNIST-1D (``size`` samples generated, 0 = 5000), source = classes 0-4,
      target = classes 5-9 relabelled 0-4. Offline; the two tasks share the signal family
      (templates, shifts, noise) but no class.
    - ``cifar100-cifar10`` / ``cifar10-cifar100``: the two CIFAR sets through torchvision
      (``size`` keeps the first ``size`` training samples of each, 0 = all).
    """
    if pair == "mnist1d-split":
        data = load_dataset("mnist1d", data_dir or None, size)
        return split_classes(data, range(0, 5)), split_classes(data, range(5, 10))
    if pair in ("cifar100-cifar10", "cifar10-cifar100"):
        src, dst = pair.split("-")
        return load_dataset(src, data_dir or None, size), load_dataset(dst, data_dir or None, size)
    raise ValueError(f"unknown pair {pair!r}: use one of {PAIRS}")


# ---------------------------------------------------------------------------------------------- features
def final_linear(model: nn.Module) -> tuple[str, nn.Linear]:
    """``(name, layer)`` of the last ``nn.Linear`` registered in ``model``: the classifier of every
    model of :mod:`ies.models` (torchvision ResNets: ``fc``; the ``nn.Sequential`` nets: their last
    layer, a :class:`~ies.models.Float32Linear`). Its *input* is the penultimate representation."""
    found = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    if not found:
        raise ValueError(f"{type(model).__name__} has no nn.Linear layer to take features from")
    return found[-1]


def _model_device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


@torch.no_grad()
def extract_features(
    model: nn.Module,
    loader: DeviceLoader,
    batch_size: int = 1024,
    layer: nn.Module | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Penultimate features of every sample of ``loader``: ``((N, D) float32, (N,) labels)``.

    A forward hook on ``layer`` (default :func:`final_linear`) records the layer's *input* during an
    eval-mode, no-grad forward pass without augmentation; the model's training flag is restored
    afterwards. Generic: it works for any model whose classifier is a linear layer, whatever the
    modules before it. With the default layer the hook also checks that the layer's output *is* the
    model's output (so that the features really are the last representation before the logits).
    """
    check = layer is None
    if layer is None:
        layer = final_linear(model)[1]
    store: dict[str, torch.Tensor] = {}

    def hook(module: nn.Module, args: tuple, output: torch.Tensor) -> None:
        store["input"] = args[0]
        store["output"] = output

    handle = layer.register_forward_hook(hook)
    was_training = model.training
    model.eval()
    feats, labels = [], []
    try:
        for x, y, _ in loader.batches(None, batch_size):
            store.clear()
            out = model(x)
            if "input" not in store:
                raise RuntimeError("the feature layer was not called in the forward pass")
            if check and store["output"] is not out:
                raise ValueError("the last nn.Linear of the model is not its output layer: pass layer=")
            feats.append(store["input"].detach().flatten(1).float())
            labels.append(y)
    finally:
        handle.remove()
        model.train(was_training)
    return torch.cat(feats), torch.cat(labels)


# ---------------------------------------------------------------------------------------------- linear probe
def logistic_objective(
    x: torch.Tensor, y: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, l2: float
) -> torch.Tensor:
    """Mean cross-entropy of ``x @ weight.T + bias`` plus ``l2 / 2 * ||weight||^2`` (bias not penalised)."""
    return F.cross_entropy(x @ weight.T + bias, y) + 0.5 * l2 * weight.pow(2).sum()


def fit_logistic(
    x: torch.Tensor,
    y: torch.Tensor,
    num_classes: int,
    l2: float,
    *,
    init: tuple[torch.Tensor, torch.Tensor] | None = None,
    max_iter: int = 300,
    tol: float = 1e-6,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Minimise :func:`logistic_objective` over ``(weight (K, D), bias (K,))`` by full-batch L-BFGS
    (strong-Wolfe line search), in the dtype and on the device of ``x``.

    For ``l2 > 0`` the objective is strictly convex in ``weight`` (the bias is determined up to a
    constant shift that changes no probability), so L-BFGS finds the one optimum; it stops when the
    largest gradient entry is below ``tol`` (or after ``max_iter`` iterations). ``init`` warm-starts
    from a previous solution.
    """
    d = x.shape[1]
    if init is None:
        w = torch.zeros(num_classes, d, dtype=x.dtype, device=x.device)
        b = torch.zeros(num_classes, dtype=x.dtype, device=x.device)
    else:
        w, b = (t.detach().to(x.device, x.dtype).clone() for t in init)
    w.requires_grad_(True)
    b.requires_grad_(True)
    opt = torch.optim.LBFGS([w, b], lr=1, max_iter=max_iter, tolerance_grad=tol, tolerance_change=1e-14,
                            history_size=20, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = logistic_objective(x, y, w, b, l2)
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)
    return w.detach(), b.detach()


@dataclass
class ProbeResult:
    """What :func:`fit_probe` returns.

    Attributes:
        test_accuracy: accuracy on the target's test split of the probe refitted on the whole training split.
        train_accuracy: its accuracy on the training split.
        l2: the chosen strength of the L2 term.
        validation: one row per strength tried: ``l2``, ``val_accuracy``, ``val_loss`` (mean cross-entropy).
        weight, bias: the final probe, on standardised features.
        mean, std: the standardisation of the features (of the whole training split).
    """

    test_accuracy: float
    train_accuracy: float
    l2: float
    validation: pd.DataFrame
    weight: torch.Tensor
    bias: torch.Tensor
    mean: torch.Tensor
    std: torch.Tensor


def _standardizer(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    mean = x.mean(0)
    std = x.std(0)
    return mean, torch.where(std > 1e-8 * (1 + mean.abs()), std, torch.ones_like(std))  # dead units: keep as is


def fit_probe(
    train_x: torch.Tensor,
    train_y: torch.Tensor,
    test_x: torch.Tensor,
    test_y: torch.Tensor,
    num_classes: int,
    *,
    l2_grid: Sequence[float] = DEFAULT_L2_GRID,
    val_fraction: float = 0.2,
    seed: int = 0,
    max_iter: int = 300,
    tol: float = 1e-6,
    dtype: torch.dtype | None = None,
) -> ProbeResult:
    """A linear probe on fixed features, the L2 strength chosen on a validation split.

    1. Carve a random ``val_fraction`` of the training samples (``seed``) out as validation.
    2. Standardise the features with the mean and std of the remaining part; for each ``l2`` in
       ``l2_grid`` (largest first, each fit warm-started from the previous one) fit
       :func:`fit_logistic` and measure the validation accuracy and cross-entropy.
    3. Choose the strength with the best validation accuracy (ties: the lower validation loss).
    4. Refit with that strength on the whole training split (standardised with its own statistics)
       and measure the test accuracy.

    Computed in float64 (``dtype``; float32 on MPS, which has no float64) on the features' device.
    """
    if not 0 < val_fraction < 1:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
    if not l2_grid or any(not math.isfinite(v) or v <= 0 for v in l2_grid):
        raise ValueError(f"l2_grid must hold finite numbers > 0, got {l2_grid}")
    device = train_x.device
    if dtype is None:
        dtype = torch.float32 if device.type == "mps" else torch.float64
    train_x, test_x = train_x.to(dtype), test_x.to(device, dtype)
    train_y, test_y = train_y.to(device), test_y.to(device)
    n = train_x.shape[0]
    n_val = max(1, round(val_fraction * n))
    if n - n_val < 1:
        raise ValueError(f"{n} training samples are too few to carve a validation split from")
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).to(device)
    val_idx, fit_idx = perm[:n_val], perm[n_val:]
    mean, std = _standardizer(train_x[fit_idx])
    xf, yf = (train_x[fit_idx] - mean) / std, train_y[fit_idx]
    xv, yv = (train_x[val_idx] - mean) / std, train_y[val_idx]

    rows, params = [], None
    for l2 in sorted((float(v) for v in l2_grid), reverse=True):
        params = fit_logistic(xf, yf, num_classes, l2, init=params, max_iter=max_iter, tol=tol)
        logits = xv @ params[0].T + params[1]
        acc, loss = torch.stack([(logits.argmax(1) == yv).to(dtype).mean(), F.cross_entropy(logits, yv)]).tolist()
        rows.append({"l2": l2, "val_accuracy": acc, "val_loss": loss})
    validation = pd.DataFrame(rows)
    best = validation.sort_values(["val_accuracy", "val_loss"], ascending=[False, True]).iloc[0]
    l2 = float(best["l2"])

    mean, std = _standardizer(train_x)
    xs = (train_x - mean) / std
    w, b = fit_logistic(xs, train_y, num_classes, l2, max_iter=max_iter, tol=tol)
    train_acc = (xs @ w.T + b).argmax(1).eq(train_y).to(dtype).mean()
    test_acc = (((test_x - mean) / std) @ w.T + b).argmax(1).eq(test_y).to(dtype).mean()
    return ProbeResult(float(test_acc), float(train_acc), l2, validation, w, b, mean, std)


def linear_probe(
    model: nn.Module,
    target: ArrayDataset,
    *,
    batch_size: int = 1024,
    layer: nn.Module | None = None,
    **fit_kwargs,
) -> ProbeResult:
    """Extract the penultimate features of ``target`` (train and test, no augmentation) from the
    frozen ``model`` on its device and fit :func:`fit_probe` on them (``fit_kwargs`` go there)."""
    device = _model_device(model)
    train = DeviceLoader(target.x_train, target.y_train, device, mean=target.mean, std=target.std)
    test = DeviceLoader(target.x_test, target.y_test, device, mean=target.mean, std=target.std)
    train_x, train_y = extract_features(model, train, batch_size, layer)
    test_x, test_y = extract_features(model, test, batch_size, layer)
    return fit_probe(train_x, train_y, test_x, test_y, target.num_classes, **fit_kwargs)


# ---------------------------------------------------------------------------------------------- fine-tuning
@dataclass(frozen=True)
class FineTuneConfig:
    """The short schedule of full fine-tuning on the target (every layer trained, a new head)."""

    epochs: int = 10
    """Epochs over the target's training split."""
    lr: float = 0.01
    """Peak learning rate (SGD), the same for every layer; a tenth of the pretraining default."""
    warmup_epochs: float = 1.0
    """Linear warm-up from 0 to ``lr`` over this many epochs (protects the pretrained layers from the
    large gradients of the new, random head), then cosine decay to 0 at the end, stepped per batch."""
    momentum: float = 0.9
    """SGD momentum."""
    weight_decay: float = 5e-4
    """L2 weight decay."""
    batch_size: int = 64
    """Mini-batch size."""
    eval_batch_size: int = 1024
    """Batch size of the test pass."""
    augment: bool = True
    """Random crop and flip on image batches (ignored for signals)."""
    amp: bool = True
    """bf16 autocast on CUDA (the head stays fp32)."""


@dataclass
class FineTuneResult:
    """What :func:`fine_tune` returns: the final ``test_accuracy`` (after the last epoch, no selection on
    the test split), the ``history`` (``epoch``, ``lr``, ``train_loss``, ``test_accuracy``), the
    fine-tuned ``model`` (a copy; the input model is left untouched) and ``seconds``."""

    test_accuracy: float
    history: pd.DataFrame
    model: nn.Module
    seconds: float


def replace_head(model: nn.Module, num_classes: int, generator: torch.Generator | None = None) -> nn.Module:
    """Put a freshly initialised :class:`~ies.models.Float32Linear` with ``num_classes`` outputs in place
    of ``model``'s :func:`final_linear` (in place; returns ``model``). Initialisation as ``nn.Linear``
    (uniform in +-1/sqrt(fan_in)), drawn from ``generator``."""
    name, old = final_linear(model)
    device = old.weight.device
    head = Float32Linear(old.in_features, num_classes, bias=old.bias is not None, device=device)
    bound = 1.0 / math.sqrt(old.in_features)
    with torch.no_grad():
        for p in head.parameters():
            p.copy_(torch.rand(p.shape, generator=generator) * 2 * bound - bound)
    parent = model.get_submodule(name.rpartition(".")[0]) if "." in name else model
    setattr(parent, name.rpartition(".")[2], head)
    return model


def fine_tune(
    model: nn.Module,
    target: ArrayDataset,
    config: FineTuneConfig = FineTuneConfig(),  # noqa: B008 (frozen, immutable)
    *,
    seed: int = 0,
    progress: bool = False,
) -> FineTuneResult:
    """Fine-tune a copy of ``model`` on ``target``: new head (:func:`replace_head`), all layers
    trained with SGD under ``config``'s schedule, on ``model``'s device. Returns the test accuracy after
    the last epoch. ``seed`` fixes the head's initialisation, the shuffling and the augmentation."""
    from tqdm.auto import tqdm

    device = _model_device(model)
    cuda = device.type == "cuda"
    model = replace_head(copy.deepcopy(model), target.num_classes, torch.Generator().manual_seed(seed)).to(device)
    for p in model.parameters():
        p.requires_grad_(True)
    if cuda and target.is_image:
        model = model.to(memory_format=torch.channels_last)
    amp = torch.autocast("cuda", dtype=torch.bfloat16) if (cuda and config.amp) else contextlib.nullcontext()
    gen = torch.Generator(device=device).manual_seed(seed)
    train = DeviceLoader(target.x_train, target.y_train, device, mean=target.mean, std=target.std,
                         augment=config.augment, generator=gen)
    test = DeviceLoader(target.x_test, target.y_test, device, mean=target.mean, std=target.std)
    opt = torch.optim.SGD(model.parameters(), lr=config.lr, momentum=config.momentum,
                          weight_decay=config.weight_decay)
    steps_per_epoch = math.ceil(len(train) / config.batch_size)
    total = config.epochs * steps_per_epoch
    warmup = round(config.warmup_epochs * steps_per_epoch)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: _warmup_cosine(s, warmup, total))

    rows = []
    t0 = time.perf_counter()
    for epoch in tqdm(range(config.epochs), desc="fine-tune", unit="epoch", disable=not progress, leave=False):
        model.train()
        loss_sum = torch.zeros((), device=device)
        for x, y, _ in train.batches(None, config.batch_size, shuffle=True, augment=True):
            with amp:
                loss = F.cross_entropy(model(x).float(), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            loss_sum += loss.detach() * y.numel()
        acc = accuracy(model, test, config.eval_batch_size, amp)
        rows.append({"epoch": epoch + 1, "lr": opt.param_groups[0]["lr"],
                     "train_loss": float(loss_sum) / len(train), "test_accuracy": acc})
    model.eval()
    return FineTuneResult(rows[-1]["test_accuracy"] if rows else accuracy(model, test, config.eval_batch_size, amp),
                          pd.DataFrame(rows), model, time.perf_counter() - t0)


def _warmup_cosine(step: int, warmup: int, total: int) -> float:
    """Learning-rate factor at ``step`` (0-based, counted before the step): linear warm-up over ``warmup``
    steps, then cosine from 1 to 0 over the rest."""
    if step < warmup:
        return (step + 1) / warmup
    rest = max(total - warmup, 1)
    return 0.5 * (1 + math.cos(math.pi * min(step - warmup, rest) / rest))


@torch.no_grad()
def accuracy(model: nn.Module, loader: DeviceLoader, batch_size: int = 1024, amp=None) -> float:
    """Eval-mode accuracy of ``model`` on every sample of ``loader`` (restores the training flag)."""
    from .epoch import evaluate

    return float(evaluate(model, loader, batch_size, amp)[1]) / len(loader)


# ---------------------------------------------------------------------------------------------- protocol
@dataclass(frozen=True)
class ProbeConfig:
    """Settings of the linear probe of :func:`transfer_experiment` (see :func:`fit_probe`)."""

    l2_grid: tuple[float, ...] = DEFAULT_L2_GRID
    """Strengths of the L2 term tried on the validation split."""
    val_fraction: float = 0.2
    """Fraction of the target's training split carved out to choose the strength."""
    max_iter: int = 300
    """L-BFGS iterations per fit at most."""
    tol: float = 1e-6
    """Stop a fit when the largest gradient entry is below this."""
    batch_size: int = 1024
    """Batch size of the feature extraction."""


@dataclass
class TransferRun:
    """Everything about one (method, seed) of :func:`transfer_experiment`, for a closer look: the table
    ``row``, the pretraining run (``None`` for ``scratch``), the pretrained ``model``, the probe and
    the fine-tuning results."""

    row: dict
    pretrain: RunResult | None
    model: nn.Module
    probe: ProbeResult
    finetune: FineTuneResult


def transfer_experiment(
    cfg: Config,
    source: ArrayDataset,
    target: ArrayDataset,
    seeds: Sequence[int] = (0, 1, 2),
    *,
    probe: ProbeConfig = ProbeConfig(),  # noqa: B008 (frozen, immutable)
    finetune: FineTuneConfig = FineTuneConfig(),  # noqa: B008
    scratch: bool = False,
    progress: bool = True,
    on_run: Callable[[TransferRun], None] | None = None,
) -> pd.DataFrame:
    """Pretrain on ``source`` with the baseline and with IES, then probe and fine-tune on ``target``.

    For each seed ``s``: ``ies.train(cfg.replace(seed=s, threshold=0), dataset=source)`` (baseline)
    and ``ies.train(cfg.replace(seed=s), dataset=source)`` (IES, ``cfg.threshold`` must be > 0), same
    epochs; each pretrained model is then measured by :func:`linear_probe` and :func:`fine_tune` on
    ``target`` (both with seed ``s``, so the two methods see the same validation split, head
    initialisation and batch order). ``scratch=True`` adds a third method, ``scratch``: the same
    architecture freshly initialised (seed ``s``), probed and fine-tuned the same way: the reference
    that says how much pretraining helps at all.

    Returns one row per (method, seed): ``method``, ``seed``, ``source_accuracy`` (final test accuracy
    on the source), ``backprop_saved`` (excluded sample-epochs / (N x epochs)), ``pretrain_seconds``,
    ``probe_accuracy``, ``probe_l2`` (the chosen strength), ``finetune_accuracy``, ``finetune_seconds``.
    ``on_run`` is called with a :class:`TransferRun` as each row is made (keep what you need: the
    models of every run are not kept).
    """
    if cfg.threshold <= 0 or cfg.selector != "ies":
        raise ValueError("transfer_experiment needs an IES configuration: selector='ies' and threshold > 0")
    if not seeds:
        raise ValueError("seeds must not be empty")
    rows = []
    for seed in seeds:
        seed = int(seed)
        runs = {m: train(cfg.replace(seed=seed, threshold=t, progress=progress), dataset=source)
                for m, t in (("baseline", 0.0), ("ies", cfg.threshold))}
        models = {m: (r.model, r) for m, r in runs.items()}
        if scratch:
            torch.manual_seed(seed)
            model = build_model(cfg.model, tuple(source.x_train.shape[1:]), source.num_classes)
            models["scratch"] = (model.to(_model_device(runs["baseline"].model)), None)
        for method, (model, run) in models.items():
            p = linear_probe(model, target, batch_size=probe.batch_size, l2_grid=probe.l2_grid,
                             val_fraction=probe.val_fraction, seed=seed, max_iter=probe.max_iter,
                             tol=probe.tol)
            ft = fine_tune(model, target, finetune, seed=seed, progress=progress)
            nan = float("nan")
            row = {
                "method": method, "seed": seed,
                "source_accuracy": run.metrics["test_accuracy"] if run else nan,
                "backprop_saved": run.metrics["backprop_saving"] if run else nan,
                "pretrain_seconds": run.metrics["wall_time_s"] if run else nan,
                "probe_accuracy": p.test_accuracy, "probe_l2": p.l2,
                "finetune_accuracy": ft.test_accuracy, "finetune_seconds": ft.seconds,
            }
            rows.append(row)
            if on_run is not None:
                on_run(TransferRun(row, run, model, p, ft))
    return pd.DataFrame(rows)


def summary_table(df: pd.DataFrame, metrics: Sequence[str] = METRICS) -> pd.DataFrame:
    """Mean and standard deviation over seeds of each metric, one row per method (columns
    ``(metric, "mean")``, ``(metric, "std")``, then ``("n_seeds", "")``); methods in the order they appear."""
    metrics = [m for m in metrics if m in df]
    order = list(dict.fromkeys(df["method"]))
    table = df.groupby("method", sort=False)[metrics].agg(["mean", "std"]).reindex(order)
    table[("n_seeds", "")] = df.groupby("method", sort=False)["seed"].nunique().reindex(order)
    return table


def paired_difference(
    df: pd.DataFrame, metric: str, method: str = "ies", reference: str = "baseline"
) -> pd.Series:
    """``metric`` of ``method`` minus that of ``reference``, per seed (seeds that have both)."""
    wide = df.pivot_table(index="seed", columns="method", values=metric)
    return (wide[method] - wide[reference]).dropna().rename(f"{metric} ({method} - {reference})")


@dataclass
class Verdict:
    """The paired comparison of one metric, IES - baseline, over seeds (see :func:`claim_verdict`).

    ``mean``, ``std``: of the per-seed differences; ``ci_low``, ``ci_high``: the two-sided confidence
    interval of their mean (Student t, ``n - 1`` degrees of freedom); ``wins``: seeds where IES is
    ahead; ``supports``: ``True`` / ``False`` / ``None`` (undecided); ``text``: one sentence."""

    metric: str
    mean: float
    std: float
    ci_low: float
    ci_high: float
    n: int
    wins: int
    claimed: float
    supports: bool | None
    text: str = field(repr=False)


def claim_verdict(
    df: pd.DataFrame, metric: str = "finetune_accuracy", claimed: float = 0.015, confidence: float = 0.95
) -> Verdict:
    """Do the runs of ``df`` support the claim that IES pretraining transfers better (by about ``claimed``)?

    A paired comparison: the per-seed difference IES - baseline of ``metric`` and the ``confidence``
    interval of its mean (Student t). ``supports`` is ``True`` when the whole interval is above 0 (IES
    better beyond the seed-to-seed noise), ``False`` when it is below 0 (IES worse) and ``None``
    otherwise, or with fewer than two seeds (no interval). ``text`` says so in a sentence, with the
    difference next to the claimed gain and whether the interval contains it.
    """
    from scipy import stats

    diff = paired_difference(df, metric)
    n = int(diff.size)
    mean = float(diff.mean()) if n else float("nan")
    std = float(diff.std()) if n > 1 else float("nan")
    half = float(stats.t.ppf(0.5 + confidence / 2, n - 1)) * std / math.sqrt(n) if n > 1 else float("nan")
    low, high = mean - half, mean + half
    wins = int((diff > 0).sum())
    label = metric.replace("_", " ")
    pct = f"{100 * confidence:g} %"
    if n < 2:
        supports, how = None, "cannot be judged: fewer than two seeds"
    elif low > 0:
        supports, how = True, f"support the claim: the whole {pct} interval is above 0"
    elif high < 0:
        supports, how = False, f"contradict the claim: IES is worse, the whole {pct} interval is below 0"
    else:
        supports, how = None, f"neither support nor contradict the claim: the {pct} interval contains 0"
    interval = f" ({pct} interval {100 * low:+.2f} .. {100 * high:+.2f})" if n > 1 else ""
    size = ""
    if n > 1:
        size = f"; the claimed {100 * claimed:+.1f} is {'inside' if low <= claimed <= high else 'outside'} the interval"
    text = (f"{label}: IES - baseline = {100 * mean:+.2f} points{interval} over {n} seed(s), IES ahead in "
            f"{wins} of {n}; the paper reports about {100 * claimed:+.1f}. Our runs {how}{size}.")
    return Verdict(metric, mean, std, low, high, n, wins, claimed, supports, text)
