"""The built-in loop on several processes: ``torchrun --nproc-per-node R -m ies train ...``.

Launch it as any DDP program (one process per GPU; on a CPU, processes with the gloo backend)::

    torchrun --nproc-per-node 4 -m ies train --dataset cifar10 --batch-size 256 --output runs/ies4
    python -m torch.distributed.run --nproc-per-node 2 -m ies train --device cpu ...   # the same

:func:`ies.train` finds torchrun's environment (``WORLD_SIZE`` > 1, ``RANK``, ``LOCAL_RANK``; see
:func:`session`), checks the configuration on every rank before any collective (:func:`check`: the same
one-line ``ValueError`` everywhere, no rank left waiting), initialises the process group (``nccl`` on
``cuda:LOCAL_RANK``, ``gloo`` on the CPU), keeps it for the process's later runs (``compare`` trains two)
and destroys it when the process exits. A group the caller initialised
(``torch.multiprocessing.spawn``, a user's script) is used as it is and left alone.

What each epoch does on ``R`` ranks (:class:`Distributed`, hooks of :func:`ies.training.loop.run_epoch`):

- ``Config.batch_size`` stays the *global* batch ``B``; ``R`` must divide it; each rank steps on ``B / R``.
  Every rank draws the same permutation of ``plan.train`` from the loader generator (identical on every
  rank) and takes the ``r``-th block of ``B / R`` positions of each global batch (:func:`shard`); of a
  remainder batch of ``m < B`` samples the first ranks take full blocks, and a rank whose share is
  empty steps on an empty batch (a zero gradient, but DDP's collectives stay in step). DDP's
  all-reduce is weighted (:func:`share_hook`): rank ``r``'s mean gradient counts ``m_r / m``, so every
  step is the gradient of the mean over the global batch, as in one process with batch ``B``;
- the tracking pass (mastered samples) and the test evaluation are sharded the same way, without
  gradients and without collectives (the plain module, not DDP, runs them); before them, the model's
  buffers (BatchNorm statistics) are broadcast from rank 0, so every rank evaluates one model;
- :func:`ies.method.distributed.combine_losses` all-reduces the tracker's epoch before ``selector.end_epoch``:
  every rank takes the same decision (with ``Config.shard_tracker``, :class:`ies.method.sharded.ShardedTracker`
  instead: each rank keeps its share of the histories, losses go to their owners, the decisions come
  back as bits; see :meth:`Distributed.attach`); one more all-reduce sums the counts and loss sums of the history
  row (``backprop_samples``, ``forward_samples``, ``train_loss``, ``test_loss``, ``test_accuracy``);
- rank 0 alone writes ``history.csv``, ``metrics.json`` (with ``world_size``) and the checkpoint, which
  holds every rank's random state (:meth:`Distributed.gather_rng`) and, with ``shard_tracker``, every
  rank's tracker share (``tracker_ranks``, gathered to rank 0: :meth:`Distributed.gather_trackers`); a
  resume needs the same world size, the same ``shard_tracker`` and an ``output`` folder every rank can read.

``Config.shard_tracker``: the selector builds a :class:`ies.method.sharded.ShardedTracker` (never the whole one;
rank ``r``
keeps the histories of the samples ``i % R == r``), and :meth:`Distributed.combine` leaves the losses to
its ``step``. The decisions are those of the whole tracker; ``tracked_loss`` and ``n_nonfinite`` are
summed over the ranks (one all-reduce of 3 float64), and the group report's fitted column is gathered as
bits. ``keep_loss_matrix`` and ``class_cap < 1`` (every sample's loss on one rank) are refused.

Randomness: the loader and selector generators are seeded alike on every rank and drive only shared
draws (the order, the random selector's exclusions); augmentation draws from a per-rank generator
(``run.generators["augment"]``, seed ``seed + AUGMENT_SEED_OFFSET * (rank + 1)``), so it never
desynchronises the shared order.

Versus one process at the same global batch (tested with gloo on the CPU for a model without BatchNorm,
no augmentation): the same order and the same decisions; floats agree to rounding, since each gradient,
loss sum and evaluation sum is summed in another order. What differs by design: augmented batches (other
random streams), and BatchNorm, which normalises each rank's ``B / R`` samples by their own statistics
(:func:`shard` gives no rank a single sample of a remainder batch, which BatchNorm rejects in
training, unless ``B / R <= 2`` or the remainder is one sample, which one process rejects as well).
``SyncBatchNorm`` would restore the global statistics on CUDA; it is not wired in. Selectors with loss
weights, a backward filter or a validation split (``infobatch``, ``small_loss_rescale``,
``selective_backprop``, ``early_stop``) and ``compile=True`` are refused by :func:`check`.
"""

