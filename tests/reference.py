"""Plain per-sample python references for the tests: the rules themselves are :mod:`ies.method.plain`
(independent of ``ies.method.criteria``); here, re-checking's "last recorded values" per sample."""

from __future__ import annotations

from ies.method.plain import is_mastered


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
