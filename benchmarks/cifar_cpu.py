"""Baseline, IES and IES with ``recheck="lr"`` on MNIST-1D and on real CIFAR-10 images on the CPU, one run each.

    python benchmarks/cifar_cpu.py                        # both data sets, the cifar-cpu preset
    python benchmarks/cifar_cpu.py --only cifar --seed 1  # one data set, another seed

CIFAR: ``cifar10_subset_10k.npz`` (uint8 ``x_train`` 10000x32x32x3, ``y_train``, ``x_test`` 2000, ``y_test``) from
``--npz``, else ``../shared/data/`` next to the repository, else ``data/`` inside it, trained with the
``cifar-cpu`` preset (:mod:`ies.training.presets`; the measurements: ``benchmarks/RECIPE_NOTES.md``); its entry is
``{"skipped": ...}`` if there is no file. MNIST-1D: the defaults (cnn1d, 60 epochs, delta 1e-3).

Prints one JSON object, per data set: ``runs`` (``baseline``, ``ies``, ``ies_recheck_lr``), each with
final and best test accuracy, ``backprop_saved``, ``compute_saved`` (``1 - (F + 2B) / 3NE`` from the
forward and backward sample counts), ``flop_ideal_speedup`` ``= 1 / (1 - compute_saved)``,
``measured_speedup`` (baseline wall time / this run's), ``measured_over_ideal`` (their ratio), the same two
without the per-epoch test evaluation (identical in every run and outside the FLOP count),
``recheck_epochs`` (epochs that forwarded the excluded samples, of those with any excluded), the seconds
of each phase (``ies.training.loop.run_epoch``'s ``phases``) and per-epoch ``ideal_speedup_per_epoch`` /
``measured_speedup_per_epoch`` against the baseline's same epoch. Then ``accuracy_difference`` of each
method against the baseline and ``target_met``: ``recheck="lr"``'s measured speedup above plain IES's
FLOP-ideal. One seed: whether an accuracy difference is within the seed noise needs more seeds
(``--seed``; ``benchmarks/RECIPE_NOTES.md`` has the cifar-cpu preset's spread over three seeds).

Times on a shared machine are inflated and noisy: compare the runs of one invocation only.
"""

from __future__ import annotations

import argparse
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
    from ies.training.history import summarize
    from ies.training.loop import run_epoch
    from ies.training.setup import build_run

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


# the baseline trains as plain training whatever the preset's loss_source (a clean pass draws no random
# numbers and changes no weights, so its accuracy is the same; it would only add a forward of every sample)
METHODS = {"baseline": {"threshold": 0.0, "loss_source": "training"}, "ies": {}, "ies_recheck_lr": {"recheck": "lr"}}


def per_epoch(rows: list[dict], base_rows: list[dict], n: int) -> tuple[list[float], list[float]]:
    """FLOP-ideal speedup of each epoch (``3N / (F + 2B)``) and the measured one against the baseline's epoch."""
    ideal = [3 * n / (r["forward_samples"] + 2 * r["backprop_samples"]) for r in rows]
    measured = [b["epoch_seconds"] / r["epoch_seconds"] for r, b in zip(rows, base_rows, strict=False)]
    return [round(v, 4) for v in ideal], [round(v, 4) for v in measured]


