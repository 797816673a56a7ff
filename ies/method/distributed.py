"""IES on several GPUs with ``torch.distributed`` (e.g. launched by ``torchrun``, with DDP).

Every rank keeps a whole :class:`~ies.method.tracker.MasteryTracker` (``N`` floats per look-back epoch, small
next to the model). Each epoch:

1. every rank trains on its shard of the active samples, drawn by :class:`DistributedActiveSampler`
   (the same shuffled order on every rank, padded to a multiple of the world size as
   ``torch.utils.data.DistributedSampler`` does), and forwards its shard of the mastered ones;
2. every rank ``record``\\ s the losses of its own shard only;
3. :func:`combine_losses` all-reduces the epoch's recorded losses, so every rank holds every sample's
   loss; then ``tracker.step()`` takes the same decision on every rank (same inputs, same arithmetic),
   and the samplers of the next epoch agree without further communication.

A sketch (the pieces of :mod:`ies.method.generic`, with DDP)::

    dist.init_process_group("nccl")                       # torchrun sets rank and world size
    model = DDP(model.to(device), device_ids=[device])
    tracker = MasteryTracker(len(data), threshold=1e-3, device=device)
    train_sampler = DistributedActiveSampler(tracker, seed=0)
    track_sampler = DistributedActiveSampler(tracker, "mastered")
    train_loader = DataLoader(IndexedDataset(data), batch_size=64, sampler=train_sampler, num_workers=8)
    track_loader = DataLoader(IndexedDataset(data), batch_size=512, sampler=track_sampler, num_workers=8)
    for epoch in range(epochs):
        for x, y, idx in train_loader:                    # this rank's share of the active samples
            losses = F.cross_entropy(model(x.to(device)), y.to(device), reduction="none")
            opt.zero_grad(); losses.mean().backward(); opt.step()   # DDP averages the gradients
            tracker.record(idx, losses)
        with torch.no_grad():
            for x, y, idx in track_loader:                # this rank's share of the mastered ones
                tracker.record(idx, F.cross_entropy(model.module(x.to(device)), y.to(device), reduction="none"))
        combine_losses(tracker)                           # every rank now holds every loss
        tracker.step()

With the device-resident :class:`~ies.data.datasets.DeviceLoader`, use ``sampler.indices().to(device)`` as the
``indices`` of ``loader.batches(..., shuffle=False)``. With a local batch ``b`` on ``R`` ranks, the
global batch is ``R b``: the same gradient steps as one process with batch ``R b`` on the same order
(tested with two processes on gloo). :func:`ies.train` itself runs on several processes with these pieces
when launched by ``torchrun`` (:mod:`ies.training.ddp`).
"""

from __future__ import annotations

import math

import torch
import torch.distributed as dist

from .generic import ActiveSampler


def combine_losses(tracker, group=None) -> None:
    """All-reduce the losses recorded on every rank in the epoch in progress, in place, before ``step()``.

    After the call, ``tracker.current`` is the same on every rank: a sample's loss is the mean of the
    values recorded for it on the ranks that recorded it (more than one only for the few samples that
    padding repeats), NaN where no rank recorded it. One ``all_reduce`` of ``2 N`` float64 values; it is
    a collective, so every rank of ``group`` must call it.
    """
    current = tracker.current
    recorded = ~torch.isnan(current)
    packed = torch.stack([torch.where(recorded, current.double(), 0.0), recorded.double()])
    dist.all_reduce(packed, op=dist.ReduceOp.SUM, group=group)
    total, count = packed[0], packed[1]
    current.copy_(torch.where(count > 0, total / count.clamp(min=1), math.nan))


class DistributedActiveSampler(ActiveSampler):
    """This rank's share of a subset of the tracker's samples, re-read from the tracker every epoch.

    The subset (``"active"``, ``"mastered"`` or ``"all"``) is ordered as :class:`ies.method.generic.ActiveSampler`
    orders it (``randperm`` seeded with ``seed + epoch``, identical on every rank because the trackers
    are), then padded with its own last elements to a multiple of ``num_replicas`` (or cut with
    ``drop_last``), and rank ``r`` takes positions ``r, r + R, r + 2R, ...``. Every rank therefore gets
    the same number of samples, hence the same number of batches (DDP needs that), and consecutive
    positions, which a global batch ``R b`` keeps together, are spread over the ranks.

    Args:
        tracker: the rank's :class:`~ies.method.tracker.MasteryTracker`, kept identical by :func:`combine_losses`.
        subset, shuffle, seed: as :class:`~ies.method.generic.ActiveSampler`.
        num_replicas, rank: default: the world size and rank of the default process group.
        drop_last: drop the last ``len % num_replicas`` samples of the order instead of padding.
    """

    def __init__(
        self,
        tracker,
        subset: str = "active",
        *,
        num_replicas: int | None = None,
        rank: int | None = None,
        shuffle: bool = True,
        seed: int = 0,
        drop_last: bool = False,
    ) -> None:
        super().__init__(tracker, subset, shuffle=shuffle, seed=seed)
        if num_replicas is None:
            num_replicas = dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1
        if rank is None:
            rank = dist.get_rank() if dist.is_available() and dist.is_initialized() else 0
        if not 0 <= rank < num_replicas:
            raise ValueError(f"rank must be in 0..{num_replicas - 1}, got {rank}")
        self.num_replicas, self.rank, self.drop_last = num_replicas, rank, drop_last

    def global_indices(self) -> torch.Tensor:
        """The padded (or cut) order shared by all ranks; rank ``r`` serves ``[r::num_replicas]`` of it."""
        order = super().indices()
        n, r = order.numel(), self.num_replicas
        if self.drop_last or n == 0:
            return order[: n - n % r]
        pad = (-n) % r
        if pad:
            tail = order.repeat(math.ceil(pad / n))[-pad:] if pad > n else order[n - pad :]
            order = torch.cat([order, tail])
        return order

    def indices(self) -> torch.Tensor:
        """``(len(self),)`` int64 CPU tensor: this rank's indices, in the order they are served."""
        return self.global_indices()[self.rank :: self.num_replicas]

    def __len__(self) -> int:
        n = super().__len__()
        return n // self.num_replicas if self.drop_last else math.ceil(n / self.num_replicas)
