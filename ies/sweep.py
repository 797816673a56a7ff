"""Sweeps: a grid of :class:`~ies.config.Config` overrides, every run in its own process, one table of results.

::

    from ies import Config
    from ies.sweep import run_sweep

    results = run_sweep(Config(epochs=30), grid={"threshold": [0, 1e-3, 1e-2], "seed": [0, 1]},
                        output="runs/sweep", jobs=2, random_control=True)

or ``python -m ies sweep --grid threshold=0,1e-3,1e-2 --grid seed=0,1 --set epochs=30 --random-control``.

* The runs are the product of the ``grid`` axes, plus every extra ``point`` (a dict of overrides)
  crossed with the grid axes the point does not set itself: with ``grid={"seed": [0, 1]}`` each
  point runs with both seeds.
* Each run is ``python -m ies train ... --output OUTPUT/<run_id>`` in its own process, at most ``jobs``
  at once. The run id lists the overrides in ``Config`` field order (``threshold=0.001_seed=0``), so
  the same point always lands in the same folder.
* A run whose ``metrics.json`` shows all its epochs done, for the same configuration, is not run
  again; an interrupted one resumes from its checkpoint. A run that fails is reported with the end
  of its stderr and the others go on.
* ``random_budget="@<run_id>"`` names the ``history.csv`` of another run of the sweep: that run goes
  first (so does a plain path to it). ``random_control`` adds such a matched-budget random twin to
  IES runs: the same overrides with ``selector="random"``, excluding in every epoch as many random
  samples as the IES run excluded.
* The table (``OUTPUT/results.csv``): one row per run with its id, its *setting* (the id without
  the seed), status, overrides, final and best test accuracy, backprop saved, wall time.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import itertools
import json
import math
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from .checkpoint import write_json
from .config import Config, cast

#: Fields that control how a run is executed, not what it computes (ignored when deciding
#: whether a finished run matches the configuration asked for).
RUN_CONTROL_FIELDS = ("output", "resume", "progress", "checkpoint_every", "device", "data_dir")
#: Columns of the results table after the override columns.
METRIC_COLUMNS = ("test_accuracy", "best_test_accuracy", "backprop_saving", "wall_time_s", "process_seconds",
                  "epochs_completed")
OK = ("done", "cached")  # statuses of runs with results
_FIELDS = {f.name: f for f in dataclasses.fields(Config)}
_ORDER = {name: i for i, name in enumerate(_FIELDS)}


@dataclasses.dataclass
class Run:
    """One planned run of a sweep.

    Attributes:
        run_id: folder name under the sweep's output, built from the overrides.
        setting: the run id without the seed (runs differing only in seed share it).
        overrides: the fields changed from the base configuration (values cast to the field types;
            ``random_budget`` may be ``"@<run_id>"``).
        config: the full configuration (``None`` if the overrides are invalid).
        error: why the configuration is invalid (empty when it is valid).
        depends_on: the run whose ``history.csv`` is this run's ``random_budget``, if in the sweep.
    """

    run_id: str
    setting: str
    overrides: dict[str, Any]
    config: Config | None = None
    error: str = ""
    depends_on: str | None = None


# ---------------------------------------------------------------------- planning
def format_value(value: Any) -> str:
    """A value as it appears in a run id: ``0.001``, ``1e-05``, ``true``, a short string, or a hash."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:g}"
    text = str(value)
    if re.fullmatch(r"[\w.+-]{1,40}", text):
        return text
    return "h" + hashlib.sha1(text.encode()).hexdigest()[:8]


def run_id(overrides: Mapping[str, Any], *, drop: Iterable[str] = ()) -> str:
    """The readable, deterministic id of a run: ``key=value`` joined by ``_`` in ``Config`` field
    order, without the keys in ``drop`` and without a ``random_budget`` that names a sweep run
    (``@...``: ``selector=random`` already tells the run apart); ``base`` when nothing is left."""
    drop = set(drop)
    keys = [k for k in overrides if k not in drop
            and not (k == "random_budget" and str(overrides[k]).startswith("@"))]
    keys.sort(key=lambda k: (_ORDER.get(k, len(_ORDER)), k))
    return "_".join(f"{k}={format_value(overrides[k])}" for k in keys) or "base"


