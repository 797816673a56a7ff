"""One training loop for the baseline and for IES (the baseline is IES with ``threshold=0``).

Each epoch:

1. decide who trains: the samples the tracker did *not* master at the end of the last epoch (all
   of them in epoch 1, in the anneal phase, and for the baseline);
2. train on them in shuffled mini-batches, recording each sample's loss from its training pass;
3. a no-grad eval-mode forward in large batches over the mastered samples, so their loss keeps
   being tracked (``loss_source="official"``), or one clean pass over every sample
   (``loss_source="clean"``);
4. ``tracker.step()`` re-decides mastery for every sample;
5. evaluate on the test split; one host sync gathers the epoch's statistics.
"""

from __future__ import annotations

import contextlib
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from . import checkpoint as ckpt
from .config import Config
from .data import ArrayDataset, DeviceLoader, load_dataset
from .models import FixedShapeCompiled, build_model
from .tracker import MasteryTracker

HISTORY_COLUMNS = [
    "epoch", "lr", "train_loss", "tracked_loss", "test_loss", "test_accuracy",
    "n_active", "n_mastered", "n_newly_mastered", "n_reentered", "n_nonfinite",
    "backprop_samples", "forward_only_samples", "grad_norm_mean", "grad_norm_max", "epoch_seconds",
]


@dataclass
class RunResult:
    """What :func:`train` returns.

    Attributes:
        config: the configuration that ran.
        history: one row per epoch, columns :data:`HISTORY_COLUMNS`.
        metrics: the summary written to ``metrics.json`` (see :func:`summarize`).
        model: the trained model (on its device).
        tracker: the tracker in its final state.
        loss_matrix: ``(N, epochs)`` float32 CPU tensor of every sample's tracked loss per epoch
            (``keep_loss_matrix=True`` only, else ``None``).
        mastered_matrix: ``(N, epochs)`` bool, the mastery decision at the end of each epoch
            (``keep_loss_matrix=True`` only).
    """

    config: Config
    history: pd.DataFrame
    metrics: dict
    model: nn.Module
    tracker: MasteryTracker
    loss_matrix: torch.Tensor | None = None
    mastered_matrix: torch.Tensor | None = None


