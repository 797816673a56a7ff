"""The linear probe: penultimate features of a frozen network, and a logistic regression fitted on them.

- :func:`final_linear`, :func:`extract_features`: the input of a model's last linear layer for every
  sample of a loader (eval mode, no augmentation);
- :func:`logistic_objective`, :func:`fit_logistic`: L2-regularised multinomial logistic regression by
  full-batch L-BFGS (a convex problem with one optimum);
- :func:`fit_probe`: standardise the features, choose the L2 strength on a validation split, refit, test;
- :func:`linear_probe`: both steps for a model and a target data set; :class:`ProbeConfig` its settings.

The paper's transfer result is a linear probe (its Tables 3, 6, 7: networks pretrained on ImageNet-1k,
with IES or without, then only the classification head trained on the new task, Adam 1e-3 for 1 or 5
epochs; the "+1.5 %" is the mean gain of ResNet-101 and DenseNet-121 on three targets after 1 epoch).
Here the head is instead fitted to convergence by L-BFGS, its L2 strength chosen on validation data, so
that the accuracy measures the features and not a one-epoch optimiser's progress.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from ..data.datasets import ArrayDataset, DeviceLoader
from ..models.modes import evaluating

#: The strengths of the L2 term tried by the probe (on the mean cross-entropy, standardised features).
DEFAULT_L2_GRID = (1.0, 1e-1, 1e-2, 1e-3, 1e-4, 1e-5)


# ---------------------------------------------------------------------------------------------- features
def final_linear(model: nn.Module) -> tuple[str, nn.Linear]:
    """``(name, layer)`` of the last ``nn.Linear`` registered in ``model``: the classifier of every
    model of :mod:`ies.models.zoo` (torchvision ResNets: ``fc``; the ``nn.Sequential`` nets: their last
    layer, a :class:`~ies.models.layers.Float32Linear`). Its *input* is the penultimate representation."""
    found = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    if not found:
        raise ValueError(f"{type(model).__name__} has no nn.Linear layer to take features from")
    return found[-1]


@torch.no_grad()
def extract_features(
    model: nn.Module,
    loader: DeviceLoader,
    batch_size: int = 1024,
    layer: nn.Module | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Penultimate features of every sample of ``loader``: ``((N, D) float32, (N,) labels)``.

    A forward hook on ``layer`` (default :func:`final_linear`) records the layer's *input* during an
    eval-mode, no-grad forward pass without augmentation; every module's training flag is restored
    afterwards (:func:`ies.models.modes.evaluating`). Generic: it works for any model whose classifier is a
    linear layer, whatever the modules before it. With the default layer the hook also checks that the
    layer's output *is* the model's output (so that the features really are the last representation
    before the logits).
    """
    check = layer is None
    if layer is None:
        layer = final_linear(model)[1]
    store: dict[str, torch.Tensor] = {}

    def hook(module: nn.Module, args: tuple, output: torch.Tensor) -> None:
        store["input"] = args[0]
        store["output"] = output

    feats, labels = [], []
    handle = layer.register_forward_hook(hook)
    with evaluating(model):
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
    device = next(model.parameters()).device
    train = DeviceLoader(target.x_train, target.y_train, device, mean=target.mean, std=target.std)
    test = DeviceLoader(target.x_test, target.y_test, device, mean=target.mean, std=target.std)
    train_x, train_y = extract_features(model, train, batch_size, layer)
    test_x, test_y = extract_features(model, test, batch_size, layer)
    return fit_probe(train_x, train_y, test_x, test_y, target.num_classes, **fit_kwargs)


@dataclass(frozen=True)
class ProbeConfig:
    """Settings of the linear probe of :func:`ies.experiments.transfer.transfer_experiment` (see :func:`fit_probe`)."""

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
