"""Selective Backprop (Jiang et al., 2019, "Accelerating deep learning by focusing on the biggest losers").

Every sample of the epoch is forwarded; each is kept for the backward pass with probability
(percentile of its loss among the last ``sb_history`` losses) ** ``sb_beta``; the kept samples are
accumulated into full training batches, which are forwarded again with grad and back-propagated.
Variant and reasons: :func:`ies.selectors.rules.selective_keep` (the basic, not the stale, variant).

Accounting: a sample costs its selection forward, and a kept one also its training forward and backward:
``compute_saving = (2 - 3 k) / 3`` for a kept share ``k``, never above 2/3 (every sample is forwarded).
"""

from __future__ import annotations

import torch

from .base import Plan, Selector, register
from .rules import LossHistory, selective_keep


@register
class SelectiveBackprop(Selector):
    """Keep each forwarded sample for backprop with probability percentile ** ``sb_beta``."""

    name = "selective_backprop"

    def __init__(self, cfg, num_samples, device, generator) -> None:
        super().__init__(cfg, num_samples, device, generator)
        self.history = LossHistory(cfg.sb_history, device)
        self.everyone = torch.arange(num_samples, device=device)
        self.dropped = torch.zeros((), dtype=torch.long, device=device)
        self.loss_sum = torch.zeros((), device=device)
        self.seen = torch.zeros((), dtype=torch.long, device=device)

    def plan(self, epoch: int, lr: float) -> Plan:
        self.dropped = torch.zeros_like(self.dropped)
        self.loss_sum, self.seen = torch.zeros_like(self.loss_sum), torch.zeros_like(self.seen)
        # every sample is forwarded and filtered; no filter in the anneal epochs (``anneal_fraction``)
        return Plan(train=self.everyone, track=self.everyone[:0], filter=not self.annealing(epoch))

    def keep(self, idx: torch.Tensor, losses: torch.Tensor) -> torch.Tensor:
        kept, _ = selective_keep(self.history, losses, self.cfg.sb_beta, self.generator)
        self.dropped += (~kept).sum()
        self.loss_sum += losses.sum()
        self.seen += losses.numel()
        return kept

    def stats(self) -> dict[str, torch.Tensor]:
        """``n_mastered``: samples forwarded but not back-propagated this epoch; ``tracked_loss``: mean
        selection loss of the epoch."""
        zero = torch.zeros((), device=self.device)
        return {
            "tracked_loss": self.loss_sum / self.seen.clamp(min=1),
            "n_mastered": self.dropped,
            "n_newly_mastered": zero,
            "n_reentered": zero,
            "n_nonfinite": zero,
        }

    def state_dict(self) -> dict:
        return {"history": self.history.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.history.load_state_dict(state["history"])
