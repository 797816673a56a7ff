"""The steps of one epoch, each usable alone (a benchmark can time one, a user's loop can call one):

1. ``plan = selector.plan(epoch, lr)`` - who trains, who is only tracked, who is left out;
2. :func:`train_pass` - forward + backward of ``plan.train`` in shuffled mini-batches;
3. :func:`track_pass` - a no-grad eval-mode forward of ``plan.track`` to keep their losses tracked;
4. ``selector.end_epoch(epoch)`` - decide for the next epoch;
5. :func:`evaluate` on the test split, then :func:`epoch_row` - one host sync for the epoch's statistics.

Every step keeps its statistics as device scalars; only :func:`epoch_row` reads them back.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..data.datasets import DeviceLoader
from ..models.modes import evaluating
from ..selectors import Plan

Observe = Callable[[torch.Tensor, torch.Tensor], None]
Keep = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
Batch = tuple[torch.Tensor, torch.Tensor, torch.Tensor]


@dataclass
class TrainStats:
    """What :func:`train_pass` did: device scalars ``loss_sum`` (unweighted per-sample losses),
    ``grad_norm_sum`` / ``grad_norm_max`` (over steps; 0 without tracking), and host counts ``steps``,
    ``forward_samples`` (with a filter: the selection forwards too; a float with a first-stage filter,
    whose forwards count their share of a full one), ``backprop_samples`` and
    ``filtered_out`` (forwarded to be selected, not back-propagated)."""

    loss_sum: torch.Tensor
    grad_norm_sum: torch.Tensor
    grad_norm_max: torch.Tensor
    steps: int = 0
    forward_samples: float = 0
    backprop_samples: int = 0
    filtered_out: int = 0


def grad_norm(params: list[torch.Tensor]) -> torch.Tensor:
    """L2 norm of all parameter gradients together (a device scalar)."""
    grads = [p.grad for p in params if p.grad is not None]
    return torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads)))


def train_pass(model: nn.Module, opt: torch.optim.Optimizer, loader: DeviceLoader, plan: Plan, batch_size: int,
               amp=None, observe: Observe | None = None, grad_params: list[torch.Tensor] | None = None,
               on_step: Callable[[], object] | None = None, keep: Keep | None = None,
               min_last: int = 0) -> TrainStats:
    """One pass of SGD over ``plan.train`` (shuffled, augmented), each step on the mean of the
    per-sample cross-entropies (times ``plan.weights[idx]`` when given). ``observe(idx, losses)`` gets every
    batch's detached per-sample losses; ``grad_params``: record the gradient norm of these parameters;
    ``on_step()`` runs after every optimiser step (a per-step learning-rate schedule). A plan with
    ``filter=True`` steps on the samples ``keep(idx, losses)`` picks (:func:`filtered_batches`).
    ``min_last``: a last batch smaller than this is merged into the one before it."""
    device = loader.device
    stats = TrainStats(*(torch.zeros((), device=device) for _ in range(3)))
    model.train()
    batches = loader.batches(plan.train, batch_size, shuffle=True, augment=True, min_last=min_last)
    if plan.filter:
        if keep is None:
            raise ValueError("a plan with filter=True needs keep, the selector's keep()")
        batches = filtered_batches(model, batches, batch_size, keep, amp, stats, plan.stage)
    for x, y, idx in batches:
        with amp or contextlib.nullcontext():
            losses = F.cross_entropy(model(x).float(), y, reduction="none")
        objective = losses if plan.weights is None else losses * plan.weights[idx]
        opt.zero_grad(set_to_none=True)
        objective.mean().backward()
        if grad_params is not None:
            gn = grad_norm(grad_params)
            stats.grad_norm_sum += gn
            stats.grad_norm_max = torch.maximum(stats.grad_norm_max, gn)
        opt.step()
        if on_step is not None:
            on_step()
        stats.steps += 1
        stats.backprop_samples += idx.shape[0]  # host count from the shape, no sync
        stats.loss_sum += losses.detach().sum()
        if observe is not None:
            observe(idx, losses.detach())
    stats.forward_samples += stats.backprop_samples
    return stats


def filtered_batches(model: nn.Module, batches: Iterable[Batch], batch_size: int, keep: Keep, amp,
                     stats: TrainStats, stage=None) -> Iterator[Batch]:
    """A backward filter (Selective Backprop): forward each of ``batches`` without grad in eval mode,
    keep the samples ``keep(idx, losses)`` picks, and yield them in full batches of ``batch_size`` (the
    remainder last), so that training steps between selections. Adds the selection forwards to
    ``stats.forward_samples`` and the samples not kept to ``stats.filtered_out``. One implicit host sync
    per selected batch: the kept count sets the shape. ``stage`` (a plan's :attr:`Plan.stage`): the
    selection forward runs the model's first stage only, ``keep(idx, stage.features(x))`` picks, and
    each sample forwarded so counts ``stage.fraction`` of a forward."""
    pending: list[Batch] = []
    count = 0
    for x, y, idx in batches:
        with torch.no_grad(), evaluating(model), amp or contextlib.nullcontext():
            signal = F.cross_entropy(model(x).float(), y, reduction="none") if stage is None else stage.features(x)
        mask = keep(idx, signal)
        piece = (x[mask], y[mask], idx[mask])
        stats.forward_samples += idx.shape[0] if stage is None else stage.fraction * idx.shape[0]
        stats.filtered_out += idx.shape[0] - piece[2].shape[0]
        pending.append(piece)
        count += piece[2].shape[0]
        while count >= batch_size:
            joined = [torch.cat(parts) for parts in zip(*pending, strict=True)]
            yield tuple(t[:batch_size] for t in joined)
            pending = [tuple(t[batch_size:] for t in joined)]
            count -= batch_size
    if count:
        yield tuple(torch.cat(parts) for parts in zip(*pending, strict=True))


@torch.no_grad()
def track_pass(model: nn.Module, loader: DeviceLoader, indices: torch.Tensor | None, batch_size: int, observe: Observe,
               amp=None, augment: bool = True) -> int:
    """Forward ``indices`` (every sample if ``None``) without grad in eval mode and pass each batch's
    per-sample losses to ``observe``; ``augment``: the training augmentation, as the authors track.
    Returns the number of samples forwarded."""
    with evaluating(model):
        for x, y, idx in loader.batches(indices, batch_size, augment=augment):
            with amp or contextlib.nullcontext():
                observe(idx, F.cross_entropy(model(x).float(), y, reduction="none"))
    return len(loader) if indices is None else int(indices.numel())


@torch.no_grad()
def evaluate(model: nn.Module, loader: DeviceLoader, batch_size: int = 1024,
             amp=None, indices: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed cross-entropy and number correct over every sample of ``loader`` (or its ``indices``, e.g. a
    validation split of the training loader, without augmentation), in eval mode, as device scalars (no
    host sync); the model's train/eval mode is restored. ``amp``: an autocast context or None."""
    loss = torch.zeros((), device=loader.device)
    correct = torch.zeros((), device=loader.device)
    with evaluating(model):
        for x, y, _ in loader.batches(indices, batch_size):
            with amp or contextlib.nullcontext():
                logits = model(x).float()
            loss += F.cross_entropy(logits, y, reduction="sum")
            correct += (logits.argmax(1) == y).sum()
    return loss, correct


def epoch_row(epoch: int, lr: float, plan: Plan, train: TrainStats, tracked: int,
              selector_stats: dict[str, torch.Tensor], test: tuple[torch.Tensor, torch.Tensor], num_test: int,
              grad_norms: bool, validation: tuple[torch.Tensor, torch.Tensor] | None = None,
              num_val: int = 0) -> dict:
    """The epoch's history row (``epoch`` 0-based; columns :data:`ies.training.history.HISTORY_COLUMNS` but
    ``epoch_seconds``), with one host sync for every device statistic. ``tracked``: samples forwarded
    by :func:`track_pass` (the plan's ``track`` set, or every sample for clean losses). ``validation``:
    :func:`evaluate` of the selector's ``num_val`` validation samples, adding ``val_loss`` and
    ``val_accuracy`` and counting those forwards in ``forward_samples``."""
    nan = torch.full((), math.nan, device=train.loss_sum.device)
    named = {
        "train_loss": train.loss_sum / train.backprop_samples if train.backprop_samples else nan,
        "test_loss": test[0] / num_test,
        "test_accuracy": test[1] / num_test,
        "grad_norm_mean": train.grad_norm_sum / max(train.steps, 1) if grad_norms and train.steps else nan,
        "grad_norm_max": train.grad_norm_max if grad_norms and train.steps else nan,
        **selector_stats,
    }
    if validation is not None:
        named.update(val_loss=validation[0] / max(num_val, 1), val_accuracy=validation[1] / max(num_val, 1))
    values = dict(zip(named, torch.stack([v.double() for v in named.values()]).tolist(), strict=True))
    counts = ("n_mastered", "n_newly_mastered", "n_reentered", "n_nonfinite")
    row = {
        "epoch": epoch + 1, "lr": lr,
        **{k: values[k] for k in ("train_loss", "tracked_loss", "test_loss", "test_accuracy")},
        "n_active": train.backprop_samples,
        **{k: int(values[k]) for k in counts},
        "backprop_samples": train.backprop_samples,
        # excluded from backprop, still forwarded: tracked, or selected against by a backward filter
        "forward_only_samples": int(plan.track.numel()) + train.filtered_out,
        "forward_samples": train.forward_samples + tracked + (num_val if validation is not None else 0),
        "grad_norm_mean": values["grad_norm_mean"],
        "grad_norm_max": values["grad_norm_max"],
    }
    if validation is not None:
        row.update(val_loss=values["val_loss"], val_accuracy=values["val_accuracy"])
    return row
