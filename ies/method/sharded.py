"""``ShardedTracker``: the mastery tracker split over the ranks of a process group, for training sets whose
loss history does not fit in one machine's memory (or that is not worth repeating on every rank).

:mod:`ies.method.distributed` keeps a whole :class:`~ies.method.tracker.MasteryTracker` on every rank and all-reduces
every epoch's ``N`` losses (:func:`~ies.method.distributed.combine_losses`: ``2 N`` float64). Here rank ``r`` of
``R`` *owns* the samples ``i`` with ``i % R == r`` (strided: every rank owns ``ceil((N - r) / R)``
samples, at least one when ``N >= R``, and a class-sorted data set spreads over all ranks) and keeps
the history of those only, in a local ``MasteryTracker`` over local indices ``i // R``. Each epoch:

1. every rank trains and forwards whatever its sampler gives it (e.g. its share of the active set, from
   :class:`~ies.method.distributed.DistributedActiveSampler`, which reads :attr:`ShardedTracker.mastered`) and
   :meth:`~ShardedTracker.record`\\ s those losses under their *global* indices; they are buffered;
2. :meth:`~ShardedTracker.step` sends each buffered loss to its owner (one ``all_to_all`` of the counts,
   then one of int32 local indices and one of the losses' bytes in the storage dtype: 8 bytes a pair
   with float32, 6 with float16), the owners decide for their samples, and one ``all_gather`` of the owners'
   decisions packed 8 to a byte makes the global ``(N,)`` mastered mask known to every rank.

A rank sends about ``(N / R) (1 - 1/R)`` pairs and ``(R - 1) N / (8 R)`` bytes of decisions per epoch:
with float32 about ``8 N / R + N / 8`` bytes, against ``2 (R - 1) / R * 16 N`` bytes per rank for a ring
all-reduce of ``combine_losses`` (``benchmarks/sharded_comm.py`` measures both). Memory per rank: the
local tracker (``37 N / R`` bytes with float32) plus the global mask (``N`` bytes) plus the epoch's
buffered records.

Decisions equal those of a whole tracker fed with :func:`~ies.method.distributed.combine_losses` (tested with
two gloo processes): a sample recorded more than once on one rank keeps the rank's last value, and a
sample recorded on several ranks gets the mean of their values (computed in float64, as there).
``class_cap`` (a per-class cap over the whole data set) is not available here.

In one process, :func:`step_all` runs the step of a list of sharded trackers, one per rank, with the
collectives replaced by in-process copies (a simulated world; the tests use it)::

    dist.init_process_group("nccl")
    tracker = ShardedTracker(len(data), threshold=1e-3, device=device)   # rank, world: the default group
    train_sampler = DistributedActiveSampler(tracker, seed=0)            # reads tracker.mastered
    ...
        tracker.record(idx, losses)                                      # global indices, any rank
    tracker.step()                                                       # collectives: every rank calls it
"""

from __future__ import annotations

import torch
import torch.distributed as dist

from .tracker import Decisions, IndexRangeError, MasteryTracker

_BITS = 2 ** torch.arange(8, dtype=torch.uint8)
_all_gather = getattr(dist, "all_gather_single", None) or dist.all_gather_into_tensor  # the new name, or the old