from __future__ import annotations

import atexit
import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass, field

import torch
import torch.distributed as dist
from torch import nn

from ..data.datasets import pass_order
from ..method.distributed import combine_losses
from ..method.sharded import ShardedTracker
from . import checkpoint as ckpt
from .config import Config

SUPPORTED_SELECTORS = ("ies", "loss", "random")
"""Selectors that run on several processes: those that exclude with a tracker (the baseline is ``ies``
with ``threshold=0``)."""
AUGMENT_SEED_OFFSET = 7_919
"""Rank ``r``'s augmentation generator is seeded with ``seed + AUGMENT_SEED_OFFSET * (r + 1)``."""


def environment() -> tuple[int, int, int]:
    """``(world_size, rank, local_rank)`` from torchrun's environment (``(1, 0, 0)`` without it)."""
    try:
        return tuple(int(os.environ.get(k, d)) for k, d in (("WORLD_SIZE", 1), ("RANK", 0), ("LOCAL_RANK", 0)))
    except ValueError as e:
        raise ValueError(f"WORLD_SIZE, RANK and LOCAL_RANK must be integers ({e})") from None


def check(cfg: Config, world: int) -> None:
    """Raise ``ValueError`` (one line, the parameter named) if ``cfg`` cannot run on ``world`` processes.
    Called on every rank before any collective, so every rank raises the same error."""
    if cfg.batch_size % world:
        raise ValueError(f"batch_size={cfg.batch_size} must be divisible by the world size {world} "
                         "(batch_size is the global batch, split evenly over the processes)")
    if cfg.selector not in SUPPORTED_SELECTORS:
        raise ValueError(f"selector={cfg.selector!r} does not run on several processes; use one of "
                         f"{', '.join(SUPPORTED_SELECTORS)} (or one process)")
    if cfg.shard_tracker and (cfg.keep_loss_matrix or cfg.class_cap < 1):
        name = "keep_loss_matrix=True" if cfg.keep_loss_matrix else f"class_cap={cfg.class_cap}"
        raise ValueError(f"shard_tracker=True on several processes does not support {name} (it needs every "
                         "sample's loss on one rank); use shard_tracker=False")
    if cfg.compile:
        raise ValueError("compile=True does not run on several processes yet; use --no-compile")
    if cfg.min_last_batch:
        raise ValueError(f"min_last_batch={cfg.min_last_batch} does not run on several processes yet; use 0")
    if cfg.device.startswith("mps") or cfg.device.startswith("cuda:"):
        raise ValueError(f"device={cfg.device!r} on several processes: use auto, cuda (rank r takes "
                         "cuda:LOCAL_RANK) or cpu")


def device_for(cfg: Config, local_rank: int) -> str:
    """The device of the process with ``local_rank``: ``cuda:LOCAL_RANK`` for ``auto`` and ``cuda`` when
    CUDA is available, else ``cpu`` for ``auto``; ``cpu`` is kept."""
    if cfg.device in ("auto", "cuda") and torch.cuda.is_available():
        return f"cuda:{local_rank}"
    return "cpu" if cfg.device == "auto" else cfg.device