def setting_id(overrides: Mapping[str, Any]) -> str:
    """The id of a setting: :func:`run_id` without the seed (what seeds are averaged over)."""
    return run_id(_normalize(overrides), drop=("seed",))


def expand(grid: Mapping[str, Iterable[Any]] | None = None,
           points: Iterable[Mapping[str, Any]] | None = None) -> list[dict[str, Any]]:
    """The override dicts of a sweep: the product of the ``grid`` axes, then each point crossed
    with the grid axes it does not set. Duplicates are dropped, the order is kept."""
    axes = {k: _as_list(v) for k, v in (grid or {}).items()}
    out: list[dict[str, Any]] = []
    if axes or not points:
        out += [dict(zip(axes, combo, strict=True)) for combo in itertools.product(*axes.values())]
    for point in points or ():
        free = {k: v for k, v in axes.items() if k not in point}
        for combo in itertools.product(*free.values()):
            out.append({**point, **dict(zip(free, combo, strict=True))})
    seen, unique = set(), []
    for o in out:
        key = json.dumps(_normalize(o), sort_keys=True, default=str)
        if key not in seen:
            seen.add(key)
            unique.append(o)
    return unique


def plan(base: Config | None, grid: Mapping[str, Iterable[Any]] | None = None,
         points: Iterable[Mapping[str, Any]] | None = None, *, output: str | os.PathLike = "runs/sweep",
         random_control: bool | Iterable[str | Mapping[str, Any]] | Callable[[Run], bool] = False) -> list[Run]:
    """The runs of a sweep, references before the runs that depend on them (see the module doc).

    ``random_control``: ``True`` adds a matched random twin to every IES run that can exclude
    anything (``selector="ies"``, ``threshold > 0``); a list of settings (ids or override dicts)
    adds twins to the runs of those settings only; a callable decides per :class:`Run`."""
    base = base or Config()
    out = Path(output).expanduser().resolve()
    runs = [_make_run(base, o) for o in expand(grid, points)]
    _unique_ids(runs)
    if random_control:
        runs += [_make_run(base, {**r.overrides, "selector": "random", "random_budget": f"@{r.run_id}"})
                 for r in runs if _wants_twin(r, random_control)]
    _unique_ids(runs)
    by_id = {r.run_id: r for r in runs}
    by_path = {str(out / r.run_id / "history.csv"): r.run_id for r in runs}
    for r in runs:
        if r.config is None:
            continue
        budget = r.config.random_budget
        if budget.startswith("@"):
            ref = budget[1:]
            if ref not in by_id:
                r.config, r.error = None, f"random_budget refers to {ref!r}, which is not a run of this sweep"
                continue
            r.depends_on = ref
            budget = str(out / ref / "history.csv")
        elif budget:
            budget = str(Path(budget).expanduser().resolve())
            r.depends_on = by_path.get(budget)
        r.config = r.config.replace(output=str(out / r.run_id), random_budget=budget)
    _check_cycles(runs)
    return _topological(runs)


def _make_run(base: Config, overrides: Mapping[str, Any]) -> Run:
    overrides = dict(overrides)
    try:
        overrides = _normalize(overrides, strict=True)
        config = base.replace(**overrides)
        error = ""
    except ValueError as e:
        config, error = None, str(e)
    return Run(run_id(overrides), run_id(overrides, drop=("seed",)), overrides, config, error)


def _normalize(overrides: Mapping[str, Any], strict: bool = False) -> dict[str, Any]:
    """Cast values to the field types (``"1e-3"`` and ``1e-3`` are the same point)."""
    out = {}
    for k, v in overrides.items():
        if k in ("output", "resume") and strict:
            raise ValueError(f"{k} is set by the sweep, it cannot be an override")
        if k not in _FIELDS:
            if strict:
                Config.from_dict({k: v})  # raises with the closest field name suggested
            out[k] = v
            continue
        try:
            out[k] = cast(_FIELDS[k], v)
        except ValueError:
            if strict:
                raise
            out[k] = v
    return out


