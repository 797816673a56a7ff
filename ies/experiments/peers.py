"""IES and its peers at matched compute: calibrate each method's knob to a budget, then run it over seeds.

A *method* is a selector name (or a variant of one, :data:`VARIANTS`: ``ies_recheck_lr`` is IES re-checking
its mastered samples less often as the learning rate decays) with the one knob that sets its cost
(:data:`KNOBS`, each with the range of values a user would plausibly choose, :func:`implausible`); a
*budget* is a target FLOP-ideal speedup (``1.5`` -> ``compute_saving`` 1/3). :func:`match_budgets`
searches each method's knob on pilot runs (:func:`ies.experiments.budget.next_knob`, the pilots shared
across budgets) and :func:`run_matched` runs the matched settings for every seed. Each run has its own
folder under the :class:`Runner`'s ``out``; a finished run is read back instead of trained again, and
with ``jobs=2`` two runs train at once (their wall clocks are then comparable with each other, not with a
run trained alone). Notebook 07 is a thin layer over these functions and :mod:`ies.experiments.peers_report`.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from ..training.config import RUN_CONTROL_FIELDS, Config
from .budget import Calibration, Pilot, calibration_from, next_knob, saving_for_speedup
from .sweep import cache
from .sweep.plan import run_id
from .sweep.pool import run_here, run_sweep


@dataclass(frozen=True)
class Knob:
    """The knob that sets a method's cost: a ``Config`` field, its search bracket ``[low, high]``
    (``high=None``: the run's epoch count), the search ``scale``, whether the saving increases with it,
    its *plausible* range ``plausible`` (the values a user of the method would choose; a calibration that
    leaves it is flagged, :func:`implausible`) with ``why`` (where that range comes from) and ``model``, a
    monotone first guess of the ``compute_saving`` at a knob value (the first pilot; the pilots decide)."""

    field: str
    low: float
    high: float | None
    scale: str = "linear"
    increasing: bool = True
    plausible: tuple[float, float] = (-math.inf, math.inf)
    why: str = ""
    model: Callable[[float], float] | None = None


def _clip(x: float) -> float:
    return min(max(x, 0.0), 0.95)


#: The first guesses (``Knob.model``) come from our pilots on MNIST-1D, cnn1d, 30 epochs, seed 0: IES with delta
#: 1e-3 saves 11.6 % of the compute, 1e-2 21.6 %, 3e-2 28.7 %, 1e-1 30.0 % (``recheck="lr"``: 19.5 % at 2e-3,
#: 27.3 % at 1e-2, 29.9 % at 1.27e-2, 39.7 % at 1e-1); InfoBatch 32.8 % at prune ratio 0.5, 46.1 % at 0.7;
#: SeTa 31.9 % at 0, 38.1 % at 0.1, 50.9 % at 0.3; OrderDP 33.4 % at top_q 0.833 (exactly 1 - 0.8 x top_q);
#: PFB 32.3 % at 0.35. Elsewhere they are only a start.
def _ies_model(delta: float) -> float:
    return _clip(0.416 + 0.10 * math.log10(delta))


def _ies_lr_model(delta: float) -> float:
    return _clip(0.546 + 0.13 * math.log10(delta))

KNOBS: dict[str, Knob] = {
    "ies": Knob("threshold", 1e-5, 10.0, "log", plausible=(1e-5, 0.1), model=_ies_model,
                why="the IES paper's CIFAR ablation spans delta = 1e-3 x 0.01 .. 100 (Fig. 5)"),
    "ies_recheck_lr": Knob("threshold", 1e-5, 10.0, "log", plausible=(1e-5, 0.1), model=_ies_lr_model,
                           why="as ies: the IES paper's CIFAR ablation spans delta = 1e-5 .. 1e-1 (Fig. 5)"),
    "infobatch": Knob("prune_ratio", 0.0, 0.95, plausible=(0.0, 0.7), model=lambda r: 0.66 * r,
                      why="InfoBatch's default prune ratio is 0.5 (our default); past 0.7 few below-mean samples "
                          "are left to train (our choice)"),
    "small_loss_rescale": Knob("prune_ratio", 0.0, 0.95, plausible=(0.0, 0.7), model=lambda r: 0.75 * r,
                               why="as infobatch (our choice)"),
    "selective_backprop": Knob("sb_beta", 0.05, 50.0, "log", plausible=(0.5, 5.0),
                               model=lambda b: (2 - 3 / (1 + b)) / 3,
                               why="a kept share 1 / (1 + beta) between 2/3 and 1/6 (our choice)"),
    "early_stop": Knob("es_patience", 1, None, "int", increasing=False, plausible=(2, math.inf),
                       model=lambda p: _clip(0.6 - 0.1 * p),
                       why="a patience of one epoch stops at the first noisy dip (our choice)"),
    "seta": Knob("seta_prune_ratio", 0.0, 0.9, plausible=(0.0, 0.7), model=lambda r: _clip(0.317 + 0.64 * r),
                 why="the authors' lossless default is 0.1 (scripts/cifar.sh); their code clamps the kept share "
                     "at 0.1; past 0.7 the random draw keeps under a third (our choice)"),
    "orderdp": Knob("orderdp_top_q", 0.05, 1.0, increasing=False, plausible=(0.3, 1.0),
                    model=lambda q: _clip(1 - 0.8 * q),
                    why="the authors' README trains 30 % of CIFAR-100 (top_q 0.375 of a pool of 0.8); "
                        "top_q under 0.3 trains less than they ran (our choice)"),
    "pfb": Knob("pfb_prune_ratio", 0.0, 0.95, plausible=(0.0, 0.6), model=lambda r: _clip(r - 0.027),
                why="the PFB paper prunes 40 % of ImageNet (its abstract); past 0.6 most of each batch is "
                    "blocked (our choice)"),
}
"""Each method's knob. The brackets are wide on purpose: an unreachable budget shows up as an end pilot
that falls short (Selective Backprop forwards every sample, so it never saves more than 2/3; IES needs
its look-back of epochs before it excludes anything). The plausible ranges are narrower: a budget that
needs a knob outside its range is reached only by a setting nobody would use (:func:`implausible`)."""

VARIANTS: dict[str, dict] = {
    "baseline": {"selector": "ies", "threshold": 0.0},
    "ies_recheck_lr": {"selector": "ies", "recheck": "lr"},
}
"""Methods that are a selector with fixed overrides (the others are the selector of their name)."""


def implausible(method: str, value: float) -> str:
    """A one-line warning when ``value`` of ``method``'s knob lies outside its plausible range, else ``""``."""
    knob = KNOBS[method]
    low, high = knob.plausible
    if low <= value <= high:
        return ""
    side = f"above {high:g}" if value > high else f"below {low:g}"
    return (f"{method}: {knob.field} = {value:g} is {side}, outside the plausible range [{low:g}, {high:g}] "
            f"({knob.why})")


def method_config(base: Config, method: str, knob: float | None = None, seed: int | None = None) -> Config:
    """``base`` as ``method`` (``baseline``: the ``ies`` selector with ``threshold=0``; ``ies_recheck_lr``: IES
    re-checking the mastered samples less often as the learning rate decays) with its knob set."""
    changes: dict = dict(VARIANTS.get(method, {"selector": method}))
    if knob is not None and method != "baseline":
        changes[KNOBS[method].field] = knob
    if seed is not None:
        changes["seed"] = seed
    return base.replace(**changes)


def method_of(cfg: Config) -> str:
    """The method name of a configuration (the inverse of :func:`method_config`)."""
    if cfg.is_baseline:
        return "baseline"
    if cfg.selector == "ies" and cfg.recheck == "lr":
        return "ies_recheck_lr"
    return cfg.selector


class Runner:
    """Trains configurations into ``out/<name>``, reusing finished runs.

    ``runner(cfg)`` returns the run's ``metrics.json`` dict plus ``history`` (its DataFrame);
    :meth:`many` does the same for a list, training the unfinished ones ``jobs`` at a time. The cache is the
    sweep's (:mod:`ies.experiments.sweep.cache`): a run is finished when its ``metrics.json`` holds every
    epoch of the same configuration; an interrupted one resumes from its checkpoint. ``rerun``: every run
    trains anew, once per runner (a pilot reused as a seed's run is not trained twice).

    With ``base`` a run's folder is the sweep's run id of its overrides of ``base``
    (:func:`ies.experiments.sweep.run_id`, e.g. ``threshold=0_seed=1``), so that a run folder shared with the
    sweeps of other notebooks (:func:`ies.course.notebook.shared_runs`) reuses their runs of the same
    configuration; without it ``<method>-<knob>=<value>-seed=<seed>``. ``jobs > 1`` (``base`` needed)
    trains through :func:`ies.experiments.sweep.run_sweep`, one process per run (each on ``cores / jobs`` threads,
    a lone run too); ``jobs=1`` in this process."""

    def __init__(self, out: str | Path, dataset=None, rerun: bool = False, base: Config | None = None,
                 jobs: int = 1) -> None:
        if jobs < 1:
            raise ValueError(f"jobs must be >= 1, got {jobs}")
        if jobs > 1 and base is None:
            raise ValueError("jobs > 1 trains through a sweep, which needs the runner's base configuration")
        self.out, self.dataset, self.rerun, self.base, self.jobs = Path(out), dataset, rerun, base, jobs
        self.trained = 0
        self.reused = 0
        self.free_pilots = 0  # pilots the last match_budgets found finished in the cache
        self._fresh: set[Path] = set()

    def overrides(self, cfg: Config) -> dict:
        """``cfg``'s fields that differ from ``base`` (those of :data:`~ies.training.config.RUN_CONTROL_FIELDS`
        left out), and always its seed."""
        if self.base is None:
            raise ValueError("overrides need the runner's base configuration")
        ref, mine = self.base.to_dict(), cfg.to_dict()
        out = {k: v for k, v in mine.items() if k not in RUN_CONTROL_FIELDS and k != "seed" and v != ref[k]}
        return {**out, "seed": cfg.seed}

    def folder(self, cfg: Config) -> Path:
        if self.base is not None:
            return self.out / run_id(self.overrides(cfg))
        method = method_of(cfg)
        knob = KNOBS.get(method)
        part = f"-{knob.field}={getattr(cfg, knob.field):.6g}" if knob else ""
        return self.out / f"{method}{part}-seed={cfg.seed}"

    def __call__(self, cfg: Config) -> dict:
        return self.many([cfg])[0]

    def finished_knobs(self, cfg: Config, field: str) -> dict[float, float]:
        """``{value: compute_saving}`` of the finished runs in ``out`` that are ``cfg`` but for ``field`` (any
        folder name: another notebook's sweep may have trained them): pilots a calibration gets for free.
        Empty with ``rerun``."""
        if self.rerun or not self.out.is_dir():
            return {}
        names = {f.name for f in dataclasses.fields(Config)}
        ref = cache.identity(cfg.to_dict())
        ref.pop(field)
        found = {}
        for path in sorted(self.out.glob("*/metrics.json")):
            metrics = cache.read_json(path)
            stored = metrics.get("config")
            if not isinstance(stored, dict) or "compute_saving" not in metrics:
                continue
            try:
                other = Config.from_dict({k: v for k, v in stored.items() if k in names})
            except ValueError:
                continue
            mine = cache.identity(other.to_dict())
            value = mine.pop(field)
            if mine == ref and cache.finished(other.replace(output=str(path.parent))):
                found[value] = float(metrics["compute_saving"])
        return found

    def many(self, cfgs: Iterable[Config]) -> list[dict]:
        """The results of every configuration of ``cfgs`` (in order), training the unfinished ones."""
        cfgs = [c.replace(output=str(self.folder(c)), progress=False, resume=False) for c in cfgs]
        todo, seen = [], set()
        for cfg in cfgs:
            folder = Path(cfg.output)
            stale = self.rerun and folder not in self._fresh
            if (stale or not cache.finished(cfg)) and folder not in seen:
                todo.append(cfg)
                seen.add(folder)
        if self.jobs > 1 and todo:  # one run too: its process gets one thread, faster than two for a small net
            table = run_sweep(self.base, points=[self.overrides(c) for c in todo], output=self.out, jobs=self.jobs,
                              rerun=self.rerun, progress=False)
            bad = table[~table["status"].isin(["done", "cached"])]
            if len(bad):
                row = bad.iloc[0]
                raise RuntimeError(f"run {row['run_id']} {row['status']}: {row['error']}")
        else:
            for cfg in todo:
                run_here(cfg, dataset=self.dataset, fresh=self.rerun)
        self.trained += len(todo)
        self._fresh |= seen
        self.reused += len(cfgs) - len(todo)
        out = []
        for cfg in cfgs:
            folder = Path(cfg.output)
            out.append({**cache.read_json(folder / "metrics.json"), "history": pd.read_csv(folder / "history.csv")})
        return out


def match_budgets(base: Config, methods: Iterable[str], speedups: Iterable[float], runner: Runner, *,
                  tolerance: float = 0.02, max_pilots: int = 6) -> dict[tuple[str, float], Calibration]:
    """Calibrate every method's knob to every target speedup on pilot runs of ``base`` (same seed, same
    length: a pilot at the chosen knob *is* that seed's run, reused by :func:`run_matched`).

    The search (:func:`ies.experiments.budget.next_knob`) starts at the knob's first guess
    (:attr:`Knob.model`) and interpolates between the pilots; every pilot of a method serves all its
    budgets. It goes in rounds: each round runs the next pilot of every (method, budget) still open at once
    (``runner.jobs`` at a time). At most ``max_pilots`` pilots are asked for per budget. Unreachable budgets
    are not an error: the closest pilot is kept with ``matched=False`` (see its ``how``)."""
    methods, speedups = list(methods), list(speedups)
    # method -> knob -> saving; the finished runs of the cache at other knob values are pilots for free
    pilots = {}
    for m in methods:
        knob = KNOBS[m]
        high = base.epochs if knob.high is None else knob.high
        found = runner.finished_knobs(method_config(base, m, None), knob.field)
        pilots[m] = {k: v for k, v in found.items() if knob.low <= k <= high}
    runner.free_pilots = sum(len(p) for p in pilots.values())
    asked = {(m, s): 0 for m in methods for s in speedups}
    open_ = set(asked)
    while open_:
        wanted: dict[tuple[str, float], float] = {}
        for method, speedup in sorted(open_, key=lambda ms: (methods.index(ms[0]), speedups.index(ms[1]))):
            knob = KNOBS[method]
            high = base.epochs if knob.high is None else knob.high
            known = [Pilot(k, v) for k, v in pilots[method].items()]
            nxt = None if asked[(method, speedup)] >= max_pilots else next_knob(
                known, saving_for_speedup(speedup), knob.low, high, scale=knob.scale, increasing=knob.increasing,
                tolerance=tolerance, model=knob.model)
            if nxt is None:
                open_.discard((method, speedup))
                continue
            asked[(method, speedup)] += 1
            wanted[(method, speedup)] = nxt
        batch = list(dict.fromkeys((m, k) for (m, _), k in wanted.items() if k not in pilots[m]))
        results = runner.many([method_config(base, m, k) for m, k in batch])
        for (method, k), result in zip(batch, results, strict=True):
            pilots[method][k] = float(result["compute_saving"])
    out = {}
    for method in methods:
        knob = KNOBS[method]
        high = base.epochs if knob.high is None else knob.high
        known = [Pilot(k, v) for k, v in pilots[method].items()]
        for speedup in speedups:
            out[(method, speedup)] = calibration_from(
                known, saving_for_speedup(speedup), tolerance, name=knob.field, low=knob.low, high=high,
                scale=knob.scale, increasing=knob.increasing, asked=asked[(method, speedup)])
    return out


def calibration_table(calibrations: dict[tuple[str, float], Calibration]) -> pd.DataFrame:
    """One row per (method, speedup): the knob chosen, target and measured saving, matched, the pilots the
    method ran, whether the knob is plausible and the warning if not (:func:`implausible`), how."""
    rows = [{"method": m, "budget": budget_label(s), "knob": c.name, "value": c.knob, "target_saving": c.target,
             "saving": c.saving, "matched": c.matched, "pilots": len(c.pilots),
             "plausible": not implausible(m, c.knob), "warning": implausible(m, c.knob), "how": c.how}
            for (m, s), c in calibrations.items()]
    return pd.DataFrame(rows)


def budget_label(speedup: float) -> str:
    """``1.5`` -> ``"1.5x"``."""
    return f"{speedup:g}x"


def run_matched(base: Config, calibrations: dict[tuple[str, float], Calibration], seeds: Iterable[int],
                runner: Runner) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Run the baseline and every calibrated (method, budget) for every seed.

    Returns the run table (columns of :mod:`ies.experiments.peers_report`: ``method``, ``budget``, ``seed``,
    ``knob``, ``target_saving``, ``matched``, ``warning`` (:func:`implausible`, :func:`seed_drift`) and the
    ``metrics.json`` numbers) and the history table (every run's history with ``method``, ``budget``, ``seed``)."""
    runs, histories = [], []
    settings = [("baseline", "-", None, None)] + [
        (m, budget_label(s), c.knob, c) for (m, s), c in calibrations.items()]
    wanted = [(seed, *setting) for seed in seeds for setting in settings]
    results = runner.many([method_config(base, method, knob, seed) for seed, method, _, knob, _ in wanted])
    for (seed, method, budget, knob, cal), result in zip(wanted, results, strict=True):
        history = result.pop("history")
        row = {k: v for k, v in result.items() if not isinstance(v, dict)}
        runs.append({"method": method, "budget": budget, "seed": seed, "knob": knob,
                     "target_saving": cal.target if cal else 0.0, "matched": cal.matched if cal else True,
                     "warning": implausible(method, knob) if cal else "", **row})
        histories.append(history.assign(method=method, budget=budget, seed=seed))
    table = pd.DataFrame(runs)
    for method, budget, _, cal in settings[1:]:
        if not cal.matched:
            continue
        rows = (table["method"] == method) & (table["budget"] == budget)
        drift = seed_drift(table[rows], cal)
        if drift:
            table.loc[rows, "warning"] = ["; ".join(filter(None, [w, drift])) for w in table.loc[rows, "warning"]]
    return table, pd.concat(histories, ignore_index=True)


def seed_drift(rows: pd.DataFrame, cal: Calibration) -> str:
    """A one-line warning when the seeds' mean ``compute_saving`` of a matched setting misses the target by
    more than the calibration's tolerance (the knob was matched on the first seed only), else ``""``."""
    mean = float(rows["compute_saving"].mean())
    if abs(mean - cal.target) <= cal.tolerance:
        return ""
    return (f"over {rows['seed'].nunique()} seeds it saved {100 * mean:.1f} % of the compute on average, "
            f"{'short of' if mean < cal.target else 'past'} the target {100 * cal.target:.1f} % by more than the "
            f"tolerance {100 * cal.tolerance:g} pt (matched on the first seed: {100 * cal.saving:.1f} %)")
