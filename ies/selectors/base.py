"""The selector interface: each epoch a selector decides which samples train, which are only forwarded
(to keep their loss tracked) and which are left out; one registry, :data:`SELECTORS`, holds them by name.

A new selector is one file: subclass :class:`Selector`, set ``name``, decorate with :func:`register`,
and import the file in ``ies/selectors/__init__.py``. Its knobs are documented ``Config`` fields.

Selectors sit below the training loop: they read their knobs from ``cfg``, any object with the fields
they use (in the built-in loop, :class:`ies.training.Config`), and never import it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch


@dataclass
class Plan:
    """Who does what in one epoch. Index tensors are int64 on the run's device.

    Attributes:
        train: ``(A,)`` samples forwarded with grad and back-propagated.
        track: ``(M,)`` samples forwarded without grad only to record their loss (IES's excluded set).
        weights: ``(N,)`` float32 loss weight of every sample (a rescale), or ``None`` for all 1.
        filter: ``True``: each training batch is first forwarded without grad (eval mode) and only the
            samples :meth:`Selector.keep` picks are back-propagated, accumulated into full batches
            (Selective Backprop).
        stage: with ``filter``, the selection forward runs only a first stage of the model: an object
            with ``features(x)`` (the ``(B, D)`` signal :meth:`Selector.keep` gets instead of the losses)
            and ``fraction`` (host float: the share of a full forward's FLOPs that stage costs, read after
            ``features``), each sample so forwarded counted as that share of a forward (PFB).

    Samples in neither ``train`` nor ``track`` are left out of the epoch entirely.
    """

    train: torch.Tensor
    track: torch.Tensor
    weights: torch.Tensor | None = None
    filter: bool = False
    stage: object | None = None


class Selector:
    """Decides, every epoch, which samples train.

    The loop calls, per epoch: :meth:`plan` before training; :meth:`observe` with every per-sample
    loss it forwards (training pass and tracking pass); :meth:`end_epoch` after both passes;
    :meth:`stats` for the history row; :meth:`should_stop` after the row is written.
    """

    name: str = ""
    validation: torch.Tensor | None = None
    """``(V,)`` int64 training samples the loop evaluates after every epoch (eval mode, no augmentation)
    into the ``val_loss`` / ``val_accuracy`` history columns, counted in ``forward_samples``; ``None``:
    no validation pass (every selector but ``early_stop``)."""

    def __init__(self, cfg: Any, num_samples: int, device: torch.device, generator: torch.Generator) -> None:
        self.cfg = cfg
        self.num_samples = num_samples
        self.device = device
        self.generator = generator
        self.anneal_from = cfg.epochs - round(cfg.anneal_fraction * cfg.epochs)

    def annealing(self, epoch: int) -> bool:
        """True in the last ``anneal_fraction`` of the epochs, where every sample trains."""
        return epoch >= self.anneal_from

    def prepare(self, labels: torch.Tensor) -> None:
        """Called once before the first epoch with the ``(N,)`` int64 training labels (on the device),
        for a selector that needs them (a stratified validation split)."""

    def attach_model(self, model: torch.nn.Module) -> None:
        """Called once before the first epoch with the model being trained, for a selector that runs part
        of it itself (PFB's first stage)."""

    def plan(self, epoch: int, lr: float) -> Plan:
        """The plan of epoch ``epoch`` (0-based), whose learning rate is ``lr``."""
        raise NotImplementedError

    def observe(self, idx: torch.Tensor, losses: torch.Tensor) -> None:
        """``idx`` ``(B,)`` int64 samples whose per-sample ``losses`` ``(B,)`` were just forwarded."""

    def keep(self, idx: torch.Tensor, losses: torch.Tensor) -> torch.Tensor:
        """``(B,)`` bool: which samples of a batch forwarded without grad (``idx``, ``losses``, ``(B,)``)
        get the backward pass; called only for a plan with ``filter=True``."""
        raise NotImplementedError(f"selector {self.name!r} plans filter=True but has no keep()")

    def end_epoch(self, epoch: int) -> None:
        """Decide for the next epoch (``epoch`` 0-based, both passes done)."""

    def stats(self) -> dict[str, torch.Tensor]:
        """Device scalars for the history row: ``n_mastered``, ``n_newly_mastered``, ``n_reentered``,
        ``n_nonfinite`` and ``tracked_loss`` (mean of the finite last-recorded losses)."""
        raise NotImplementedError

    def should_stop(self, row: dict) -> bool:
        """Stop the run after this epoch's history ``row`` (conventional early stopping)."""
        return False

    def state_dict(self) -> dict:
        """Everything needed to resume exactly."""
        return {}

    def load_state_dict(self, state: dict) -> None:
        """Restore :meth:`state_dict`."""


SELECTORS: dict[str, type[Selector]] = {}


def register(cls: type[Selector]) -> type[Selector]:
    """Class decorator: add ``cls`` to :data:`SELECTORS` under ``cls.name``."""
    if not cls.name or cls.name in SELECTORS:
        raise ValueError(f"selector name {cls.name!r} is empty or taken")
    SELECTORS[cls.name] = cls
    return cls