def _wants_twin(run: Run, which: Any) -> bool:
    cfg = run.config
    if cfg is None or cfg.selector != "ies" or cfg.threshold == 0:
        return False
    if which is True:
        return True
    if callable(which):
        return bool(which(run))
    wanted = {w if isinstance(w, str) else setting_id(w) for w in which}
    return run.setting in wanted


def _unique_ids(runs: list[Run]) -> None:
    """Runs whose ids collide (different overrides, same readable id) get a hash suffix."""
    counts: dict[str, int] = {}
    for r in runs:
        counts[r.run_id] = counts.get(r.run_id, 0) + 1
    for r in runs:
        if counts[r.run_id] > 1:
            digest = hashlib.sha1(json.dumps(r.overrides, sort_keys=True, default=str).encode()).hexdigest()[:8]
            r.run_id = f"{r.run_id}_{digest}"
            r.setting = f"{r.setting}_{digest}"


def _check_cycles(runs: list[Run]) -> None:
    deps = {r.run_id: r.depends_on for r in runs}
    for r in runs:
        seen, cur = {r.run_id}, r.depends_on
        while cur is not None:
            if cur in seen:
                r.config, r.error, r.depends_on = None, f"random_budget forms a cycle through {cur!r}", None
                break
            seen.add(cur)
            cur = deps.get(cur)


def _topological(runs: list[Run]) -> list[Run]:
    placed: set[str] = set()
    ordered: list[Run] = []
    pending = list(runs)
    while pending:
        rest = []
        for r in pending:
            if r.depends_on is None or r.depends_on in placed:
                ordered.append(r)
                placed.add(r.run_id)
            else:
                rest.append(r)
        if len(rest) == len(pending):  # only cycles left (already marked invalid)
            ordered += rest
            break
        pending = rest
    return ordered


def _as_list(values: Any) -> list[Any]:
    if isinstance(values, (str, bytes)) or not isinstance(values, Iterable):
        return [values]
    return list(values)


