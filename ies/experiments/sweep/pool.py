"""Running a sweep: every run in its own process, at most ``jobs`` at once, from a standard-library thread
pool that waits on the processes with a per-run timeout.

One process per run keeps a crash or a hang of one run from taking the sweep down; a run's random
controls start once it has finished (and are *blocked* when it failed). Where the platform has it, each run's
process is forked from a ``multiprocessing`` *forkserver* that imported torch and ``ies`` once
(:func:`ies.experiments.sweep.worker.run_forked`), so a run does not pay the ~5 s of imports a fresh interpreter does;
with another ``python`` than this one (or no forkserver) it is ``python -m ies.experiments.sweep.worker CONFIG_JSON``.
"""

from __future__ import annotations

import multiprocessing
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from pathlib import Path
from typing import Any

import pandas as pd
from tqdm.auto import tqdm

from ...training.checkpoint import write_json
from ...training.config import Config
from ...training.loop import RunResult, train
from ..group_report import GroupReport
from . import cache
from .analysis import OK, Outcome, results_table
from .plan import PlannedRun, RandomControl, plan

#: The module a run's process executes, with the run's ``config.json`` as its one argument.
WORKER = "ies.experiments.sweep.worker"
#: Fork each run from a server that has imported ``ies`` (POSIX); else start a fresh interpreter.
FORKSERVER = "forkserver" in multiprocessing.get_all_start_methods()


def forkable() -> bool:
    """Whether runs can be forked from the forkserver: the platform has one, and the main module is not a
    script run by path (``python script.py``), which ``multiprocessing`` would run again in every run's
    process (a notebook kernel, ``python -m ...`` and an interactive session are fine)."""
    main = sys.modules.get("__main__")
    script = getattr(main, "__spec__", None) is None and getattr(main, "__file__", None) is not None
    return FORKSERVER and not script


def worker_command(config_file: str | os.PathLike, python: str = sys.executable) -> list[str]:
    """The command that trains the run whose configuration is in ``config_file``."""
    return [python, "-m", WORKER, str(config_file)]


def run_sweep(
    base: Config | None = None,
    grid: Mapping[str, Iterable[Any]] | None = None,
    points: Iterable[Mapping[str, Any]] | None = None,
    *,
    output: str | os.PathLike = "runs/sweep",
    jobs: int = 1,
    random_control: RandomControl = False,
    rerun: bool = False,
    threads: int | None = None,
    timeout: float | None = None,
    progress: bool = True,
    python: str = sys.executable,
    in_process: bool = False,
) -> pd.DataFrame:
    """Run a sweep and return its results table (also written to ``output/results.csv``).

    Args:
        base: the configuration every override starts from (default ``Config()``).
        grid: field -> values; the runs are the product of the axes (``seed`` is an axis like any other).
        points: extra override dicts, each crossed with the grid axes it does not set.
        output: the sweep's folder; run ``r`` writes to ``output/r``.
        jobs: processes at once.
        random_control: add matched-budget random twins (see :func:`ies.experiments.sweep.plan`).
        rerun: run everything again, finished or not.
        threads: torch threads of each process (``OMP_NUM_THREADS``); default: the CPU cores
            divided by ``jobs``, unless ``OMP_NUM_THREADS`` is already set.
        timeout: seconds after which a run is killed and counted as failed (``None``: no limit).
        progress: a progress bar over the runs, and a line per failed run.
        python: the interpreter that runs the worker.
        in_process: train every run in this process, one after the other (:func:`run_here`; ``jobs`` must be
            1): no process start-up per run (a few seconds each on a laptop, far more on a busy machine),
            which on one or two CPU cores is the faster way for many short runs; a failing run is recorded,
            but a crash takes the sweep down.

    Returns:
        One row per run: ``run_id``, ``setting``, ``status`` (``done``: ran now; ``cached``: finished
        before; ``failed``; ``invalid``: bad overrides, not started; ``blocked``: its reference
        failed), the override columns, :data:`METRIC_COLUMNS`, ``depends_on`` and ``error``.

    Raises:
        ValueError: bad ``jobs`` / ``timeout``, or a grid axis that is not a ``Config`` field,
            before anything runs.
    """
    if jobs < 1:
        raise ValueError(f"jobs must be >= 1, got {jobs}")
    if in_process and jobs != 1:
        raise ValueError(f"in_process runs one run at a time: jobs must be 1, got {jobs}")
    if timeout is not None and not timeout > 0:
        raise ValueError(f"timeout must be > 0 seconds or None, got {timeout}")
    out = Path(output).expanduser().resolve()
    runs = plan(base, grid, points, output=out, random_control=random_control)
    out.mkdir(parents=True, exist_ok=True)
    outcomes, todo = _triage(runs, rerun)
    env = _environment(threads, jobs)
    with tqdm(total=len(runs), desc="sweep", unit="run", disable=not progress) as bar:
        bar.update(len(runs) - len(todo))

        def report(r: PlannedRun) -> None:
            bar.update()
            if progress and outcomes[r.run_id].status not in OK:
                tqdm.write(f"[sweep] {r.run_id} {outcomes[r.run_id].status}: {outcomes[r.run_id].error}")

        if in_process:
            _execute_here(todo, outcomes, report)
        else:
            _execute(todo, outcomes, jobs=jobs, python=python, env=env, timeout=timeout, report=report)
    table = results_table(runs, outcomes)
    table.to_csv(out / "results.csv", index=False)
    return table


