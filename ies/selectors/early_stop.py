"""Conventional early stopping (the IES paper's "Conventional ES"): the baseline trained on the training
set minus a validation split, stopped once the validation accuracy has not improved for ``es_patience``
epochs (by more than ``es_min_delta``).

The split (:func:`ies.selectors.rules.validation_split`): ``val_fraction`` of the training set,
stratified by class, drawn from ``seed``; its samples are never trained. The loop evaluates them every
epoch (eval mode, no augmentation, the ``val_accuracy`` and ``val_loss`` history columns) and counts those
forwards in ``forward_samples``: they are the method's cost. Savings are against the full-length baseline.
"""

from __future__ import annotations

import torch

from .base import Plan, Selector, register
from .rules import EarlyStopping, validation_split


@register
class EarlyStop(Selector):
    """Train on the samples outside the validation split; stop on the validation accuracy."""

    name = "early_stop"

    def __init__(self, cfg, num_samples, device, generator) -> None:
        super().__init__(cfg, num_samples, device, generator)
        self.rule = EarlyStopping(cfg.es_patience, cfg.es_min_delta, mode="max")
        self.train_idx: torch.Tensor | None = None

    def prepare(self, labels: torch.Tensor) -> None:
        """Carve the validation split from the ``(N,)`` training labels."""
        self.train_idx, self.validation = validation_split(labels, self.cfg.val_fraction, self.cfg.seed)
        self.excluded = torch.zeros(self.num_samples, dtype=torch.bool, device=self.device)
        self.excluded[self.validation] = True

    def plan(self, epoch: int, lr: float) -> Plan:
        if self.train_idx is None:
            raise RuntimeError("early_stop: prepare(labels) must run before the first epoch")
        return Plan(train=self.train_idx, track=self.train_idx[:0])

    def should_stop(self, row: dict) -> bool:
        return self.rule.update(row["val_accuracy"])

    def stats(self) -> dict[str, torch.Tensor]:
        """``n_mastered``: the validation samples (never trained)."""
        zero = torch.zeros((), device=self.device)
        return {"tracked_loss": torch.full((), float("nan"), device=self.device),
                "n_mastered": self.excluded.sum(), "n_newly_mastered": zero, "n_reentered": zero,
                "n_nonfinite": zero}

    def state_dict(self) -> dict:
        return {"rule": self.rule.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.rule.load_state_dict(state["rule"])
