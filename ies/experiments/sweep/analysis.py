"""The results of a sweep: one row per run, every run's history in one table, means over seeds.

Comparisons over seeds go through :mod:`ies.experiments.stats` (paired by seed: runs of one seed start from the
same weights and see the same data order).
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from .. import stats
from .cache import read_json
from .plan import PlannedRun, field_order

#: Columns of the results table after the override columns.
METRIC_COLUMNS = ("test_accuracy", "best_test_accuracy", "backprop_saving", "compute_saving", "flop_ideal_speedup",
                  "wall_time_s", "process_seconds", "epochs_completed", "stopped_early", "num_test")
OK = ("done", "cached")  # statuses of runs with results


@dataclass(frozen=True)
class Outcome:
    """What became of one run: ``status`` (``done``, ``cached``, ``failed``, ``invalid``, ``blocked``),
    ``error`` (why it has no results), ``seconds`` (of its process), ``returncode``."""

    status: str
    error: str = ""
    seconds: float | None = None
    returncode: int | None = None


def results_table(runs: list[PlannedRun], outcomes: Mapping[str, Outcome]) -> pd.DataFrame:
    """One row per run: ``run_id``, ``setting``, ``status``, the override columns (in ``Config`` field
    order), :data:`METRIC_COLUMNS` (NaN without results), ``depends_on`` and ``error``."""
    keys: list[str] = []
    for r in runs:
        keys += [k for k in r.overrides if k not in keys]
    keys.sort(key=field_order)
    rows = []
    for r in runs:
        outcome = outcomes[r.run_id]
        ok = outcome.status in OK
        metrics = read_json(Path(r.config.output) / "metrics.json") if ok else {}
        row = {"run_id": r.run_id, "setting": r.setting, "status": outcome.status}
        row.update({k: r.overrides.get(k) for k in keys})
        row.update({k: metrics.get(k, math.nan) for k in METRIC_COLUMNS})
        row["process_seconds"] = math.nan if outcome.seconds is None else outcome.seconds
        row["depends_on"] = r.depends_on or ""
        row["error"] = outcome.error
        rows.append(row)
    columns = ["run_id", "setting", "status", *keys, *METRIC_COLUMNS, "depends_on", "error"]
    return pd.DataFrame(rows, columns=columns)


def load_histories(results: pd.DataFrame, output: str | os.PathLike) -> pd.DataFrame:
    """Every finished run's ``history.csv`` in one long table, with ``run_id``, ``setting``,
    ``excluded_fraction`` (samples left out of backprop in the epoch / training samples: those the
    rule mastered at the end of the epoch before, none in an anneal epoch) and ``mastered_fraction``
    (samples mastered at the end of the epoch / training samples)."""
    frames = []
    for row in results[results["status"].isin(OK)].itertuples():
        folder = Path(output).expanduser() / row.run_id
        history = pd.read_csv(folder / "history.csv")
        num_train = read_json(folder / "metrics.json").get("num_train", math.nan)
        history.insert(0, "setting", row.setting)
        history.insert(0, "run_id", row.run_id)
        history["excluded_fraction"] = history["forward_only_samples"] / num_train
        history["mastered_fraction"] = history["n_mastered"] / num_train
        frames.append(history)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def finished_runs(results: pd.DataFrame) -> pd.DataFrame:
    """The rows of runs that have results (status ``done`` or ``cached``)."""
    return results[results["status"].isin(OK)] if "status" in results else results


def paired_interval(results: pd.DataFrame, a: str, b: str, metric: str = "test_accuracy",
                    confidence: float = 0.95) -> stats.Interval:
    """:func:`ies.experiments.stats.paired_interval` of ``metric`` of setting ``a`` minus setting ``b``,
    paired by seed, over the runs that have results (an accuracy's spread floored at the binomial noise of
    the runs' ``num_test`` test samples)."""
    return stats.paired_interval(finished_runs(results), metric, a, b, confidence=confidence)


def paired_difference(results: pd.DataFrame, a: str, b: str, metric: str = "test_accuracy") -> dict[str, float]:
    """``metric`` of setting ``a`` minus that of setting ``b``, paired by seed: ``mean``, ``std``
    (over seeds), ``n`` (seeds present in both) and the 95 % t interval ``low`` / ``high``
    (:func:`ies.experiments.stats.paired_differences` and :func:`ies.experiments.stats.interval`)."""
    iv = paired_interval(results, a, b, metric)
    return {"mean": iv.mean, "std": iv.std, "n": iv.n, "low": iv.low, "high": iv.high}


def aggregate(results: pd.DataFrame, baseline: str | None = None) -> pd.DataFrame:
    """Mean and spread over seeds per setting (index): ``runs``, ``acc_mean``, ``acc_std`` (final test
    accuracy), ``best_acc_mean``, ``best_acc_std`` (best over epochs, the paper's metric),
    ``saved_mean``, ``saved_std``, ``wall_mean``, the 95 % interval half-widths of the means ``acc_ci``,
    ``best_acc_ci``, ``saved_ci`` (:func:`ies.experiments.stats.half_width`, the error bars); with
    ``baseline`` (a setting) also ``acc_diff`` / ``acc_diff_std`` and ``best_acc_diff`` /
    ``best_acc_diff_std`` (paired by seed, see :func:`paired_difference`) and ``wall_ratio`` (mean wall
    time / the baseline's)."""
    table = finished_runs(results).groupby("setting", sort=False).agg(
        runs=("run_id", "size"),
        acc_mean=("test_accuracy", "mean"), acc_std=("test_accuracy", "std"),
        best_acc_mean=("best_test_accuracy", "mean"), best_acc_std=("best_test_accuracy", "std"),
        saved_mean=("backprop_saving", "mean"), saved_std=("backprop_saving", "std"),
        wall_mean=("wall_time_s", "mean"),
        acc_ci=("test_accuracy", stats.half_width), best_acc_ci=("best_test_accuracy", stats.half_width),
        saved_ci=("backprop_saving", stats.half_width),
    )
    if baseline is not None and baseline in table.index:
        for metric, column in (("test_accuracy", "acc_diff"), ("best_test_accuracy", "best_acc_diff")):
            diffs = [paired_interval(results, s, baseline, metric) for s in table.index]
            table[column] = [d.mean for d in diffs]
            table[f"{column}_std"] = [d.std for d in diffs]
        table["wall_ratio"] = table["wall_mean"] / table.loc[baseline, "wall_mean"]
    return table