# ---------------------------------------------------------------------- running
def run_sweep(
    base: Config | None = None,
    grid: Mapping[str, Iterable[Any]] | None = None,
    points: Iterable[Mapping[str, Any]] | None = None,
    *,
    output: str | os.PathLike = "runs/sweep",
    jobs: int = 1,
    random_control: bool | Iterable[str | Mapping[str, Any]] | Callable[[Run], bool] = False,
    rerun: bool = False,
    threads: int | None = None,
    timeout: float | None = None,
    progress: bool = True,
    python: str = sys.executable,
) -> pd.DataFrame:
    """Run a sweep and return its results table (also written to ``output/results.csv``).

    Args:
        base: the configuration every override starts from (default ``Config()``).
        grid: field -> values; the runs are the product of the axes (``seed`` is an axis like any other).
        points: extra override dicts, each crossed with the grid axes it does not set.
        output: the sweep's folder; run ``r`` writes to ``output/r``.
        jobs: processes at once.
        random_control: add matched-budget random twins (see :func:`plan`).
        rerun: run everything again, finished or not.
        threads: torch threads of each process (``OMP_NUM_THREADS``); default: the CPU cores
            divided by ``jobs``, unless ``OMP_NUM_THREADS`` is already set.
        timeout: seconds after which a run is killed and counted as failed (``None``: no limit).
        progress: a progress bar over the runs, and a line per failed run.
        python: the interpreter that runs ``-m ies train``.

    Returns:
        One row per run: ``run_id``, ``setting``, ``status`` (``done``: ran now; ``cached``: finished
        before; ``failed``; ``invalid``: bad overrides, not started; ``blocked``: its reference
        failed), the override columns, :data:`METRIC_COLUMNS`, ``depends_on`` and ``error``.
    """
    if jobs < 1:
        raise ValueError(f"jobs must be >= 1, got {jobs}")
    out = Path(output).expanduser().resolve()
    out.mkdir(parents=True, exist_ok=True)
    runs = plan(base, grid, points, output=out, random_control=random_control)
    status: dict[str, str] = {}
    errors: dict[str, str] = {}
    seconds: dict[str, float] = {}
    todo: list[Run] = []
    fresh: set[str] = set()  # runs that (re)run now: their dependents must run after them again
    for r in runs:
        if r.config is None:
            status[r.run_id], errors[r.run_id] = "invalid", r.error
        elif not rerun and r.depends_on not in fresh and _finished(r.config):
            status[r.run_id] = "cached"
        else:
            todo.append(r)
            fresh.add(r.run_id)

    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(Path(__file__).resolve().parent.parent),
                                                      env.get("PYTHONPATH", "")]))
    if threads is not None:
        env["OMP_NUM_THREADS"] = str(threads)
    elif "OMP_NUM_THREADS" not in env:
        env["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // jobs))

    from tqdm.auto import tqdm

    bar = tqdm(total=len(runs), desc="sweep", unit="run", disable=not progress)
    bar.update(len(runs) - len(todo))
    running: dict[str, tuple[subprocess.Popen, float, Run]] = {}
    waiting = list(todo)
    try:
        while waiting or running:
            for r in list(waiting):
                if len(running) >= jobs:
                    break
                dep = status.get(r.depends_on) if r.depends_on else "done"
                if dep is None:  # its reference has not finished yet
                    continue
                waiting.remove(r)
                if dep not in OK:
                    status[r.run_id] = "blocked"
                    errors[r.run_id] = f"its reference run {r.depends_on!r} {dep}"
                    bar.update()
                    continue
                running[r.run_id] = (_start(r, python, env), time.perf_counter(), r)
            time.sleep(0.05)
            for rid, (proc, t0, r) in list(running.items()):
                elapsed = time.perf_counter() - t0
                code = proc.poll()
                if code is None and timeout is not None and elapsed > timeout:
                    proc.kill()
                    code = proc.wait()
                    errors[rid] = f"timed out after {timeout:g} s"
                if code is None:
                    continue
                del running[rid]
                seconds[rid] = elapsed
                ok = code == 0 and _finished(r.config)
                status[rid] = "done" if ok else "failed"
                if not ok:
                    tail = _tail(Path(r.config.output) / "stderr.log")
                    errors[rid] = "\n".join(filter(None, [errors.get(rid, f"exit code {code}"), tail]))
                    if progress:
                        tqdm.write(f"[sweep] {rid} failed: {errors[rid]}")
                write_json(Path(r.config.output) / "sweep_run.json", {
                    "run_id": rid, "status": status[rid], "returncode": code, "process_seconds": elapsed,
                    "overrides": r.overrides, "error": errors.get(rid, "")})
                bar.update()
    finally:
        for proc, _, _ in running.values():  # interrupted: leave no orphans
            proc.kill()
            proc.wait()
        bar.close()

    for r in runs:
        if status[r.run_id] == "cached":
            seconds[r.run_id] = _read_json(Path(r.config.output) / "sweep_run.json").get("process_seconds", math.nan)
    table = _table(runs, status, errors, seconds)
    table.to_csv(out / "results.csv", index=False)
    return table


def _start(run: Run, python: str, env: dict[str, str]) -> subprocess.Popen:
    folder = Path(run.config.output)
    folder.mkdir(parents=True, exist_ok=True)
    resume = _resumable(run.config)
    if not resume:
        for name in ("metrics.json", "history.csv", "checkpoint.pt", "sweep_run.json"):
            (folder / name).unlink(missing_ok=True)
    cmd = train_command(run.config, python, resume=resume)
    with open(folder / "stdout.log", "wb") as so, open(folder / "stderr.log", "wb") as se:
        return subprocess.Popen(cmd, stdout=so, stderr=se, env=env, stdin=subprocess.DEVNULL)


def train_command(cfg: Config, python: str = sys.executable, *, resume: bool = False) -> list[str]:
    """``python -m ies train`` with every field of ``cfg`` that differs from the default."""
    cmd = [python, "-m", "ies", "train"]
    default = Config()
    for name in _FIELDS:
        value = getattr(cfg, name)
        if name in ("resume", "progress") or value == getattr(default, name):
            continue
        flag = "--" + name.replace("_", "-")
        if isinstance(value, bool):
            cmd.append(flag if value else "--no-" + flag[2:])
        else:
            cmd.append(f"{flag}={value!r}" if isinstance(value, float) else f"{flag}={value}")
    cmd.append("--no-progress")
    if resume:
        cmd.append("--resume")
    return cmd


def _identity(config: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in config.items() if k not in RUN_CONTROL_FIELDS}


def _same_config(stored: Mapping[str, Any] | None, cfg: Config) -> bool:
    if not isinstance(stored, Mapping):
        return False
    try:
        stored_cfg = Config.from_dict({k: v for k, v in stored.items() if k in _FIELDS})
    except ValueError:
        return False
    return _identity(stored_cfg.to_dict()) == _identity(cfg.to_dict())


def _finished(cfg: Config) -> bool:
    """``metrics.json`` of ``cfg.output`` shows every epoch done, for this configuration."""
    metrics = _read_json(Path(cfg.output) / "metrics.json")
    return metrics.get("epochs_completed") == cfg.epochs and _same_config(metrics.get("config"), cfg)


def _resumable(cfg: Config) -> bool:
    """An interrupted run of the same configuration with a checkpoint to continue from."""
    folder = Path(cfg.output)
    metrics = _read_json(folder / "metrics.json")
    return ((folder / "checkpoint.pt").exists() and cfg.checkpoint_every > 0
            and 0 < (metrics.get("epochs_completed") or 0) < cfg.epochs
            and _same_config(metrics.get("config"), cfg))


def _table(runs: list[Run], status: dict, errors: dict, seconds: dict) -> pd.DataFrame:
    keys: list[str] = []
    for r in runs:
        keys += [k for k in r.overrides if k not in keys]
    keys.sort(key=lambda k: (_ORDER.get(k, len(_ORDER)), k))
    rows = []
    for r in runs:
        metrics = _read_json(Path(r.config.output) / "metrics.json") if r.config is not None else {}
        ok = status[r.run_id] in OK
        row = {"run_id": r.run_id, "setting": r.setting, "status": status[r.run_id]}
        row.update({k: r.overrides.get(k) for k in keys})
        row.update({k: metrics.get(k, math.nan) if ok else math.nan for k in METRIC_COLUMNS})
        row["process_seconds"] = seconds.get(r.run_id, math.nan)
        row["depends_on"] = r.depends_on or ""
        row["error"] = errors.get(r.run_id, "")
        rows.append(row)
    columns = ["run_id", "setting", "status", *keys, *METRIC_COLUMNS, "depends_on", "error"]
    return pd.DataFrame(rows, columns=columns)


def _read_json(path: Path) -> dict:
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return {}


def _tail(path: Path, lines: int = 15) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.strip().splitlines()[-lines:])


