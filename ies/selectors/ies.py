"""IES (the paper's method): a sample is *excluded* from back-propagation in the next epoch when the
tracker finds it *mastered*; the excluded samples are still forwarded without grad, so that their loss
keeps being tracked and the decision can be reversed. ``loss`` is the same with the N = 0 rule.

``Config.recheck`` thins those forwards out (:mod:`ies.method.recheck`): in an epoch without a re-check the
excluded samples are neither forwarded nor recorded, and the tracker holds them (they stay excluded).
The default, ``every``, is the paper's method."""

from __future__ import annotations

import torch
import torch.distributed as dist

from ..method.cap import cap_mastered
from ..method.recheck import RecheckSchedule, parse_bins
from ..method.sharded import ShardedTracker
from ..method.tracker import TRACKER_DTYPES, MasteryTracker
from .base import Plan, Selector, register


def tracker_stats(tracker: MasteryTracker, excluded: torch.Tensor) -> dict[str, torch.Tensor]:
    """The history statistics every tracking selector reports (device scalars, no host sync).
    ``tracked_loss`` averages each sample's last recorded loss (the last epoch's, unless it was held).
    A :class:`~ies.method.sharded.ShardedTracker` sums its share over the ranks (a collective, every rank calls it)."""
    if hasattr(tracker, "recorded_sums"):
        total, n_finite, n_nonfinite = tracker.recorded_sums()
    else:
        tracked = tracker.last_recorded
        finite = torch.isfinite(tracked)
        total, n_finite, n_nonfinite = torch.where(finite, tracked, 0).sum(), finite.sum(), (~finite).sum()
    counts = tracker.counts
    return {
        "tracked_loss": total / n_finite.clamp(min=1),
        "n_mastered": excluded.sum(),
        "n_newly_mastered": counts["n_newly_mastered"],
        "n_reentered": counts["n_reentered"],
        "n_nonfinite": n_nonfinite,
    }


class TrackedExclusion(Selector):
    """A selector that excludes a set of samples from back-propagation and still forwards them, so that a
    :class:`MasteryTracker` keeps every sample's loss (the excluded set is :attr:`excluded`, ``(N,)`` bool;
    every sample trains in the last ``anneal_fraction`` of the epochs). Subclasses decide the set."""

    def __init__(self, cfg, num_samples, device, generator) -> None:
        super().__init__(cfg, num_samples, device, generator)
        threshold, order, rule = self.tracker_rule(cfg)
        # on several processes with shard_tracker, each rank keeps only its share (never the whole history)
        sharded = cfg.shard_tracker and dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1
        kind = ShardedTracker if sharded else MasteryTracker
        self.tracker = kind(num_samples, threshold, order, cfg.window, cfg.patience, rule, device=device,
                            dtype=TRACKER_DTYPES[cfg.tracker_dtype])
        self.excluded = torch.zeros(num_samples, dtype=torch.bool, device=device)

    def tracker_rule(self, cfg) -> tuple[float, int, str]:
        """``(threshold, order, rule)`` of the tracker (``window``, ``patience`` are the config's)."""
        return cfg.threshold, cfg.order, cfg.rule

    def plan(self, epoch: int, lr: float) -> Plan:
        if self.annealing(epoch):
            self.excluded = torch.zeros_like(self.excluded)
        return Plan(train=torch.nonzero(~self.excluded).flatten(), track=torch.nonzero(self.excluded).flatten())

    def observe(self, idx: torch.Tensor, losses: torch.Tensor) -> None:
        self.tracker.record(idx, losses)

    def stats(self) -> dict[str, torch.Tensor]:
        return tracker_stats(self.tracker, self.excluded)

    def state_dict(self) -> dict:
        return {"tracker": self.tracker.state_dict(), "excluded": self.excluded}

    def load_state_dict(self, state: dict) -> None:
        self.tracker.load_state_dict(state["tracker"])
        self.excluded = state["excluded"].to(self.device)


@register
class IES(TrackedExclusion):
    """Exclude the samples the :class:`MasteryTracker` (``threshold``, ``order``, ``rule``, ``window``,
    ``patience``) found mastered at the end of the last epoch; every sample trains in the first epoch and
    in the last ``anneal_fraction`` of the epochs. The excluded samples are forwarded (re-checked) in the
    epochs ``recheck`` / ``recheck_bins`` choose.

    With ``class_cap < 1`` the decision is then capped per group (:func:`ies.method.cap.cap_mastered`, the
    lowest last losses stay excluded); the groups, ``(N,)`` int64, are given by :meth:`set_cap_groups`
    (:func:`ies.training.setup.build_run` does it). ``n_mastered`` counts the excluded samples after the cap;
    ``n_newly_mastered`` and ``n_reentered`` are the tracker's, before it."""

    name = "ies"
    order_override: int | None = None
    rule_override: str | None = None

    def __init__(self, cfg, num_samples, device, generator) -> None:
        super().__init__(cfg, num_samples, device, generator)
        self.schedule = RecheckSchedule(cfg.recheck, parse_bins(cfg.recheck_bins))
        self.rechecking = True  # whether the epoch in progress re-checks the excluded samples
        self.cap_groups: torch.Tensor | None = None
        self._num_cap_groups = 0

    def tracker_rule(self, cfg) -> tuple[float, int, str]:
        order = cfg.order if self.order_override is None else self.order_override
        rule = cfg.rule if self.rule_override is None else self.rule_override
        return cfg.threshold, order, rule

    def set_cap_groups(self, groups: torch.Tensor) -> None:
        """The ``(N,)`` int64 group of every sample for ``class_cap`` (class or subgroup labels)."""
        if groups.shape != (self.num_samples,):
            raise ValueError(f"cap groups must be ({self.num_samples},), got {tuple(groups.shape)}")
        self.cap_groups = groups.to(self.device, torch.int64)
        self._num_cap_groups = int(groups.max()) + 1 if groups.numel() else 0

    def plan(self, epoch: int, lr: float) -> Plan:
        plan = super().plan(epoch, lr)
        self.rechecking = self.schedule.is_recheck(epoch, lr)
        if not self.rechecking:  # the excluded samples are neither forwarded nor recorded this epoch
            plan.track = plan.track[:0]
        return plan

    def end_epoch(self, epoch: int) -> None:
        self.tracker.step(recheck=self.rechecking)  # without a re-check, unrecorded excluded samples are held
        self.excluded = self.tracker.mastered
        if self.cfg.class_cap < 1:
            if self.cap_groups is None:
                raise RuntimeError("class_cap < 1 needs the groups: call set_cap_groups (build_run does)")
            self.excluded = cap_mastered(self.excluded, self.cap_groups, self.cfg.class_cap,
                                         self.tracker.last_recorded, num_groups=self._num_cap_groups)

    def state_dict(self) -> dict:
        return {**super().state_dict(), "recheck": self.schedule.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        if "recheck" in state:  # absent in checkpoints written before re-check schedules (= every epoch)
            self.schedule.load_state_dict(state["recheck"])


@register
class SmallLoss(IES):
    """IES with the N = 0 rule: excluded while the raw loss stays below ``threshold`` for ``patience``
    epochs (the paper's rule; ``order`` and ``rule`` are not used)."""

    name = "loss"
    order_override = 0
    rule_override = "paper"
