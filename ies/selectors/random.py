"""Random exclusion at a matched budget: each epoch leave out (forward-only, as IES) a uniformly random
set of the size a reference run excluded in that epoch; the control that tells whether IES's *choice*
of samples matters."""

from __future__ import annotations

import pandas as pd
import torch

from .base import register
from .ies import TrackedExclusion


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
class RandomExclusion(TrackedExclusion):
    """Exclude ``budget[t]`` random samples in epoch ``t`` (``random_budget``: the reference's history).
    The losses are still tracked (threshold 0: nothing is ever mastered), for the same statistics."""

    name = "random"

    def __init__(self, cfg, num_samples, device, generator) -> None:
        super().__init__(cfg, num_samples, device, generator)
        self.budget = random_budget(cfg.random_budget, cfg.epochs)
        if self.budget[0] > 0:  # a reference that excluded samples in its first epoch
            self.excluded = self._draw(self.budget[0])

    def tracker_rule(self, cfg) -> tuple[float, int, str]:
        return 0.0, cfg.order, cfg.rule

    def _draw(self, k: int) -> torch.Tensor:
        n = self.num_samples
        perm = torch.randperm(n, device=self.device, generator=self.generator)[: min(k, n)]
        return torch.zeros(n, dtype=torch.bool, device=self.device).index_fill_(0, perm, True)

    def end_epoch(self, epoch: int) -> None:
        self.tracker.step()
        # the draw for the *next* epoch: budget[t + 1] (none after the last epoch); the generator
        # advances every epoch, also for an empty draw
        nxt = epoch + 1
        self.excluded = self._draw(min(self.budget[nxt], self.num_samples) if nxt < len(self.budget) else 0)