# ---------------------------------------------------------------------- reading results
def load_histories(results: pd.DataFrame, output: str | os.PathLike) -> pd.DataFrame:
    """Every finished run's ``history.csv`` in one long table, with ``run_id``, ``setting``,
    ``excluded_fraction`` (samples left out of backprop in the epoch / training samples: those the
    rule mastered at the end of the epoch before, none in an anneal epoch) and ``mastered_fraction``
    (samples mastered at the end of the epoch / training samples)."""
    frames = []
    for row in results[results["status"].isin(OK)].itertuples():
        history = pd.read_csv(Path(output).expanduser() / row.run_id / "history.csv")
        metrics = _read_json(Path(output).expanduser() / row.run_id / "metrics.json")
        history.insert(0, "setting", row.setting)
        history.insert(0, "run_id", row.run_id)
        num_train = metrics.get("num_train", math.nan)
        history["excluded_fraction"] = history["forward_only_samples"] / num_train
        history["mastered_fraction"] = history["n_mastered"] / num_train
        frames.append(history)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def paired_difference(results: pd.DataFrame, a: str, b: str, metric: str = "test_accuracy") -> dict[str, float]:
    """``metric`` of setting ``a`` minus that of setting ``b``, paired by seed (runs of the same seed
    start from the same weights): ``mean``, ``std`` (over seeds) and ``n`` (seeds present in both)."""
    ok = results[results["status"].isin(OK)]
    seed = ok["seed"] if "seed" in ok else pd.Series(0, index=ok.index)
    table = ok.assign(_seed=seed).pivot_table(index="_seed", columns="setting", values=metric, aggfunc="mean")
    if a not in table or b not in table:
        return {"mean": math.nan, "std": math.nan, "n": 0}
    diff = (table[a] - table[b]).dropna()
    return {"mean": float(diff.mean()) if len(diff) else math.nan,
            "std": float(diff.std()) if len(diff) > 1 else math.nan, "n": int(len(diff))}


