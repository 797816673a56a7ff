"""When to re-check mastered samples: every epoch (IES as published), every ``M`` epochs, or ever less often
as the learning rate decays.

IES as published forwards every mastered sample once per epoch to keep its loss history, so its cost
never falls below ``1 - 2s/3`` of a full epoch for a backprop saving ``s``. In an epoch *without* a
re-check the mastered samples are not forwarded at all (and stay mastered, see
:meth:`ies.MasteryTracker.step`), which lets the saving approach ``s`` itself.

Modes (the ``recheck`` field of :class:`ies.Config`):

- ``"every"``: period 1, today's behaviour.
- an int ``M >= 1``: re-check in epochs ``0, M, 2M, ...`` (0-based).
- ``"lr"``: the period grows as the learning rate decays: :func:`recheck_period` gives
  ``1 + (number of bin edges above lr)``; with the default edges :data:`LR_BINS`
  ``(0.05, 0.01, 0.005, 0.001)``:

  ==================  ======
  learning rate       period
  ==================  ======
  lr >= 0.05          1
  0.01 <= lr < 0.05   2
  0.005 <= lr < 0.01  3
  0.001 <= lr < 0.005 4
  lr < 0.001          5
  ==================  ======

  An epoch is a re-check when at least ``period`` epochs have passed since the last re-check (epoch
  0 always is one), so a re-check follows the previous one by exactly the period in force.
  Under the authors' SGD(E) schedule (0.1 x 0.96^t) the period is 1 up to epoch 16, 2 from epoch
  17, 3 from 57, 4 from 74 and 5 from 113 (0-based).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

LR_BINS: tuple[float, ...] = (0.05, 0.01, 0.005, 0.001)
"""Default learning-rate bin edges of the ``"lr"`` mode, strictly decreasing."""


def check_bins(bins: Sequence[float]) -> tuple[float, ...]:
    """``bins`` as a tuple of floats; ``ValueError`` naming ``recheck_bins`` unless they are
    finite, positive and strictly decreasing (at least one edge)."""
    try:
        edges = tuple(float(b) for b in bins)
    except (TypeError, ValueError):
        raise ValueError(f"recheck_bins must be numbers, got {bins!r}") from None
    ok = edges and all(math.isfinite(b) and b > 0 for b in edges)
    if not ok or any(a <= b for a, b in zip(edges, edges[1:], strict=False)):
        raise ValueError(f"recheck_bins must be positive, finite and strictly decreasing, got {bins!r}")
    return edges


def parse_bins(text: str) -> tuple[float, ...]:
    """``"0.05,0.01,0.005,0.001"`` -> ``(0.05, 0.01, 0.005, 0.001)``, checked by :func:`check_bins`."""
    parts = [p for p in str(text).replace(" ", "").split(",") if p]
    try:
        return check_bins(parts)
    except ValueError:
        raise ValueError(f"recheck_bins must be comma-separated positive numbers, strictly decreasing, "
                         f"got {text!r}") from None


def recheck_period(lr: float, bins: Sequence[float] = LR_BINS) -> int:
    """Re-check period of the ``"lr"`` mode at learning rate ``lr``: 1 + the number of edges of
    ``bins`` (strictly decreasing) that ``lr`` is below. ``recheck_period(0.1) == 1``,
    ``recheck_period(0.02) == 2``, ``recheck_period(5e-4) == 5``."""
    return 1 + sum(lr < edge for edge in bins)


def parse_mode(mode: str | int) -> str | int:
    """``"every"``, ``"lr"`` or a whole number ``M >= 1`` (also as a string, ``"5"``) -> ``"every"``,
    ``"lr"`` or ``M``; ``ValueError`` naming ``recheck`` otherwise. ``1`` and ``"1"`` mean ``"every"``."""
    if isinstance(mode, bool):
        raise ValueError(f"recheck must be 'every', 'lr' or a whole number >= 1, got {mode!r}")
    text = str(mode).strip()
    if text in ("every", "lr"):
        return text
    if text.isdigit() and int(text) >= 1:
        return "every" if int(text) == 1 else int(text)
    raise ValueError(f"recheck must be 'every', 'lr' or a whole number >= 1, got {mode!r}")


class RecheckSchedule:
    """Says, epoch by epoch, whether the mastered samples are re-checked.

    Call :meth:`is_recheck` once per epoch, in order (a repeated call for the same epoch gives the same
    answer); the ``"lr"`` mode remembers the last re-check epoch, which :meth:`state_dict` saves.

    Args:
        mode: ``"every"``, ``"lr"`` or ``M`` (see :func:`parse_mode`).
        bins: learning-rate edges of the ``"lr"`` mode (default :data:`LR_BINS`).
    """

    def __init__(self, mode: str | int = "every", bins: Sequence[float] = LR_BINS) -> None:
        self.mode = parse_mode(mode)
        self.bins = check_bins(bins)
        self.last: int | None = None  # the last re-check epoch (0-based), None before the first

    def period(self, lr: float) -> int:
        """The period in force at learning rate ``lr``."""
        if self.mode == "every":
            return 1
        if self.mode == "lr":
            return recheck_period(lr, self.bins)
        return self.mode

    def is_recheck(self, epoch: int, lr: float) -> bool:
        """True if the mastered samples are forwarded (re-checked) in ``epoch`` (0-based) at ``lr``."""
        if isinstance(self.mode, int):
            answer = epoch % self.mode == 0
        else:
            answer = self.last is None or epoch == self.last or epoch - self.last >= self.period(lr)
        if answer:
            self.last = epoch
        return answer

    def state_dict(self) -> dict:
        return {"mode": self.mode, "bins": list(self.bins), "last": self.last}

    def load_state_dict(self, state: dict) -> None:
        if parse_mode(state["mode"]) != self.mode or check_bins(state["bins"]) != self.bins:
            raise ValueError(f"recheck schedule differs: saved {state['mode']!r} {state['bins']}, "
                             f"here {self.mode!r} {list(self.bins)}")
        self.last = state["last"]

    def __repr__(self) -> str:
        return f"RecheckSchedule({self.mode!r}, bins={self.bins})"


def recheck_epochs(mode: str | int, lrs: Iterable[float], bins: Sequence[float] = LR_BINS) -> list[bool]:
    """Whether each epoch of a learning-rate sequence (one lr per epoch, from epoch 0) is a re-check."""
    schedule = RecheckSchedule(mode, bins)
    return [schedule.is_recheck(epoch, lr) for epoch, lr in enumerate(lrs)]
