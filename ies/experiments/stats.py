"""Statistics for comparing runs over seeds: paired differences, a t interval, one verdict rule, a sign test.

Every "supported / not supported" in the package and the notebooks comes from :func:`verdict`:

- the runs are paired by seed (runs of one seed start from the same weights and see the same data order),
  so the unit of evidence is the per-seed difference ``d = a - b`` (:func:`paired_differences`);
- a claim is a bound on the mean of ``d``: ``mean(d) > bound`` (``bound = 0``: *a beats b*;
  ``bound = -tolerance``: *a is no worse than b by more than tolerance*);
- with the two-sided Student-t ``confidence`` interval ``[low, high]`` of that mean (:func:`interval`):
  ``low > bound`` -> ``supported``; ``high < bound`` -> ``not supported``; otherwise
  ``inconclusive (within seed noise)``;
- **no verdict from fewer than** :data:`MIN_SEEDS` **(3) seeds**: one or two seeds give
  ``illustration (fewer than 3 seeds)``, never a verdict (two seeds give a 95 % t interval 12.7 standard
  errors wide, so a verdict would turn on the spread, and two seeds that agree exactly would give a
  zero-width interval); no seeds give ``not run``;
- **the spread is floored at the test set's binomial noise** for accuracies: a per-seed spread smaller than
  ``sqrt(p (1 - p) / n_test)`` (:func:`binomial_floor`, ``p`` the accuracy, ``n_test`` the test samples) is
  raised to it, since a test set of ``n_test`` samples cannot measure an accuracy more finely than that;
- a **sign test** (:func:`sign_test`) counts one summary per seed, never pooled probes of one run (they are
  correlated); with 3 seeds its smallest two-sided p-value is 0.25, so it can only illustrate;
- what an inconclusive verdict could have detected is :meth:`Interval.half`, the interval's half-width:
  :func:`explain` writes it as a sentence.

Tables and error bars show the 95 % interval of the mean (:meth:`Interval.pm`), not the standard deviation.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats as sps

SUPPORTED = "supported"
NOT_SUPPORTED = "not supported"
NOT_RUN = "not run"
FEW_SEEDS = "illustration (fewer than 3 seeds)"
WITHIN_NOISE = "inconclusive (within seed noise)"
#: The fewest seeds a verdict rests on; below it :func:`verdict` says :data:`FEW_SEEDS`.
MIN_SEEDS = 3
#: The words of a decided verdict.
DECIDED = (SUPPORTED, NOT_SUPPORTED)


def binomial_floor(accuracy: float, n_test: int) -> float:
    """``sqrt(p (1 - p) / n_test)``: the binomial standard deviation of an accuracy ``p`` measured on
    ``n_test`` test samples, the floor of a per-seed spread of accuracies (0.0 when ``n_test`` is 0 or
    ``p`` is not finite).

    >>> round(binomial_floor(0.9, 1000), 5)
    0.00949
    """
    if n_test < 0:
        raise ValueError(f"n_test must be >= 0, got {n_test}")
    if not n_test or not math.isfinite(accuracy):
        return 0.0
    p = min(max(float(accuracy), 0.0), 1.0)
    return math.sqrt(p * (1.0 - p) / n_test)


def paired_differences(table: pd.DataFrame, metric: str, a: str, b: str, *,
                       by: str = "setting", pair: str = "seed") -> pd.Series:
    """Per-``pair`` (seed) difference of ``metric``: rows whose ``by`` column is ``a`` minus rows that are
    ``b``. Seeds present in only one of them are dropped; repeated rows of a seed are averaged.

    Returns a Series indexed by seed (empty when either side is missing)."""
    if by not in table or metric not in table:
        return pd.Series(dtype=float, name=metric)
    seeds = table[pair] if pair in table else pd.Series(0, index=table.index)
    wide = table.assign(_pair=seeds).pivot_table(index="_pair", columns=by, values=metric, aggfunc="mean")
    if a not in wide or b not in wide:
        return pd.Series(dtype=float, name=metric)
    return (wide[a] - wide[b]).dropna().rename(f"{metric} ({a} - {b})")


@dataclass(frozen=True)
class Interval:
    """The mean of paired differences and its two-sided Student-t interval (``n - 1`` degrees of freedom).

    ``low``/``high`` are NaN below two values; ``std`` is the spread the interval used: the sample
    standard deviation (NaN below two), raised to ``floor`` when that is larger (``floored`` then True)."""

    mean: float
    std: float
    n: int
    low: float
    high: float
    confidence: float
    floor: float = 0.0
    floored: bool = False

    @property
    def half(self) -> float:
        """The interval's half-width, ``t * std / sqrt(n)`` (NaN below two values): a mean at least this
        far from a bound is decided by :func:`verdict`."""
        return (self.high - self.low) / 2

    def pm(self, scale: float = 100.0, unit: str = "pt") -> str:
        """``+0.12 pt [-0.30, +0.54] (3 seeds)``: the mean and its ``confidence`` interval, ``scale``-d;
        ``(1 seed)`` alone below two."""
        seeds = f"{self.n} seed{'s' if self.n != 1 else ''}"
        if not math.isfinite(self.low):
            return f"{self.mean * scale:+.2f} {unit} ({seeds})"
        return f"{self.mean * scale:+.2f} {unit} [{self.low * scale:+.2f}, {self.high * scale:+.2f}] ({seeds})"


def interval(differences: Sequence[float] | pd.Series | np.ndarray, confidence: float = 0.95,
             floor: float = 0.0) -> Interval:
    """Mean, std and the two-sided ``confidence`` t interval of the mean of ``differences`` (NaNs dropped),
    the std raised to ``floor`` when smaller (for accuracies: :func:`binomial_floor`)."""
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    if not floor >= 0:
        raise ValueError(f"floor must be >= 0, got {floor}")
    d = np.asarray(differences, dtype=float)
    d = d[np.isfinite(d)]
    n = int(d.size)
    mean = float(d.mean()) if n else math.nan
    if n < 2:
        return Interval(mean, math.nan, n, math.nan, math.nan, confidence, floor)
    sample = float(d.std(ddof=1))
    std = max(sample, floor)
    half = float(sps.t.ppf(0.5 + confidence / 2, n - 1)) * std / math.sqrt(n)
    return Interval(mean, std, n, mean - half, mean + half, confidence, floor, floor > sample)


def half_width(values: Sequence[float] | pd.Series | np.ndarray, confidence: float = 0.95,
               floor: float = 0.0) -> float:
    """The half-width of the ``confidence`` t interval of the mean of ``values`` (:meth:`Interval.half`),
    0.0 below two values: the error bar of every table and figure of the course (not ± the std)."""
    iv = interval(values, confidence, floor)
    return iv.half if iv.n > 1 else 0.0


def paired_interval(table: pd.DataFrame, metric: str, a: str, b: str, *, by: str = "setting",
                    pair: str = "seed", confidence: float = 0.95, n_test: int | None = None) -> Interval:
    """:func:`interval` of :func:`paired_differences` (``a - b`` per seed), the spread floored at the
    binomial noise (:func:`binomial_floor`) of the two settings' mean ``metric`` on ``n_test`` test
    samples when ``metric`` is an accuracy. ``n_test`` defaults to the table's ``num_test`` column (the
    loop's ``metrics.json`` has it); with neither, no floor."""
    d = paired_differences(table, metric, a, b, by=by, pair=pair)
    floor = 0.0
    if "accuracy" in metric and len(d):
        if n_test is None and "num_test" in table:
            known = pd.to_numeric(table["num_test"], errors="coerce").dropna()
            n_test = int(known.min()) if len(known) else None
        if n_test:
            rows = table[table[by].isin([a, b])]
            floor = binomial_floor(float(pd.to_numeric(rows[metric], errors="coerce").mean()), n_test)
    return interval(d, confidence, floor)


