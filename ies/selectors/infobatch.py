"""InfoBatch (Qin et al., ICLR 2024) and small loss & rescale (the same without annealing, the IES paper's
"Small Loss & Rescale" baseline).

Each sample's score is its last observed loss. At the end of every epoch, a random share ``prune_ratio``
of the samples whose score is below the mean score is drawn to be left out of the next epoch entirely
(no forward, no backward, score unchanged); the kept below-mean samples get loss weight
``1 / (1 - prune_ratio)``. InfoBatch trains on all data, unweighted, in the last ``infobatch_anneal`` of
the epochs (:func:`ies.selectors.rules.anneal_start`). A never-observed sample (every sample in the first
epoch) is always kept. The rule is :func:`ies.selectors.rules.infobatch_plan`.
"""

from __future__ import annotations

import math

import torch

from .base import Plan, Selector, register
from .rules import infobatch_plan, update_scores


@register
class InfoBatch(Selector):
    """Prune-and-rescale of the below-mean-loss samples (``prune_ratio``), annealed over the last
    ``infobatch_anneal`` of the epochs (and the last ``anneal_fraction``, as every selector)."""

    name = "infobatch"
    anneals = True

    def __init__(self, cfg, num_samples, device, generator) -> None:
        super().__init__(cfg, num_samples, device, generator)
        self.fraction = max(cfg.infobatch_anneal, cfg.anneal_fraction) if self.anneals else cfg.anneal_fraction
        self.scores = torch.full((num_samples,), math.inf, device=device)
        self.excluded = torch.zeros(num_samples, dtype=torch.bool, device=device)
        self.weights = torch.ones(num_samples, device=device)

    def plan(self, epoch: int, lr: float) -> Plan:
        empty = torch.zeros(0, dtype=torch.long, device=self.device)
        return Plan(train=torch.nonzero(~self.excluded).flatten(), track=empty, weights=self.weights)

    def observe(self, idx: torch.Tensor, losses: torch.Tensor) -> None:
        update_scores(self.scores, idx, losses)

    def end_epoch(self, epoch: int) -> None:
        """Draw the next epoch's pruned set from the scores as they are now."""
        if epoch + 1 >= self.cfg.epochs:
            return
        keep, self.weights = infobatch_plan(self.scores, epoch + 1, self.cfg.epochs, self.cfg.prune_ratio,
                                            self.fraction, self.generator)
        self.excluded = ~keep

    def stats(self) -> dict[str, torch.Tensor]:
        """``n_mastered``: samples pruned from the next epoch; ``tracked_loss``: mean finite score."""
        finite = torch.isfinite(self.scores)
        zero = torch.zeros((), device=self.device)
        return {
            "tracked_loss": torch.where(finite, self.scores, 0).sum() / finite.sum().clamp(min=1),
            "n_mastered": self.excluded.sum(),
            "n_newly_mastered": zero,
            "n_reentered": zero,
            "n_nonfinite": (~finite).sum(),
        }

    def state_dict(self) -> dict:
        return {"scores": self.scores, "excluded": self.excluded, "weights": self.weights}

    def load_state_dict(self, state: dict) -> None:
        self.scores = state["scores"].to(self.device)
        self.excluded = state["excluded"].to(self.device)
        self.weights = state["weights"].to(self.device)


@register
class SmallLossRescale(InfoBatch):
    """InfoBatch's prune-and-rescale without its annealing (``infobatch_anneal`` is not used)."""

    name = "small_loss_rescale"
    anneals = False
