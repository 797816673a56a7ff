"""Full fine-tuning on a target task: a new head, every layer trained with its own short schedule.

A second, small training loop, kept apart from :func:`ies.train` on purpose for now: it trains every
sample every epoch (no mastery), steps a warm-up + cosine learning rate per batch, and starts from a
pretrained copy of the model with a new head. It is *not* the paper's transfer measure (that is a linear
probe, :mod:`ies.experiments.linear_probe`); it answers a different question, whether IES pretraining is a better
start when every layer may adapt.

- :class:`FineTuneConfig`: the schedule; :class:`FineTuneResult`: what :func:`fine_tune` returns;
- :func:`replace_head`: a freshly initialised classifier in place of the model's last linear layer;
- :func:`fine_tune`: the loop; :func:`accuracy`: the eval-mode test accuracy (:func:`ies.training.epoch.evaluate`).
"""

from __future__ import annotations

import contextlib
import copy
import math
import time
from dataclasses import dataclass

import pandas as pd
import torch
from torch import nn
from tqdm.auto import tqdm

from ..data.datasets import ArrayDataset, DeviceLoader
from ..models.layers import Float32Linear
from ..selectors import Plan
from ..training.epoch import evaluate, train_pass
from .linear_probe import final_linear


@dataclass(frozen=True)
class FineTuneConfig:
    """The short schedule of full fine-tuning on the target (every layer trained, a new head)."""

    epochs: int = 10
    """Epochs over the target's training split."""
    lr: float = 0.01
    """Peak learning rate (SGD), the same for every layer; a tenth of the pretraining default."""
    warmup_epochs: float = 1.0
    """Linear warm-up from 0 to ``lr`` over this many epochs (protects the pretrained layers from the
    large gradients of the new, random head), then cosine decay to 0 at the end, stepped per batch."""
    momentum: float = 0.9
    """SGD momentum."""
    weight_decay: float = 5e-4
    """L2 weight decay."""
    batch_size: int = 64
    """Mini-batch size."""
    eval_batch_size: int = 1024
    """Batch size of the test pass."""
    augment: bool = True
    """Random crop and flip on image batches (ignored for signals)."""
    amp: bool = True
    """bf16 autocast on CUDA (the head stays fp32)."""


@dataclass
class FineTuneResult:
    """What :func:`fine_tune` returns: the final ``test_accuracy`` (after the last epoch, no selection on
    the test split), the ``history`` (``epoch``, ``lr``, ``train_loss``, ``test_accuracy``), the
    fine-tuned ``model`` (a copy; the input model is left untouched) and ``seconds``."""

    test_accuracy: float
    history: pd.DataFrame
    model: nn.Module
    seconds: float


def replace_head(model: nn.Module, num_classes: int, generator: torch.Generator | None = None) -> nn.Module:
    """Put a freshly initialised :class:`~ies.models.layers.Float32Linear` with ``num_classes`` outputs in place
    of ``model``'s :func:`final_linear` (in place; returns ``model``). Initialisation as ``nn.Linear``
    (uniform in +-1/sqrt(fan_in)), drawn from ``generator``."""
    name, old = final_linear(model)
    device = old.weight.device
    head = Float32Linear(old.in_features, num_classes, bias=old.bias is not None, device=device)
    bound = 1.0 / math.sqrt(old.in_features)
    with torch.no_grad():
        for p in head.parameters():
            p.copy_(torch.rand(p.shape, generator=generator) * 2 * bound - bound)
    parent = model.get_submodule(name.rpartition(".")[0]) if "." in name else model
    setattr(parent, name.rpartition(".")[2], head)
    return model


def fine_tune(
    model: nn.Module,
    target: ArrayDataset,
    config: FineTuneConfig = FineTuneConfig(),  # noqa: B008 (frozen, immutable)
    *,
    seed: int = 0,
    progress: bool = False,
) -> FineTuneResult:
    """Fine-tune a copy of ``model`` on ``target``: new head (:func:`replace_head`), all layers
    trained with SGD under ``config``'s schedule, on ``model``'s device. Returns the test accuracy after
    the last epoch. ``seed`` fixes the head's initialisation, the shuffling and the augmentation."""
    device = next(model.parameters()).device
    cuda = device.type == "cuda"
    model = replace_head(copy.deepcopy(model), target.num_classes, torch.Generator().manual_seed(seed)).to(device)
    for p in model.parameters():
        p.requires_grad_(True)
    if cuda and target.is_image:
        model = model.to(memory_format=torch.channels_last)
    amp = torch.autocast("cuda", dtype=torch.bfloat16) if (cuda and config.amp) else contextlib.nullcontext()
    gen = torch.Generator(device=device).manual_seed(seed)
    train = DeviceLoader(target.x_train, target.y_train, device, mean=target.mean, std=target.std,
                         augment=config.augment, generator=gen)
    test = DeviceLoader(target.x_test, target.y_test, device, mean=target.mean, std=target.std)
    opt = torch.optim.SGD(model.parameters(), lr=config.lr, momentum=config.momentum,
                          weight_decay=config.weight_decay)
    steps_per_epoch = math.ceil(len(train) / config.batch_size)
    total = config.epochs * steps_per_epoch
    warmup = round(config.warmup_epochs * steps_per_epoch)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: _warmup_cosine(s, warmup, total))

    rows = []
    t0 = time.perf_counter()
    for epoch in tqdm(range(config.epochs), desc="fine-tune", unit="epoch", disable=not progress, leave=False):
        loss_sum = _train_epoch(model, train, opt, sched, config.batch_size, amp)
        acc = accuracy(model, test, config.eval_batch_size, amp)
        rows.append({"epoch": epoch + 1, "lr": opt.param_groups[0]["lr"],
                     "train_loss": float(loss_sum) / len(train), "test_accuracy": acc})
    model.eval()  # the returned model is for evaluation
    return FineTuneResult(rows[-1]["test_accuracy"] if rows else accuracy(model, test, config.eval_batch_size, amp),
                          pd.DataFrame(rows), model, time.perf_counter() - t0)


def _train_epoch(model: nn.Module, train: DeviceLoader, opt: torch.optim.Optimizer,
                 sched: torch.optim.lr_scheduler.LRScheduler, batch_size: int, amp) -> torch.Tensor:
    """One shuffled, augmented pass over every sample of ``train`` (the training loop's
    :func:`ies.training.epoch.train_pass`), a step of ``sched`` per batch. Returns the summed training loss as a
    device scalar (no host sync)."""
    everyone = Plan(train=torch.arange(len(train), device=train.device),
                    track=torch.empty(0, dtype=torch.int64, device=train.device))
    return train_pass(model, opt, train, everyone, batch_size, amp, on_step=sched.step).loss_sum


def _warmup_cosine(step: int, warmup: int, total: int) -> float:
    """Learning-rate factor at ``step`` (0-based, counted before the step): linear warm-up over ``warmup``
    steps, then cosine from 1 to 0 over the rest."""
    if step < warmup:
        return (step + 1) / warmup
    rest = max(total - warmup, 1)
    return 0.5 * (1 + math.cos(math.pi * min(step - warmup, rest) / rest))


@torch.no_grad()
def accuracy(model: nn.Module, loader: DeviceLoader, batch_size: int = 1024, amp=None) -> float:
    """Eval-mode accuracy of ``model`` on every sample of ``loader`` (restores the training flag)."""
    return float(evaluate(model, loader, batch_size, amp)[1]) / len(loader)