def aggregate(results: pd.DataFrame, baseline: str | None = None) -> pd.DataFrame:
    """Mean and spread over seeds per setting (index): ``runs``, ``acc_mean``, ``acc_std``,
    ``best_acc_mean``, ``saved_mean``, ``saved_std``, ``wall_mean``; with ``baseline`` (a setting)
    also ``acc_diff`` / ``acc_diff_std`` (paired by seed, see :func:`paired_difference`) and
    ``wall_ratio`` (mean wall time / the baseline's)."""
    ok = results[results["status"].isin(OK)]
    table = ok.groupby("setting", sort=False).agg(
        runs=("run_id", "size"),
        acc_mean=("test_accuracy", "mean"), acc_std=("test_accuracy", "std"),
        best_acc_mean=("best_test_accuracy", "mean"),
        saved_mean=("backprop_saving", "mean"), saved_std=("backprop_saving", "std"),
        wall_mean=("wall_time_s", "mean"),
    )
    if baseline is not None and baseline in table.index:
        diffs = [paired_difference(results, s, baseline) for s in table.index]
        table["acc_diff"] = [d["mean"] for d in diffs]
        table["acc_diff_std"] = [d["std"] for d in diffs]
        table["wall_ratio"] = table["wall_mean"] / table.loc[baseline, "wall_mean"]
    return table


# ---------------------------------------------------------------------- the paper's claims
def _verdict(margin: float, d: dict[str, float], strict: bool = False) -> str:
    """``margin >= 0`` (``> 0`` if ``strict``) supports a claim; ``d`` is the paired difference it
    comes from (:func:`paired_difference`): one seed, or a margin below its standard error over
    seeds, is inconclusive."""
    if not d["n"] or not math.isfinite(margin):
        return "not run"
    if d["n"] < 2:
        return "inconclusive (one seed)"
    if abs(margin) < d["std"] / math.sqrt(d["n"]):
        return "inconclusive (within seed noise)"
    return "supported" if (margin > 0 if strict else margin >= 0) else "not supported"


def _pm(d: dict[str, float], scale: float = 100.0) -> str:
    """``+0.12 ± 0.30 pt (2 seeds)`` from a paired difference (no spread for one seed)."""
    spread = f" ± {d['std'] * scale:.2f}" if math.isfinite(d["std"]) else ""
    return f"{d['mean'] * scale:+.2f}{spread} pt ({d['n']} seed{'s' if d['n'] != 1 else ''})"