@contextlib.contextmanager
def session(cfg: Config) -> Iterator[Distributed | None]:
    """The process group of a run: ``None`` in one process; else a :class:`Distributed` on the group the
    caller initialised, or on one initialised here from torchrun's environment (destroyed when the
    process exits). :func:`check` runs first on every rank."""
    if dist.is_available() and dist.is_initialized():
        world, rank = dist.get_world_size(), dist.get_rank()
        local = environment()[2] if "LOCAL_RANK" in os.environ else rank
        if world > 1:
            check(cfg, world)
        yield Distributed(rank, world, device_for(cfg, local)) if world > 1 else None
        return
    world, rank, local = environment()
    if world <= 1:
        yield None
        return
    check(cfg, world)
    device = device_for(cfg, local)
    if device.startswith("cuda"):
        torch.cuda.set_device(torch.device(device))
    dist.init_process_group("nccl" if device.startswith("cuda") else "gloo")
    # kept for the process's next runs (``compare`` trains two): a group re-initialised on torchrun's store
    # would read the old group's addresses
    atexit.register(lambda: dist.destroy_process_group() if dist.is_initialized() else None)
    yield Distributed(rank, world, device)


def shard(indices: torch.Tensor, batch_size: int, rank: int, world: int) -> tuple[torch.Tensor, list[int]]:
    """Rank ``rank``'s share of ``indices`` ``(n,)`` served in global batches of ``batch_size``: the
    ``rank``-th block of ``b = ceil(batch_size / world)`` positions of each global batch, in order; and
    the sizes of the global batches (``batch_size`` each, the remainder last). A remainder batch of
    ``m`` fills ``m // b`` blocks, one partial block, then empty ones; where that partial block would be
    a single sample (which BatchNorm rejects in training) and ``b > 2``, the block before gives it one
    (``b - 1`` and ``2``). The gradient does not depend on the split (:func:`share_hook`)."""
    n, b = indices.numel(), -(-batch_size // world)
    full, m = n // batch_size, n % batch_size
    head = indices[: full * batch_size].view(full, batch_size)[:, rank * b : (rank + 1) * b].reshape(-1)
    start, stop = min(m, rank * b), min(m, (rank + 1) * b)
    if m % b == 1 and m > b > 2:
        single = m // b  # the rank whose share would be one sample
        start, stop = start - (rank == single), stop - (rank == single - 1)
    tail = indices[full * batch_size :][start:stop]
    return torch.cat([head, tail]), [batch_size] * full + ([m] if m else [])


@dataclass
class GradientShare:
    """The weight of this rank's mean gradient in the global one, for the step in progress (``m_r / m``),
    set by :class:`ShardedLoader` before it serves each batch and read by :func:`share_hook`."""

    weight: float = 1.0


def share_hook(share: GradientShare, bucket):  # unannotated: DDP checks the annotations, these would be strings
    """DDP communication hook (``bucket``: a ``dist.GradBucket``; returns a future of its reduced buffer):
    every rank's gradient times ``share.weight`` (zeroed at weight 0, an empty batch), summed over the
    ranks: the gradient of the mean loss over the global batch."""
    buf = bucket.buffer()
    if share.weight:
        buf.mul_(share.weight)
    else:
        buf.zero_()
    return dist.all_reduce(buf, async_op=True).get_future().then(lambda fut: fut.value()[0])


class ShardedLoader:
    """This rank's share of ``loader`` (anything with ``.device``, ``.generator``, ``len()`` and
    ``batches(indices, batch_size, *, shuffle, augment)``): the same interface, ``batch_size`` global.

    ``batches`` shuffles as :class:`ies.data.datasets.DeviceLoader` does (``randperm`` with ``generator``, the
    generator shared by all ranks), takes this rank's :func:`shard`, and serves it through
    ``loader.batches(share, ceil(batch_size / world), shuffle=False, augment=augment)`` (the loader's own
    generator, per rank, augments). Every rank serves one batch per global batch, empty ones included,
    and sets ``share.weight`` for each. Other attributes are the loader's."""

    def __init__(self, loader, rank: int, world: int, generator: torch.Generator | None = None,
                 share: GradientShare | None = None) -> None:
        self.loader, self.rank, self.world = loader, rank, world
        self.generator, self.share = generator, share if share is not None else GradientShare()
        self.device = loader.device

    def __len__(self) -> int:
        return len(self.loader)

    def __getattr__(self, name: str):
        return getattr(self.__dict__["loader"], name)

    def batches(self, indices: torch.Tensor | None = None, batch_size: int = 256, *, shuffle: bool = False,
                augment: bool = False, min_last: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        """Yield ``(inputs, targets, indices)`` of this rank's share of each global batch of ``indices``
        (``min_last`` must be 0: :func:`check` refuses ``min_last_batch`` on several processes)."""
        if min_last:
            raise ValueError("min_last_batch does not run on several processes yet")
        indices = pass_order(indices, len(self), batch_size, self.device, self.generator if shuffle else None)
        mine, sizes = shard(indices, batch_size, self.rank, self.world)
        local = -(-batch_size // self.world)
        served = iter(self.loader.batches(mine, local, shuffle=False, augment=augment))
        last = None
        for size in sizes:
            batch = next(served, None)
            if batch is None:  # this rank's share of the remainder batch is empty: still one step, on none
                last = last if last is not None else next(iter(self.loader.batches(indices[:1], 1)))
                batch = tuple(t[:0] for t in last)
            last = batch
            self.share.weight = batch[2].shape[0] / size
            yield batch


@dataclass
class Distributed:
    """One rank of a run on ``world`` processes: the hooks :func:`ies.training.loop.train` and
    :func:`ies.training.loop.run_epoch` call (see the module docstring)."""

    rank: int
    world: int
    device: str
    share: GradientShare = field(default_factory=GradientShare)
    plain: tuple = field(default=(), repr=False)  # the run's own step model and loaders, while attached

    @property
    def writes(self) -> bool:
        """Whether this rank writes the run's files (rank 0)."""
        return self.rank == 0

    def attach(self, run) -> None:
        """Make ``run`` (:class:`ies.training.setup.Run`, just built) a rank of the run: DDP for the training steps,
        sharded loaders, a per-rank augmentation generator in ``run.generators["augment"]``."""
        self.plain = (run.step_model, run.train_data, run.test_data)
        device = torch.device(self.device)
        ddp = nn.parallel.DistributedDataParallel(run.model, device_ids=[device] if device.type == "cuda" else None)
        ddp.register_comm_hook(self.share, share_hook)
        run.step_model = TrainThroughDDP(run.step_model, ddp)
        augment = torch.Generator(device=device).manual_seed(run.cfg.seed + AUGMENT_SEED_OFFSET * (self.rank + 1))
        shared = run.train_data.generator
        run.train_data.generator = augment
        run.generators["augment"] = augment
        run.train_data = ShardedLoader(run.train_data, self.rank, self.world, shared, self.share)
        run.test_data = ShardedLoader(run.test_data, self.rank, self.world)

    def detach(self, run) -> None:
        """Give ``run`` back its plain model and whole loaders (after the last epoch)."""
        run.step_model, run.train_data, run.test_data = self.plain

    def after_train(self, run) -> None:
        """Broadcast the model's buffers (BatchNorm statistics) from rank 0: one model is evaluated."""
        for buf in run.model.buffers():
            dist.broadcast(buf, 0)

    def combine(self, selector) -> None:
        """Every rank's recorded losses of the epoch into every rank's tracker, before the decision (a
        :class:`~ies.method.sharded.ShardedTracker` exchanges them in its own ``step``)."""
        if not isinstance(selector.tracker, ShardedTracker):
            combine_losses(selector.tracker)

    def reduce(self, stats, test: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Sum the training statistics ``stats`` (:class:`ies.training.epoch.TrainStats`, in place) and the test sums
        ``test`` over the ranks in one all-reduce; returns the summed ``test``."""
        packed = torch.stack([stats.loss_sum.double(), test[0].double(), test[1].double(),
                              torch.tensor(float(stats.backprop_samples), device=stats.loss_sum.device),
                              torch.tensor(float(stats.forward_samples), device=stats.loss_sum.device)])
        dist.all_reduce(packed)
        stats.loss_sum = packed[0].to(stats.loss_sum.dtype)
        stats.backprop_samples, stats.forward_samples = (int(v) for v in packed[3:].tolist())
        return packed[1].to(test[0].dtype), packed[2].to(test[1].dtype)  # as one process divides them

    def gather_rng(self, generators: dict[str, torch.Generator]) -> list[dict]:
        """Every rank's random state (:func:`ies.training.checkpoint.rng_state`), indexed by rank (a collective)."""
        states: list = [None] * self.world
        dist.all_gather_object(states, ckpt.rng_state(generators))
        return states

    def gather_trackers(self, selector) -> list[dict] | None:
        """Every rank's :class:`~ies.method.sharded.ShardedTracker` state (CPU tensors), indexed by rank, on rank 0
        (``None`` elsewhere, and for a whole tracker): a collective."""
        tracker = getattr(selector, "tracker", None)
        if not isinstance(tracker, ShardedTracker):
            return None
        states = [None] * self.world if self.rank == 0 else None
        dist.gather_object(_cpu(tracker.state_dict()), states, dst=0)
        return states


def _cpu(obj):
    """``obj`` (dicts, lists, tuples of tensors and plain values) with every tensor copied to the CPU."""
    if isinstance(obj, torch.Tensor):
        return obj.cpu()
    if isinstance(obj, dict):
        return {k: _cpu(v) for k, v in obj.items()}
    return type(obj)(_cpu(v) for v in obj) if isinstance(obj, (list, tuple)) else obj


def checkpoint_selector(state: dict, ddp: Distributed | None, selector) -> dict:
    """The selector state this rank restores from a checkpoint ``state``: with a sharded tracker, its own
    rank's tracker (``state["tracker_ranks"]``); ``ValueError`` if the checkpoint was written with another
    ``shard_tracker``."""
    sharded = isinstance(getattr(selector, "tracker", None), ShardedTracker)
    if sharded != ("tracker_ranks" in state):
        raise ValueError(f"resume: the checkpoint was written with shard_tracker={not sharded}, this run has "
                         f"shard_tracker={sharded}; resume as it was written")
    return {**state["selector"], "tracker": state["tracker_ranks"][ddp.rank]} if sharded else state["selector"]


def checkpoint_rng(state: dict, ddp: Distributed | None) -> dict:
    """The random state this rank restores from a checkpoint ``state`` (every rank's, for several processes);
    ``ValueError`` if the checkpoint was written by another number of processes."""
    world, rank = (ddp.world, ddp.rank) if ddp is not None else (1, 0)
    written = int(state.get("world_size", 1))
    if written != world:
        raise ValueError(f"resume: the checkpoint was written by {written} process(es), this run has "
                         f"world_size={world}; resume with as many processes")
    return state["rng_ranks"][rank] if world > 1 else state["rng"]


class TrainThroughDDP(nn.Module):
    """``ddp`` (DistributedDataParallel) for forwards in training mode with grad, ``plain`` otherwise:
    the no-grad passes run on each rank alone, with no collective and any number of batches."""

    def __init__(self, plain: nn.Module, ddp: nn.parallel.DistributedDataParallel) -> None:
        super().__init__()
        self.ddp = ddp
        self.__dict__["plain"] = plain  # ddp.module, or a wrapper of it: registered once, through ddp

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training and torch.is_grad_enabled():
            return self.ddp(x)
        return self.plain(x)
