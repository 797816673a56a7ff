"""Benchmark: bytes the tracker sends per epoch in ``ies.train`` on ``R`` gloo processes with
``shard_tracker=True`` (:class:`ies.method.sharded.ShardedTracker`: records to their owners, decision and fitted
bits, the ``tracked_loss`` sums), against ``combine_losses``' all-reduce of ``2 N`` float64.

Prints JSON. ``python benchmarks/ddp_shard_comm.py [--world 2] [--dataset-size 1000] [--epochs 6]``
(synthetic data, mlp, global batch 32, threshold 0.05, window 1, re-check every 2 epochs: the run of
``tests/test_ddp_sharded.py``). ``sent_bytes``: per rank, per epoch (payload, ``ShardedTracker.comm``);
``combine_losses_bytes``: ``16 N``, the payload of the all-reduce (a ring sends ``2 (R - 1) / R`` of it per rank).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import tempfile

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from ies import Config, train


def worker(rank: int, world: int, port: int, cfg: dict, out: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    sent = []
    result = train(Config(**cfg, shard_tracker=True), on_epoch_end=lambda e, m, t: sent.append(t.comm["sent_bytes"]))
    with open(os.path.join(out, f"{rank}.json"), "w") as f:
        json.dump({"sent_bytes": sent, "n": result.tracker.num_samples,
                   "n_active": [int(a) for a in result.history["n_active"]]}, f)
    dist.destroy_process_group()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--world", type=int, default=2)
    parser.add_argument("--dataset-size", type=int, default=1000)
    parser.add_argument("--epochs", type=int, default=6)
    args = parser.parse_args()
    cfg = dict(dataset="synthetic", dataset_size=args.dataset_size, model="mlp", epochs=args.epochs, batch_size=32,
               device="cpu", lr=0.05, progress=False, threshold=0.05, window=1, recheck="2")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with tempfile.TemporaryDirectory() as out:
        mp.spawn(worker, args=(args.world, port, cfg, out), nprocs=args.world)
        ranks = [json.load(open(os.path.join(out, f"{r}.json"))) for r in range(args.world)]
    n = ranks[0]["n"]
    print(json.dumps({"world": args.world, "samples": n, "n_active": ranks[0]["n_active"],
                      "sent_bytes": [r["sent_bytes"] for r in ranks], "combine_losses_bytes": 16 * n,
                      "combine_losses_ring_bytes_per_rank": 2 * (args.world - 1) * 16 * n // args.world}))


if __name__ == "__main__":
    main()