def paper_claims(
    results: pd.DataFrame,
    *,
    baseline: str,
    default: str,
    orders: Mapping[int, str],
    thresholds: Mapping[float, str],
    random_pairs: Mapping[str, str],
    tolerance: float = 0.002,
    saving_range: tuple[float, float] = (0.40, 0.55),
    names: Mapping[str, str] | None = None,
) -> pd.DataFrame:
    """Check the paper's claims against a sweep; one row per claim: ``claim``, ``verdict``
    (``supported``, ``not supported``, ``inconclusive (...)``: one seed, a margin below its standard
    error over seeds, or a random control of a run that excluded nothing; ``not run``), ``evidence``.

    Args:
        results: the table of :func:`run_sweep`.
        baseline, default: settings of the baseline and of IES with the paper's settings.
        orders: order N -> setting (same threshold). *N = 2 is best* when, among the orders whose
            accuracy is within ``tolerance`` of the baseline, N = 2 saves the most backprop.
        thresholds: threshold -> setting. *Robust* when every one is within ``tolerance`` of the baseline.
        random_pairs: IES setting -> its matched random setting. *IES is better* when its accuracy
            is higher (paired by seed).
        tolerance: accepted accuracy loss (fraction: 0.002 = 0.2 points).
        saving_range: the paper's saving; *supported* when ``default`` saves at least the lower end
            with accuracy within ``tolerance``.
        names: setting -> the name to print in the claims (default: the setting id).
    """
    pt = 100.0

    def diff(s: str) -> dict[str, float]:
        return paired_difference(results, s, baseline)

    saved = aggregate(results)["saved_mean"] if len(results) else pd.Series(dtype=float)
    rows = []
    # 1. order
    seen = {n: (diff(s), saved.get(s, math.nan)) for n, s in orders.items()}
    ran = {n: v for n, v in seen.items() if v[0]["n"]}
    if 2 in ran and len(ran) > 1:
        within = {n: v for n, v in ran.items() if v[0]["mean"] >= -tolerance}
        pool = within or ran
        best = max(pool, key=lambda n: pool[n][1] if within else pool[n][0]["mean"])
        verdict = "supported" if best == 2 else "not supported"
    else:
        best, verdict = None, "not run"
    evidence = "; ".join(f"N={n}: {v[0]['mean'] * pt:+.2f} pt, saved {v[1]:.1%}" for n, v in sorted(ran.items()))
    rows.append({"claim": "order N = 2 is best among 0..3 (most backprop saved at accuracy within "
                          f"{tolerance * pt:.1f} pt)", "verdict": verdict,
                 "evidence": f"{evidence}; best: N={best}" if best is not None else evidence})
    # 2. threshold robustness
    ths = {t: diff(s) for t, s in sorted(thresholds.items())}
    ths = {t: d for t, d in ths.items() if d["n"]}
    if len(ths) >= 2:
        worst_t = min(ths, key=lambda t: ths[t]["mean"])
        worst = ths[worst_t]
        verdict = _verdict(worst["mean"] + tolerance, worst)
    else:
        verdict = "not run"
    evidence = "; ".join(f"{t:g}: {_pm(d)}, saved {saved.get(thresholds[t], math.nan):.1%}" for t, d in ths.items())
    rows.append({"claim": f"accuracy within {tolerance * pt:.1f} pt of the baseline for every threshold "
                          f"{min(thresholds, default=0):g} .. {max(thresholds, default=0):g}",
                 "verdict": verdict, "evidence": evidence})
    # 3. saving at the same accuracy
    d = diff(default)
    s = saved.get(default, math.nan)
    if d["n"]:
        if s < saving_range[0]:
            verdict = "not supported"
        else:
            verdict = _verdict(d["mean"] + tolerance, d)
        evidence = f"saved {s:.1%}, accuracy {_pm(d)}"
    else:
        verdict, evidence = "not run", ""
    rows.append({"claim": f"{saving_range[0]:.0%}-{saving_range[1]:.0%} of backprop saved with accuracy "
                          f"within {tolerance * pt:.1f} pt (paper: CIFAR-10)", "verdict": verdict,
                 "evidence": evidence})
    # 4. IES against random exclusion of the same count
    for ies_setting, random_setting in random_pairs.items():
        d = paired_difference(results, ies_setting, random_setting)
        evidence = f"IES - random: {_pm(d)}, both saving {saved.get(ies_setting, math.nan):.1%}" if d["n"] else ""
        name = (names or {}).get(ies_setting, ies_setting)
        verdict = _verdict(d["mean"], d, strict=True)
        if d["n"] and not saved.get(ies_setting, 0) > 0:
            verdict = "inconclusive (nothing was excluded)"
        rows.append({"claim": f"IES beats random exclusion of the same count ({name})",
                     "verdict": verdict,
                     "evidence": evidence})
    return pd.DataFrame(rows, columns=["claim", "verdict", "evidence"])


