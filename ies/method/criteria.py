"""Finite differences of per-sample loss histories and the two IES mastery rules.

Every function here works on a whole ``(num_samples, T)`` history at once: column ``T - 1`` is the
most recent epoch, column 0 the oldest one kept. Nothing loops over samples, nothing leaves the
device, and a missing (NaN) or non-finite loss anywhere in the look-back makes a sample
"not mastered".

The two rules (``delta`` is the threshold, ``N`` the order of the difference):

* ``paper`` (Yuan et al., ICLR 2025, Eq. 3): mastered iff ``|D_N(s)| < delta`` for each of the
  last ``patience`` epochs ``s``.
* ``official`` (the authors' released code): ``a(s) = mean(|D_N(s - window + 1)|, ..., |D_N(s)|)``;
  mastered iff ``a(t - patience + 1) + ... + a(t) < delta``. The authors run it with
  ``window = 3`` and ``patience = 1``.
"""

from __future__ import annotations

import math

import torch

RULES = ("paper", "official")
MAX_ORDER = 3


def check_rule_args(rule: str, order: int, window: int, patience: int) -> None:
    """Raise ``ValueError`` naming the first bad argument."""
    if rule not in RULES:
        raise ValueError(f"rule must be one of {RULES}, got {rule!r}")
    for name, value, low in (("order", order, 0), ("window", window, 1), ("patience", patience, 1)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"{name} must be an int, got {type(value).__name__}")
        if value < low:
            raise ValueError(f"{name} must be >= {low}, got {value}")
    if order > MAX_ORDER:
        raise ValueError(f"order must be in 0..{MAX_ORDER}, got {order}")


def lookback(rule: str, order: int, window: int = 3, patience: int = 1) -> int:
    """Number of most recent epochs of loss a rule reads.

    ``paper``: ``order + patience``; ``official``: ``order + window + patience - 1``.
    """
    check_rule_args(rule, order, window, patience)
    if rule == "paper":
        return order + patience
    return order + window + patience - 1


def backward_difference(history: torch.Tensor, order: int) -> torch.Tensor:
    """Order-``order`` backward differences along the last (epoch) axis.

    Args:
        history: ``(..., T)`` losses, oldest epoch first.
        order: 0 (the loss itself), 1 (``L(t) - L(t-1)``), 2 (``L(t) - 2L(t-1) + L(t-2)``) or 3.

    Returns:
        ``(..., T - order)``: entry ``j`` is ``D_order`` at epoch ``j + order``. Computed in the
        dtype of ``history`` by repeated first differences; NaN propagates.
    """
    if isinstance(order, bool) or not isinstance(order, int) or not 0 <= order <= MAX_ORDER:
        raise ValueError(f"order must be an int in 0..{MAX_ORDER}, got {order!r}")
    if history.shape[-1] <= order:
        raise ValueError(f"history needs more than order={order} epochs, got {history.shape[-1]}")
    return torch.diff(history, n=order, dim=-1) if order > 0 else history


def mastered_mask(
    history: torch.Tensor,
    threshold: float,
    *,
    rule: str = "official",
    order: int = 2,
    window: int = 3,
    patience: int = 1,
) -> torch.Tensor:
    """Decide mastery for every sample from its most recent losses.

    Args:
        history: ``(num_samples, T)`` losses, oldest first, with ``T >= lookback(rule, ...)``;
            only the last ``lookback`` columns are read. NaN marks an epoch with no recorded loss.
        threshold: ``delta >= 0``; ``0`` never masters anything (the baseline).

    Returns:
        ``(num_samples,)`` bool, True = mastered. False wherever any loss in the look-back is
        missing or non-finite.
    """
    check_rule_args(rule, order, window, patience)
    if not (isinstance(threshold, (int, float)) and math.isfinite(threshold) and threshold >= 0):
        raise ValueError(f"threshold must be a finite number >= 0, got {threshold!r}")
    if history.dim() != 2:
        raise ValueError(f"history must be 2-D (num_samples, T), got shape {tuple(history.shape)}")
    need = lookback(rule, order, window, patience)
    if history.shape[1] < need:
        raise ValueError(f"rule {rule!r} needs {need} epochs of history, got {history.shape[1]}")
    recent = history[:, -need:].T.to(torch.float64)
    return decide(recent, threshold, rule, order, window, patience)


def decide(recent: torch.Tensor, threshold: float, rule: str, order: int, window: int, patience: int) -> torch.Tensor:
    """The rule on ``recent``: ``(lookback, num_samples)`` losses, oldest epoch first, epoch-major (each
    row contiguous, which makes every step below a row-wise vector operation). No argument checks: the
    hot path of :class:`ies.MasteryTracker`; use :func:`mastered_mask` otherwise.

    No separate finiteness test is needed: every loss of the look-back enters some ``D_N`` with a
    non-zero binomial coefficient, so a NaN or infinite loss makes a ``|D_N|`` (and hence any mean or
    sum of it) NaN or infinite, and ``NaN < delta`` and ``inf < delta`` are both False.
    """
    if threshold == 0:
        return torch.zeros(recent.shape[1], dtype=torch.bool, device=recent.device)
    d = (torch.diff(recent, n=order, dim=0) if order else recent).abs()  # (window + patience - 1, N) or (patience, N)
    if rule == "paper":
        return (d < threshold).all(dim=0)
    window_sums = d[:patience].clone()
    for w in range(1, window):
        window_sums += d[w : w + patience]
    return (window_sums / window).sum(dim=0) < threshold  # sum over the last `patience` moving averages
