"""``python -m ies.experiments.sweep.worker CONFIG_JSON``: train one run of a sweep, in its own process.

The sweep writes the run's whole configuration (``Config.to_dict()``) to ``CONFIG_JSON`` in the run's
folder; this reads it back with ``Config.from_dict`` and trains. An error ends the process with a
traceback on stderr (the sweep keeps its last lines) and exit code 1. :func:`run_forked` is the same run
in a process the sweep forks from its forkserver (:mod:`ies.experiments.sweep.pool`).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import torch

from ...training.config import Config
from ...training.loop import train
from ..group_report import GroupReport


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: python -m ies.experiments.sweep.worker CONFIG_JSON", file=sys.stderr)
        return 2
    path = Path(argv[0])
    cfg = Config.from_dict(json.loads(path.read_text()))
    train(cfg, observers=[GroupReport()])
    return 0


def run_forked(config_file: str, stdout: str, stderr: str, env: dict[str, str]) -> None:
    """:func:`main` in a process forked from the sweep's forkserver: its output appended to the run's log
    files, the sweep's environment and torch thread count (``OMP_NUM_THREADS``), the exit code of ``main``.
    An exception leaves a traceback in ``stderr`` and exit code 1 (``multiprocessing`` does that)."""
    for fd, path in ((1, stdout), (2, stderr)):
        with open(path, "ab") as f:
            os.dup2(f.fileno(), fd)
    sys.stdout = open(1, "w", buffering=1, closefd=False)  # noqa: SIM115 - the process's own streams
    sys.stderr = open(2, "w", buffering=1, closefd=False)  # noqa: SIM115
    os.environ.clear()
    os.environ.update(env)
    torch.set_num_threads(max(1, int(env.get("OMP_NUM_THREADS") or 1)))
    code = main([config_file])
    sys.stdout.flush()
    if code:
        sys.exit(code)


if __name__ == "__main__":
    sys.exit(main())
