"""IES and its peers at matched compute: calibrate each method's knob to a budget, then run it over seeds.

A *method* is a selector name with the one knob that sets its cost (:data:`KNOBS`); a *budget* is a
target FLOP-ideal speedup (``1.5`` -> ``compute_saving`` 1/3). :func:`match_budgets` bisects each
method's knob on pilot runs (:func:`ies.experiments.budget.calibrate`) and :func:`run_matched` runs the matched
settings for every seed. Runs are trained in this process, one at a time (their wall clocks are then
comparable), each in its own folder under ``out``; a finished run is read back instead of trained again.
Notebook 07 is a thin layer over these two functions and :mod:`ies.experiments.peers_report`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from ..training.config import Config
from .budget import Calibration, calibrate, saving_for_speedup
from .sweep import cache
from .sweep.pool import run_here


@dataclass(frozen=True)
class Knob:
    """The knob that sets a method's cost: a ``Config`` field, its search bracket ``[low, high]``
    (``high=None``: the run's epoch count), the bisection ``scale`` and whether the saving increases
    with it."""

    field: str
    low: float
    high: float | None
    scale: str = "linear"
    increasing: bool = True


KNOBS: dict[str, Knob] = {
    "ies": Knob("threshold", 1e-5, 10.0, "log"),
    "infobatch": Knob("prune_ratio", 0.0, 0.95),
    "small_loss_rescale": Knob("prune_ratio", 0.0, 0.95),
    "selective_backprop": Knob("sb_beta", 0.05, 50.0, "log"),
    "early_stop": Knob("es_patience", 1, None, "int", increasing=False),
    "seta": Knob("seta_prune_ratio", 0.0, 0.9),
    "orderdp": Knob("orderdp_top_q", 0.05, 1.0, increasing=False),
    "pfb": Knob("pfb_prune_ratio", 0.0, 0.95),
}
"""Each method's knob. The brackets are wide on purpose: an unreachable budget shows up as an end pilot
that falls short (Selective Backprop forwards every sample, so it never saves more than 2/3; IES needs
its look-back of epochs before it excludes anything)."""


def method_config(base: Config, method: str, knob: float | None = None, seed: int | None = None) -> Config:
    """``base`` as ``method`` (``baseline``: the ``ies`` selector with ``threshold=0``) with its knob set."""
    changes: dict = {"threshold": 0.0, "selector": "ies"} if method == "baseline" else {"selector": method}
    if knob is not None and method != "baseline":
        changes[KNOBS[method].field] = knob
    if seed is not None:
        changes["seed"] = seed
    return base.replace(**changes)


class Runner:
    """Trains configurations in this process into ``out/<name>``, reusing finished runs.

    ``runner(cfg)`` returns the run's ``metrics.json`` dict plus ``history`` (its DataFrame). The cache is
    the sweep's (:mod:`ies.experiments.sweep.cache`): a run is finished when its ``metrics.json`` holds every
    epoch of the same configuration; an interrupted one resumes from its checkpoint (``rerun``: every run
    trains anew)."""

    def __init__(self, out: str | Path, dataset=None, rerun: bool = False) -> None:
        self.out, self.dataset, self.rerun = Path(out), dataset, rerun
        self.trained = 0
        self.reused = 0

    def folder(self, cfg: Config) -> Path:
        knob = KNOBS.get(cfg.selector)
        method = "baseline" if cfg.is_baseline else cfg.selector
        part = f"-{knob.field}={getattr(cfg, knob.field):.6g}" if knob and method != "baseline" else ""
        return self.out / f"{method}{part}-seed={cfg.seed}"

    def __call__(self, cfg: Config) -> dict:
        folder = self.folder(cfg)
        cfg = cfg.replace(output=str(folder), progress=False, resume=False)
        if not self.rerun and cache.finished(cfg):
            self.reused += 1
            return {**cache.read_json(folder / "metrics.json"), "history": pd.read_csv(folder / "history.csv")}
        result = run_here(cfg, dataset=self.dataset, fresh=self.rerun)
        self.trained += 1
        return {**result.metrics, "history": result.history}


def match_budgets(base: Config, methods: Iterable[str], speedups: Iterable[float], runner: Runner, *,
                  tolerance: float = 0.02, max_pilots: int = 6) -> dict[tuple[str, float], Calibration]:
    """Calibrate every method's knob to every target speedup on pilot runs of ``base`` (same seed, same
    length: a pilot at the chosen knob *is* that seed's run, reused by :func:`run_matched`). Unreachable
    budgets are not an error: the closest pilot is kept with ``matched=False`` (see its ``how``)."""
    out = {}
    for method in methods:
        knob = KNOBS[method]
        high = base.epochs if knob.high is None else knob.high

        def pilot(value, method=method):
            return float(runner(method_config(base, method, value))["compute_saving"])

        for speedup in speedups:
            out[(method, speedup)] = calibrate(
                pilot, saving_for_speedup(speedup), knob.low, high, name=knob.field, increasing=knob.increasing,
                scale=knob.scale, tolerance=tolerance, max_pilots=max_pilots, strict=False)
    return out


def calibration_table(calibrations: dict[tuple[str, float], Calibration]) -> pd.DataFrame:
    """One row per (method, speedup): the knob chosen, target and measured saving, matched, pilots, how."""
    rows = [{"method": m, "budget": budget_label(s), "knob": c.name, "value": c.knob, "target_saving": c.target,
             "saving": c.saving, "matched": c.matched, "pilots": len(c.pilots), "how": c.how}
            for (m, s), c in calibrations.items()]
    return pd.DataFrame(rows)


def budget_label(speedup: float) -> str:
    """``1.5`` -> ``"1.5x"``."""
    return f"{speedup:g}x"


def run_matched(base: Config, calibrations: dict[tuple[str, float], Calibration], seeds: Iterable[int],
                runner: Runner) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Run the baseline and every calibrated (method, budget) for every seed.

    Returns the run table (columns of :mod:`ies.experiments.peers_report`: ``method``, ``budget``, ``seed``,
    ``knob``, ``target_saving``, ``matched`` and the ``metrics.json`` numbers) and the history table (every
    run's history with ``method``, ``budget``, ``seed``)."""
    runs, histories = [], []
    settings = [("baseline", "-", None, None)] + [
        (m, budget_label(s), c.knob, c) for (m, s), c in calibrations.items()]
    for seed in seeds:
        for method, budget, knob, cal in settings:
            result = runner(method_config(base, method, knob, seed))
            history = result.pop("history")
            row = {k: v for k, v in result.items() if not isinstance(v, dict)}
            runs.append({"method": method, "budget": budget, "seed": seed, "knob": knob,
                         "target_saving": cal.target if cal else 0.0, "matched": cal.matched if cal else True, **row})
            histories.append(history.assign(method=method, budget=budget, seed=seed))
    return pd.DataFrame(runs), pd.concat(histories, ignore_index=True)
