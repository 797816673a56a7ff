"""What a run's folder already holds: a finished run (not run again), an interrupted one (resumed).

A run's folder holds the files :func:`ies.train` writes (``metrics.json``, ``history.csv``,
``checkpoint.pt``) and those of the sweep: ``config.json`` (the configuration the worker trains),
``sweep_run.json`` (status, exit code, process seconds), ``stdout.log`` and ``stderr.log``, and ``.lock``,
held while a run trains there (:func:`claimed`), so that two processes sharing one cache (two notebooks of
a run folder, started at once) never train into the same folder: the second waits and finds it finished.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

try:
    import fcntl
except ImportError:  # Windows: no advisory locks; runs of one folder are not guarded against each other
    fcntl = None

from ...training.config import RUN_CONTROL_FIELDS, Config

#: Files of an earlier attempt, removed before a run starts over.
STALE_FILES = ("metrics.json", "history.csv", "checkpoint.pt", "groups.csv", "groups_summary.csv", "sweep_run.json",
               "config.json")


def read_json(path: Path) -> dict:
    """The JSON object in ``path``, or ``{}`` when it is missing or unreadable."""
    try:
        value = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def tail(path: Path, lines: int = 15) -> str:
    """The last ``lines`` lines of a text file ('' when it is missing)."""
    try:
        text = Path(path).read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.strip().splitlines()[-lines:])


def identity(config: Mapping[str, Any]) -> dict[str, Any]:
    """The fields that decide what a run computes (all but :data:`RUN_CONTROL_FIELDS`)."""
    return {k: v for k, v in config.items() if k not in RUN_CONTROL_FIELDS}


def same_config(stored: Mapping[str, Any] | None, cfg: Config) -> bool:
    """Whether a configuration stored as a dict computes the same run as ``cfg`` (fields that this
    version of ``Config`` does not know are ignored; a stored dict that no longer validates is not)."""
    if not isinstance(stored, Mapping):
        return False
    names = {f.name for f in dataclasses.fields(Config)}
    try:
        stored_cfg = Config.from_dict({k: v for k, v in stored.items() if k in names})
    except ValueError:
        return False
    return identity(stored_cfg.to_dict()) == identity(cfg.to_dict())


def finished(cfg: Config) -> bool:
    """``metrics.json`` of ``cfg.output`` shows every epoch done (or the run stopped early by its selector),
    for this configuration."""
    metrics = read_json(Path(cfg.output) / "metrics.json")
    done = metrics.get("epochs_completed") == cfg.epochs or metrics.get("stopped_early") is True
    return done and same_config(metrics.get("config"), cfg)


def resumable(cfg: Config) -> bool:
    """An interrupted run of the same configuration with a checkpoint to continue from."""
    folder = Path(cfg.output)
    metrics = read_json(folder / "metrics.json")
    return ((folder / "checkpoint.pt").exists() and cfg.checkpoint_every > 0
            and 0 < (metrics.get("epochs_completed") or 0) < cfg.epochs and not metrics.get("stopped_early")
            and same_config(metrics.get("config"), cfg))


def prepare(cfg: Config, fresh: bool = False) -> Config:
    """Make ``cfg.output`` ready for a run: resume an interrupted run of the same configuration (unless
    ``fresh``), otherwise remove what an earlier attempt left. Returns the configuration to train."""
    folder = Path(cfg.output)
    folder.mkdir(parents=True, exist_ok=True)
    if not fresh and resumable(cfg):
        return cfg.replace(resume=True, progress=False)
    for name in STALE_FILES:
        (folder / name).unlink(missing_ok=True)
    return cfg.replace(resume=False, progress=False)


def process_seconds(cfg: Config) -> float | None:
    """Seconds the run's process took when it last ran (from ``sweep_run.json``), if recorded."""
    return read_json(Path(cfg.output) / "sweep_run.json").get("process_seconds")


@contextlib.contextmanager
def claimed(folder: str | Path) -> Iterator[None]:
    """Hold ``folder/.lock`` (an exclusive ``fcntl.flock``) for the block: another process that claims the same
    run folder waits until this one is done. Nothing is locked where ``fcntl`` is missing (Windows)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / ".lock", "a") as handle:
        if fcntl is not None:
            fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            if fcntl is not None:
                fcntl.flock(handle, fcntl.LOCK_UN)