def _triage(runs: list[PlannedRun], rerun: bool) -> tuple[dict[str, Outcome], list[PlannedRun]]:
    """Outcomes known without running (invalid, cached) and the runs still to run, in plan order.
    A random control runs again whenever its reference does (its budget may change). A run to do that
    may still be reused (not ``rerun``, its reference not run again) is marked ``reusable``: if another
    process finishes it while this one waits for its folder (:func:`ies.experiments.sweep.cache.claimed`),
    it counts as cached."""
    outcomes: dict[str, Outcome] = {}
    todo: list[PlannedRun] = []
    fresh: set[str] = set()
    for r in runs:
        if r.config is None:
            outcomes[r.run_id] = Outcome("invalid", r.error)
        elif not rerun and r.depends_on not in fresh and cache.finished(r.config):
            outcomes[r.run_id] = Outcome("cached", seconds=cache.process_seconds(r.config))
        else:
            r.reusable = not rerun and r.depends_on not in fresh
            todo.append(r)
            fresh.add(r.run_id)
    return outcomes, todo


def _cached_meanwhile(r: PlannedRun) -> Outcome | None:
    """Inside the run's claim: the outcome ``cached`` when another process finished it meanwhile."""
    if r.reusable and cache.finished(r.config):
        return Outcome("cached", seconds=cache.process_seconds(r.config))
    return None


