"""Notebook 07's analysis: IES against its peers at matched compute.

A *run table* is a long DataFrame with one row per run and the columns ``method`` (``baseline``, ``ies``,
``infobatch``, ...), ``budget`` (a target label such as ``"1.5x"``; the baseline's rows may carry any
label, they are matched by seed), ``seed``, ``best_test_accuracy``, ``test_accuracy``,
``compute_saving`` and ``wall_time_s`` (the ``metrics.json`` fields), optionally ``target_saving``.
A *history table* is the long concatenation of runs' ``history.csv`` with ``method``, ``budget`` and
``seed`` columns added.

The paper's numbers (:func:`paper_table4`, :func:`paper_fig5`, :func:`paper_fig7`) are transcribed from
the project's ``paper-facts.md``, each with its setting; :func:`independent_runs` are *not the paper*
and say so in every row.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from .plotting import METHOD_COLORS, color, layered, style
from .stats import Interval, explain, half_width, interval, paired_interval, verdict

BASELINE = "baseline"
ACCURACY = "best_test_accuracy"
UNREACHED = "budget not reached"


# ---------------------------------------------------------------------- the paper's numbers
TABLE4_SETTING = ("IES paper, Table 4: CIFAR-10 / CIFAR-100, 100 epochs, 3 runs, best test accuracy (%); at these "
                  "speedups the full training set's loss is evaluated only every 5 epochs; how each method was "
                  "tuned to the target speedup is not described. No InfoBatch row.")
FIG5_SETTING = ("IES paper, Fig. 5: SGD(E), 200 epochs, 3 runs; values read off the plot (about ±0.05 pt); the "
                "x axis is the share of sample-epochs excluded from backprop, not compute saved.")
FIG7_SETTING = "IES paper, Fig. 7: CIFAR-10, wall time against total excluded share, IES vs InfoBatch (fig. values)."


def paper_table4() -> pd.DataFrame:
    """Table 4 of the paper: best accuracy at about 2x and 3x computation speedup (columns ``data``,
    ``method``, ``speedup``, ``best_accuracy`` in %, ``source``)."""
    rows = [("no removal", "1x", 94.3, 77.0),
            ("conventional early stopping", "~2x", 90.4, 68.7), ("Selective Backprop", "~2x", 93.0, 70.6),
            ("DIHCL", "~2x", 93.4, 74.3), ("EfficientTrain", "~2x", 91.5, 75.0), ("IES", "~2x", 93.7, 74.9),
            ("conventional early stopping", "~3x", 88.1, 63.9), ("Selective Backprop", "~3x", 91.1, 65.8),
            ("DIHCL", "~3x", 92.7, 72.6), ("EfficientTrain", "~3x", 92.5, 70.6), ("IES", "~3x", 93.2, 73.0)]
    out = [{"data": data, "method": m, "speedup": s, "best_accuracy": acc, "source": TABLE4_SETTING}
           for m, s, c10, c100 in rows for data, acc in (("CIFAR-10", c10), ("CIFAR-100", c100))]
    return pd.DataFrame(out)


def paper_fig5() -> pd.DataFrame:
    """Fig. 5 of the paper (fig. values): ``data``, ``model``, ``method``, ``knob``, ``excluded`` (% of
    sample-epochs excluded), ``time_saved`` (%, IES only, else NaN), ``accuracy`` (%), ``source``."""
    nan = math.nan
    rows = [("CIFAR-10", "ResNet-18", "random", "10 % removed", 10.0, nan, 94.72),
            ("CIFAR-10", "ResNet-18", "random", "40 % removed", 40.0, nan, 94.25),
            ("CIFAR-10", "ResNet-18", "small_loss_rescale", "", 13.8, nan, 95.02),
            ("CIFAR-10", "ResNet-18", "small_loss_rescale", "", 51.0, nan, 94.12)]
    ies = {"CIFAR-10": ("ResNet-18", [(0.0, 0.0, 94.9), (8.5, 0.3, 94.9), (59.9, 41.0, 94.8), (73.0, 54.8, 94.4),
                                      (82.0, 61.9, 93.9)]),
           "CIFAR-100": ("ResNet-34", [(0.0, 0.0, 77.5), (5.9, 0.0, 77.8), (38.1, 19.9, 77.3), (63.5, 55.0, 76.3),
                                       (75.3, 62.9, 74.8)])}
    for data, (model, points) in ies.items():
        for factor, (excl, saved, acc) in zip(("0.01", "0.1", "1", "10", "100"), points, strict=True):
            rows.append((data, model, "ies", f"delta = 1e-3 x {factor}", excl, saved, acc))
    cols = ["data", "model", "method", "knob", "excluded", "time_saved", "accuracy"]
    return pd.DataFrame(rows, columns=cols).assign(source=FIG5_SETTING)


def paper_fig7() -> pd.DataFrame:
    """Fig. 7 of the paper (fig. values): ``method``, ``excluded`` (%), ``wall_time_s``, ``source``."""
    rows = [("ies", 48.0, 1197), ("ies", 27.0, 1445), ("infobatch", 44.6, 1220), ("infobatch", 26.1, 1623)]
    return pd.DataFrame(rows, columns=["method", "excluded", "wall_time_s"]).assign(source=FIG7_SETTING)


def independent_runs() -> pd.DataFrame:
    """A public reproduction (NOT the paper): CIFAR-10, ResNet-18, SGD(E), batch 64, 200 epochs, 3 seeds,
    one RTX 5090, best accuracy (%), ``saved`` = % saved as that run reports it."""
    source = "independent run (not the paper): CIFAR-10, ResNet-18, SGD(E), 200 epochs, 3 seeds, one RTX 5090"
    rows = [("baseline", 95.03, 0.0), ("ies (released code)", 94.71, 45.7), ("infobatch (r 0.5)", 94.32, 38.9),
            ("selective_backprop", 93.31, 66.7)]
    return pd.DataFrame(rows, columns=["method", "best_accuracy", "saved"]).assign(source=source)


PEERS_2025_SOURCE = "benchmarks/PEERS_2025.md (the authors' code and the PFB abstract, as read for this course)"


def peers_2025_settings() -> pd.DataFrame:
    """What the three newer peers' authors set or state, with the setting it belongs to (``method``,
    ``knob``, ``their value``, ``setting``, ``source``). Settings only: no accuracy of their papers is
    transcribed in this project, so none is quoted."""
    rows = [("seta", "seta_prune_ratio", "0.1 (5 groups, window 0.9, annealing from 0.875 of the epochs)",
             "the authors' CIFAR script for lossless pruning (scripts/cifar.sh SeTa 0.1 5 0.9)"),
            ("orderdp", "orderdp_top_q", "0.375 of a random pool of 0.8: 30 % of the samples train",
             "the authors' README command for CIFAR-100"),
            ("pfb", "pfb_prune_ratio", "0.4: 40 % of the data pruned", "the PFB paper's abstract, ImageNet")]
    return pd.DataFrame(rows, columns=["method", "knob", "their value", "setting"]).assign(source=PEERS_2025_SOURCE)


# ---------------------------------------------------------------------- our runs
def with_wall_ratio(runs: pd.DataFrame) -> pd.DataFrame:
    """``runs`` plus ``wall_ratio``: each run's wall time over the baseline's of the same seed (the
    baseline's mean over seeds where that seed has none)."""
    base = runs[runs["method"] == BASELINE].groupby("seed")["wall_time_s"].mean()
    fallback = base.mean() if len(base) else math.nan
    ref = runs["seed"].map(base).fillna(fallback)
    return runs.assign(wall_ratio=runs["wall_time_s"] / ref)


def budget_table(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per (``budget``, ``method``): ``n`` seeds, accuracy mean and std (seed spread) and the 95 %
    interval of its mean (``acc_low``, ``acc_high``; NaN below two seeds), compute saved mean and std, its
    FLOP-ideal speedup ``1 / (1 - saving)``, the wall-clock ratio to the baseline (mean, std) and, where
    given, the target saving. The baseline appears once, budget ``-``."""
    t = with_wall_ratio(runs)
    t = t.assign(budget=np.where(t["method"] == BASELINE, "-", t["budget"].astype(str)))
    agg = {"n": ("seed", "nunique"), "acc_mean": (ACCURACY, "mean"), "acc_std": (ACCURACY, "std"),
           "saving_mean": ("compute_saving", "mean"), "saving_std": ("compute_saving", "std"),
           "wall_ratio_mean": ("wall_ratio", "mean"), "wall_ratio_std": ("wall_ratio", "std")}
    if "target_saving" in t:
        agg["target_saving"] = ("target_saving", "mean")
    out = t.groupby(["budget", "method"], sort=False).agg(**agg).reset_index()
    ivs = [interval(g[ACCURACY]) for _, g in t.groupby(["budget", "method"], sort=False)]
    return out.assign(ideal_speedup=1.0 / (1.0 - out["saving_mean"]), acc_low=[iv.low for iv in ivs],
                      acc_high=[iv.high for iv in ivs])


def display_table(summary: pd.DataFrame) -> pd.DataFrame:
    """:func:`budget_table`'s table as strings for a notebook: best accuracy in % as ``mean [low, high]``, the
    95 % interval of the mean over seeds; compute saved in % and the wall-clock ratio as ``mean ± std`` (the
    seeds' spread); the FLOP-ideal speedup."""
    def pm(mean, std, scale=100.0, digits=2):
        spread = f" ± {std * scale:.{digits}f}" if np.isfinite(std) else ""
        return f"{mean * scale:.{digits}f}{spread}"

    def bounds(mean, low, high):
        return f"{100 * mean:.2f} [{100 * low:.2f}, {100 * high:.2f}]" if np.isfinite(low) else f"{100 * mean:.2f}"

    return pd.DataFrame({
        "budget": summary["budget"], "method": summary["method"], "seeds": summary["n"],
        "best accuracy (%), 95 % interval": [bounds(m, lo, hi) for m, lo, hi in zip(
            summary["acc_mean"], summary["acc_low"], summary["acc_high"], strict=True)],
        "compute saved (%)": [pm(m, s, digits=1) for m, s in zip(summary["saving_mean"], summary["saving_std"],
                                                                 strict=True)],
        "FLOP-ideal speedup": [f"{v:.2f}x" for v in summary["ideal_speedup"]],
        "wall clock / baseline": [pm(m, s, 1.0) for m, s in zip(summary["wall_ratio_mean"],
                                                                summary["wall_ratio_std"], strict=True)],
    })


def budget_verdicts(runs: pd.DataFrame, metric: str = ACCURACY, confidence: float = 0.95,
                    tolerance: float = 0.01) -> pd.DataFrame:
    """Per budget, which method is best and whether that is more than seed noise.

    The best method is the one with the highest mean ``metric`` at that budget. For every other method
    ``m``: the paired (by seed) difference best - m, its interval (:func:`ies.experiments.stats.paired_interval`:
    floored at the test set's binomial noise when the table has ``num_test``) and
    :func:`ies.experiments.stats.verdict` of "best beats m" (bound 0). Also each method against the baseline:
    "no worse than the baseline by more than ``tolerance``" (bound ``-tolerance``). A method whose
    calibration did not reach the budget (``matched`` False, when the column is there) is not compared: it
    gets one row, verdict ``budget not reached``, with why. A ``warning`` column of the runs (a knob outside
    its plausible range, :func:`ies.experiments.peers.implausible`) is added to the rows of that method.

    Columns: ``budget``, ``claim``, ``difference`` (``pm()`` text), ``verdict``, ``seeds``, ``effect``,
    ``low``, ``high`` (in points), ``why`` (:func:`ies.experiments.stats.explain`, or why the budget was
    missed) and ``warning``."""
    rows = []

    def warning_of(group: pd.DataFrame, method: str) -> str:
        if "warning" not in group:
            return ""
        words = [w for w in dict.fromkeys(group.loc[group["method"] == method, "warning"].fillna("")) if w]
        return "; ".join(words)

    def add(budget, text, iv: Interval, bound: float, warning: str) -> None:
        rows.append({"budget": budget, "claim": text, "difference": iv.pm(), "verdict": verdict(iv, bound),
                     "seeds": iv.n, "effect": 100 * iv.mean, "low": 100 * iv.low, "high": 100 * iv.high,
                     "why": explain(iv, bound), "warning": warning})

    for budget, group in runs[runs["method"] != BASELINE].groupby("budget", sort=False):
        if "matched" in group:
            missed = group[~group["matched"].astype(bool)]
            for method, m_rows in missed.groupby("method", sort=False):
                saved, target = m_rows["compute_saving"].mean(), m_rows["target_saving"].mean()
                knob = m_rows["knob"].iloc[0] if "knob" in m_rows else math.nan
                why = (f"its calibrated knob ({knob:g}) saved {100 * saved:.1f} % of the compute over "
                       f"{m_rows['seed'].nunique()} seed(s), the budget needs {100 * target:.1f} %: "
                       f"{'short of' if saved < target else 'past'} it by more than the tolerance")
                rows.append({"budget": budget, "claim": f"{method} reaches {budget}",
                             "difference": f"saved {100 * saved:.1f} % (target {100 * target:.1f} %)",
                             "verdict": UNREACHED, "seeds": int(m_rows["seed"].nunique()),
                             "effect": math.nan, "low": math.nan, "high": math.nan, "why": why,
                             "warning": warning_of(group, method)})
            group = group[group["matched"].astype(bool)]
        if group.empty:
            continue
        means = group.groupby("method")[metric].mean().sort_values(ascending=False)
        best = means.index[0]
        table = pd.concat([group, runs[runs["method"] == BASELINE]])
        for other in means.index[1:]:
            iv = paired_interval(table, metric, best, other, by="method", confidence=confidence)
            add(budget, f"{best} beats {other}", iv, 0.0,
                "; ".join(filter(None, [warning_of(group, best), warning_of(group, other)])))
        for method in means.index:
            iv = paired_interval(table, metric, method, BASELINE, by="method", confidence=confidence)
            add(budget, f"{method} within {100 * tolerance:g} pt of the baseline", iv, -tolerance,
                warning_of(group, method))
    columns = ["budget", "claim", "difference", "verdict", "seeds", "effect", "low", "high", "why", "warning"]
    return pd.DataFrame(rows, columns=columns)


@dataclass(frozen=True)
class Convergence:
    """How far the baseline has converged (:func:`convergence`), accuracies as fractions.

    ``plateau``: the mean accuracy of the last ``window`` epochs (mean over seeds); ``earlier``: that of the
    ``window`` epochs before them; ``best``: the mean over seeds of the best accuracy; ``share``:
    ``earlier / plateau``, how much of its plateau the baseline had reached ``window`` epochs before the end;
    ``converged``: ``share >= required``; ``seeds``, ``epochs``."""

    plateau: float
    earlier: float
    best: float
    share: float
    required: float
    window: int
    epochs: int
    seeds: int

    @property
    def converged(self) -> bool:
        return self.share >= self.required

    def sentence(self) -> str:
        """The computed sentence a notebook prints, a warning when not converged."""
        start = self.epochs - 2 * self.window + 1
        text = (f"The baseline's mean test accuracy ({self.seeds} seed(s)) is {100 * self.plateau:.2f} % over "
                f"epochs {self.epochs - self.window + 1}-{self.epochs} (its plateau) and {100 * self.earlier:.2f} % "
                f"over epochs {max(start, 1)}-{self.epochs - self.window}: {100 * self.share:.1f} % of the "
                f"plateau; its best accuracy is {100 * self.best:.2f} %.")
        if self.converged:
            return text + f" It has converged (at least {100 * self.required:g} % of the plateau)."
        return (text + f" WARNING: it reached less than {100 * self.required:g} % of its plateau before the last "
                f"{self.window} epochs, so it is still learning: train longer before comparing methods.")


def convergence(histories: pd.DataFrame, metric: str = "test_accuracy", window: int = 5,
                required: float = 0.95) -> Convergence:
    """:class:`Convergence` of the ``baseline`` runs of a history table (one curve per ``seed``, by ``epoch``).

    Needs at least ``2 x window`` epochs (``ValueError`` naming ``window`` otherwise)."""
    if window < 1:
        raise ValueError(f"window must be >= 1, got {window}")
    base = histories[histories["method"] == BASELINE] if "method" in histories else histories
    if base.empty:
        raise ValueError("convergence needs the baseline's history: no row has method == 'baseline'")
    wide = base.pivot_table(index="epoch", columns="seed", values=metric, aggfunc="mean").sort_index()
    epochs = len(wide)
    if epochs < 2 * window:
        raise ValueError(f"window {window} needs at least {2 * window} epochs, the runs have {epochs}")
    plateau = float(wide.iloc[-window:].mean().mean())
    earlier = float(wide.iloc[-2 * window:-window].mean().mean())
    best = float(wide.max().mean())
    share = earlier / plateau if plateau > 0 else math.nan
    return Convergence(plateau, earlier, best, share, required, window, epochs, int(wide.shape[1]))


# ---------------------------------------------------------------------- figures
def _colors(runs: pd.DataFrame) -> dict[str, str]:
    return {m: color(m) for m in [BASELINE, *dict.fromkeys(runs["method"])]}  # one colour per method


def plot_accuracy_vs_saving(runs: pd.DataFrame, budgets: list[str] | None = None) -> plt.Figure:
    """Best accuracy against compute saved, one panel per budget (shared axes): every run a small dot,
    each method's mean with the 95 % intervals of its means as error bars (:func:`half_width`), the
    baseline's accuracy with its 95 % interval as a band,
    the budget's target saving (``target_saving``) as a dotted vertical line. Axes in percent."""
    budgets = budgets or [b for b in dict.fromkeys(runs.loc[runs["method"] != BASELINE, "budget"])]
    colors = _colors(runs)
    base = runs[runs["method"] == BASELINE]
    fig, axes = plt.subplots(1, len(budgets), figsize=(4.6 * len(budgets), 3.8), sharex=True, sharey=True,
                             squeeze=False)
    for ax, budget in zip(axes.flat, budgets, strict=True):
        if len(base):
            mean, half = 100 * base[ACCURACY].mean(), 100 * half_width(base[ACCURACY])
            ax.axhspan(mean - half, mean + half, color=METHOD_COLORS[BASELINE], alpha=0.12, lw=0)
            ax.axhline(mean, color=METHOD_COLORS[BASELINE], ls=":", lw=1, label="baseline")
        group = runs[(runs["budget"] == budget) & (runs["method"] != BASELINE)]
        for method, rows in group.groupby("method", sort=False):
            x, y = 100 * rows["compute_saving"], 100 * rows[ACCURACY]
            ax.scatter(x, y, s=12, alpha=0.5, color=colors[method])
            ax.errorbar(x.mean(), y.mean(), xerr=half_width(x), yerr=half_width(y),
                        fmt=style(method)["marker"],
                        ms=7, capsize=3, color=colors[method], label=method)
        if "target_saving" in group and group["target_saving"].notna().any():
            ax.axvline(100 * group["target_saving"].mean(), color="0.4", ls="--", lw=1, label="target")
        ax.set_title(f"budget {budget}")
        ax.set_xlabel("compute saved (%)")
    axes.flat[0].set_ylabel("best test accuracy (%)")
    axes.flat[-1].legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    return fig


def plot_wall_vs_saving(runs: pd.DataFrame, ax: plt.Axes | None = None) -> plt.Figure:
    """Wall clock over the baseline's (same seed) against compute saved, one point per run, the marker
    telling the budget; the solid line ``1 - saving`` is what a FLOP-ideal method would reach."""
    t = with_wall_ratio(runs)
    if ax is None:
        _, ax = plt.subplots(figsize=(6.5, 4.2))
    colors, markers = _colors(runs), dict(zip(dict.fromkeys(t["budget"]), "oDs^vP*X", strict=False))
    for (method, budget), rows in t.groupby(["method", "budget"], sort=False):
        label = method if method == BASELINE else f"{method} @ {budget}"
        ax.scatter(100 * rows["compute_saving"], rows["wall_ratio"], color=colors[method],
                   marker="o" if method == BASELINE else markers[budget], s=30, label=label)
    top = max(0.05, float(t["compute_saving"].max()))
    grid = np.linspace(0, top, 50)
    ax.plot(100 * grid, 1 - grid, color="0.3", lw=1, label="FLOP-ideal")
    ax.set_xlabel("compute saved (%)")
    ax.set_ylabel("wall clock / baseline")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    return ax.figure


def plot_counts(histories: pd.DataFrame, budget: str, seed: int | None = None) -> plt.Figure:
    """Per-epoch ``forward_samples`` and ``backprop_samples`` of every method at ``budget`` (and the
    baseline), for one ``seed`` (default: the smallest): two panels, one line per method. Methods that forward
    every sample lie on the baseline's line: each line is drawn thinner than the one before and above it, with its
    own line style and markers (:func:`ies.experiments.plotting.layered`), so that every one stays visible."""
    seed = int(histories["seed"].min()) if seed is None else seed
    rows = histories[(histories["seed"] == seed) &
                     ((histories["budget"] == budget) | (histories["method"] == BASELINE))]
    colors = _colors(rows)
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6), sharex=True, sharey=True)
    for ax, column in zip(axes, ("forward_samples", "backprop_samples"), strict=True):
        groups = list(rows.groupby("method", sort=False))
        for i, (method, h) in enumerate(groups):
            look = style(method)
            ax.plot(h["epoch"], h[column], color=colors[method], label=method, ls=look["ls"], marker=look["marker"],
                    ms=4, markevery=(i % 3, 3), **layered(i, len(groups)))
        ax.set_title(column.replace("_", " ") + " per epoch")
        ax.set_xlabel("epoch")
    axes[0].set_ylabel("samples")
    axes[1].legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    fig.suptitle(f"budget {budget}, seed {seed}")
    return fig
