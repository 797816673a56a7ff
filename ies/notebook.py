"""What the course notebooks share, so that they stay thin.

- running a notebook: :func:`resolve_profile` (the ``smoke`` / ``teaching`` / ``full`` settings table
  read by ``PROFILE``), :func:`output_dir` and :func:`write_metrics` (its ``metrics.json``);
- analysis of recorded runs: :func:`mastery_over_time` replays a mastery rule on a loss matrix,
  :func:`first_epoch` and :func:`reentries` read the resulting masks, :func:`coefficient_of_variation`
  of the differences across samples, :func:`flop_ideal_speedup` from a backprop saving, and
  :func:`predictions` of a model on a split.

Casting the notebooks' parameters is :func:`ies.params.cast_params`; the tooling around the notebooks
(setup cell, Colab links, student copies, HTML) is :mod:`ies.course`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from .checkpoint import write_json
from .criteria import lookback, mastered_mask
from .data import DeviceLoader

PROFILES = ("smoke", "teaching", "full")


def resolve_profile(profile: str, table: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The settings of ``profile`` from ``table`` (``{"smoke": {...}, "teaching": {...}, "full": {...}}``).

    Raises ``ValueError`` naming ``PROFILE`` for anything else.
    """
    profile = str(profile).strip().lower()
    if profile not in PROFILES:
        raise ValueError(f"PROFILE must be one of {PROFILES}, got {profile!r}")
    missing = [p for p in PROFILES if p not in table]
    if missing:
        raise ValueError(f"the profile table lacks {missing}")
    return dict(table[profile])


def output_dir(path: str | os.PathLike) -> Path:
    """Create and return the notebook's output folder."""
    out = Path(path).expanduser()
    out.mkdir(parents=True, exist_ok=True)
    return out


def write_metrics(out: str | os.PathLike, metrics: dict[str, Any]) -> Path:
    """Write ``metrics.json`` into ``out`` atomically and return its path."""
    path = Path(out) / "metrics.json"
    write_json(path, metrics)
    return path


# ---------------------------------------------------------------------- analysis of recorded runs
def mastery_over_time(
    loss_matrix: torch.Tensor,
    threshold: float,
    *,
    rule: str = "official",
    order: int = 2,
    window: int = 3,
    patience: int = 1,
) -> torch.Tensor:
    """``(N, T)`` bool: the decision a :class:`~ies.MasteryTracker` fed the losses of ``loss_matrix``
    (``(N, T)``, oldest epoch first) would take at the end of every epoch (False before its
    look-back is complete). Replays any rule on recorded trajectories, e.g. ``order=0..3`` on one
    baseline run."""
    n, t_max = loss_matrix.shape
    need = lookback(rule, order, window, patience)
    out = torch.zeros(n, t_max, dtype=torch.bool)
    for t in range(need, t_max + 1):
        window_losses = loss_matrix[:, t - need : t]
        out[:, t - 1] = mastered_mask(window_losses, threshold, rule=rule, order=order, window=window,
                                      patience=patience).cpu()
    return out


def first_epoch(mask: torch.Tensor) -> torch.Tensor:
    """``(N,)`` int64: the 1-based epoch at which each row of ``mask`` (``(N, T)`` bool) is first
    True, 0 where it never is."""
    mask = mask.bool()
    first = mask.int().argmax(dim=1) + 1
    return torch.where(mask.any(dim=1), first, torch.zeros_like(first)).long()


def reentries(mask: torch.Tensor) -> torch.Tensor:
    """``(N,)`` int64: how often each sample went from mastered (True) to not mastered (False)
    between consecutive epochs of ``mask`` (``(N, T)`` bool)."""
    mask = mask.bool()
    return (mask[:, :-1] & ~mask[:, 1:]).sum(dim=1)


def coefficient_of_variation(values: torch.Tensor, dim: int = 0) -> torch.Tensor:
    """std / mean along ``dim`` (float64; NaN entries ignored; NaN where the mean is 0)."""
    values = values.double()
    mean = values.nanmean(dim=dim)
    centred = values - mean.unsqueeze(dim)
    count = (~values.isnan()).sum(dim=dim)
    std = (centred.pow(2).nansum(dim=dim) / (count - 1).clamp(min=1)).sqrt()
    return torch.where(mean != 0, std / mean, torch.full_like(mean, float("nan")))


def flop_ideal_speedup(saving: float, backward_cost: float = 2.0) -> float:
    """The speedup of an epoch if time were proportional to FLOPs: a trained sample costs one
    forward plus a backward of ``backward_cost`` forwards, a mastered one only its no-grad forward.
    With backward = 2 forwards: ``1 / (1 - 2 s / 3)`` for a fraction ``s`` of samples saved."""
    if not 0 <= saving <= 1:
        raise ValueError(f"saving must be in [0, 1], got {saving}")
    return 1.0 / (1.0 - saving * backward_cost / (1.0 + backward_cost))


@torch.no_grad()
def predictions(model: torch.nn.Module, data, split: str = "train", batch_size: int = 1024) -> torch.Tensor:
    """``(N,)`` int64 on the CPU: ``model``'s predicted class of every sample of ``data``'s
    ``split`` (``train`` or ``test``, an :class:`~ies.data.ArrayDataset`), in eval mode, without
    augmentation, on the model's device. The model's train/eval mode is restored."""
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    x, y = (data.x_train, data.y_train) if split == "train" else (data.x_test, data.y_test)
    device = next(model.parameters()).device
    loader = DeviceLoader(x, y, device, mean=data.mean, std=data.std)
    was_training = model.training
    model.eval()
    try:
        return torch.cat([model(xb).argmax(dim=1).cpu() for xb, _, _ in loader.batches(None, batch_size)])
    finally:
        model.train(was_training)
