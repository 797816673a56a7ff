"""Benchmark: communication per epoch of the sharded tracker (:mod:`ies.method.sharded`) against a whole tracker on
every rank with :func:`ies.method.distributed.combine_losses`, with ``R`` gloo processes on the CPU.

Prints JSON. ``python benchmarks/sharded_comm.py [--samples 1281167] [--world 2] [--dtype float32]``

Every epoch each rank records the losses of its share of a shuffled order of all samples (positions
``r, r + R, ...``, as :class:`ies.method.distributed.DistributedActiveSampler` serves them), in batches of 256;
then the sharded tracker steps (all_to_all of the losses to their owners, all_gather of the packed
decisions) and, beside it, a whole tracker is combined (all-reduce of ``2 N`` float64) and stepped.
Reported for the last epoch (the look-back full): bytes this rank sent and received (payload) and the
seconds of each way; ``allreduce_ring_bytes_per_rank`` is what a ring all-reduce of ``combine_losses``
sends per rank, ``2 (R - 1) / R * 16 N``; memory: each way's tracker tensors per rank. Both ways'
decisions are checked equal.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import tempfile
import time

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from ies.method.distributed import combine_losses
from ies.method.sharded import ShardedTracker
from ies.method.tracker import TRACKER_DTYPES, MasteryTracker


def _nbytes(tracker: MasteryTracker) -> int:
    own = [tracker._ring, tracker._count, tracker._current, tracker._last, tracker._mastered]
    return sum(t.numel() * t.element_size() for t in own)


def worker(rank: int, world: int, port: int, n: int, dtype: str, out: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    try:
        whole = MasteryTracker(n, 1e-3, dtype=TRACKER_DTYPES[dtype])
        sharded = ShardedTracker(n, 1e-3, dtype=TRACKER_DTYPES[dtype])
        g = torch.Generator().manual_seed(0)  # the same on every rank
        base = torch.rand(n, generator=g)
        for epoch in range(whole.lookback):
            mine = torch.randperm(n, generator=g)[rank::world]
            losses = (base * 0.9**epoch + 1e-4 * torch.rand(n, generator=g))[mine]
            for start in range(0, mine.numel(), 256):
                for tracker in (whole, sharded):
                    tracker.record(mine[start : start + 256], losses[start : start + 256])
            dist.barrier()
            t0 = time.perf_counter()
            got = sharded.step()
            t1 = time.perf_counter()
            combine_losses(whole)
            want = whole.step()
            t2 = time.perf_counter()
            if not torch.equal(got, want):
                raise AssertionError(f"the two ways differ in epoch {epoch}")
        if rank == 0:
            result = {
                "samples": n, "world_size": world, "dtype": dtype, "mastered": int(want.sum()),
                "sharded": {**sharded.comm, "step_s": round(t1 - t0, 3),
                            "tracker_bytes_per_rank": _nbytes(sharded.local) + sharded.mastered.numel()},
                "combine_losses": {"allreduce_payload_bytes": 16 * n,
                                   "allreduce_ring_bytes_per_rank": round(2 * (world - 1) / world * 16 * n),
                                   "combine_and_step_s": round(t2 - t1, 3),
                                   "tracker_bytes_per_rank": _nbytes(whole)},
            }
            result["sent_ratio"] = round(result["combine_losses"]["allreduce_ring_bytes_per_rank"]
                                         / result["sharded"]["sent_bytes"], 1)
            with open(out, "w") as f:
                json.dump(result, f)
    finally:
        dist.destroy_process_group()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=1_281_167)
    parser.add_argument("--world", type=int, default=2)
    parser.add_argument("--dtype", default="float32", choices=tuple(TRACKER_DTYPES))
    args = parser.parse_args()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "result.json")
        mp.spawn(worker, args=(args.world, port, args.samples, args.dtype, out), nprocs=args.world, join=True)
        with open(out) as f:
            result = json.load(f)
    print(json.dumps({"torch_threads": 1, **result}, indent=2))


if __name__ == "__main__":
    main()
