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
from collections.abc import Callable, Sequence
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


# ---------------------------------------------------------------------- a search that shares its pilots
def next_knob(pilots: Sequence[Pilot], target: float, low: float, high: float, *, scale: str = "linear",
              increasing: bool = True, tolerance: float = 0.01,
              model: Callable[[float], float] | None = None) -> float | None:
    """The knob of the next pilot towards ``target`` given every pilot run so far (``None``: stop).

    The pilots may come from other targets of the same method (a pilot is a run, whatever target asked
    for it), so a second budget often needs no new pilot. ``model(knob)`` is a monotone first guess of
    the saving (:data:`ies.experiments.peers.KNOBS`); without one the first pilot is the bracket's midpoint.

    - no pilot yet: the knob where ``model`` gives ``target``;
    - a pilot within ``tolerance``: ``None`` (matched);
    - pilots on both sides of the target: interpolation between the two closest (in the knob's ``scale``:
      linear, log, or linear then rounded for ``"int"``), kept within the inner 70 % of that bracket so
      that it shrinks at every step; ``None`` when no new knob lies between them (an integer bracket);
    - pilots on one side only: ``model`` shifted through the nearest pilot (its slope, our offset), or the
      bracket's end when that moves no further; ``None`` when that end already ran (out of reach).

    Rounded to 3 significant digits (``"int"``: an integer), so pilots land on readable, reusable values."""
    if scale not in SCALES:
        raise ValueError(f"scale must be one of {SCALES}, got {scale!r}")
    if not low < high:
        raise ValueError(f"the bracket needs low < high, got [{low}, {high}]")
    if any(abs(p.saving - target) <= tolerance for p in pilots):
        return None
    u, k = _to_u(scale), _from_u(scale)
    sign = 1.0 if increasing else -1.0
    tried = {p.knob for p in pilots}
    if not pilots:
        guess = _invert(model, target, low, high, scale) if model else k((u(low) + u(high)) / 2)
        return _tidy(guess, low, high, scale)
    below = [p for p in pilots if sign * p.saving < sign * target]  # these need a larger knob (saving oriented)
    above = [p for p in pilots if sign * p.saving > sign * target]
    if below and above:
        a, b = max(below, key=lambda p: p.knob), min(above, key=lambda p: p.knob)
        if a.knob > b.knob:  # not monotone (noise): bisect the two closest in saving
            a, b = min(a, b, key=lambda p: p.knob), max(a, b, key=lambda p: p.knob)
        ua, ub = u(a.knob), u(b.knob)
        fa, fb = sign * a.saving, sign * b.saving
        t = (sign * target - fa) / (fb - fa) if fb != fa else 0.5
        t = min(max(t, 0.15), 0.85)
        new = _tidy(k(ua + t * (ub - ua)), low, high, scale)
        if new in tried or not min(a.knob, b.knob) < new < max(a.knob, b.knob):
            new = _tidy(k((ua + ub) / 2), low, high, scale)
        return None if new in tried or not min(a.knob, b.knob) < new < max(a.knob, b.knob) else new
    side = below or above
    end = high if bool(below) else low  # the end that moves the saving towards the target
    nearest = max(side, key=lambda p: p.knob) if below else min(side, key=lambda p: p.knob)
    if end in tried or nearest.knob == end:
        return None
    new = None
    if model is not None:
        shifted = target + (model(nearest.knob) - nearest.saving)
        new = _tidy(_invert(model, shifted, low, high, scale), low, high, scale)
    if new is None or new in tried or (new <= nearest.knob if below else new >= nearest.knob):
        new = end
    return new


def calibration_from(pilots: Sequence[Pilot], target: float, tolerance: float, *, name: str, low: float,
                     high: float, scale: str, increasing: bool, asked: int) -> Calibration:
    """The :class:`Calibration` of ``target`` from every pilot of the method: the closest one, with how it
    was found (``asked``: the pilots this target asked for; the others ran for another target)."""
    if not pilots:
        raise ValueError(f"{name}: no pilot ran")
    best = min(pilots, key=lambda p: abs(p.saving - target))
    how = (f"interpolation on {name} over [{low:g}, {high:g}] ({scale}, saving "
           f"{'in' if increasing else 'de'}creasing) from a first guess; {asked} pilot(s) asked for this "
           f"target, {len(pilots) - asked} run for another budget or found in the cache")
    lo, hi = min(p.saving for p in pilots), max(p.saving for p in pilots)
    if abs(best.saving - target) > tolerance and not lo <= target <= hi:
        end = high if (target > hi) == increasing else low
        how += f"; out of reach: the pilots save {lo:.4f}..{hi:.4f}, the end {end:g} included"
    ordered = tuple(pilots)
    return _result(name, target, tolerance, list(ordered), how)


def _to_u(scale: str) -> Callable[[float], float]:
    return math.log if scale == "log" else float


def _from_u(scale: str) -> Callable[[float], float]:
    return math.exp if scale == "log" else float


def _tidy(knob: float, low: float, high: float, scale: str) -> float:
    """``knob`` inside ``[low, high]``, rounded to 3 significant digits (an integer for ``"int"``)."""
    knob = min(max(float(knob), low), high)
    if scale == "int":
        return int(round(knob))
    tidy = float(f"{knob:.3g}")
    return min(max(tidy, low), high)


def _invert(model: Callable[[float], float], target: float, low: float, high: float, scale: str) -> float:
    """The knob in ``[low, high]`` where the monotone ``model`` gives ``target`` (bisection in the knob's
    scale; the nearer end when the target is outside the model's range)."""
    u, k = _to_u(scale), _from_u(scale)
    a, b = u(low), u(high)
    fa, fb = model(k(a)), model(k(b))
    if (target - fa) * (target - fb) > 0:
        return low if abs(target - fa) <= abs(target - fb) else high
    for _ in range(60):
        mid = (a + b) / 2
        fm = model(k(mid))
        if (fm - target) * (fa - target) > 0:
            a, fa = mid, fm
        else:
            b = mid
    return k((a + b) / 2)


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
