"""Baseline vs IES on real CIFAR-10 images on the CPU: the small CNN, one run each, the same seed.

    python benchmarks/cifar_cpu.py                       # a few minutes on 2 cores
    python benchmarks/cifar_cpu.py --subset 0 --test-subset 0 --epochs 60 --augment

Reads ``cifar10_subset_10k.npz`` (uint8 ``x_train`` 10000x32x32x3, ``y_train``, ``x_test`` 2000, ``y_test``)
from ``--npz``, else ``../shared/data/`` next to the repository, else ``data/`` inside it; prints
``{"skipped": ...}`` if there is none.

The default is sized for a few minutes on a laptop CPU: 1500 random training images, 1000 random test images,
30 epochs, no augmentation. In so short a run a small CNN with crop + flip is still far from fitting
its training set and IES masters almost nothing at delta = 1e-3 (the rule replayed on a baseline's
losses, 1000 images: no sample mastered in 40 epochs); without augmentation the training losses
settle within ~20 epochs and the rule has something to find. ``--augment`` restores the paper's pipeline.

Prints one JSON object:

- ``baseline`` / ``ies``: final and best test accuracy, wall time, mean epoch time, the seconds of
  each phase of the epoch (``ies.training.run_epoch``'s ``phases``), and ``bookkeeping_share``: the
  share of the epoch time spent in ``tracker.record`` and ``tracker.step`` (the target is <= 1 %);
- ``accuracy_difference`` (IES - baseline), ``backprop_saved`` (excluded sample-epochs / (N x epochs)),
  ``wall_clock_ratio`` (IES time / baseline time), ``speedup`` (its inverse),
  ``flop_ideal_speedup`` = 1 / (1 - 2s/3) for the saving s (a forward ~ 1/3 of a training step, mastered
  samples still forwarded once), and ``share_of_ideal`` = speedup / flop_ideal_speedup;
- the same without the per-epoch test evaluation (identical in both runs, outside the FLOP count):
  ``speedup_without_test_eval``, ``share_of_ideal_without_test_eval``, and
  ``share_of_ideal_gain_without_test_eval`` = (speedup - 1) / (ideal - 1);
- ``measured_forward_cost``: seconds per image of the tracking pass over those of a training step
  (the ideal assumes 1/3).

Times on a shared machine are inflated and noisy: compare the two runs of one invocation only.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
CANDIDATES = [REPO.parent / "shared" / "data" / "cifar10_subset_10k.npz", REPO / "data" / "cifar10_subset_10k.npz"]


def find_npz(given: str) -> Path | None:
    for path in [Path(given)] if given else CANDIDATES:
        if path.exists():
            return path
    return None


def timed_run(cfg, data) -> dict:
    """One run composed from the public epoch steps (``build_run`` + ``run_epoch``), with the seconds of each
    phase and of the selector's bookkeeping (``observe`` = ``tracker.record``, and ``end_epoch`` =
    ``tracker.step``; exact on a CPU, where both run synchronously)."""
    from ies.history import summarize
    from ies.setup import build_run
    from ies.training import run_epoch

    run = build_run(cfg, dataset=data)
    phases: dict[str, float] = {"bookkeeping": 0.0}
    observe = run.selector.observe

    def timed_observe(idx, losses):
        t0 = time.perf_counter()
        observe(idx, losses)
        phases["bookkeeping"] += time.perf_counter() - t0

    run.selector.observe = timed_observe  # this run's own object, nothing global
    rows, t0 = [], time.perf_counter()
    for epoch in range(cfg.epochs):
        rows.append(run_epoch(run, epoch, phases))
    wall = time.perf_counter() - t0
    return {"metrics": summarize(cfg.to_dict(), rows, wall, data.num_train), "rows": rows, "phases": phases}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--npz", default="", help="path of cifar10_subset_10k.npz (default: ../shared/data or data/)")
    p.add_argument("--subset", type=int, default=1500,
                   help="training samples, drawn at random with --seed (default 1500 of 10000; 0 = all)")
    p.add_argument("--test-subset", type=int, default=1000, help="test samples, drawn at random (0 = all 2000)")
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--augment", action="store_true", help="random crop + flip (default: off, see above)")
    p.add_argument("--threshold", type=float, default=1e-3, help="delta of IES (the authors' CIFAR-10 value)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--eval-batch-size", type=int, default=64,
                   help="no-grad passes (default 64: on a CPU a forward at batch 1024 costs ~0.6 of a training "
                        "step per image, at 64 ~0.25; measured with small_cnn)")
    p.add_argument("--lr", type=float, default=0.05)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch's default)")
    args = p.parse_args(argv)

    path = find_npz(args.npz)
    if path is None:
        where = args.npz or " or ".join(str(c) for c in CANDIDATES)
        print(json.dumps({"skipped": f"no CIFAR-10 subset at {where}; pass --npz PATH"}))
        return 0
    if args.threads:  # default: torch's choice (OMP_NUM_THREADS); one thread is faster on an oversubscribed CPU
        torch.set_num_threads(args.threads)

    from ies import Config
    from ies.data import load_dataset
    from ies.notebook import flop_ideal_speedup

    data = load_dataset(str(path))
    if 0 < args.subset < data.num_train:  # a random subset: the file is sorted by class, its first n are not
        keep = torch.randperm(data.num_train, generator=torch.Generator().manual_seed(args.seed))[: args.subset]
        data = dataclasses.replace(data, x_train=data.x_train[keep], y_train=data.y_train[keep])
    if 0 < args.test_subset < data.y_test.numel():  # sorted by class too
        keep = torch.randperm(data.y_test.numel(), generator=torch.Generator().manual_seed(args.seed))
        data = dataclasses.replace(data, x_test=data.x_test[keep[: args.test_subset]],
                                   y_test=data.y_test[keep[: args.test_subset]])
    cfg = Config(dataset=str(path), model="small_cnn", epochs=args.epochs, batch_size=args.batch_size,
                 eval_batch_size=args.eval_batch_size, lr=args.lr, seed=args.seed, device="cpu", progress=False,
                 checkpoint_every=0, threshold=args.threshold, augment=args.augment)
    runs = {}
    for name, threshold in (("baseline", 0.0), ("ies", args.threshold)):
        timed = timed_run(cfg.replace(threshold=threshold), data)
        m, phases = timed["metrics"], timed["phases"]
        # tracker.step runs inside the "decide" phase, next to the scheduler step (negligible)
        bookkeeping = phases["bookkeeping"] + phases.get("decide", 0.0)
        runs[name] = {
            "test_accuracy": m["test_accuracy"],
            "best_test_accuracy": m["best_test_accuracy"],
            "backprop_saved": m["backprop_saving"],
            "compute_saved": m["compute_saving"],
            "wall_time_s": m["wall_time_s"],
            "mean_epoch_s": m["epoch_seconds_total"] / max(len(timed["rows"]), 1),
            "bookkeeping_s": bookkeeping,
            "bookkeeping_share": bookkeeping / m["epoch_seconds_total"],
            "phase_seconds": phases,
            "test_eval_s": phases.get("evaluate", 0.0),
            "tracking_pass_s": phases.get("track", 0.0),
            "forward_only_samples": m["forward_only_samples"],
        }
    base, ies = runs["baseline"], runs["ies"]
    base_n_backprop = data.num_train * args.epochs
    s = ies["backprop_saved"]
    speedup = base["wall_time_s"] / ies["wall_time_s"]
    ideal = flop_ideal_speedup(s)
    # the FLOP ideal counts training and tracking only: the same test evaluation in both runs dilutes it
    train_s = {k: r["wall_time_s"] - r["test_eval_s"] for k, r in runs.items()}
    speedup_train = train_s["baseline"] / train_s["ies"]
    n_forward = ies["forward_only_samples"]
    print(json.dumps({
        "dataset": path.name, "n_train": data.num_train, "n_test": int(data.y_test.numel()), "model": "small_cnn",
        "epochs": args.epochs, "batch_size": args.batch_size, "eval_batch_size": args.eval_batch_size,
        "threshold": args.threshold, "seed": args.seed,
        "augment": args.augment,
        "torch_threads": torch.get_num_threads(),
        "baseline": base, "ies": ies,
        "accuracy_difference": ies["test_accuracy"] - base["test_accuracy"],
        "backprop_saved": s,
        "wall_clock_ratio": ies["wall_time_s"] / base["wall_time_s"],
        "speedup": speedup,
        "flop_ideal_speedup": ideal,
        "share_of_ideal": speedup / ideal,
        "speedup_without_test_eval": speedup_train,
        "share_of_ideal_without_test_eval": speedup_train / ideal,
        "share_of_ideal_gain_without_test_eval": (speedup_train - 1) / (ideal - 1) if s > 0 else None,
        # seconds per image of the tracking pass over those of a training step: the ideal assumes 1/3
        "measured_forward_cost": (ies["tracking_pass_s"] / n_forward) / (train_s["baseline"] / base_n_backprop)
        if n_forward else None,
        "ies_bookkeeping_share": ies["bookkeeping_share"],
    }, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
