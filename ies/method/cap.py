"""The class cap: a selector's decision with at most a share ``cap`` of each class (or group) mastered.

Part of the rule (``Config.class_cap``), so it lives beside the tracker and needs only torch.
"""

from __future__ import annotations

import torch


def cap_mastered(mastered: torch.Tensor, groups: torch.Tensor, cap: float, score: torch.Tensor,
                 num_groups: int | None = None) -> torch.Tensor:
    """Class-balanced removal: keep at most ``floor(cap * n_g)`` mastered samples in each group ``g``
    (``n_g`` = the group's size, all its samples, mastered or not); the others train again.

    Which ones stay mastered: the most confidently mastered, those with the **smallest** ``score`` (e.g.
    the mastery criterion's value, the smoothed |second difference| of the loss, or the loss itself);
    ties go to the lower index, NaN scores last. Vectorised (two stable sorts and a rank within group).

    Args:
        mastered: ``(N,)`` bool, the selector's decision.
        groups: ``(N,)`` int64 group (class) of each sample.
        cap: the largest mastered share per group, in (0, 1]; 1 changes nothing.
        score: ``(N,)`` float, lower = more confidently mastered.
        num_groups: the number of groups, if known (saves reading ``groups.max()`` back from the device).

    Returns:
        ``(N,)`` bool on ``mastered``'s device, a subset of ``mastered``.
    """
    if not (isinstance(cap, (int, float)) and 0 < cap <= 1):
        raise ValueError(f"cap must be in (0, 1], got {cap!r}")
    if not mastered.shape == groups.shape == score.shape or mastered.dim() != 1:
        raise ValueError(f"mastered, groups and score must be (N,) of one size, got "
                         f"{tuple(mastered.shape)}, {tuple(groups.shape)}, {tuple(score.shape)}")
    groups = groups.long()
    g = num_groups if num_groups is not None else (int(groups.max()) + 1 if groups.numel() else 0)
    sizes = torch.bincount(groups, minlength=g)
    # float64 with a tolerance, so that e.g. 0.29 * 100 allows 29, not 28
    limit = torch.floor(cap * sizes.double() * (1 + 1e-12)).long()
    idx = torch.nonzero(mastered).flatten()
    s = score[idx].double().nan_to_num(nan=float("inf"))
    by_score = torch.sort(s, stable=True).indices
    by_group = torch.sort(groups[idx][by_score], stable=True).indices
    order = idx[by_score[by_group]]  # mastered samples sorted by group, then score, then index
    sorted_groups = groups[order]
    per_group = torch.bincount(sorted_groups, minlength=g)
    starts = torch.cumsum(per_group, 0) - per_group
    rank = torch.arange(order.numel(), device=order.device) - starts[sorted_groups]
    out = torch.zeros_like(mastered, dtype=torch.bool)
    out[order[rank < limit[sorted_groups]]] = True
    return out
