"""Statistics for comparing runs over seeds: paired differences, a t interval, one verdict rule, a sign test.

Every "supported / not supported" in the package and the notebooks comes from :func:`verdict`:

- the runs are paired by seed (runs of one seed start from the same weights and see the same data order),
  so the unit of evidence is the per-seed difference ``d = a - b`` (:func:`paired_differences`);
- a claim is a bound on the mean of ``d``: ``mean(d) > bound`` (``bound = 0``: *a beats b*;
  ``bound = -tolerance``: *a is no worse than b by more than tolerance*);
- with the two-sided Student-t ``confidence`` interval ``[low, high]`` of that mean (:func:`interval`):
  ``low > bound`` -> ``supported``; ``high < bound`` -> ``not supported``; otherwise
  ``inconclusive (within seed noise)``; with one seed ``inconclusive (one seed)``; with none ``not run``.

Two seeds give a t interval 12.7 standard errors wide at 95 %: the rule is strict on purpose, and says
"inconclusive" rather than reading noise as a finding.
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
ONE_SEED = "inconclusive (one seed)"
WITHIN_NOISE = "inconclusive (within seed noise)"


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

    ``low``/``high`` are NaN below two values; ``std`` is the sample standard deviation (NaN below two)."""

    mean: float
    std: float
    n: int
    low: float
    high: float
    confidence: float

    def pm(self, scale: float = 100.0, unit: str = "pt") -> str:
        """``+0.12 ± 0.30 pt (2 seeds)``: the mean and the seed spread (std), ``scale``-d."""
        spread = f" ± {self.std * scale:.2f}" if math.isfinite(self.std) else ""
        return f"{self.mean * scale:+.2f}{spread} {unit} ({self.n} seed{'s' if self.n != 1 else ''})"


def interval(differences: Sequence[float] | pd.Series | np.ndarray, confidence: float = 0.95) -> Interval:
    """Mean, std and the two-sided ``confidence`` t interval of the mean of ``differences`` (NaNs dropped)."""
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    d = np.asarray(differences, dtype=float)
    d = d[np.isfinite(d)]
    n = int(d.size)
    mean = float(d.mean()) if n else math.nan
    if n < 2:
        return Interval(mean, math.nan, n, math.nan, math.nan, confidence)
    std = float(d.std(ddof=1))
    half = float(sps.t.ppf(0.5 + confidence / 2, n - 1)) * std / math.sqrt(n)
    return Interval(mean, std, n, mean - half, mean + half, confidence)


def verdict(iv: Interval, bound: float = 0.0) -> str:
    """The one verdict rule (module docstring): is the mean of the differences above ``bound``?"""
    if iv.n == 0 or not math.isfinite(iv.mean):
        return NOT_RUN
    if iv.n < 2:
        return ONE_SEED
    if iv.low > bound:
        return SUPPORTED
    if iv.high < bound:
        return NOT_SUPPORTED
    return WITHIN_NOISE


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
