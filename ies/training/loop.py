"""One training loop for the baseline and for every selector (the baseline is IES with ``threshold=0``).

Each epoch (the steps live in :mod:`ies.training.epoch`):

1. the selector plans who trains: for IES, the samples it did *not* find mastered at the end of the last
   epoch (all of them in epoch 1, in the anneal phase, and for the baseline);
2. train on them in shuffled mini-batches, recording each sample's loss from its training pass;
3. a no-grad eval-mode forward over the excluded samples, so their loss keeps being tracked
   (``loss_source="training"``), or one clean pass over every sample (``loss_source="clean"``; in an epoch
   without a re-check, :mod:`ies.method.recheck`, over the trained samples only);
4. the selector re-decides mastery for every sample;
5. evaluate on the test split; one host sync gathers the epoch's statistics into a history row, which is
   written at once (``history.csv``, ``metrics.json``, a checkpoint).

Features that need per-epoch data (the loss matrices, the per-group report, a sharpness probe) attach as
epoch observers (:mod:`ies.training.observers`) instead of living in this loop.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd
import torch
from torch import nn
from tqdm.auto import tqdm

from ..data.datasets import ArrayDataset
from ..data.streaming import StreamingData
from ..data.transforms import Truth
from ..method.sharded import ShardedTracker
from ..method.tracker import MasteryTracker
from . import checkpoint as ckpt
from . import ddp as ddp_
from . import rundir
from .config import RUN_CONTROL_FIELDS, Config
from .ddp import Distributed
from .epoch import epoch_row, evaluate, track_pass, train_pass
from .history import HISTORY_COLUMNS, RunFolder, summarize
from .observers import Callback, EpochHook, EpochObserver, LossMatrices
from .setup import Run, build_run


@dataclass
class RunResult:
    """What :func:`train` returns.

    Attributes:
        config: the configuration that ran.
        history: one row per epoch, columns :data:`ies.training.history.HISTORY_COLUMNS`.
        metrics: the summary written to ``metrics.json`` (see :func:`ies.training.history.summarize`).
        model: the trained model (on its device).
        tracker: the selector's tracker in its final state (``None`` for a selector without one; with
            ``shard_tracker`` on several processes, this rank's :class:`~ies.method.sharded.ShardedTracker`).
        loss_matrix: ``(N, epochs)`` float32 CPU tensor of every sample's tracked loss per epoch
            (``keep_loss_matrix=True`` only, else ``None``).
        mastered_matrix: ``(N, epochs)`` bool, the exclusion decision at the end of each epoch
            (``keep_loss_matrix=True`` only).
        truth: what the config's data transforms introduced (:class:`ies.data.transforms.Truth`: clean
            labels, flipped samples, subgroup labels), aligned with the training set the run used.
    """

    config: Config
    history: pd.DataFrame
    metrics: dict
    model: nn.Module
    tracker: MasteryTracker | ShardedTracker | None
    loss_matrix: torch.Tensor | None = None
    mastered_matrix: torch.Tensor | None = None
    truth: Truth | None = None


class PhaseClock:
    """Adds the seconds of each phase of an epoch to ``seconds[name]`` (the device synchronised first, so
    that queued GPU work is counted where it was issued); ``None`` = no timing, no synchronisation."""

    def __init__(self, seconds: dict[str, float] | None, device: torch.device) -> None:
        self.seconds, self.device = seconds, device
        self.last = time.perf_counter()

    def __call__(self, phase: str) -> None:
        if self.seconds is None:
            return
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        now = time.perf_counter()
        self.seconds[phase] = self.seconds.get(phase, 0.0) + now - self.last
        self.last = now


def run_epoch(run: Run, epoch: int, phases: dict[str, float] | None = None, ddp: Distributed | None = None) -> dict:
    """Epoch ``epoch`` (0-based) of ``run``: plan, train, track, decide, evaluate; its history row.
    ``phases``: add each phase's seconds to it (keys ``plan``, ``train``, ``track``, ``decide``, ``evaluate``).
    ``ddp``: this rank of a run on several processes (:mod:`ies.training.ddp`), attached to ``run``."""
    cfg, selector = run.cfg, run.selector
    t0 = time.perf_counter()
    clock = PhaseClock(phases, run.device)
    lr = run.opt.param_groups[0]["lr"]
    plan = selector.plan(epoch, lr)
    clock("plan")
    from_training = cfg.loss_source == "training"
    stats = train_pass(run.step_model, run.opt, run.train_data, plan, cfg.batch_size, run.amp,
                       selector.observe if from_training else None, run.grad_params, keep=selector.keep,
                       min_last=cfg.min_last_batch)
    if ddp is not None:
        ddp.after_train(run)
    clock("train")
    if from_training:  # as the authors: eval mode, no grad, the training augmentation
        tracked = track_pass(run.step_model, run.train_data, plan.track, run.eval_batch_size, selector.observe,
                             run.amp, augment=True) if plan.track.numel() else 0
    else:  # clean: no augmentation, every sample, but in an epoch without a re-check not the held excluded ones
        held = not getattr(selector, "rechecking", True)
        tracked = track_pass(run.step_model, run.train_data, plan.train if held else None, run.eval_batch_size,
                             selector.observe, run.amp, augment=False)
    clock("track")
    run.sched.step()
    if ddp is not None:
        ddp.combine(selector)  # every rank's losses, then the same decision on every rank
    selector.end_epoch(epoch)
    clock("decide")
    test = evaluate(run.step_model, run.test_data, run.eval_batch_size, run.amp)
    val = selector.validation  # early stopping's split of the training set: eval mode, no augmentation
    val_result = None if val is None else evaluate(run.step_model, run.train_data, run.eval_batch_size, run.amp, val)
    if ddp is not None:
        test = ddp.reduce(stats, test)  # the global counts and sums
    row = epoch_row(epoch, lr, plan, stats, tracked, selector.stats(), test, len(run.test_data),
                    cfg.track_grad_norm, val_result, 0 if val is None else int(val.numel()))
    clock("evaluate")
    row["epoch_seconds"] = time.perf_counter() - t0
    return row


def train(cfg: Config, dataset: ArrayDataset | None = None, model: nn.Module | None = None,
          on_epoch_end: EpochHook | None = None, observers: Sequence[EpochObserver] = ()) -> RunResult:
    """Run one training run of ``cfg`` and return its :class:`RunResult`.

    Args:
        cfg: the configuration (``threshold=0`` for the baseline).
        dataset: use this data instead of loading ``cfg.dataset`` (tests, notebooks).
        model: use this (freshly initialised) model instead of building ``cfg.model``.
        on_epoch_end: called after each epoch's evaluation as ``on_epoch_end(epoch, model, tracker)``
            (``epoch`` 1-based); a returned dict of numbers becomes extra history columns (the same
            keys every epoch). It must leave the model's weights and buffers as it found them.
        observers: :class:`~ies.training.observers.EpochObserver` s called after every epoch, in order
            (after the loss matrices of ``keep_loss_matrix``, before ``on_epoch_end``).

    Launched by ``torchrun`` (or in a process group already initialised), every rank runs its share of the
    run and rank 0 writes it (:mod:`ies.training.ddp`).
    """
    _check_arguments(cfg, dataset, model, on_epoch_end, observers)
    with ddp_.session(cfg) as ddp:
        matrices = LossMatrices() if cfg.keep_loss_matrix else None
        attached = [*([matrices] if matrices else []), *observers, *([Callback(on_epoch_end)] if on_epoch_end else [])]
        result = _train(cfg if ddp is None else cfg.replace(device=ddp.device), dataset, model, attached, ddp)
    if matrices is not None:
        result.loss_matrix, result.mastered_matrix = matrices.matrices()
    return result


def _check_arguments(cfg, dataset, model, on_epoch_end, observers) -> None:
    """``ValueError`` naming the argument of :func:`train` that is not what it takes."""
    wrong = [(name, value, what) for name, value, ok, what in (
        ("cfg", cfg, isinstance(cfg, Config), "an ies.Config (Config(...) or Config.from_dict(...))"),
        ("dataset", dataset, dataset is None or isinstance(dataset, (ArrayDataset, StreamingData)),
         "None, an ies.data.datasets.ArrayDataset or an ies.data.streaming.StreamingData"),
        ("model", model, model is None or isinstance(model, nn.Module), "None or a torch.nn.Module"),
        ("on_epoch_end", on_epoch_end, on_epoch_end is None or callable(on_epoch_end), "None or a callable"),
        ("observers", observers, all(isinstance(o, EpochObserver) for o in observers),
         "a sequence of ies.training.observers.EpochObserver"),
    ) if not ok]
    if wrong:
        name, value, what = wrong[0]
        raise ValueError(f"train: {name} must be {what}, got {type(value).__name__}")


def _train(cfg: Config, dataset: ArrayDataset | None, model: nn.Module | None, observers: list[EpochObserver],
           ddp: Distributed | None) -> RunResult:
    if cfg.output:  # before anything is loaded or written: a folder that can hold this run
        rundir.check_output(cfg.output, cfg.resume, cfg.overwrite, probe=ddp is None or ddp.writes)
    run = build_run(cfg, dataset, model)
    if ddp is not None:
        ddp.attach(run)
    world = 1 if ddp is None else ddp.world
    n_test = len(run.data.y_test)  # the samples every test accuracy is measured on (metrics.json's num_test)
    tracker = getattr(run.selector, "tracker", None)
    folder = RunFolder(cfg.output) if cfg.output else None
    state = _resume(run, folder, ddp) if cfg.resume else {}
    writes = ddp is None or ddp.writes  # rank 0 alone writes the run's files
    out = folder if writes else None
    rows = state.get("history", [])
    for obs in observers:
        if obs.key in state.get("observers", {}):
            obs.load_state_dict(state["observers"][obs.key])
    elapsed_before = float(state.get("elapsed", 0.0))
    stopped = bool(state.get("stopped", False))  # by the selector (early stopping): nothing left to run
    if out is not None:
        out.start(rows)
    t_start = time.perf_counter()
    bar = tqdm(range(cfg.epochs if stopped else len(rows), cfg.epochs), desc="baseline" if cfg.is_baseline
               else cfg.selector, unit="epoch", disable=not (cfg.progress and writes), initial=len(rows),
               total=cfg.epochs)
    for epoch in bar:
        row = run_epoch(run, epoch, ddp=ddp)
        for obs in observers:
            row.update(obs.epoch_end(run, epoch + 1, writes) or {})
        rows.append(row)
        stopped = run.selector.should_stop(row)
        bar.set_postfix(acc=f"{row['test_accuracy']:.3f}", mastered=row["n_mastered"], loss=f"{row['train_loss']:.3g}")
        elapsed = elapsed_before + time.perf_counter() - t_start
        if out is not None:
            out.append(row, len(rows) == 1, summarize(cfg.to_dict(), rows, elapsed, run.data.num_train, stopped,
                                                      world, n_test))
        last = epoch + 1 == cfg.epochs or stopped
        if folder is not None and cfg.checkpoint_every and ((epoch + 1) % cfg.checkpoint_every == 0 or last):
            _save(run, out, rows, observers, elapsed, stopped, ddp)  # every rank: it gathers their random states
        if row["n_active"] and not math.isfinite(row["train_loss"]) and not cfg.allow_nonfinite:
            bar.close()
            message = (f"epoch {epoch + 1}: the mean training loss is {row['train_loss']}; lower lr, "
                       "or set allow_nonfinite=True to continue")
            if out is not None:  # the folder: every epoch up to this one, and why the run stopped
                out.write_metrics({**summarize(cfg.to_dict(), rows, elapsed, run.data.num_train, stopped, world,
                                               n_test), "error": message})
            raise FloatingPointError(message)
        if stopped:
            break
    bar.close()
    if ddp is not None:
        ddp.detach(run)
    metrics = summarize(cfg.to_dict(), rows, elapsed_before + time.perf_counter() - t_start, run.data.num_train,
                        stopped, world, n_test)
    for obs in observers:
        obs.finish(run, out.path if out is not None else None, metrics)
    if out is not None:
        out.write_metrics(metrics)
    return RunResult(cfg, pd.DataFrame(rows, columns=list(rows[0]) if rows else HISTORY_COLUMNS), metrics,
                     run.model, tracker, truth=run.truth)


def checkpoint_key(cfg: Config) -> dict:
    """The fields that must match for a checkpoint to be resumed (all but the run-control ones)."""
    return {k: v for k, v in cfg.to_dict().items() if k not in RUN_CONTROL_FIELDS}


def _save(run: Run, folder: RunFolder | None, rows: list[dict], observers: list[EpochObserver], elapsed: float,
          stopped: bool, ddp: Distributed | None = None) -> None:
    """Write the checkpoint into ``folder`` (``None``: a rank that does not write, but gives its random state)."""
    rng = [ckpt.rng_state(run.generators)] if ddp is None else ddp.gather_rng(run.generators)
    trackers = None if ddp is None else ddp.gather_trackers(run.selector)  # a sharded tracker: every rank's
    if folder is None:
        return
    ckpt.save(folder.checkpoint, {
        "config": checkpoint_key(run.cfg), "model": run.model.state_dict(), "optimizer": run.opt.state_dict(),
        "scheduler": run.sched.state_dict(), "selector": run.selector.state_dict(),
        "rng": rng[0], "history": rows,
        "observers": {obs.key: obs.state_dict() for obs in observers if obs.key},
        "elapsed": elapsed, "stopped": stopped,
        "world_size": len(rng), **({"rng_ranks": rng} if ddp is not None else {}),
        **({"tracker_ranks": trackers} if trackers is not None else {}),
    })


def _resume(run: Run, folder: RunFolder, ddp: Distributed | None = None) -> dict:
    """Load ``folder``'s checkpoint into ``run`` (this rank's random state, under ``ddp``); returns it
    (history, matrices, elapsed time)."""
    state = ckpt.load(folder.checkpoint, map_location=run.device)
    if state["config"] != checkpoint_key(run.cfg):
        raise ValueError("resume: the checkpoint was written by a different configuration")
    rng = ddp_.checkpoint_rng(state, ddp)  # the world size first
    run.model.load_state_dict(state["model"])
    run.opt.load_state_dict(state["optimizer"])
    run.sched.load_state_dict(state["scheduler"])
    run.selector.load_state_dict(ddp_.checkpoint_selector(state, ddp, run.selector))
    ckpt.set_rng_state(rng, run.generators)
    return {**state, "history": list(state["history"])}
