"""Plain per-sample python reference of the two mastery rules, written straight from their definitions.

Deliberately independent of ``ies.criteria``: binomial coefficients instead of repeated differences,
python floats and lists instead of tensors.
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


class RecordedLists:
    """The "last recorded values" semantics of re-checking, per sample, in plain python: each sample
    keeps the list of its recorded losses, as the authors' code does.

    ``close(values, recheck)`` ends an epoch: ``values[i]`` is sample ``i``'s loss of this epoch, or
    ``None`` if it was not recorded. In an epoch without a re-check a mastered sample with nothing
    recorded is left alone (its list unchanged, still mastered); every other sample appends its value
    (``None``, a gap, if it has none) and is decided by :func:`is_mastered` on its own list.
    """

    def __init__(self, n: int, threshold: float, rule: str, order: int, window: int, patience: int) -> None:
        self.lists: list[list[float | None]] = [[] for _ in range(n)]
        self.mastered = [False] * n
        self.args = (threshold, rule, order, window, patience)

    def close(self, values: list[float | None], recheck: bool) -> list[bool]:
        for i, value in enumerate(values):
            if not recheck and self.mastered[i] and value is None:
                continue
            self.lists[i].append(value)
            self.mastered[i] = is_mastered(self.lists[i], *self.args)
        return list(self.mastered)

    def last(self, i: int, k: int) -> list[float | None]:
        """Sample ``i``'s last ``k`` list entries, oldest first, padded with ``None`` in front."""
        entries = self.lists[i][-k:]
        return [None] * (k - len(entries)) + entries
