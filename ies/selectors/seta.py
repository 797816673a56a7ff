"""SeTa (Zhou, Gao, Wang, "Scale Efficient Training for Large Datasets", CVPR 2025), as the authors' code
(``mrazhou/SeTa``, ``seta.py``) does it.

Each sample's score is its last training loss (3 before its first, as the authors' code). Every epoch:
a uniformly random draw keeps ``1 - seta_prune_ratio`` of the samples (the share clamped to [0.1, 1]);
the draw's scores are split by 1-D k-means into ``seta_groups`` groups ordered from easy (low loss) to
hard; in the first epoch the whole draw trains, afterwards a window of ``round(seta_groups x
seta_window)`` consecutive groups that slides one group per epoch from easy to hard and wraps around.
In the last ``seta_anneal`` of the epochs (the authors' ``delta = 0.875``) the random draw trains as it
is, without the groups (their partial annealing); in the last ``anneal_fraction`` every sample trains.
No loss rescaling. The rule is :func:`ies.selectors.rules_pruning.seta_plan`; the authors' defaults for
lossless pruning (``scripts/cifar.sh SeTa 0.1 5 0.9``) are this selector's.

Accounting: a sample left out is not forwarded at all; the draw for epoch ``t + 1`` is made at the end of
epoch ``t`` from the scores as they are then (the first in the constructor).
"""

from __future__ import annotations

import torch

from .base import Plan, Selector, register
from .rules import update_scores
from .rules_pruning import INITIAL_SCORE, seta_anneal_start, seta_plan


@register
class SeTa(Selector):
    """Random down-sampling, k-means groups of the losses, a window sliding from easy to hard groups."""

    name = "seta"

    def __init__(self, cfg, num_samples, device, generator) -> None:
        super().__init__(cfg, num_samples, device, generator)
        self.seta_from = seta_anneal_start(cfg.epochs, cfg.seta_anneal)
        self.scores = torch.full((num_samples,), INITIAL_SCORE, device=device)
        self.iteration = 0  # epochs pruned with the groups so far (the authors' ``iterations``)
        self.keep = self._draw(0)

    def _draw(self, epoch: int) -> torch.Tensor:
        if self.annealing(epoch):
            return torch.ones(self.num_samples, dtype=torch.bool, device=self.device)
        partial = epoch >= self.seta_from
        keep = seta_plan(self.scores, self.iteration, self.cfg.seta_prune_ratio, self.cfg.seta_groups,
                         self.cfg.seta_window, partial, self.generator)
        self.iteration += not partial
        return keep

    def plan(self, epoch: int, lr: float) -> Plan:
        return Plan(train=torch.nonzero(self.keep).flatten(), track=self.keep.new_zeros(0, dtype=torch.long))

    def observe(self, idx: torch.Tensor, losses: torch.Tensor) -> None:
        update_scores(self.scores, idx, losses)

    def end_epoch(self, epoch: int) -> None:
        if epoch + 1 < self.cfg.epochs:
            self.keep = self._draw(epoch + 1)

    def stats(self) -> dict[str, torch.Tensor]:
        """``n_mastered``: samples left out of the next epoch; ``tracked_loss``: mean finite score."""
        finite = torch.isfinite(self.scores)
        zero = torch.zeros((), device=self.device)
        return {
            "tracked_loss": torch.where(finite, self.scores, 0).sum() / finite.sum().clamp(min=1),
            "n_mastered": (~self.keep).sum(),
            "n_newly_mastered": zero,
            "n_reentered": zero,
            "n_nonfinite": (~finite).sum(),
        }

    def state_dict(self) -> dict:
        return {"scores": self.scores, "keep": self.keep, "iteration": self.iteration}

    def load_state_dict(self, state: dict) -> None:
        self.scores = state["scores"].to(self.device)
        self.keep = state["keep"].to(self.device)
        self.iteration = int(state["iteration"])
