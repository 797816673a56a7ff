"""A run's record: the history columns, the summary (``metrics.json``) and the run folder that
writes them as they happen (``history.csv`` appended every epoch, ``metrics.json`` rewritten, checkpoints).

Vocabulary: a sample is *mastered* when the tracker's rule says so; the samples a selector leaves out of
back-propagation in an epoch are *excluded* (for IES, exactly the mastered ones; for the random control,
a random set of the same size). ``forward_only_samples`` counts the excluded samples that are still
forwarded to keep their loss tracked.
"""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from . import checkpoint as ckpt
from . import rundir

HISTORY_COLUMNS = [
    "epoch", "lr", "train_loss", "tracked_loss", "test_loss", "test_accuracy",
    "n_active", "n_mastered", "n_newly_mastered", "n_reentered", "n_nonfinite",
    "backprop_samples", "forward_only_samples", "forward_samples", "grad_norm_mean", "grad_norm_max",
    "epoch_seconds",
]
"""One row per epoch. ``n_active`` = ``backprop_samples``: samples back-propagated; ``n_mastered``: samples
excluded from the next epoch's backprop; ``forward_samples``: sample-forwards of the training and
tracking passes (not the test evaluation)."""


def summarize(config: dict, rows: list[dict], wall_time_s: float, num_train: int, stopped: bool = False,
              world_size: int = 1, num_test: int = 0) -> dict:
    """The summary of a run (``metrics.json``):

    - ``test_accuracy`` (final) and ``best_test_accuracy`` (best over epochs, the paper's metric);
    - ``backprop_saving`` = 1 - backprop sample-passes / (N x epochs);
    - ``compute_saving`` = 1 - (forward + 2 x backward sample-passes) / (3 x N x epochs), a backward
      costing two forwards; ``flop_ideal_speedup`` = 1 / (1 - compute_saving);
    - ``num_test``: the test samples each accuracy is measured on (the binomial floor of
      :func:`ies.experiments.stats.binomial_floor`; 0 when unknown);
    - wall time, counts, ``world_size`` (the processes that ran it, :mod:`ies.training.ddp`) and the configuration.

    ``epochs`` is the number of epochs run, or, for a run its selector ``stopped`` early (conventional
    early stopping, ``stopped_early``), the configured ``config["epochs"]``: the saving is against the
    full-length baseline, so the epochs not run count as saved."""
    epochs = len(rows)
    total = num_train * (int(config["epochs"]) if stopped else epochs)
    backprop = sum(r["backprop_samples"] for r in rows)
    forward = sum(r["forward_samples"] for r in rows)
    compute = 1 - (forward + 2 * backprop) / (3 * total) if total else 0.0
    return {
        "test_accuracy": rows[-1]["test_accuracy"] if rows else float("nan"),
        "best_test_accuracy": max((r["test_accuracy"] for r in rows), default=float("nan")),
        "final_train_loss": rows[-1]["train_loss"] if rows else float("nan"),
        "final_tracked_loss": rows[-1]["tracked_loss"] if rows else float("nan"),
        "backprop_saving": (total - backprop) / total if total else 0.0,
        "compute_saving": compute,
        "flop_ideal_speedup": 1 / (1 - compute) if compute < 1 else float("inf"),
        "backprop_samples": backprop,
        "forward_samples": forward,
        "forward_only_samples": sum(r["forward_only_samples"] for r in rows),
        "wall_time_s": wall_time_s,
        "epoch_seconds_total": sum(r["epoch_seconds"] for r in rows),
        "epochs_completed": epochs,
        "stopped_early": bool(stopped),
        "num_train": num_train,
        "num_test": num_test,
        "world_size": world_size,
        "config": config,
    }


class RunFolder:
    """The output folder of a run: ``history.csv``, ``metrics.json`` and ``checkpoint.pt``, each replaced
    atomically (:mod:`ies.training.rundir`: a kill leaves the previous version or the new one). A new run's first
    epoch removes what an overwritten run left (:func:`ies.training.rundir.remove_run_files`)."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self.rows: list[dict] = []

    @property
    def checkpoint(self) -> Path:
        return self.path / ckpt.CHECKPOINT_NAME

    def start(self, rows: list[dict]) -> None:
        """Remove the temporary files of killed writes and, for a resume, write ``history.csv`` anew with
        the rows kept so far; a new run writes nothing until its first epoch is done."""
        rundir.remove_stale(self.path)
        self.rows = list(rows)
        if rows:
            rundir.atomic_write_text(self.path / "history.csv", pd.DataFrame(rows).to_csv(index=False))

    def append(self, row: dict, first: bool, metrics: dict) -> None:
        """Add one history row (``history.csv`` rewritten atomically) and rewrite ``metrics.json``. The
        first row of a new run first removes an overwritten run's other files."""
        if not self.rows:
            rundir.remove_run_files(self.path, keep=("history.csv", "metrics.json"))
        self.rows.append(row)
        rundir.atomic_write_text(self.path / "history.csv", pd.DataFrame(self.rows).to_csv(index=False))
        ckpt.write_json(self.path / "metrics.json", metrics)

    def write_metrics(self, metrics: dict) -> None:
        ckpt.write_json(self.path / "metrics.json", metrics)