def pack_bits(mask: torch.Tensor) -> torch.Tensor:
    """``(n,)`` bool -> ``(ceil(n / 8),)`` uint8, bit ``k`` of byte ``j`` = ``mask[8 j + k]``."""
    padded = torch.zeros(-(-mask.numel() // 8) * 8, dtype=torch.uint8, device=mask.device)
    padded[: mask.numel()] = mask
    return (padded.view(-1, 8) * _BITS.to(mask.device)).sum(1, dtype=torch.uint8)


def unpack_bits(packed: torch.Tensor, n: int) -> torch.Tensor:
    """``(..., m)`` uint8 -> ``(..., n)`` bool, ``n <= 8 m``: the inverse of :func:`pack_bits`."""
    bits = (packed.unsqueeze(-1) & _BITS.to(packed.device)) != 0
    return bits.flatten(-2)[..., :n]


class ShardedTracker(Decisions):
    """Rank ``rank``'s share of the samples' loss histories (``i % world_size == rank``) and the global decision.

    Args:
        num_samples: size N of the whole training set, ``>= world_size``.
        threshold, order, window, patience, rule, device, dtype: as :class:`~ies.method.tracker.MasteryTracker`.
        rank, world_size: default: those of ``group`` (the default process group).
        group: the process group of the collectives in :meth:`step`.

    The same interface as a ``MasteryTracker`` for a loop and a sampler: :meth:`record` (global indices),
    :meth:`step`, :attr:`mastered` ``(N,)``, :meth:`active_indices`, :meth:`mastered_indices`,
    :attr:`counts`, :meth:`stats`, :attr:`epoch`, :meth:`state_dict`; in place of the ``(N,)`` loss vectors,
    :meth:`recorded_sums` and :meth:`gather_mask` (collectives). The history of the owned samples is
    :attr:`local` (a ``MasteryTracker`` over local indices; global index of local ``j``: ``j R + rank``).
    """

    def __init__(self, num_samples: int, threshold: float, order: int = 2, window: int = 3, patience: int = 1,
                 rule: str = "official", device: torch.device | str | None = None,
                 dtype: torch.dtype = torch.float32, *, rank: int | None = None, world_size: int | None = None,
                 group=None) -> None:
        if world_size is None:
            world_size = dist.get_world_size(group) if dist.is_available() and dist.is_initialized() else 1
        if rank is None:
            rank = dist.get_rank(group) if dist.is_available() and dist.is_initialized() else 0
        if isinstance(world_size, bool) or not isinstance(world_size, int) or world_size < 1:
            raise ValueError(f"world_size must be a positive int, got {world_size!r}")
        if not isinstance(rank, int) or not 0 <= rank < world_size:
            raise ValueError(f"rank must be in 0..{world_size - 1}, got {rank!r}")
        if isinstance(num_samples, bool) or not isinstance(num_samples, int) or num_samples < world_size:
            raise ValueError(f"num_samples must be an int >= world_size={world_size}, got {num_samples!r}")
        self.num_samples, self.rank, self.world_size, self.group = num_samples, rank, world_size, group
        self.share = -(-num_samples // world_size)  # the largest local size: rank 0's
        local = -(-(num_samples - rank) // world_size)
        self.local = MasteryTracker(local, threshold, order, window, patience, rule, device, dtype)
        self.device, self.dtype = self.local.device, dtype
        self._mastered = torch.zeros(num_samples, dtype=torch.bool, device=self.device)
        self._stats = self.local.counts
        self._pending: list[tuple[torch.Tensor, torch.Tensor]] = []
        self.comm = {"sent_bytes": 0, "received_bytes": 0}
        """Bytes this rank sent to and received from other ranks (payload only) in the last :meth:`step`
        and the :meth:`gather_mask` and :meth:`recorded_sums` calls after it."""

    @property
    def epoch(self) -> int:
        return self.local.epoch

    @property
    def owned(self) -> torch.Tensor:
        """``(n_local,)`` int64 the global indices this rank owns, ascending (``rank, rank + R, ...``)."""
        return torch.arange(self.rank, self.num_samples, self.world_size, device=self.device)

    # ------------------------------------------------------------------ recording
    def record(self, indices: torch.Tensor, losses: torch.Tensor) -> None:
        """Buffer this epoch's ``(B,)`` losses of the samples ``(B,)`` ``indices`` (global, any owner)."""
        if not isinstance(indices, torch.Tensor) or not isinstance(losses, torch.Tensor):
            raise TypeError("indices and losses must be torch tensors")
        if indices.dim() != 1 or losses.shape != indices.shape:
            raise ValueError(f"indices and losses must be 1-D of one shape, got {tuple(indices.shape)} "
                             f"and {tuple(losses.shape)}")
        if indices.dtype.is_floating_point or indices.dtype == torch.bool or indices.is_complex():
            raise TypeError(f"indices must be an integer tensor, got {indices.dtype}")
        if indices.numel() and indices.device.type == "cpu":  # on the host, before the copy: free
            lo, hi = torch.stack(torch.aminmax(indices)).tolist()
            if lo < 0 or hi >= self.num_samples:
                raise IndexRangeError(f"indices must lie in 0..{self.num_samples - 1}, got values in {lo}..{hi}")
        indices = indices.to(self.device, torch.int64, non_blocking=True)
        self._pending.append((indices, losses.detach().to(self.device, self.dtype, non_blocking=True)))

    def _outgoing(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The epoch's records, each sample's last one on this rank, grouped by owner: ``(M,)`` int32
        local indices, ``(M,)`` losses and ``(R,)`` int64 how many go to each rank."""
        if not self._pending:
            idx = torch.zeros(0, dtype=torch.int64, device=self.device)
            values = torch.zeros(0, dtype=self.dtype, device=self.device)
        else:
            idx, values = (torch.cat(t) for t in zip(*self._pending, strict=True))
        self._pending = []
        unique, inverse = torch.unique(idx, return_inverse=True)  # ascending, so grouped by owner below
        last = torch.zeros_like(unique).scatter_reduce_(
            0, inverse, torch.arange(idx.numel(), device=self.device), "amax", include_self=False)
        values = values[last]
        owner = unique % self.world_size
        order = torch.argsort(owner, stable=True)
        counts = torch.bincount(owner, minlength=self.world_size)
        return (unique[order] // self.world_size).to(torch.int32), values[order], counts

    def _deliver(self, idx: torch.Tensor, values: torch.Tensor) -> None:
        """Write received ``(M,)`` local indices and losses into the local epoch: the mean per sample
        (in float64) of the values of the ranks that recorded it (NaN ones left out)."""
        recorded = ~torch.isnan(values)  # a NaN counts as not recorded, as in combine_losses
        idx, values = idx[recorded], values[recorded]
        unique, inverse = torch.unique(idx.to(torch.int64), return_inverse=True)
        total = torch.zeros(unique.numel(), dtype=torch.float64, device=self.device)
        total.index_add_(0, inverse, values.double())
        self.local.current[unique] = (total / torch.bincount(inverse, minlength=unique.numel())).to(self.dtype)

    # ------------------------------------------------------------------ deciding
    def step(self, recheck: bool = True) -> torch.Tensor:
        """Close the epoch on every rank (a collective: all ranks of the group call it): route the
        buffered losses to their owners, decide locally (``recheck`` as in
        :meth:`MasteryTracker.step <ies.method.tracker.MasteryTracker.step>`), gather the decisions.

        Returns:
            ``(num_samples,)`` bool, True = mastered, the same on every rank; also :attr:`mastered`.
        """
        if not self._collective():
            return step_all([self], recheck)  # one rank, no process group: nothing to exchange
        idx, values, counts = self._outgoing()
        received = torch.empty_like(counts)
        dist.all_to_all_single(received, counts, group=self.group)
        send, recv = counts.tolist(), received.tolist()
        got_idx = idx.new_empty(sum(recv))
        dist.all_to_all_single(got_idx, idx, recv, send, group=self.group)
        size = values.element_size()  # the losses travel as raw bytes (gloo has no 16-bit types)
        got = values.new_empty(sum(recv)).view(torch.uint8)
        dist.all_to_all_single(got, values.contiguous().view(torch.uint8), [c * size for c in recv],
                               [c * size for c in send], group=self.group)
        self._deliver(got_idx, got.view(self.dtype))
        packed = self._decide(recheck)
        gathered = packed.new_empty(self.world_size * packed.numel())
        _all_gather(gathered, packed, group=self.group)
        pair = idx.element_size() + values.element_size()
        others = self.world_size - 1
        self.comm = {"sent_bytes": 8 * others + pair * (sum(send) - send[self.rank]) + packed.numel() * others,
                     "received_bytes": 8 * others + pair * (sum(recv) - recv[self.rank]) + packed.numel() * others}
        return self._merge(gathered.view(self.world_size, -1))

    def _decide(self, recheck: bool) -> torch.Tensor:
        """Step the local tracker; its decision padded to :attr:`share` samples, packed: ``(ceil(share / 8),)``."""
        mask = self.local.step(recheck=recheck)
        return pack_bits(torch.cat([mask, mask.new_zeros(self.share - mask.numel())]))

    def _merge(self, gathered: torch.Tensor) -> torch.Tensor:
        """``(R, ceil(share / 8))`` every rank's packed decision -> the global ``(N,)`` mask; the counts."""
        previous = self._mastered
        mastered = self._unpack(gathered)
        self._stats = {"n_mastered": mastered.sum(), "n_newly_mastered": (mastered & ~previous).sum(),
                       "n_reentered": (previous & ~mastered).sum()}
        self._mastered = mastered
        return mastered

    def _unpack(self, gathered: torch.Tensor) -> torch.Tensor:
        """``(R, ceil(share / 8))`` every rank's packed local mask -> the global ``(N,)`` bool mask."""
        return unpack_bits(gathered, self.share).T.reshape(-1)[: self.num_samples].contiguous()

    def _collective(self) -> bool:
        return self.world_size > 1 or (dist.is_available() and dist.is_initialized())

    def gather_mask(self, mask: torch.Tensor) -> torch.Tensor:
        """``(n_local,)`` bool over the owned samples (e.g. ``local.last_losses < x``) -> the global
        ``(num_samples,)`` mask on every rank: one ``all_gather`` of packed bits (a collective)."""
        packed = pack_bits(torch.cat([mask, mask.new_zeros(self.share - mask.numel())]))
        if not self._collective():
            return self._unpack(packed.unsqueeze(0))
        gathered = packed.new_empty(self.world_size * packed.numel())
        _all_gather(gathered, packed, group=self.group)
        self._count_bytes(packed.numel() * (self.world_size - 1))
        return self._unpack(gathered.view(self.world_size, -1))

    def _count_bytes(self, n: int) -> None:
        self.comm = {k: v + n for k, v in self.comm.items()}

    def recorded_sums(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Over all samples (a collective: one all-reduce of 3 float64): the float64 sum of the finite
        newest recorded values (``last_recorded`` of a whole tracker), how many are finite, how many not."""
        tracked = self.local.last_recorded
        finite = torch.isfinite(tracked)
        sums = torch.stack([torch.where(finite, tracked.double(), 0).sum(), finite.sum().double(),
                            (~finite).sum().double()])
        if self._collective():
            dist.all_reduce(sums, group=self.group)
            self._count_bytes(sums.numel() * sums.element_size())
        return sums[0], sums[1].long(), sums[2].long()

    # ------------------------------------------------------------------ reading: mastered, counts, ... (Decisions)

    # ------------------------------------------------------------------ persistence
    def state_dict(self) -> dict:
        """This rank's state (each rank saves its own): the local tracker, the global decision, the
        records buffered so far in the epoch in progress."""
        pending = [torch.cat(t) for t in zip(*self._pending, strict=True)] if self._pending else []
        return {"rank": self.rank, "world_size": self.world_size, "num_samples": self.num_samples,
                "local": self.local.state_dict(), "mastered": self._mastered.clone(), "pending": pending,
                "stats": {k: v.clone() for k, v in self._stats.items()}}

    def load_state_dict(self, state: dict) -> None:
        """Restore the :meth:`state_dict` of the same rank of the same world size and data set."""
        mine = {"rank": self.rank, "world_size": self.world_size, "num_samples": self.num_samples}
        saved = {k: state[k] for k in mine}
        if saved != mine:
            raise ValueError(f"sharded tracker state is for {saved}, this tracker is {mine}")
        self.local.load_state_dict(state["local"])
        self._mastered = state["mastered"].to(self.device).clone()
        self._pending = [tuple(t.to(self.device) for t in state["pending"])] if state["pending"] else []
        self._stats = {k: v.to(self.device).clone() for k, v in state["stats"].items()}


def step_all(trackers: list[ShardedTracker], recheck: bool = True) -> torch.Tensor:
    """:meth:`ShardedTracker.step` of a whole simulated world in one process: ``trackers[r]`` is rank ``r``'s,
    and the collectives are in-process copies. Returns the global ``(N,)`` mask (the same on every one)."""
    if [t.rank for t in trackers] != list(range(len(trackers))) or any(t.world_size != len(trackers)
                                                                       for t in trackers):
        raise ValueError("trackers must be ranks 0..R-1 of one world of size R = len(trackers)")
    outgoing = [t._outgoing() for t in trackers]
    for dest, tracker in enumerate(trackers):
        parts = [(idx.split(counts.tolist())[dest], values.split(counts.tolist())[dest])
                 for idx, values, counts in outgoing]
        tracker._deliver(torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts]))
    gathered = torch.stack([t._decide(recheck) for t in trackers])
    return [t._merge(gathered) for t in trackers][0]
