"""Benchmark: do float16 / bfloat16 loss histories (``Config.tracker_dtype``) take the float32 decisions?

Prints JSON. ``python benchmarks/tracker_dtype.py [--seeds 0,1] [--thresholds 5e-4,1e-3,2e-3] [--epochs 60]``

1. ``replay``: a baseline run on MNIST-1D (``ies.train(..., keep_loss_matrix=True)``, the defaults:
   cnn1d, 60 epochs) gives every sample's training loss of every epoch; its ``(N, epochs)`` matrix is
   fed to a :class:`~ies.MasteryTracker` of each storage dtype (the default rule), and each epoch's
   mastered decision is compared with float32's: ``agreement`` = share of samples with the same
   decision (mean and minimum over the epochs from the first possible decision on), ``jaccard`` =
   |both mastered| / |either mastered| (over all epochs' decisions together), and the mastered
   sample-epochs of each dtype.
2. ``runs``: IES runs (``threshold`` 1e-3) with each ``tracker_dtype``: backprop saving and test accuracy.

Why they differ: rounding to float16 (unit roundoff u = 2^-11 ~ 4.9e-4) or bfloat16 (u = 2^-8 ~ 3.9e-3)
moves each stored loss ``L`` by up to ``u L``, hence a second difference ``L(t) - 2 L(t-1) + L(t-2)``
by up to ``4 u L``: as large as delta = 1e-3 from ``L ~ 0.5`` (float16) or ``L ~ 0.06`` (bfloat16) up,
where the decision of a sample near the threshold is then one of rounding. The samples IES masters
have small losses, whose differences keep their precision relative to their size.
"""

from __future__ import annotations

import argparse
import json

import torch

from ies import Config, MasteryTracker, train
from ies.method.tracker import TRACKER_DTYPES


def replay(losses: torch.Tensor, threshold: float, dtype: torch.dtype) -> torch.Tensor:
    """``(N, T)`` losses -> ``(T, N)`` bool the decision after each epoch, a tracker of ``dtype``."""
    tracker = MasteryTracker(losses.shape[0], threshold, dtype=dtype)
    everyone = torch.arange(losses.shape[0])
    out = []
    for t in range(losses.shape[1]):
        tracker.record(everyone, losses[:, t])
        out.append(tracker.step().clone())
    return torch.stack(out)


def compare(losses: torch.Tensor, threshold: float) -> dict:
    ref = replay(losses, threshold, torch.float32)
    first = MasteryTracker(1, threshold).lookback - 1  # the first epoch (0-based) with a decision
    row = {"threshold": threshold, "mastered_sample_epochs": {"float32": int(ref.sum())}}
    for name in ("float16", "bfloat16"):
        got = replay(losses, threshold, TRACKER_DTYPES[name])
        same = (got == ref)[first:].double().mean(dim=1)
        union = int((got | ref).sum())
        row[name] = {"agreement_mean": round(float(same.mean()), 5), "agreement_min": round(float(same.min()), 5),
                     "jaccard": round(int((got & ref).sum()) / union, 4) if union else 1.0}
        row["mastered_sample_epochs"][name] = int(got.sum())
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", default="0,1")
    parser.add_argument("--thresholds", default="5e-4,1e-3,2e-3")
    parser.add_argument("--epochs", type=int, default=60)
    parser.add_argument("--no-runs", action="store_true", help="only the replay of the baseline's losses")
    args = parser.parse_args()
    torch.set_num_threads(1)
    base = {"dataset": "mnist1d", "epochs": args.epochs, "progress": False, "device": "cpu"}
    out = {"torch_threads": 1, "replay": [], "runs": []}
    for seed in (int(s) for s in args.seeds.split(",")):
        result = train(Config(**base, seed=seed, threshold=0, keep_loss_matrix=True))
        losses = result.loss_matrix
        small = float((losses[:, -1] < 0.1).double().mean())
        for threshold in (float(t) for t in args.thresholds.split(",")):
            out["replay"].append({"seed": seed, "share_final_loss_below_0.1": round(small, 3),
                                  **compare(losses, threshold)})
        if args.no_runs:
            continue
        for name in TRACKER_DTYPES:
            m = train(Config(**base, seed=seed, threshold=1e-3, tracker_dtype=name)).metrics
            out["runs"].append({"seed": seed, "tracker_dtype": name, "backprop_saving": round(m["backprop_saving"], 4),
                                "test_accuracy": round(m["test_accuracy"], 4)})
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