# ---------------------------------------------------------------------- command line
def _pairs(text: str, what: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"{what} must look like KEY=VALUE, got {text!r}")
    return key.strip().replace("-", "_"), value.strip()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m ies sweep",
        description="Run a grid of training configurations, one process each, and collect the results "
                    "into OUTPUT/results.csv. Finished runs are not run again; a failed run is reported "
                    "and the others go on.",
        epilog="example: python -m ies sweep --grid threshold=0,1e-3,1e-2 --grid seed=0,1 --set epochs=30 "
               "--random-control --output runs/sweep --jobs 2",
    )
    parser.add_argument("--grid", action="append", default=[], metavar="KEY=V1,V2,...",
                        help="an axis of the grid (a Config field and its values); repeat for more axes")
    parser.add_argument("--point", action="append", default=[], metavar="KEY=V[,KEY=V...]",
                        help="an extra run, crossed with the grid axes it does not set "
                             "(random_budget=@RUN_ID names another run's history.csv)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="a field of the base configuration of every run (e.g. epochs=30)")
    parser.add_argument("--random-control", action="store_true",
                        help="add to each IES run a random run excluding the same number of samples per epoch")
    parser.add_argument("--output", default="runs/sweep", help="folder of the sweep (default: runs/sweep)")
    parser.add_argument("--jobs", type=int, default=1, help="runs at once (default: 1)")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads per run (default: CPU cores / jobs)")
    parser.add_argument("--timeout", type=float, default=None, help="seconds before a run is killed")
    parser.add_argument("--rerun", action="store_true", help="run finished runs again")
    parser.add_argument("--dry-run", action="store_true", help="list the runs and their commands, run nothing")
    parser.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        grid: dict[str, list[str]] = {}
        for text in args.grid:
            key, values = _pairs(text, "--grid")
            if key in grid:
                raise ValueError(f"--grid {key} given twice")
            grid[key] = [v for v in values.split(",") if v != ""]
        points = [dict(_pairs(p, "--point") for p in text.split(",")) for text in args.point]
        base = Config.from_dict(dict(_pairs(s, "--set") for s in args.set))
    except (ValueError, argparse.ArgumentTypeError) as e:
        parser.exit(2, f"error: {e}\n")
    if args.dry_run:
        for r in plan(base, grid, points, output=args.output, random_control=args.random_control):
            after = f"  (after {r.depends_on})" if r.depends_on else ""
            print(f"{r.run_id}{after}\n    " + (" ".join(train_command(r.config)[1:]) if r.config
                                                else f"invalid: {r.error}"))
        return 0
    table = run_sweep(base, grid, points, output=args.output, jobs=args.jobs, random_control=args.random_control,
                      rerun=args.rerun, threads=args.threads, timeout=args.timeout, progress=args.progress)
    show = table[["run_id", "status", "test_accuracy", "best_test_accuracy", "backprop_saving", "wall_time_s"]]
    with pd.option_context("display.max_rows", None, "display.width", 200):
        print(show.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    bad = table[~table["status"].isin(OK)]
    for row in bad.itertuples():
        print(f"\n{row.run_id}: {row.status}\n{row.error}", file=sys.stderr)
    print(f"\n{len(table) - len(bad)} of {len(table)} runs have results: {Path(args.output) / 'results.csv'}")
    return 1 if len(bad) else 0
