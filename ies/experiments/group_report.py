"""The per-group companion files of a run: ``groups.csv`` (per epoch) and ``groups_summary.csv`` (per group),
and the headline figures that go into ``metrics.json`` under ``groups``.

Written by the :class:`GroupReport` observer (``ies.train(cfg, observers=[GroupReport()])``; the command
line, the sweeps and the open questions attach it) at the end of a run with an ``output`` folder whose
selector keeps an ``excluded`` mask. The partitions (:func:`ies.experiments.groups.partitions`): ``class``
(by the clean label),
``subgroup`` and ``class/subgroup`` with a minority subgroup, ``noise`` (clean/noisy) with label noise.
Test accuracies are those of the final model (the history has the accuracy of every epoch).
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import torch

from ..data.transforms import Truth
from ..method.sharded import ShardedTracker
from ..models.modes import evaluating
from ..training.observers import EpochObserver
from ..training.setup import Run
from .groups import demographic_parity_difference, group_tables, partitions

FITTED_LOSS = math.log(2)
"""A sample counts as *fitted* in ``groups.csv`` when its tracked loss is below ln 2: the model then gives
its (given, possibly noisy) label more than half its probability, so it predicts that label."""


class GroupReport(EpochObserver):
    """Keeps each epoch's ``(N,)`` exclusion mask and fitted mask, then writes :func:`write_group_report`
    into the run folder and its :func:`headline` into ``metrics["groups"]``. Inactive (keeps nothing)
    without an output folder or for a selector without a tracker and an ``excluded`` mask."""

    key = "group_report"

    def __init__(self) -> None:
        self.excluded: list[torch.Tensor] = []
        self.fitted: list[torch.Tensor] = []

    @staticmethod
    def active(run: Run) -> bool:
        return bool(run.cfg.output) and getattr(run.selector, "tracker", None) is not None \
            and hasattr(run.selector, "excluded")

    def epoch_end(self, run: Run, epoch: int, writes: bool) -> None:
        if not self.active(run):
            return
        tracker = run.selector.tracker
        if isinstance(tracker, ShardedTracker):  # a collective: every rank takes part
            fitted = tracker.gather_mask(tracker.local.last_losses < FITTED_LOSS)
        elif writes:
            fitted = tracker.last_losses < FITTED_LOSS
        if writes:
            self.excluded.append(run.selector.excluded.cpu())
            self.fitted.append(fitted.cpu())

    def finish(self, run: Run, folder: Path | None, metrics: dict) -> None:
        if folder is not None and self.excluded and self.active(run):
            metrics["groups"] = write_group_report(folder, run, torch.stack(self.excluded, dim=1),
                                                   torch.stack(self.fitted, dim=1))

    def state_dict(self) -> dict:
        return {"excluded": self.excluded, "fitted": self.fitted}

    def load_state_dict(self, state: dict) -> None:
        self.excluded, self.fitted = list(state["excluded"]), list(state["fitted"])


@torch.no_grad()
def test_predictions(run: Run) -> torch.Tensor:
    """``(M,)`` int64 on the CPU: the predicted class of every test sample (eval mode, restored)."""
    with evaluating(run.step_model):
        preds = []
        for x, _, _ in run.test_data.batches(None, run.eval_batch_size):
            with run.amp:
                preds.append(run.step_model(x).float().argmax(1))
    return torch.cat(preds).cpu() if preds else torch.zeros(0, dtype=torch.int64)


def run_partitions(run: Run) -> dict:
    """The partitions of ``run``'s training and test samples (:func:`ies.experiments.groups.partitions`)."""
    truth = run.truth if run.truth is not None else Truth.identity(run.data)
    return partitions(truth.clean_y_train, truth.group_train, truth.noisy, run.data.num_classes,
                      run.data.y_test, truth.group_test)


def headline(summary: pd.DataFrame, pred: torch.Tensor, run: Run) -> dict:
    """A few numbers of ``summary`` for ``metrics.json``: the worst class's test recall; with a subgroup
    the minority's and majority's test accuracy and share ever excluded and the demographic-parity
    difference of the test predictions; with label noise the clean and noisy samples' share ever excluded."""
    def rows(partition: str) -> pd.DataFrame:
        return summary[summary["partition"] == partition].set_index("group")

    out = {"worst_class_test_accuracy": float(rows("class")["test_accuracy"].min())}
    if (summary["partition"] == "subgroup").any():
        sub = rows("subgroup")
        out.update({f"{g}_test_accuracy": float(sub.loc[g, "test_accuracy"]) for g in sub.index})
        out.update({f"{g}_share_ever_mastered": float(sub.loc[g, "share_ever_mastered"]) for g in sub.index})
        out["demographic_parity_difference"] = demographic_parity_difference(pred, run.truth.group_test,
                                                                             run.data.num_classes)
    if (summary["partition"] == "noise").any():
        noise = rows("noise")
        out.update({f"{g}_share_ever_mastered": float(noise.loc[g, "share_ever_mastered"]) for g in noise.index})
    return out


def write_group_report(folder: str | Path, run: Run, mastered: torch.Tensor,
                       fitted: torch.Tensor | None = None) -> dict:
    """Write ``groups.csv`` and ``groups_summary.csv`` into ``folder`` for ``run`` whose ``(N, T)``
    exclusion decisions are ``mastered`` (and ``fitted``, see :func:`ies.experiments.groups.group_tables`); returns
    :func:`headline`."""
    pred = test_predictions(run)
    per_epoch, summary = group_tables(mastered, run_partitions(run), pred, run.data.y_test.cpu(),
                                      run.data.num_classes, fitted=fitted)
    folder = Path(folder)
    per_epoch.to_csv(folder / "groups.csv", index=False)
    summary.to_csv(folder / "groups_summary.csv", index=False)
    return headline(summary, pred, run)


def load_group_tables(results: pd.DataFrame, output: str | Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Every finished run's ``groups.csv`` and ``groups_summary.csv`` of a sweep (``results`` as
    :func:`ies.experiments.sweep.run_sweep` returns it), each with ``run_id``, ``setting`` and ``seed`` columns in front
    (``group`` read as text: a class is ``"3"``)."""
    per_epoch, summary = [], []
    for row in results[results["status"].isin(("done", "cached"))].itertuples():
        folder = Path(output).expanduser() / row.run_id
        if not (folder / "groups.csv").exists():
            continue
        seed = getattr(row, "seed", 0)
        for frame, name in ((per_epoch, "groups.csv"), (summary, "groups_summary.csv")):
            table = pd.read_csv(folder / name, dtype={"group": str})  # class "3" and "minority" alike
            table.insert(0, "seed", seed)
            table.insert(0, "setting", row.setting)
            table.insert(0, "run_id", row.run_id)
            frame.append(table)
    return (pd.concat(per_epoch, ignore_index=True) if per_epoch else pd.DataFrame(),
            pd.concat(summary, ignore_index=True) if summary else pd.DataFrame())
