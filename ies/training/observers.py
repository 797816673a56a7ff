"""Epoch observers: features that need per-epoch data of a run, attached to :func:`ies.train` instead of
written into its loop.

An observer is called on every rank after each epoch's history row (the host sync is done, so copies
are cheap), may add history columns, is checkpointed with the run, and finishes once the run ends. The
loop attaches :class:`LossMatrices` itself for ``keep_loss_matrix``; the per-group report
(:class:`ies.experiments.group_report.GroupReport`) and the ``on_epoch_end`` callback are observers too.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from .setup import Run


class EpochObserver:
    """The interface; every method has a do-nothing default. ``key`` names its checkpoint entry."""

    key: str = ""

    def epoch_end(self, run: Run, epoch: int, writes: bool) -> dict | None:
        """After epoch ``epoch`` (1-based) of ``run``; ``writes``: this rank writes the run's files.
        Returns extra history columns (the same keys every epoch) or ``None``."""
        return None

    def finish(self, run: Run, folder: Path | None, metrics: dict) -> None:
        """Once at the end (``folder``: the run folder on the writing rank, else ``None``); may add entries
        to ``metrics`` before ``metrics.json`` is written."""

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass


class LossMatrices(EpochObserver):
    """Every sample's tracked loss and exclusion decision after each epoch (``keep_loss_matrix``): the
    ``(N, T)`` ``loss_matrix`` and ``mastered_matrix`` of :class:`ies.training.RunResult`."""

    key = "loss_matrices"

    def __init__(self) -> None:
        self.losses: list[torch.Tensor] = []
        self.excluded: list[torch.Tensor] = []

    def epoch_end(self, run: Run, epoch: int, writes: bool) -> None:
        tracker = run.selector.tracker
        self.losses.append(tracker.last_losses.to("cpu", torch.float32, copy=True))  # .cpu() would alias
        self.excluded.append(run.selector.excluded.cpu())

    def matrices(self) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """``(N, T)`` float32 losses and bool decisions, or ``(None, None)`` before the first epoch."""
        if not self.losses:
            return None, None
        return torch.stack(self.losses, dim=1), torch.stack(self.excluded, dim=1)

    def state_dict(self) -> dict:
        return {"losses": self.losses, "excluded": self.excluded}

    def load_state_dict(self, state: dict) -> None:
        self.losses, self.excluded = list(state["losses"]), list(state["excluded"])


EpochHook = Callable[[int, nn.Module, object], dict | None]
"""``on_epoch_end(epoch, model, tracker)`` of :func:`ies.train`: ``epoch`` 1-based, ``tracker`` the
selector's (or ``None``); returns extra history columns or ``None``."""


class Callback(EpochObserver):
    """An :data:`EpochHook` as an observer (it keeps no state)."""

    def __init__(self, hook: EpochHook) -> None:
        self.hook = hook

    def epoch_end(self, run: Run, epoch: int, writes: bool) -> dict | None:
        extra = self.hook(epoch, run.model, getattr(run.selector, "tracker", None))
        if extra is not None and not isinstance(extra, dict):
            raise ValueError(f"on_epoch_end must return None or a dict of numbers, got {type(extra).__name__}")
        return extra
