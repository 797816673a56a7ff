"""Benchmark: one epoch of tracker bookkeeping at ImageNet size, against the per-sample python way.

Prints JSON. ``python benchmarks/tracker.py [--samples 1281167] [--reference-samples 50000]``

* ours: ``record`` of batches of 256 losses in shuffled order + ``step()`` for N samples (CPU tensors);
* the authors' way: a dict of python lists, one ``.item()`` per sample per batch, then a python loop
  over samples computing D2, the moving average and the decision (as in their released code);
* the ratio is per sample: (their seconds / their N) / (our seconds / our N).
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from ies import MasteryTracker


def ours(n: int, batch: int, threshold: float) -> dict:
    tracker = MasteryTracker(n, threshold, order=2, window=3, patience=1, rule="official")
    g = torch.Generator().manual_seed(0)
    base = torch.rand(n, generator=g)

    def epoch(e: int) -> tuple[float, float]:
        perm = torch.randperm(n, generator=g)
        losses = base * (0.9**e) + 1e-4 * torch.rand(n, generator=g)
        batches = [(perm[s : s + batch], losses[perm[s : s + batch]]) for s in range(0, n, batch)]
        t0 = time.perf_counter()
        for idx, batch_losses in batches:  # what a training loop has at hand after each forward
            tracker.record(idx, batch_losses)
        t1 = time.perf_counter()
        tracker.step()
        t2 = time.perf_counter()
        return t1 - t0, t2 - t1

    for e in range(tracker.lookback):  # fill the look-back so that step() does the full work
        epoch(e)
    record_s, step_s = [], []
    for e in range(3):
        r, s = epoch(tracker.lookback + e)
        record_s.append(r)
        step_s.append(s)
    return {"samples": n, "record_s": min(record_s), "step_s": min(step_s),
            "epoch_s": min(r + s for r, s in zip(record_s, step_s, strict=True)),
            "mastered": int(tracker.mastered.sum())}


def authors_way(n: int, batch: int, threshold: float, window: int = 3, k: int = 1) -> dict:
    history: dict[int, list[float]] = {i: [] for i in range(n)}
    derivs: dict[int, list[float]] = {i: [] for i in range(n)}
    rng = np.random.default_rng(0)
    base = rng.random(n)

    def epoch(e: int) -> float:
        perm = torch.from_numpy(rng.permutation(n))
        losses = torch.from_numpy(base * 0.9**e + 1e-4 * rng.random(n)).float()
        batches = [(perm[s : s + batch], losses[perm[s : s + batch]]) for s in range(0, n, batch)]
        t0 = time.perf_counter()
        for idx_tensor, batch_losses in batches:
            idx = idx_tensor.numpy()
            for i, index in enumerate(idx):
                history[index].append(batch_losses[i].item())
        excluded = []
        for i, h in history.items():
            if len(h) >= 3:
                derivs[i].append(h[-1] - 2 * h[-2] + h[-3])
                derivs[i] = derivs[i][-(window + k):]
            d = derivs[i]
            if len(d) >= window + k:
                absd = np.abs(d)
                averages = [absd[j : j + window].mean() for j in range(len(d) - window + 1)]
                if np.sum(averages[-k:]) < threshold:
                    excluded.append(i)
        return time.perf_counter() - t0

    for e in range(window + k + 2):
        epoch(e)
    seconds = min(epoch(window + k + 2 + e) for e in range(2))
    return {"samples": n, "epoch_s": seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--samples", type=int, default=1_281_167)
    parser.add_argument("--reference-samples", type=int, default=50_000)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--threshold", type=float, default=1e-3)
    args = parser.parse_args()
    a = ours(args.samples, args.batch, args.threshold)
    b = authors_way(args.reference_samples, args.batch, args.threshold)
    per_sample_ours = a["epoch_s"] / a["samples"]
    per_sample_theirs = b["epoch_s"] / b["samples"]
    speedup = per_sample_theirs / per_sample_ours
    print(json.dumps({
        "torch_threads": torch.get_num_threads(),
        "ours": a,
        "authors_way": b,
        "speedup_per_sample": speedup,
        "targets": {"step_s <= 0.05": a["step_s"] <= 0.05, "speedup >= 100": speedup >= 100},
    }, indent=2))


if __name__ == "__main__":
    main()
