"""The paper's claims checked against a sweep, each with the paper's own number, metric and setting.

Every number in :data:`PAPER` comes from the paper (Yuan et al., ICLR 2025) as summarised in the
course's ``paper-facts.md``; accuracy is compared as the paper reports it, the **best test accuracy
over epochs**, paired by seed. Every accuracy or saving decision is :func:`ies.experiments.stats.verdict` (a
two-sided t interval of the mean against a bound); a claim made of several decisions is supported
when all of them are, not supported when one is not, and otherwise inconclusive.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

import numpy as np
import pandas as pd
from scipy import stats as sps

from .. import stats
from .analysis import aggregate, finished_runs, paired_interval

#: Where each claim comes from in the paper, with its setting (fig.: read off a plotted point).
PAPER = {
    "order": "Fig. 5 (CIFAR-10 ResNet-18 and CIFAR-100 ResNet-34, SGD(E), 200 epochs, 3 runs): accuracy "
             "against total excluded share for N = 0 (loss), 1, 2, 3; the text: N = 2 wins \"in most cases\" "
             "(CIFAR-10 near 50 % excluded, fig.: loss 94.60, N=1 ~95.0, N=2 95.16, N=3 94.98)",
    "delta": "Fig. 5 (CIFAR-10 ResNet-18, SGD(E), 200 epochs, 3 runs): best accuracy within about 2 % of the "
             "baseline for δ = 1e-3 × {0.01, 0.1, 1, 10, 100} (fig.: 94.9, 94.9, 94.8, 94.4, 93.9 against a "
             "baseline of about 95.0-95.2)",
    "saving": "Table 1 (best accuracy, 5 runs): CIFAR-10 average 40.7 % of mini-batches saved, at most 0.2 pt "
              "of accuracy lost (ResNet-50, VGG-16); ResNet-18 (optimiser not named) 54.6 % saved at 92.9 vs "
              "92.9. The paper's summary: 10-55 % saved. Fig. 5, the released code's default (ResNet-18, "
              "SGD(E), δ 1e-3): about 59.9 % of samples excluded (a different share, not compared)",
    "random": "Fig. 5 (CIFAR-10 ResNet-18, SGD(E), 3 runs, fig.): Random Remove of a fixed 10-50 % share, "
              "94.72 at 10 % and 94.25 at 40 % excluded, against IES 94.8 at 59.9 % excluded",
}
#: Table 1's CIFAR-10 average share of mini-batches saved.
PAPER_SAVING = 0.407
#: Table 1's largest CIFAR-10 best-accuracy loss of IES against no removal (0.2 pt), as a fraction.
PAPER_SAME_ACCURACY = 0.002
#: Fig. 5's text: accuracy within about 2 % of the baseline over δ, read as 2 points, as a fraction.
PAPER_DELTA_TOLERANCE = 0.02
#: The columns of :func:`paper_claims`: the claim, its verdict, our numbers, the paper's, then the deciding
#: interval (``seeds``, ``effect``, ``low``, ``high`` in ``unit``, against ``bound``) and ``why``
#: (:func:`ies.experiments.stats.explain`), the fields of the module's closing table.
COLUMNS = ["claim", "verdict", "evidence", "paper", "seeds", "effect", "low", "high", "unit", "bound", "why"]


def all_of(verdicts: Iterable[str]) -> str:
    """One verdict from several :func:`ies.experiments.stats.verdict` s that must all hold: ``not run`` if one did
    not run (or there are none), ``not supported`` if one is not supported, ``supported`` if all are,
    else the first inconclusive one."""
    verdicts = list(verdicts)
    if not verdicts or stats.NOT_RUN in verdicts:
        return stats.NOT_RUN
    if stats.NOT_SUPPORTED in verdicts:
        return stats.NOT_SUPPORTED
    return next((v for v in verdicts if v != stats.SUPPORTED), stats.SUPPORTED)


def deciding(parts: Mapping[str, tuple[stats.Interval, float]]) -> str | None:
    """Which of several ``name -> (interval, bound)`` decisions that must all hold decides :func:`all_of`: the
    first not supported one, else the first undecided one, else (all supported) the one closest to its
    bound (smallest ``low - bound``); ``None`` when there are none."""
    words = {k: stats.verdict(iv, b) for k, (iv, b) in parts.items()}
    for wanted in (stats.NOT_RUN, stats.NOT_SUPPORTED):
        hit = next((k for k, w in words.items() if w == wanted), None)
        if hit is not None:
            return hit
    hit = next((k for k, w in words.items() if w != stats.SUPPORTED), None)
    if hit is not None:
        return hit
    return min(parts, key=lambda k: parts[k][0].low - parts[k][1], default=None)


def smallest_detectable(seeds: int, floor: float, confidence: float = 0.95) -> float:
    """The half-width of the ``confidence`` t interval of a mean over ``seeds`` paired differences whose
    spread is at its floor (:func:`ies.experiments.stats.binomial_floor`): the smallest distance from a bound
    that such runs can decide (NaN below two seeds). With 3 seeds and a floor of 0.27 pt: 0.67 pt.

    >>> round(100 * smallest_detectable(3, 0.0027), 2)
    0.67
    """
    if seeds < 2:
        return math.nan
    return float(sps.t.ppf(0.5 + confidence / 2, seeds - 1)) * floor / math.sqrt(seeds)


def _row(claim: str, verdict: str, evidence: str, paper: str, iv: stats.Interval | None, bound: float,
         scale: float = 100.0, unit: str = "pt", note: str = "") -> dict:
    """One row of :data:`COLUMNS`: the deciding interval ``iv`` against ``bound`` (both fractions, shown
    ``scale``-d in ``unit``); ``note`` (which part decided a compound claim) opens ``why``."""
    if iv is None or not iv.n:
        return {"claim": claim, "verdict": verdict, "evidence": evidence, "paper": paper, "seeds": 0,
                "effect": math.nan, "low": math.nan, "high": math.nan, "unit": unit, "bound": bound * scale,
                "why": "not run: no seed has both sides"}
    why = stats.explain(iv, bound, scale, unit)
    return {"claim": claim, "verdict": verdict, "evidence": evidence, "paper": paper, "seeds": iv.n,
            "effect": iv.mean * scale, "low": iv.low * scale, "high": iv.high * scale, "unit": unit,
            "bound": bound * scale, "why": f"{note}: {why}" if note else why}


def paper_claims(
    results: pd.DataFrame,
    *,
    baseline: str,
    default: str,
    orders: Mapping[int, str],
    thresholds: Mapping[float, str],
    random_pairs: Mapping[str, str],
    loss_rule: str | None = None,
    tolerance: float = PAPER_SAME_ACCURACY,
    delta_tolerance: float = PAPER_DELTA_TOLERANCE,
    saving: float = PAPER_SAVING,
    metric: str = "best_test_accuracy",
    confidence: float = 0.95,
    names: Mapping[str, str] | None = None,
) -> pd.DataFrame:
    """Check the paper's claims against a sweep; one row per claim (:data:`COLUMNS`): ``claim``, ``verdict``
    (from :mod:`ies.experiments.stats`: ``supported``, ``not supported``, ``inconclusive (...)``,
    ``illustration (fewer than 3 seeds)``, ``not run``; also ``inconclusive (nothing was excluded)`` for a
    random control of a run that excluded nothing), ``evidence`` (our numbers), ``paper`` (the paper's number
    and its setting, :data:`PAPER`), and the interval that decided it: ``seeds``, ``effect``, ``low``, ``high``
    (in ``unit``, against ``bound``) and ``why`` (:func:`ies.experiments.stats.explain`; for a claim made of
    several decisions, the one that decided it, named first).

    Args:
        results: the table of :func:`ies.experiments.sweep.run_sweep`.
        baseline, default: settings of the baseline and of IES with the paper's settings.
        orders: order N -> setting (same threshold). *N = 2 wins* when it is at the baseline's
            accuracy (no lower than ``tolerance``) and no other order at the baseline's accuracy
            saves more backprop (mean over seeds).
        thresholds: threshold -> setting of N = 2 (``default`` among them). *Robust* when every one is no
            lower than ``delta_tolerance`` below the baseline (the paper: about 2 %).
        random_pairs: IES setting -> its matched random setting. *IES beats Random Remove* when its
            accuracy is higher, paired by seed.
        loss_rule: the setting of the loss rule (``selector="loss"``, N = 0 with the paper's rule); with it,
            the order claim at equal saving (:func:`equal_saving_interval`): N = 2's accuracy at the loss
            rule's saving, read off the ``thresholds`` curve, beats the loss rule's.
        tolerance: accuracy loss still counted as the same accuracy (fraction; default 0.2 pt, the
            largest CIFAR-10 loss in the paper's Table 1).
        delta_tolerance: the accuracy loss allowed over thresholds (fraction; default 2 points).
        saving: backprop share ``default`` must save (default 40.7 %, Table 1's CIFAR-10 average).
        metric: the accuracy compared (default the best over epochs, as the paper reports).
        confidence: of the t intervals behind every verdict.
        names: setting -> the name to print in the claims (default: the setting id).
    """
    saved = aggregate(results)["saved_mean"] if len(results) else pd.Series(dtype=float)

    def against_baseline(setting: str) -> stats.Interval:
        return paired_interval(results, setting, baseline, metric, confidence)

    what = {"best_test_accuracy": "best accuracy", "test_accuracy": "final accuracy"}.get(metric, metric)
    rows = [_order_claim(orders, against_baseline, saved, tolerance, what)]
    if loss_rule is not None:
        rows.append(_equal_saving_claim(results, thresholds, loss_rule, metric, confidence, what))
    rows += [_delta_claim(thresholds, against_baseline, saved, delta_tolerance, what),
             _saving_claim(results, default, against_baseline, saving, tolerance, confidence, what)]
    rows += [_random_claim(results, a, b, saved, metric, confidence, what, (names or {}).get(a, a))
             for a, b in random_pairs.items()]
    return pd.DataFrame(rows, columns=COLUMNS)


def _order_claim(orders: Mapping[int, str], against_baseline, saved: pd.Series, tolerance: float,
                 what: str) -> dict:
    ran = {n: against_baseline(s) for n, s in sorted(orders.items())}
    ran = {n: iv for n, iv in ran.items() if iv.n}
    saves = {n: saved.get(orders[n], math.nan) for n in ran}
    same = {n: stats.verdict(iv, -tolerance) for n, iv in ran.items()}  # at the baseline's accuracy?
    decider, note = ran.get(2), "N=2 against the baseline"
    if 2 not in ran or len(ran) < 2:
        verdict, decider = stats.NOT_RUN, None
    elif same[2] != stats.SUPPORTED:
        verdict = same[2]
    else:  # N = 2 loses to an order that saves more at the baseline's accuracy too
        rivals = {n: same[n] for n in ran if n != 2 and saves[n] > saves[2]}
        verdict = (stats.NOT_SUPPORTED if stats.SUPPORTED in rivals.values()
                   else next((v for v in rivals.values() if v != stats.NOT_SUPPORTED), stats.SUPPORTED))
        wanted = stats.SUPPORTED if verdict == stats.NOT_SUPPORTED else verdict  # the rival that decided
        rival = next((n for n, v in rivals.items() if v == wanted and verdict != stats.SUPPORTED), None)
        if rival is not None:
            decider, note = ran[rival], f"N={rival} (saves more) against the baseline"
    evidence = "; ".join(f"N={n}: {iv.pm()}, saved {saves[n]:.1%}" for n, iv in ran.items())
    at_baseline = [n for n in ran if same[n] == stats.SUPPORTED]
    if at_baseline:
        evidence += f"; best: N={max(at_baseline, key=lambda n: saves[n])}"
    return _row(f"order N = 2 wins: the most backprop saved among N = 0..3 at the baseline's {what} "
                f"(within {tolerance * 100:.1f} pt)", verdict, evidence, PAPER["order"], decider, -tolerance,
                note=note)


def equal_saving_interval(results: pd.DataFrame, curve: Mapping[float, str], rival: str,
                          metric: str = "best_test_accuracy", confidence: float = 0.95) -> tuple[stats.Interval, int]:
    """N = 2 against ``rival`` **at equal saving**, paired by seed: for each seed, ``metric`` of the ``curve``
    settings (threshold -> setting, one order) interpolated linearly in the backprop saving at the saving
    ``rival`` reached with that seed, minus ``rival``'s ``metric``. A seed whose rival saving lies outside the
    curve's savings of that seed (no bracket: it would be an extrapolation) is left out.

    Returns the :func:`ies.experiments.stats.interval` of those differences (spread floored at the binomial
    noise of ``metric`` on the runs' ``num_test`` test samples) and the number of seeds left out."""
    ok = finished_runs(results)
    settings = list(curve.values())
    wide = ok[ok["setting"].isin([*settings, rival])].pivot_table(
        index="seed", columns="setting", values=[metric, "backprop_saving"], aggfunc="mean")
    diffs, outside = [], 0
    for seed in wide.index:
        if rival not in wide[metric].columns or pd.isna(wide.loc[seed, (metric, rival)]):
            continue
        points = sorted((wide.loc[seed, ("backprop_saving", s)], wide.loc[seed, (metric, s)])
                        for s in settings if s in wide[metric].columns and pd.notna(wide.loc[seed, (metric, s)]))
        at = wide.loc[seed, ("backprop_saving", rival)]
        if len(points) < 2 or not points[0][0] <= at <= points[-1][0]:
            outside += 1
            continue
        x, y = zip(*points, strict=True)
        diffs.append(float(np.interp(at, x, y)) - float(wide.loc[seed, (metric, rival)]))
    floor = 0.0
    if "accuracy" in metric and "num_test" in ok and diffs:
        known = pd.to_numeric(ok["num_test"], errors="coerce").dropna()
        if len(known):
            rows = ok[ok["setting"].isin([*settings, rival])]
            floor = stats.binomial_floor(float(rows[metric].mean()), int(known.min()))
    return stats.interval(diffs, confidence, floor), outside


def _equal_saving_claim(results: pd.DataFrame, curve: Mapping[float, str], rival: str, metric: str,
                        confidence: float, what: str) -> dict:
    iv, outside = equal_saving_interval(results, curve, rival, metric, confidence)
    saved = aggregate(results)["saved_mean"] if len(results) else pd.Series(dtype=float)
    verdict = stats.verdict(iv, 0.0)
    evidence = (f"N=2 - loss rule at the loss rule's saving ({saved.get(rival, math.nan):.1%}): {iv.pm()}; "
                "N=2's accuracy read off its δ curve (" +
                ", ".join(f"{t:g}: saved {saved.get(s, math.nan):.1%}" for t, s in sorted(curve.items())) +
                "), linear in the saving, per seed")
    if outside:
        evidence += f"; {outside} seed(s) left out: the loss rule's saving lies outside the curve's"
    return _row(f"order at equal saving: N = 2 has a higher {what} than the loss rule (loss < δ) where both "
                "save the same share of backprop", verdict, evidence, PAPER["order"], iv, 0.0)


def _delta_claim(thresholds: Mapping[float, str], against_baseline, saved: pd.Series, tolerance: float,
                 what: str) -> dict:
    ran = {t: against_baseline(s) for t, s in sorted(thresholds.items())}
    ran = {t: iv for t, iv in ran.items() if iv.n}
    verdict = all_of(stats.verdict(iv, -tolerance) for iv in ran.values()) if len(ran) >= 2 else stats.NOT_RUN
    evidence = "; ".join(f"{t:g}: {iv.pm()}, saved {saved.get(thresholds[t], math.nan):.1%}"
                         for t, iv in ran.items())
    key = deciding({t: (iv, -tolerance) for t, iv in ran.items()}) if len(ran) >= 2 else None
    note = f"deciding threshold δ = {key:g} (the one nearest its bound or past it)" if key is not None else ""
    return _row(f"{what} within {tolerance * 100:.1f} pt of the baseline for every threshold "
                f"{min(thresholds, default=0):g} .. {max(thresholds, default=0):g}", verdict, evidence,
                PAPER["delta"], ran.get(key), -tolerance, note=note)


def _saving_claim(results: pd.DataFrame, default: str, against_baseline, saving: float, tolerance: float,
                  confidence: float, what: str) -> dict:
    accuracy = against_baseline(default)
    ok = finished_runs(results)
    shares = stats.interval(ok.loc[ok["setting"] == default, "backprop_saving"] if len(ok) else [], confidence)
    claim = (f"at least {saving:.1%} of backprop saved with {what} within {tolerance * 100:.1f} pt "
             "of the baseline")
    if not accuracy.n:
        return _row(claim, stats.NOT_RUN, "", PAPER["saving"], None, 0.0)
    verdict = all_of([stats.verdict(shares, saving), stats.verdict(accuracy, -tolerance)])
    evidence = (f"saved {shares.mean:.1%} ({shares.n} seed{'s' if shares.n != 1 else ''}), "
                f"{what} {accuracy.pm()}")
    key = deciding({"saving": (shares, saving), "accuracy": (accuracy, -tolerance)})
    if key == "saving":
        return _row(claim, verdict, evidence, PAPER["saving"], shares, saving, unit="%",
                    note="deciding: the backprop saved against the paper's share")
    return _row(claim, verdict, evidence, PAPER["saving"], accuracy, -tolerance,
                note=f"deciding: the {what} against the baseline")


def _random_claim(results: pd.DataFrame, ies_setting: str, random_setting: str, saved: pd.Series, metric: str,
                  confidence: float, what: str, name: str) -> dict:
    iv = paired_interval(results, ies_setting, random_setting, metric, confidence)
    verdict = stats.verdict(iv, 0.0)
    if iv.n >= stats.MIN_SEEDS and not saved.get(ies_setting, 0) > 0:  # both trained on everything
        verdict = "inconclusive (nothing was excluded)"
    share = saved.get(ies_setting, math.nan)
    evidence = f"IES - random, {what}: {iv.pm()}, both saving {share:.1%}" if iv.n else ""
    return _row(f"IES beats Random Remove of the same number of samples per epoch ({name})", verdict, evidence,
                PAPER["random"], iv, 0.0)