def bench(cfg, data) -> dict:
    """The three runs of ``cfg`` (its threshold is IES's) on ``data`` and their comparison."""
    timed = {}
    for name, change in METHODS.items():
        timed[name] = t = timed_run(cfg.replace(**change), data)
        m = t["metrics"]
        print(f"{cfg.dataset} {name}: acc {m['test_accuracy']:.4f} backprop saved {m['backprop_saving']:.3f} "
              f"compute saved {m['compute_saving']:.3f} wall {m['wall_time_s']:.1f} s", file=sys.stderr, flush=True)
    base = timed["baseline"]
    base_train = base["metrics"]["wall_time_s"] - base["phases"].get("evaluate", 0.0)
    runs = {}
    for name, t in timed.items():
        m, rows = t["metrics"], t["rows"]
        wall_train = m["wall_time_s"] - t["phases"].get("evaluate", 0.0)
        ideal = m["flop_ideal_speedup"]
        measured = base["metrics"]["wall_time_s"] / m["wall_time_s"]
        measured_train = base_train / wall_train
        ideal_e, measured_e = per_epoch(rows, base["rows"], data.num_train)
        with_excluded = [r for r in rows if r["n_active"] < data.num_train]
        runs[name] = {
            "test_accuracy": m["test_accuracy"], "best_test_accuracy": m["best_test_accuracy"],
            "backprop_saved": m["backprop_saving"], "compute_saved": m["compute_saving"],
            "flop_ideal_speedup": ideal, "measured_speedup": measured, "measured_over_ideal": measured / ideal,
            "measured_speedup_without_test_eval": measured_train,
            "measured_over_ideal_without_test_eval": measured_train / ideal,
            "wall_time_s": m["wall_time_s"], "phase_seconds": {k: round(v, 3) for k, v in t["phases"].items()},
            "recheck_epochs": f"{sum(r['forward_only_samples'] > 0 for r in with_excluded)} of {len(with_excluded)}",
            "ideal_speedup_per_epoch": ideal_e, "measured_speedup_per_epoch": measured_e,
        }
    acc = {k: r["test_accuracy"] - runs["baseline"]["test_accuracy"] for k, r in runs.items() if k != "baseline"}
    best = {k: r["best_test_accuracy"] - runs["baseline"]["best_test_accuracy"] for k, r in runs.items()
            if k != "baseline"}
    lr_run, ies_run = runs["ies_recheck_lr"], runs["ies"]
    return {
        "config": {k: v for k, v in cfg.to_dict().items() if k not in ("output", "progress", "data_dir")},
        "n_train": data.num_train, "n_test": int(data.y_test.numel()), "runs": runs,
        "accuracy_difference": acc, "best_accuracy_difference": best,
        "target_met": lr_run["measured_speedup"] > ies_run["flop_ideal_speedup"],
        "target_met_without_test_eval": lr_run["measured_speedup_without_test_eval"] > ies_run["flop_ideal_speedup"],
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--npz", default="", help="path of cifar10_subset_10k.npz (default: ../shared/data or data/)")
    p.add_argument("--only", choices=("mnist1d", "cifar"), default=None, help="one data set only")
    p.add_argument("--preset", default="cifar-cpu", help="the CIFAR runs' preset (ies/training/presets.py)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch's default)")
    args = p.parse_args(argv)
    if args.threads:  # default: torch's choice (OMP_NUM_THREADS); one thread is faster on an oversubscribed CPU
        torch.set_num_threads(args.threads)

    from ies import Config
    from ies.data.datasets import load_dataset
    from ies.training.presets import config_with_preset

    run_control = dict(device="cpu", progress=False, checkpoint_every=0, seed=args.seed)
    out: dict = {"torch_threads": torch.get_num_threads(), "seed": args.seed}
    if args.only in (None, "mnist1d"):
        cfg = Config(dataset="mnist1d", **run_control)
        out["mnist1d"] = bench(cfg, load_dataset("mnist1d", size=cfg.dataset_size))
    if args.only in (None, "cifar"):
        path = find_npz(args.npz)
        if path is None:
            where = args.npz or " or ".join(str(c) for c in CANDIDATES)
            out["cifar"] = {"skipped": f"no CIFAR-10 subset at {where}; pass --npz PATH"}
        else:
            cfg = config_with_preset(args.preset, dataset=str(path), **run_control)
            out["cifar"] = {"preset": args.preset, **bench(cfg, load_dataset(cfg.dataset, size=cfg.dataset_size))}
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
