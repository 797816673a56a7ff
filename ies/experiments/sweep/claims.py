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

import pandas as pd

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
COLUMNS = ["claim", "verdict", "evidence", "paper"]


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


def paper_claims(
    results: pd.DataFrame,
    *,
    baseline: str,
    default: str,
    orders: Mapping[int, str],
    thresholds: Mapping[float, str],
    random_pairs: Mapping[str, str],
    tolerance: float = PAPER_SAME_ACCURACY,
    delta_tolerance: float = PAPER_DELTA_TOLERANCE,
    saving: float = PAPER_SAVING,
    metric: str = "best_test_accuracy",
    confidence: float = 0.95,
    names: Mapping[str, str] | None = None,
) -> pd.DataFrame:
    """Check the paper's claims against a sweep; one row per claim: ``claim``, ``verdict`` (from
    :mod:`ies.experiments.stats`: ``supported``, ``not supported``, ``inconclusive (...)``, ``not run``; also
    ``inconclusive (nothing was excluded)`` for a random control of a run that excluded nothing),
    ``evidence`` (our numbers) and ``paper`` (the paper's number and its setting, :data:`PAPER`).

    Args:
        results: the table of :func:`ies.experiments.sweep.run_sweep`.
        baseline, default: settings of the baseline and of IES with the paper's settings.
        orders: order N -> setting (same threshold). *N = 2 wins* when it is at the baseline's
            accuracy (no lower than ``tolerance``) and no other order at the baseline's accuracy
            saves more backprop (mean over seeds).
        thresholds: threshold -> setting. *Robust* when every one is no lower than ``delta_tolerance``
            below the baseline (the paper: about 2 %).
        random_pairs: IES setting -> its matched random setting. *IES beats Random Remove* when its
            accuracy is higher, paired by seed.
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
    rows = [_order_claim(orders, against_baseline, saved, tolerance, what),
            _delta_claim(thresholds, against_baseline, saved, delta_tolerance, what),
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
    if 2 not in ran or len(ran) < 2:
        verdict = stats.NOT_RUN
    elif same[2] != stats.SUPPORTED:
        verdict = same[2]
    else:  # N = 2 loses to an order that saves more at the baseline's accuracy too
        rivals = [same[n] for n in ran if n != 2 and saves[n] > saves[2]]
        verdict = (stats.NOT_SUPPORTED if stats.SUPPORTED in rivals
                   else next((v for v in rivals if v != stats.NOT_SUPPORTED), stats.SUPPORTED))
    evidence = "; ".join(f"N={n}: {iv.pm()}, saved {saves[n]:.1%}" for n, iv in ran.items())
    at_baseline = [n for n in ran if same[n] == stats.SUPPORTED]
    if at_baseline:
        evidence += f"; best: N={max(at_baseline, key=lambda n: saves[n])}"
    return {"claim": f"order N = 2 wins: the most backprop saved among N = 0..3 at the baseline's {what} "
                     f"(within {tolerance * 100:.1f} pt)", "verdict": verdict, "evidence": evidence,
            "paper": PAPER["order"]}


def _delta_claim(thresholds: Mapping[float, str], against_baseline, saved: pd.Series, tolerance: float,
                 what: str) -> dict:
    ran = {t: against_baseline(s) for t, s in sorted(thresholds.items())}
    ran = {t: iv for t, iv in ran.items() if iv.n}
    verdict = all_of(stats.verdict(iv, -tolerance) for iv in ran.values()) if len(ran) >= 2 else stats.NOT_RUN
    evidence = "; ".join(f"{t:g}: {iv.pm()}, saved {saved.get(thresholds[t], math.nan):.1%}"
                         for t, iv in ran.items())
    return {"claim": f"{what} within {tolerance * 100:.1f} pt of the baseline for every threshold "
                     f"{min(thresholds, default=0):g} .. {max(thresholds, default=0):g}",
            "verdict": verdict, "evidence": evidence, "paper": PAPER["delta"]}


def _saving_claim(results: pd.DataFrame, default: str, against_baseline, saving: float, tolerance: float,
                  confidence: float, what: str) -> dict:
    accuracy = against_baseline(default)
    ok = finished_runs(results)
    shares = stats.interval(ok.loc[ok["setting"] == default, "backprop_saving"] if len(ok) else [], confidence)
    if accuracy.n:
        verdict = all_of([stats.verdict(shares, saving), stats.verdict(accuracy, -tolerance)])
        evidence = (f"saved {shares.mean:.1%} ({shares.n} seed{'s' if shares.n != 1 else ''}), "
                    f"{what} {accuracy.pm()}")
    else:
        verdict, evidence = stats.NOT_RUN, ""
    return {"claim": f"at least {saving:.1%} of backprop saved with {what} within {tolerance * 100:.1f} pt "
                     "of the baseline", "verdict": verdict, "evidence": evidence, "paper": PAPER["saving"]}


def _random_claim(results: pd.DataFrame, ies_setting: str, random_setting: str, saved: pd.Series, metric: str,
                  confidence: float, what: str, name: str) -> dict:
    iv = paired_interval(results, ies_setting, random_setting, metric, confidence)
    verdict = stats.verdict(iv, 0.0)
    if iv.n and not saved.get(ies_setting, 0) > 0:  # both trained on everything: nothing to compare
        verdict = "inconclusive (nothing was excluded)"
    share = saved.get(ies_setting, math.nan)
    evidence = f"IES - random, {what}: {iv.pm()}, both saving {share:.1%}" if iv.n else ""
    return {"claim": f"IES beats Random Remove of the same number of samples per epoch ({name})",
            "verdict": verdict, "evidence": evidence, "paper": PAPER["random"]}
