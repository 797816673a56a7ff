"""The rule replayed on recorded losses: what a tracker would have decided, epoch by epoch.

:func:`mastery_over_time` screens any rule (any order, threshold, patience) on one recorded run's
``(N, T)`` loss matrix without training again; :func:`first_epoch` and :func:`reentries` read the
``(N, T)`` decision masks it returns (or a run's ``mastered_matrix``).
"""

from __future__ import annotations

import torch

from .criteria import lookback, mastered_mask


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