def resolve_device(name: str) -> torch.device:
    """``auto`` -> CUDA if available, else MPS if available, else CPU."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={name!r} asked for CUDA, but torch sees no CUDA device")
    return device


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (CPU and CUDA)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def make_optimizer(cfg: Config, model: nn.Module) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler]:
    """The optimiser and per-epoch schedule of ``cfg`` (default: the authors' SGD 0.1, momentum 0.9,
    weight decay 5e-4, ExponentialLR 0.96)."""
    if cfg.optimizer == "sgd":
        opt = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    else:
        opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.schedule == "exponential":
        sched = torch.optim.lr_scheduler.ExponentialLR(opt, gamma=cfg.gamma)
    elif cfg.schedule == "cosine":
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=cfg.epochs)
    else:
        sched = torch.optim.lr_scheduler.ConstantLR(opt, factor=1.0, total_iters=0)
    return opt, sched


def random_budget(path: str, epochs: int) -> list[int]:
    """Per-epoch exclusion counts of a reference run (its ``forward_only_samples`` column)."""
    ref = pd.read_csv(path)
    if "forward_only_samples" not in ref:
        raise ValueError(f"random_budget: {path} has no forward_only_samples column")
    counts = [int(c) for c in ref["forward_only_samples"]]
    if len(counts) < epochs:
        raise ValueError(f"random_budget: {path} has {len(counts)} epochs, this run needs {epochs}")
    return counts[:epochs]


def _grad_norm(params: list[torch.Tensor]) -> torch.Tensor:
    grads = [p.grad for p in params if p.grad is not None]
    return torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads)))


def train(
    cfg: Config,
    dataset: ArrayDataset | None = None,
    model: nn.Module | None = None,
    on_epoch_end: Callable[[int, nn.Module, MasteryTracker], dict | None] | None = None,
) -> RunResult:
    """Run one training run of ``cfg`` and return its :class:`RunResult`.

    Args:
        cfg: the configuration (``threshold=0`` for the baseline).
        dataset: use this data instead of loading ``cfg.dataset`` (tests, notebooks).
        model: use this (freshly initialised) model instead of building ``cfg.model``.
        on_epoch_end: called after each epoch's evaluation as ``on_epoch_end(epoch, model, tracker)``
            (``epoch`` 1-based); a returned dict of numbers becomes extra history columns (the same
            keys every epoch). It must leave the model's weights and buffers as it found them.
    """
    device = resolve_device(cfg.device)
    seed_everything(cfg.seed)
    data = dataset if dataset is not None else load_dataset(cfg.dataset, cfg.data_dir, cfg.dataset_size)
    if model is None:
        model = build_model(cfg.model, tuple(data.x_train.shape[1:]), data.num_classes)
    model = model.to(device)
    cuda = device.type == "cuda"
    if cuda and cfg.channels_last and data.is_image:
        model = model.to(memory_format=torch.channels_last)
    eval_batch_size = cfg.eval_batch_size or (128 if device.type == "cpu" else 1024)
    # compiled graphs only ever see these batch sizes; each pass's remainder batch runs eagerly
    step_model = FixedShapeCompiled(model, (cfg.batch_size, eval_batch_size)) if cfg.compile else model
    amp = torch.autocast("cuda", dtype=torch.bfloat16) if (cuda and cfg.amp) else contextlib.nullcontext()
    opt, sched = make_optimizer(cfg, model)
    params = [p for p in model.parameters() if p.requires_grad]

    n = data.num_train
    ies_threshold = cfg.threshold if cfg.selector == "ies" else 0.0
    tracker = MasteryTracker(n, ies_threshold, cfg.order, cfg.window, cfg.patience, cfg.rule, device=device)
    budget = random_budget(cfg.random_budget, cfg.epochs) if cfg.selector == "random" else None
    gen = torch.Generator(device=device).manual_seed(cfg.seed)  # data order and augmentation
    # the random selector draws from its own stream, so that a matched-budget control sees the same
    # data order as its reference run (same seed) and differs only in which samples it leaves out
    select_gen = torch.Generator(device=device).manual_seed(cfg.seed + 1_000_003)
    generators = {"loader": gen, "selector": select_gen}
    channels_last = cfg.channels_last  # image batches; the model is converted on CUDA only (above)
    train_data = DeviceLoader(data.x_train, data.y_train, device, mean=data.mean, std=data.std,
                              augment=cfg.augment, generator=gen, channels_last=channels_last)
    test_data = DeviceLoader(data.x_test, data.y_test, device, mean=data.mean, std=data.std,
                             channels_last=channels_last)
    anneal_from = cfg.epochs - round(cfg.anneal_fraction * cfg.epochs)

    out = Path(cfg.output) if cfg.output else None
    rows: list[dict] = []
    loss_cols: list[torch.Tensor] = []
    mastered_cols: list[torch.Tensor] = []
    excluded = torch.zeros(n, dtype=torch.bool, device=device)
    if budget is not None and budget[0] > 0:  # a reference that excluded samples in its first epoch
        excluded[torch.randperm(n, device=device, generator=select_gen)[: min(budget[0], n)]] = True
    elapsed_before = 0.0
    start_epoch = 0
    if cfg.resume:
        state = ckpt.load(out / ckpt.CHECKPOINT_NAME, map_location=device)
        if state["config"] != _resumable(cfg):
            raise ValueError("resume: the checkpoint was written by a different configuration")
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        tracker.load_state_dict(state["tracker"])
        excluded = state["excluded"].to(device)
        ckpt.set_rng_state(state["rng"], generators)
        rows = list(state["history"])
        loss_cols = list(state.get("loss_cols", []))
        mastered_cols = list(state.get("mastered_cols", []))
        start_epoch = len(rows)
        elapsed_before = float(state["elapsed"])
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        (out / "history.csv").unlink(missing_ok=True)
        if rows:
            pd.DataFrame(rows).to_csv(out / "history.csv", index=False)

    t_start = time.perf_counter()
    bar = tqdm(range(start_epoch, cfg.epochs), desc=f"{'baseline' if cfg.is_baseline else cfg.selector}",
               unit="epoch", disable=not cfg.progress, initial=start_epoch, total=cfg.epochs)
    for epoch in bar:
        t0 = time.perf_counter()
        lr = opt.param_groups[0]["lr"]
        if epoch >= anneal_from:
            excluded = torch.zeros_like(excluded)
        active = torch.nonzero(~excluded).flatten()
        skipped = torch.nonzero(excluded).flatten()

        # 1. train on the active samples
        step_model.train()
        loss_sum = torch.zeros((), device=device)
        gn_sum = torch.zeros((), device=device)
        gn_max = torch.zeros((), device=device)
        n_steps = 0
        for x, y, idx in train_data.batches(active, cfg.batch_size, shuffle=True, augment=True):
            with amp:
                losses = F.cross_entropy(step_model(x).float(), y, reduction="none")
            opt.zero_grad(set_to_none=True)
            losses.mean().backward()
            if cfg.track_grad_norm:
                gn = _grad_norm(params)
                gn_sum += gn
                gn_max = torch.maximum(gn_max, gn)
            opt.step()
            n_steps += 1
            loss_sum += losses.detach().sum()
            if cfg.loss_source == "official":
                tracker.record(idx, losses)

        # 2. keep tracking the samples that were left out
        if cfg.loss_source == "official" and skipped.numel():
            # as the authors: eval mode, no grad, the training augmentation
            _forward_losses(step_model, train_data, skipped, eval_batch_size, amp, tracker, augment=True)
        elif cfg.loss_source == "clean":
            _forward_losses(step_model, train_data, None, eval_batch_size, amp, tracker, augment=False)
        sched.step()

        # 3. decide who is mastered for the next epoch
        tracker.step()
        if budget is not None:
            k = min(budget[epoch + 1] if epoch + 1 < cfg.epochs else 0, n)
            perm = torch.randperm(n, device=device, generator=select_gen)[:k]
            excluded = torch.zeros_like(excluded).index_fill_(0, perm, True)
        else:
            excluded = tracker.mastered
        if cfg.keep_loss_matrix:
            loss_cols.append(tracker.last_losses.to("cpu", torch.float32, copy=True))  # .cpu() would alias the ring
            mastered_cols.append(excluded.cpu())

        # 4. evaluate, then one host sync for the whole epoch
        test_loss, correct = evaluate(step_model, test_data, eval_batch_size, amp)
        tracked = tracker.last_losses
        finite = torch.isfinite(tracked)
        stats = tracker.counts
        values = torch.stack([
            loss_sum / active.numel() if active.numel() else torch.full((), math.nan, device=device),
            torch.where(finite, tracked, 0).sum() / finite.sum().clamp(min=1),
            test_loss / len(test_data),
            correct / len(test_data),
            gn_sum / max(n_steps, 1),
            gn_max,
            excluded.sum(),
            stats["n_newly_mastered"],
            stats["n_reentered"],
            (~finite).sum(),
        ]).tolist()
        row = {
            "epoch": epoch + 1,
            "lr": lr,
            "train_loss": values[0],
            "tracked_loss": values[1],
            "test_loss": values[2],
            "test_accuracy": values[3],
            "n_active": active.numel(),
            "n_mastered": int(values[6]),
            "n_newly_mastered": int(values[7]),
            "n_reentered": int(values[8]),
            "n_nonfinite": int(values[9]),
            "backprop_samples": active.numel(),
            "forward_only_samples": skipped.numel(),
            "grad_norm_mean": values[4] if cfg.track_grad_norm and n_steps else float("nan"),
            "grad_norm_max": values[5] if cfg.track_grad_norm and n_steps else float("nan"),
            "epoch_seconds": time.perf_counter() - t0,
        }
        if on_epoch_end is not None:
            row.update(on_epoch_end(epoch + 1, model, tracker) or {})
        rows.append(row)
        bar.set_postfix(acc=f"{row['test_accuracy']:.3f}", mastered=row["n_mastered"], loss=f"{row['train_loss']:.3g}")
        if out is not None:
            elapsed = elapsed_before + time.perf_counter() - t_start
            pd.DataFrame([row]).to_csv(out / "history.csv", mode="a", header=len(rows) == 1, index=False)
            ckpt.write_json(out / "metrics.json", summarize(cfg, rows, elapsed, n))
            last = epoch + 1 == cfg.epochs
            if cfg.checkpoint_every and ((epoch + 1) % cfg.checkpoint_every == 0 or last):
                ckpt.save(out / ckpt.CHECKPOINT_NAME, {
                    "config": _resumable(cfg),
                    "model": model.state_dict(),
                    "optimizer": opt.state_dict(),
                    "scheduler": sched.state_dict(),
                    "tracker": tracker.state_dict(),
                    "excluded": excluded,
                    "rng": ckpt.rng_state(generators),
                    "history": rows,
                    "loss_cols": loss_cols,
                    "mastered_cols": mastered_cols,
                    "elapsed": elapsed,
                })
        if active.numel() and not math.isfinite(row["train_loss"]) and not cfg.allow_nonfinite:
            bar.close()
            raise FloatingPointError(
                f"epoch {epoch + 1}: the mean training loss is {row['train_loss']}; lower lr, or set "
                "allow_nonfinite=True to continue"
            )
    bar.close()
    elapsed = elapsed_before + time.perf_counter() - t_start
    metrics = summarize(cfg, rows, elapsed, n)
    if out is not None:
        ckpt.write_json(out / "metrics.json", metrics)
    return RunResult(
        config=cfg,
        history=pd.DataFrame(rows, columns=list(rows[0]) if rows else HISTORY_COLUMNS),
        metrics=metrics,
        model=model,
        tracker=tracker,
        loss_matrix=torch.stack(loss_cols, dim=1) if loss_cols else None,
        mastered_matrix=torch.stack(mastered_cols, dim=1) if mastered_cols else None,
    )


@torch.no_grad()
def _forward_losses(model, loader: DeviceLoader, indices, batch_size, amp, tracker, *, augment: bool) -> None:
    """Record the no-grad eval-mode loss of ``indices`` (all samples if ``None``)."""
    model.eval()
    for x, y, idx in loader.batches(indices, batch_size, augment=augment):
        with amp:
            tracker.record(idx, F.cross_entropy(model(x).float(), y, reduction="none"))
    model.train()


@torch.no_grad()
def evaluate(model, loader: DeviceLoader, batch_size: int = 1024, amp=None) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed cross-entropy and number correct over every sample of ``loader``, in eval mode, as device
    scalars (no host sync); the model's train/eval mode is restored. ``amp``: an autocast context or None."""
    was_training = model.training
    model.eval()
    loss = torch.zeros((), device=loader.device)
    correct = torch.zeros((), device=loader.device)
    for x, y, _ in loader.batches(None, batch_size):
        with amp or contextlib.nullcontext():
            logits = model(x).float()
        loss += F.cross_entropy(logits, y, reduction="sum")
        correct += (logits.argmax(1) == y).sum()
    model.train(was_training)
    return loss, correct


