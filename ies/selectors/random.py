"""Random exclusion at a matched budget: each epoch leave out (forward-only, as IES) a uniformly random
set of the size a reference run excluded in that epoch; the control that tells whether IES's *choice*
of samples matters."""

from __future__ import annotations

import pandas as pd
import torch

from ..tracker import MasteryTracker
from .base import Plan, Selector, register
from .ies import tracker_stats


def random_budget(path: str, epochs: int) -> list[int]:
    """Per-epoch exclusion counts of a reference run (its ``forward_only_samples`` column)."""
    ref = pd.read_csv(path)
    if "forward_only_samples" not in ref:
        raise ValueError(f"random_budget: {path} has no forward_only_samples column")
    counts = [int(c) for c in ref["forward_only_samples"]]
    if len(counts) < epochs:
        raise ValueError(f"random_budget: {path} has {len(counts)} epochs, this run needs {epochs}")
    return counts[:epochs]


@register
class RandomExclusion(Selector):
    """Exclude ``budget[t]`` random samples in epoch ``t`` (``random_budget``: the reference's history).
    The losses are still tracked (threshold 0: nothing is ever mastered), for the same statistics."""

    name = "random"

    def __init__(self, cfg, num_samples, device, generator) -> None:
        super().__init__(cfg, num_samples, device, generator)
        self.budget = random_budget(cfg.random_budget, cfg.epochs)
        self.tracker = MasteryTracker(num_samples, 0.0, cfg.order, cfg.window, cfg.patience, cfg.rule,
                                      device=device)
        self.excluded = torch.zeros(num_samples, dtype=torch.bool, device=device)
        if self.budget[0] > 0:  # a reference that excluded samples in its first epoch
            self.excluded = self._draw(self.budget[0])

    def _draw(self, k: int) -> torch.Tensor:
        n = self.num_samples
        perm = torch.randperm(n, device=self.device, generator=self.generator)[: min(k, n)]
        return torch.zeros(n, dtype=torch.bool, device=self.device).index_fill_(0, perm, True)

    def plan(self, epoch: int, lr: float) -> Plan:
        if self.annealing(epoch):
            self.excluded = torch.zeros_like(self.excluded)
        return Plan(train=torch.nonzero(~self.excluded).flatten(), track=torch.nonzero(self.excluded).flatten())

    def observe(self, idx: torch.Tensor, losses: torch.Tensor) -> None:
        self.tracker.record(idx, losses)

    def end_epoch(self, epoch: int) -> None:
        self.tracker.step()
        # the draw for the *next* epoch: budget[t + 1] (none after the last epoch); the generator
        # advances every epoch, also for an empty draw
        nxt = epoch + 1
        self.excluded = self._draw(min(self.budget[nxt], self.num_samples) if nxt < len(self.budget) else 0)

    def stats(self) -> dict[str, torch.Tensor]:
        return tracker_stats(self.tracker, self.excluded)

    def state_dict(self) -> dict:
        return {"tracker": self.tracker.state_dict(), "excluded": self.excluded}

    def load_state_dict(self, state: dict) -> None:
        self.tracker.load_state_dict(state["tracker"])
        self.excluded = state["excluded"].to(self.device)