def _environment(threads: int | None, jobs: int) -> dict[str, str]:
    """The runs' environment: this package importable, ``OMP_NUM_THREADS`` set."""
    env = dict(os.environ)
    root = str(Path(__file__).resolve().parents[3])  # the folder holding ies/
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [root, env.get("PYTHONPATH", "")]))
    if threads is not None:
        env["OMP_NUM_THREADS"] = str(threads)
    elif "OMP_NUM_THREADS" not in env:
        env["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // jobs))
    return env


def run_here(cfg: Config, dataset=None, fresh: bool = False) -> RunResult:
    """Train ``cfg`` in this process into its folder ``cfg.output`` with the sweep's cache rules
    (:func:`ies.experiments.sweep.cache.prepare`: an interrupted run of the same configuration resumes,
    unless ``fresh``) and the per-group report; ``dataset``: in-memory data instead of ``cfg.dataset``.
    The one way the experiments train a run in process (the sweep's worker does the same in its own)."""
    return train(cache.prepare(cfg, fresh=fresh), dataset=dataset, observers=[GroupReport()])


def _execute_here(todo: list[PlannedRun], outcomes: dict[str, Outcome], report: Callable[[PlannedRun], None]) -> None:
    """Run ``todo`` in plan order in this process (a reference before its controls); fills ``outcomes``."""
    for r in todo:
        ref = outcomes.get(r.depends_on) if r.depends_on else None
        if r.depends_on and (ref is None or ref.status not in OK):
            status = ref.status if ref is not None else "has no outcome"
            outcomes[r.run_id] = Outcome("blocked", f"its reference run {r.depends_on!r} {status}")
        else:
            t0 = time.perf_counter()
            with cache.claimed(r.config.output):
                outcomes[r.run_id] = _cached_meanwhile(r) or _train_here(r, t0)
        report(r)


def _train_here(r: PlannedRun, t0: float) -> Outcome:
    try:
        run_here(r.config)
        return Outcome("done", seconds=time.perf_counter() - t0)
    except (ValueError, RuntimeError, FloatingPointError, OSError) as e:
        return Outcome("failed", f"{type(e).__name__}: {e}", time.perf_counter() - t0)


def _execute(todo: list[PlannedRun], outcomes: dict[str, Outcome], *, jobs: int, python: str, env: dict[str, str],
             timeout: float | None, report: Callable[[PlannedRun], None]) -> None:
    """Run ``todo`` in a pool of ``jobs`` threads, each waiting on one process; a random control
    starts when its reference has an outcome. Fills ``outcomes``; ``report(run)`` after each."""
    processes = _Processes()
    pool = ThreadPoolExecutor(max_workers=jobs, thread_name_prefix="sweep")
    futures: dict[Future, PlannedRun] = {}
    controls: dict[str, list[PlannedRun]] = {}  # reference id -> its controls, waiting for it

    def start(r: PlannedRun) -> None:
        ref = outcomes.get(r.depends_on) if r.depends_on else None
        if ref is not None and ref.status not in OK:
            outcomes[r.run_id] = Outcome("blocked", f"its reference run {r.depends_on!r} {ref.status}")
            report(r)
        else:
            futures[pool.submit(_run_one, r, python, env, timeout, processes)] = r

    try:
        for r in todo:
            if r.depends_on is not None and r.depends_on not in outcomes:
                controls.setdefault(r.depends_on, []).append(r)
            else:
                start(r)
        while futures:
            done, _ = wait(futures, return_when=FIRST_COMPLETED)
            for future in done:
                r = futures.pop(future)
                try:
                    outcomes[r.run_id] = future.result()
                except Exception as e:  # the sweep's own side failed (e.g. the folder is not writable)
                    outcomes[r.run_id] = Outcome("failed", f"{type(e).__name__}: {e}")
                report(r)
                for control in controls.pop(r.run_id, []):
                    start(control)
    finally:  # normally nothing is left; interrupted: no run started later, none left orphaned
        pool.shutdown(wait=False, cancel_futures=True)
        processes.kill_all()
        pool.shutdown(wait=True)


def _run_one(run: PlannedRun, python: str, env: dict[str, str], timeout: float | None,
             processes: _Processes) -> Outcome:
    """Train one run in its own process: its configuration written to ``config.json`` in its folder
    (atomically), its output to ``stdout.log`` / ``stderr.log``, its outcome to ``sweep_run.json``; all of it
    inside the folder's claim (:func:`ies.experiments.sweep.cache.claimed`)."""
    with cache.claimed(run.config.output):
        return _cached_meanwhile(run) or _run_claimed(run, python, env, timeout, processes)


def _run_claimed(run: PlannedRun, python: str, env: dict[str, str], timeout: float | None,
                 processes: _Processes) -> Outcome:
    cfg = cache.prepare(run.config)
    folder = Path(cfg.output)
    write_json(folder / "config.json", cfg.to_dict())
    note = ""
    t0 = time.perf_counter()
    with open(folder / "stdout.log", "wb") as so, open(folder / "stderr.log", "wb") as se:
        if python == sys.executable and forkable():
            proc = processes.start(lambda: _Forked(folder, env))
        else:
            proc = processes.start(lambda: subprocess.Popen(worker_command(folder / "config.json", python),
                                                            stdin=subprocess.DEVNULL, stdout=so, stderr=se, env=env))
        try:
            code = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            code = proc.wait()
            note = f"timed out after {timeout:g} s"
        finally:
            processes.forget(proc)
    seconds = time.perf_counter() - t0
    ok = code == 0 and not note and cache.finished(run.config)
    error = "" if ok else "\n".join(filter(None, [note or f"exit code {code}", cache.tail(folder / "stderr.log")]))
    outcome = Outcome("done" if ok else "failed", error, seconds, code)
    write_json(folder / "sweep_run.json", {"run_id": run.run_id, "status": outcome.status, "returncode": code,
                                           "process_seconds": seconds, "overrides": run.overrides, "error": error})
    return outcome


class _Processes:
    """The live run processes, so that an interrupted sweep can kill them all (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._live: set[subprocess.Popen] = set()
        self._closed = False

    def start(self, launch: Callable[[], subprocess.Popen | _Forked]) -> subprocess.Popen | _Forked:
        with self._lock:
            if self._closed:
                raise RuntimeError("the sweep was stopped")
            proc = launch()
            self._live.add(proc)
            return proc

    def forget(self, proc: subprocess.Popen) -> None:
        with self._lock:
            self._live.discard(proc)

    def kill_all(self) -> None:
        with self._lock:
            self._closed = True
            live, self._live = list(self._live), set()
        for proc in live:
            proc.kill()
            proc.wait()


class _Forked:
    """A run's process forked from the forkserver, with the three methods of ``subprocess.Popen`` the pool uses."""

    def __init__(self, folder: Path, env: dict[str, str]) -> None:
        from . import worker

        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload([WORKER])  # imported once, by the server (takes effect when it starts)
        self.process = context.Process(target=worker.run_forked, daemon=True, args=(
            str(folder / "config.json"), str(folder / "stdout.log"), str(folder / "stderr.log"), env))
        self.process.start()
        self._reading = threading.Lock()

    def wait(self, timeout: float | None = None) -> int:
        with self._reading:  # one reader of the exit status at a time: a second one would read EOF (code 255)
            self.process.join(timeout)
        if self.process.exitcode is None:
            raise subprocess.TimeoutExpired(WORKER, timeout)
        return self.process.exitcode

    def kill(self) -> None:
        self.process.kill()
