"""Wall-clock ratios that measure the method, not the machine.

A run's time depends on what else the machine does while it runs. Two runs trained one after the other on
a shared machine can differ by more than any saving of IES, in either direction. So every ratio the course
quotes passes **a calibration check** first: until IES first leaves a sample out, the two runs do the same
work (the same samples trained, the same batches, nothing forwarded without grad), so their epochs should
take the same time. The median of the per-epoch ratios over those epochs is the *calibration*; the timing is
**reliable** when it lies within ``1.00 ± 0.10`` (:data:`TOLERANCE`), and otherwise the machine's timing is
called unreliable and no speedup is quoted.

:func:`wall_clock` computes it from two histories (``epoch_seconds`` and the exclusion columns
``backprop_samples``, ``forward_only_samples``); :func:`pair_wall_clock` from two run results;
``interleaved`` marks runs trained side by side (alternated epochs), which only the caller knows;
:meth:`WallClock.sentence` is the line a notebook prints. The measured ratio is the run's total training
time (the sum of ``epoch_seconds``: checkpoints and observers excluded) over the baseline's, over the epochs
both ran.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import pandas as pd

#: The largest distance of the calibration ratio from 1 for which the timing is called reliable.
TOLERANCE = 0.10
#: The fewest epochs of identical work a calibration rests on.
MIN_CALIBRATION_EPOCHS = 3
RELIABLE = "reliable"
UNRELIABLE = "unreliable: quote no speedup"


@dataclass(frozen=True)
class WallClock:
    """A calibrated wall-clock ratio of a run against its baseline.

    ``ratio``: the run's training seconds over the baseline's (sums of ``epoch_seconds`` over the
    ``epochs`` both ran); ``calibration``: the median of the per-epoch ratios over the
    ``calibration_epochs`` before the run first left a sample out (NaN when there are none);
    ``interleaved``: whether the two were trained side by side, epoch by epoch."""

    ratio: float
    calibration: float
    calibration_epochs: int
    epochs: int
    interleaved: bool
    tolerance: float = TOLERANCE

    @property
    def reliable(self) -> bool:
        """The calibration rests on at least :data:`MIN_CALIBRATION_EPOCHS` epochs and lies within
        ``1 ± tolerance``."""
        return (self.calibration_epochs >= MIN_CALIBRATION_EPOCHS and math.isfinite(self.calibration)
                and abs(self.calibration - 1.0) <= self.tolerance + 1e-12)

    @property
    def verdict(self) -> str:
        """:data:`RELIABLE` or :data:`UNRELIABLE`."""
        return RELIABLE if self.reliable else UNRELIABLE

    @property
    def speedup(self) -> float:
        """``1 / ratio`` when the timing is reliable, else NaN (no speedup is quoted)."""
        return 1.0 / self.ratio if self.reliable and self.ratio > 0 else math.nan

    def sentence(self, name: str = "IES", baseline: str = "the baseline") -> str:
        """One line for a notebook: the ratio and speedup with their calibration, or why none is quoted."""
        how = "epochs interleaved in one process" if self.interleaved else "the two runs trained separately"
        band = f"1.00 ± {self.tolerance:.2f}"
        if self.calibration_epochs < MIN_CALIBRATION_EPOCHS or not math.isfinite(self.calibration):
            return (f"No speedup is quoted: {name} left samples out after {self.calibration_epochs} epoch(s) of the "
                    f"same work as {baseline}, too few to check the timing (at least {MIN_CALIBRATION_EPOCHS}).")
        check = (f"over the {self.calibration_epochs} epochs before {name} left any sample out, where both runs "
                 f"do the same work, {name}'s epochs took {self.calibration:.2f} times {baseline}'s")
        if not self.reliable:
            advice = "" if self.interleaved else "; run them again alone on a quiet machine"
            return (f"No speedup is quoted ({how}): {check}, outside {band}, so this machine's timing is "
                    f"unreliable (its load changed between or during the runs){advice}.")
        return (f"{name} took {self.ratio:.2f} of {baseline}'s training time, a speedup of {self.speedup:.2f}x "
                f"({how}); calibration: {check}, within {band}.")

    def to_dict(self) -> dict:
        """The fields, ``reliable``, ``verdict`` and ``speedup`` (NaN when none is quoted)."""
        return {**asdict(self), "reliable": self.reliable, "verdict": self.verdict, "speedup": self.speedup}


def identical_work(baseline: pd.DataFrame, other: pd.DataFrame) -> pd.DataFrame:
    """The epochs, from the first, before ``other`` first did other work than ``baseline``: both trained the
    same number of samples and forwarded none without grad. Columns ``epoch``, ``baseline_seconds``,
    ``seconds`` (``other``'s). Rows without a training epoch (``epoch`` < 1, e.g. a measurement at the
    initial weights) are left out."""
    both = _paired(baseline, other)
    same = ((both["backprop_samples_b"] == both["backprop_samples_o"]) & (both["forward_only_samples_b"] == 0)
            & (both["forward_only_samples_o"] == 0))
    prefix = same.cummin() if len(same) else same  # up to the first epoch that differs
    rows = both[prefix.astype(bool)]
    return pd.DataFrame({"epoch": rows["epoch"], "baseline_seconds": rows["epoch_seconds_b"],
                         "seconds": rows["epoch_seconds_o"]}).reset_index(drop=True)


def wall_clock(baseline: pd.DataFrame, other: pd.DataFrame, interleaved: bool = False,
               tolerance: float = TOLERANCE) -> WallClock:
    """The calibrated wall-clock ratio of the run with history ``other`` against the run with history
    ``baseline`` (the same configuration but for what ``other`` changes, the same seed), paired by epoch."""
    both = _paired(baseline, other)
    base_s, other_s = float(both["epoch_seconds_b"].sum()), float(both["epoch_seconds_o"].sum())
    ratio = other_s / base_s if base_s > 0 else math.nan
    same = identical_work(baseline, other)
    per_epoch = same["seconds"] / same["baseline_seconds"]
    calibration = float(per_epoch.median()) if len(per_epoch) else math.nan
    return WallClock(ratio, calibration, len(same), len(both), bool(interleaved), tolerance)


def pair_wall_clock(baseline, other, interleaved: bool = False, tolerance: float = TOLERANCE) -> WallClock:
    """:func:`wall_clock` of two :class:`~ies.training.RunResult` s (their ``history``)."""
    return wall_clock(baseline.history, other.history, interleaved, tolerance)


def _paired(baseline: pd.DataFrame, other: pd.DataFrame) -> pd.DataFrame:
    cols = ["epoch", "epoch_seconds", "backprop_samples", "forward_only_samples"]
    missing = [c for c in cols if c not in baseline or c not in other]
    if missing:
        raise ValueError(f"wall_clock: the histories lack {', '.join(missing)} (columns of ies.train's history)")
    both = baseline[cols].merge(other[cols], on="epoch", suffixes=("_b", "_o"))
    both = both[(both["epoch"] >= 1) & both["epoch_seconds_b"].notna() & both["epoch_seconds_o"].notna()]
    return both.sort_values("epoch").reset_index(drop=True)