def _resumable(cfg: Config) -> dict:
    """The fields that must match for a checkpoint to be resumed (all but run-control ones)."""
    skip = {"resume", "progress", "output", "checkpoint_every", "device", "data_dir"}
    return {k: v for k, v in cfg.to_dict().items() if k not in skip}


def summarize(cfg: Config, rows: list[dict], wall_time_s: float, num_train: int) -> dict:
    """The summary of a run: final and best test accuracy, backprop saved
    (excluded sample-epochs / (N x epochs run)), wall time, and the configuration."""
    epochs = len(rows)
    excluded = sum(r["forward_only_samples"] for r in rows)
    return {
        "test_accuracy": rows[-1]["test_accuracy"] if rows else float("nan"),
        "best_test_accuracy": max((r["test_accuracy"] for r in rows), default=float("nan")),
        "final_train_loss": rows[-1]["train_loss"] if rows else float("nan"),
        "final_tracked_loss": rows[-1]["tracked_loss"] if rows else float("nan"),
        "backprop_saving": excluded / (num_train * epochs) if epochs else 0.0,
        "backprop_samples": sum(r["backprop_samples"] for r in rows),
        "forward_only_samples": excluded,
        "wall_time_s": wall_time_s,
        "epoch_seconds_total": sum(r["epoch_seconds"] for r in rows),
        "epochs_completed": epochs,
        "num_train": num_train,
        "config": cfg.to_dict(),
    }
