"""The two mastery rules restated in plain Python, one sample at a time, straight from their definitions.

For reading next to :mod:`ies.method.criteria` (which decides every sample at once on tensors), and as the
tests' independent reference: binomial coefficients instead of repeated differences, floats and lists
instead of tensors. ``D_N(t) = sum_j (-1)^j C(N, j) L(t - j)``; for N = 2, ``L(t) - 2 L(t-1) + L(t-2)``.
"""

from __future__ import annotations

import math
from math import comb


def difference(losses: list[float], order: int, t: int) -> float:
    """D_order at epoch index ``t`` (0-based) of ``losses``: sum_j (-1)^j C(order, j) L(t - j)."""
    return sum((-1) ** j * comb(order, j) * losses[t - j] for j in range(order + 1))


def is_mastered(losses: list[float | None], threshold: float, rule: str, order: int, window: int,
                patience: int) -> bool:
    """Mastery of one sample given all its losses so far (``None``/NaN = not recorded)."""
    if threshold == 0:
        return False
    need = order + patience if rule == "paper" else order + window + patience - 1
    if len(losses) < need:
        return False
    recent = losses[-need:]
    if any(v is None or not math.isfinite(v) for v in recent):
        return False
    last = len(recent) - 1
    if rule == "paper":
        return all(abs(difference(recent, order, last - i)) < threshold for i in range(patience))
    # official: a(s) = mean |D| over the window ending at s; sum of the last `patience` a(s)
    total = 0.0
    for i in range(patience):
        s = last - i
        total += sum(abs(difference(recent, order, s - w)) for w in range(window)) / window
    return total < threshold