def verdict(iv: Interval, bound: float = 0.0) -> str:
    """The one verdict rule (module docstring): is the mean of the differences above ``bound``?"""
    if iv.n == 0 or not math.isfinite(iv.mean):
        return NOT_RUN
    if iv.n < MIN_SEEDS:
        return FEW_SEEDS
    if iv.low > bound:
        return SUPPORTED
    if iv.high < bound:
        return NOT_SUPPORTED
    return WITHIN_NOISE


def decided(word: str) -> bool:
    """Whether a verdict word is decided (``supported`` or ``not supported``)."""
    return word in DECIDED


def explain(iv: Interval, bound: float = 0.0, scale: float = 100.0, unit: str = "pt") -> str:
    """One computed sentence on what :func:`verdict` of ``iv`` against ``bound`` rests on: for a decided
    or inconclusive verdict the interval and the smallest distance from the bound it could decide
    (:meth:`Interval.half`); below :data:`MIN_SEEDS` seeds why it is only an illustration."""
    word = verdict(iv, bound)
    if word == NOT_RUN:
        return "not run: no seed has both sides"
    if word == FEW_SEEDS:
        return (f"{iv.n} seed{'s' if iv.n != 1 else ''}: an illustration; a verdict needs at least "
                f"{MIN_SEEDS} seeds")
    pct = f"{100 * iv.confidence:g} %"
    floor = " (the spread floored at the test set's binomial noise)" if iv.floored else ""
    where = (f"the {pct} interval [{iv.low * scale:+.2f}, {iv.high * scale:+.2f}] {unit} over {iv.n} seeds "
             f"is ±{iv.half * scale:.2f} {unit} wide{floor}")
    if word == WITHIN_NOISE:
        return (f"{where} and contains the bound {bound * scale:+.2f} {unit}: this run decides only a mean "
                f"at least {iv.half * scale:.2f} {unit} from the bound")
    side = "above" if word == SUPPORTED else "below"
    return f"{where}, all of it {side} the bound {bound * scale:+.2f} {unit}"


def sign_test(wins: int, n: int) -> float:
    """Two-sided exact binomial (sign) test of ``wins`` successes in ``n`` trials against p = 1/2 (ties left
    out by the caller); returns the p-value (1.0 for ``n = 0``)."""
    if not 0 <= wins <= n:
        raise ValueError(f"wins must be in 0..n, got wins={wins}, n={n}")
    return float(sps.binomtest(wins, n, 0.5).pvalue) if n else 1.0


def sign_verdict(wins: int, n: int, alpha: float = 0.05) -> str:
    """``supported`` when the claimed direction wins a sign test at ``alpha``, ``not supported`` when the
    other direction does, else ``inconclusive (within seed noise)``; ``not run`` for ``n = 0``."""
    if n == 0:
        return NOT_RUN
    p = sign_test(wins, n)
    if p < alpha:
        return SUPPORTED if wins > n / 2 else NOT_SUPPORTED
    return WITHIN_NOISE
