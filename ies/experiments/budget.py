"""Matching budgets: calibrate a method's knob so that a run costs a target compute.

The comparison of methods is fair only at equal cost. The cost of a run is its ``compute_saving``
(``1 - (forward + 2 x backward sample-passes) / (3 x N x epochs)``, see
:func:`ies.training.history.summarize`), and a target is usually a FLOP-ideal speedup ``S``
(``saving = 1 - 1/S``: 1.5x -> 1/3, 2x -> 1/2). Each method has one knob that moves its cost
monotonically (IES: ``threshold`` delta, log scale; InfoBatch and small loss & rescale: ``prune_ratio``;
Selective Backprop: ``sb_beta``; conventional early stopping: ``es_patience``,
an integer, *decreasing*: more patience, less saving; SeTa: ``seta_prune_ratio``; OrderDP:
``orderdp_top_q``, decreasing; PFB: ``pfb_prune_ratio``). :func:`calibrate` finds it by bisection on pilot
runs and records how (:class:`Calibration`, written next to the results). The IES paper does not say how
its methods were matched to its 2x / 3x targets (Table 4); this module is how we do it.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass

from ..training.loop import train

SCALES = ("linear", "log", "int")


def saving_for_speedup(speedup: float) -> float:
    """The ``compute_saving`` of a FLOP-ideal ``speedup`` (``>= 1``): ``1 - 1 / speedup``."""
    if not (math.isfinite(speedup) and speedup >= 1):
        raise ValueError(f"speedup must be a finite number >= 1, got {speedup}")
    return 1.0 - 1.0 / speedup


def speedup_from_backprop_saving(saving: float, backward_cost: float = 2.0) -> float:
    """The speedup of an epoch if time were proportional to FLOPs: a trained sample costs one
    forward plus a backward of ``backward_cost`` forwards, a mastered one only its no-grad forward.
    With backward = 2 forwards: ``1 / (1 - 2 s / 3)`` for a fraction ``s`` of samples saved. From the
    backprop saving alone; a run's ``metrics.json`` ``flop_ideal_speedup`` is ``1 / (1 - compute_saving)``
    from every forward and backward it counted (the same number when only mastered samples skip backprop)."""
    if not 0 <= saving <= 1:
        raise ValueError(f"saving must be in [0, 1], got {saving}")
    return 1.0 / (1.0 - saving * backward_cost / (1.0 + backward_cost))


def speedup_for_saving(saving: float) -> float:
    """The FLOP-ideal speedup ``1 / (1 - saving)`` of a ``compute_saving`` in ``[0, 1)`` (or below 0: a
    method that costs more than the baseline has a speedup below 1)."""
    if not saving < 1:
        raise ValueError(f"saving must be < 1, got {saving}")
    return 1.0 / (1.0 - saving)


@dataclass(frozen=True)
class Pilot:
    """One pilot run: the knob tried and the ``compute_saving`` it gave."""

    knob: float
    saving: float


@dataclass(frozen=True)
class Calibration:
    """The result of :func:`calibrate`.

    Attributes:
        name: the knob's name (a ``Config`` field).
        knob: the value chosen (the pilot closest to the target).
        saving: its measured ``compute_saving``.
        target: the target ``compute_saving``.
        tolerance: the accepted ``|saving - target|``.
        matched: True when ``|saving - target| <= tolerance``.
        pilots: every pilot, in the order run.
        how: one sentence saying how the knob was matched (or why not), for the results.
    """

    name: str
    knob: float
    saving: float
    target: float
    tolerance: float
    matched: bool
    pilots: tuple[Pilot, ...]
    how: str

    def to_dict(self) -> dict:
        """A JSON-ready dict (pilots as a list of ``{"knob", "saving"}``)."""
        d = asdict(self)
        d["pilots"] = [asdict(p) for p in self.pilots]
        return d


def calibrate(run: Callable[[float], float], target: float, low: float, high: float, *, name: str = "knob",
              increasing: bool = True, scale: str = "linear", tolerance: float = 0.01, max_pilots: int = 8,
              strict: bool = True) -> Calibration:
    """Find the knob in ``[low, high]`` whose pilot run gives ``compute_saving`` ``target``, by bisection.

    ``run(knob)`` runs one pilot (typically a short run; :func:`pilot` makes one from a ``Config``) and
    returns its ``compute_saving``. The saving is assumed monotone in the knob: increasing (``increasing``)
    or decreasing. The ends are tried first (2 pilots); then the bracket is halved at its midpoint
    (arithmetic for ``scale="linear"``, geometric for ``"log"``, floor of the arithmetic for ``"int"``)
    until a pilot is within ``tolerance`` of the target, ``max_pilots`` pilots have run, or (``"int"``) the
    bracket holds no other integer. The answer is the pilot closest to the target.

    Unreachable target: if the target lies outside the savings of the two ends by more than
    ``tolerance``, ``strict`` raises ``ValueError`` naming the knob and the range reached (nothing else
    is run); ``strict=False`` returns the closer end with ``matched=False``. Not monotone (a midpoint's
    saving outside its bracket's by more than ``tolerance``, e.g. noise in short pilots): the bisection
    goes on, and ``how`` says so. Running out of pilots: the closest pilot, ``matched=False``.
    """
    if scale not in SCALES:
        raise ValueError(f"scale must be one of {SCALES}, got {scale!r}")
    if not low < high:
        raise ValueError(f"{name}: the bracket needs low < high, got [{low}, {high}]")
    if scale == "log" and low <= 0:
        raise ValueError(f"{name}: a log-scale bracket needs low > 0, got {low}")
    if not (math.isfinite(target) and target < 1):
        raise ValueError(f"target compute_saving must be a finite number < 1, got {target}")
    if not tolerance >= 0 or max_pilots < 2:
        raise ValueError(f"tolerance must be >= 0 and max_pilots >= 2, got {tolerance}, {max_pilots}")
    if scale == "int":
        low, high = int(low), int(high)

    pilots: list[Pilot] = []

    def measure(knob: float) -> float:
        saving = float(run(knob))
        pilots.append(Pilot(knob, saving))
        return saving

    sign = 1.0 if increasing else -1.0  # work with a saving that increases in the knob
    f_low, f_high = sign * measure(low), sign * measure(high)
    goal = sign * target
    notes = []
    if f_low > f_high + tolerance:
        notes.append(f"the ends are in the wrong order ({pilots[0].saving:.4f} at {low}, "
                     f"{pilots[1].saving:.4f} at {high}): not monotone as assumed")
    reach = (min(pilots[0].saving, pilots[1].saving), max(pilots[0].saving, pilots[1].saving))
    if not reach[0] - tolerance <= target <= reach[1] + tolerance:
        message = (f"{name}: target compute_saving {target:.4f} is out of reach in [{low}, {high}] "
                   f"(the ends give {reach[0]:.4f}..{reach[1]:.4f})")
        if strict:
            raise ValueError(message + "; widen the bracket or change the target")
        return _result(name, target, tolerance, pilots, f"{message}; best effort: the closer end")
    lo, hi = low, high
    while len(pilots) < max_pilots and not _close(pilots, target, tolerance):
        mid = _midpoint(lo, hi, scale)
        if mid is None:
            notes.append(f"no integer left between {lo} and {hi}")
            break
        f_mid = sign * measure(mid)
        if not min(f_low, f_high) - tolerance <= f_mid <= max(f_low, f_high) + tolerance:
            notes.append(f"{pilots[-1].saving:.4f} at {mid} lies outside its bracket: not monotone")
        if f_mid < goal:
            lo, f_low = mid, f_mid
        else:
            hi, f_high = mid, f_mid
    how = f"bisection on {name} over [{low}, {high}] ({scale}, saving {'in' if increasing else 'de'}creasing)"
    return _result(name, target, tolerance, pilots, how + "".join(f"; {n}" for n in notes))


def pilot(cfg, name: str, *, epochs: int | None = None, dataset=None) -> Callable[[float], float]:
    """``run(knob)`` for :func:`calibrate`: train ``cfg`` with field ``name`` set to ``knob`` (and
    ``epochs`` if given: a short pilot; the saving of a short run is only an estimate of the full run's,
    as most methods save more late in training) without output, and return its ``compute_saving``."""
    changes = {"output": "", "progress": False, **({"epochs": epochs} if epochs else {})}

    def run(knob: float) -> float:
        return float(train(cfg.replace(**changes, **{name: knob}), dataset=dataset).metrics["compute_saving"])

    return run


# ---------------------------------------------------------------------- internals
def _midpoint(lo: float, hi: float, scale: str) -> float | None:
    if scale == "log":
        return math.sqrt(lo * hi)
    if scale == "int":
        mid = (lo + hi) // 2
        return mid if lo < mid < hi else None
    return (lo + hi) / 2


def _close(pilots: list[Pilot], target: float, tolerance: float) -> bool:
    return any(abs(p.saving - target) <= tolerance for p in pilots)


def _result(name: str, target: float, tolerance: float, pilots: list[Pilot], how: str) -> Calibration:
    best = min(pilots, key=lambda p: abs(p.saving - target))
    matched = abs(best.saving - target) <= tolerance
    summary = f"{len(pilots)} pilots, |saving - target| = {abs(best.saving - target):.4f}"
    summary += f" {'<=' if matched else '>'} {tolerance}"
    return Calibration(name, best.knob, best.saving, target, tolerance, matched, tuple(pilots), f"{how}; {summary}")
