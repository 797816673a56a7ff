"""OrderDP (Jin et al., "OrderDP: A Theoretically Guaranteed Lossless Dynamic Data Pruning Framework",
ICLR 2026), as the authors' code (``shengze-xu/OrderDP``, ``cifar/orderDP/orderDP.py``) does it.

Each sample's score is its last training loss (3 before its first, as the authors' code); only the
samples that train refresh it. Every epoch a uniformly random pool of ``int(orderdp_pool x N)``
samples is drawn and the ``int(orderdp_top_q x pool)`` of them with the largest stale scores train: an
exact kept share, the same every epoch, no loss rescaling and no annealing (the authors' sampler prunes
in its annealing branch too); the last ``anneal_fraction`` of the epochs trains every sample, as for
every selector. The defaults are the README's CIFAR-100 command (``--random_len_ratio 0.8
--top_q_ratio 0.375``: 30 % of the samples train). The rule is
:func:`ies.selectors.rules_pruning.orderdp_plan`.

Accounting: a sample left out is not forwarded at all; the plan for epoch ``t + 1`` is drawn at the end
of epoch ``t`` (the first in the constructor).
"""

from __future__ import annotations

import torch

from .base import register
from .rules_pruning import orderdp_plan, orderdp_sizes
from .seta import SeTa


@register
class OrderDP(SeTa):
    """A random pool, then its top-q samples by stale loss (the scores and statistics of :class:`SeTa`)."""

    name = "orderdp"

    def __init__(self, cfg, num_samples, device, generator) -> None:
        self.pool_size, self.kept = orderdp_sizes(num_samples, cfg.orderdp_pool, cfg.orderdp_top_q)
        if self.kept < 1:
            raise ValueError(f"orderdp_pool x orderdp_top_q = {cfg.orderdp_pool} x {cfg.orderdp_top_q} keeps no "
                             f"sample of {num_samples}")
        super().__init__(cfg, num_samples, device, generator)

    def _draw(self, epoch: int) -> torch.Tensor:
        if self.annealing(epoch):
            return torch.ones(self.num_samples, dtype=torch.bool, device=self.device)
        return orderdp_plan(self.scores, self.pool_size, self.kept, self.generator)
