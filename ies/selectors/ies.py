"""IES (the paper's method): a sample is *excluded* from back-propagation in the next epoch when the
tracker finds it *mastered*; the excluded samples are still forwarded without grad, so that their loss
keeps being tracked and the decision can be reversed. ``loss`` is the same with the N = 0 rule."""

from __future__ import annotations

import torch

from ..tracker import MasteryTracker
from .base import Plan, Selector, register


def tracker_stats(tracker: MasteryTracker, excluded: torch.Tensor) -> dict[str, torch.Tensor]:
    """The history statistics every tracking selector reports (device scalars, no host sync)."""
    tracked = tracker.last_losses
    finite = torch.isfinite(tracked)
    counts = tracker.counts
    return {
        "tracked_loss": torch.where(finite, tracked, 0).sum() / finite.sum().clamp(min=1),
        "n_mastered": excluded.sum(),
        "n_newly_mastered": counts["n_newly_mastered"],
        "n_reentered": counts["n_reentered"],
        "n_nonfinite": (~finite).sum(),
    }


@register
class IES(Selector):
    """Exclude the samples the :class:`MasteryTracker` (``threshold``, ``order``, ``rule``, ``window``,
    ``patience``) found mastered at the end of the last epoch; every sample trains in the first epoch and
    in the last ``anneal_fraction`` of the epochs."""

    name = "ies"
    order_override: int | None = None
    rule_override: str | None = None

    def __init__(self, cfg, num_samples, device, generator) -> None:
        super().__init__(cfg, num_samples, device, generator)
        order = cfg.order if self.order_override is None else self.order_override
        rule = cfg.rule if self.rule_override is None else self.rule_override
        self.tracker = MasteryTracker(num_samples, cfg.threshold, order, cfg.window, cfg.patience, rule,
                                      device=device)
        self.excluded = torch.zeros(num_samples, dtype=torch.bool, device=device)

    def plan(self, epoch: int, lr: float) -> Plan:
        if self.annealing(epoch):
            self.excluded = torch.zeros_like(self.excluded)
        return Plan(train=torch.nonzero(~self.excluded).flatten(), track=torch.nonzero(self.excluded).flatten())

    def observe(self, idx: torch.Tensor, losses: torch.Tensor) -> None:
        self.tracker.record(idx, losses)

    def end_epoch(self, epoch: int) -> None:
        self.tracker.step()
        self.excluded = self.tracker.mastered

    def stats(self) -> dict[str, torch.Tensor]:
        return tracker_stats(self.tracker, self.excluded)

    def state_dict(self) -> dict:
        return {"tracker": self.tracker.state_dict(), "excluded": self.excluded}

    def load_state_dict(self, state: dict) -> None:
        self.tracker.load_state_dict(state["tracker"])
        self.excluded = state["excluded"].to(self.device)


@register
class SmallLoss(IES):
    """IES with the N = 0 rule: excluded while the raw loss stays below ``threshold`` for ``patience``
    epochs (the paper's rule; ``order`` and ``rule`` are not used)."""

    name = "loss"
    order_override = 0
    rule_override = "paper"
