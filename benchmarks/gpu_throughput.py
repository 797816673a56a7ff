"""GPU figures of the image path: throughput of the training step and of the tracking pass, the cost of
the IES bookkeeping, and epochs of baseline vs IES on the CIFAR-10 subset. Run by ``benchmarks/gpu.sh``.

    python benchmarks/gpu_throughput.py --npz data/cifar10_subset_10k.npz     # expected 2-4 minutes on an H200
    python benchmarks/gpu_throughput.py --quick                                # seconds, CPU: checks it runs

Prints one JSON object:

- ``throughput``: images/s of ``train_step`` (batch gathered + cropped + flipped on the device,
  bf16 autocast forward, fp32 loss, backward, SGD step, ``tracker.record``: the body of ``ies.train``'s
  training loop) and of ``tracking_pass`` (eval-mode no-grad forward + ``record``: how mastered samples
  are tracked), for ResNet-18 (channels_last) at each ``--batch-sizes``; ``loader`` alone; and
  ``forward_cost`` = train-step time / tracking time per image (the FLOP-ideal assumes 1/3).
- ``bookkeeping``: seconds of ``tracker.record`` per batch and ``tracker.step`` per epoch (timed
  with CUDA synchronisation), and their share of a baseline epoch.
- ``epochs`` (with a data file): ``ies.train`` baseline and IES, same seed and configuration:
  accuracy of both, backprop saved, wall-clock ratio, the FLOP-ideal speedup ``1 / (1 - 2s/3)`` and
  the share of it reached.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
from functools import partial
from pathlib import Path

import torch
import torch.nn.functional as F

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run from a copy of the repository without installing it

from ies import Config, MasteryTracker  # noqa: E402
from ies.data.datasets import DeviceLoader, load_dataset  # noqa: E402
from ies.experiments.budget import speedup_from_backprop_saving  # noqa: E402
from ies.models.zoo import build_model  # noqa: E402

NPZ_NAME = "cifar10_subset_10k.npz"
CANDIDATES = [REPO / "data" / NPZ_NAME, REPO / "shared" / "data" / NPZ_NAME, REPO.parent / "shared" / "data" / NPZ_NAME]


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn, device, iters: int, warmup: int) -> float:
    """Seconds per call of ``fn`` after ``warmup`` calls."""
    for _ in range(warmup):
        fn()
    sync(device)
    t0 = time.perf_counter()
    for _ in range(iters):
        fn()
    sync(device)
    return (time.perf_counter() - t0) / iters


def throughput(device, batch_sizes, iters, warmup, compile_model) -> dict:
    cuda = device.type == "cuda"
    n = max(batch_sizes) * 8
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (n, 32, 32, 3), dtype=torch.uint8, generator=g)
    y = torch.randint(0, 10, (n,), generator=g)
    gen = torch.Generator(device=device).manual_seed(0)
    loader = DeviceLoader(x, y, device, augment=True, generator=gen, channels_last=True)
    model = build_model("resnet18", (32, 32, 3), 10).to(device)
    if cuda:
        model = model.to(memory_format=torch.channels_last)
    net = torch.compile(model, dynamic=False) if compile_model else model
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    amp = torch.autocast("cuda", dtype=torch.bfloat16) if cuda else contextlib.nullcontext()
    tracker = MasteryTracker(n, 1e-3, device=device)

    def train_step(order):
        xb = loader.inputs(order, augment=True)
        with amp:
            losses = F.cross_entropy(net(xb).float(), loader.y[order], reduction="none")
        opt.zero_grad(set_to_none=True)
        losses.mean().backward()
        opt.step()
        tracker.record(order, losses)

    @torch.no_grad()
    def tracking_pass(idx):
        xb = loader.inputs(idx, augment=True)
        with amp:
            tracker.record(idx, F.cross_entropy(net(xb).float(), loader.y[idx], reduction="none"))

    out = {}
    for b in batch_sizes:
        order = torch.randperm(n, device=device, generator=gen)[:b]
        net.train()
        t_train = timed(partial(train_step, order), device, iters, warmup)
        net.eval()
        t_track = timed(partial(tracking_pass, order), device, iters, warmup)
        net.train()
        t_load = timed(partial(loader.inputs, order, True), device, iters, warmup)
        out[f"batch_{b}"] = {
            "train_step_images_per_s": b / t_train,
            "tracking_pass_images_per_s": b / t_track,
            "loader_images_per_s": b / t_load,
            "forward_cost": t_track / t_train,
        }
    return out


def bookkeeping(device, n, batch, iters) -> dict:
    tracker = MasteryTracker(n, 1e-3, device=device)
    losses = torch.rand(batch, device=device)
    idx = torch.randperm(n, device=device)[:batch]
    for _ in range(tracker.lookback + 1):  # fill the history so step() does the full computation
        tracker.record(torch.arange(n, device=device), torch.rand(n, device=device))
        tracker.step()
    t_record = timed(lambda: tracker.record(idx, losses), device, iters, 5)
    t_step = timed(tracker.step, device, max(3, iters // 10), 2)
    return {"n": n, "batch": batch, "record_s": t_record, "step_s": t_step,
            "per_epoch_s": t_record * -(-n // batch) + t_step}


def epochs(device, npz: Path | None, n_epochs, quick) -> dict:
    if npz is None:
        if not quick:
            return {"skipped": f"no {NPZ_NAME}: pass --npz PATH or put it in data/"}
        g = torch.Generator().manual_seed(0)
        from ies.data.datasets import ArrayDataset

        x = torch.randint(0, 256, (48, 16, 16, 3), dtype=torch.uint8, generator=g)
        y = (x[..., 0].float().mean((1, 2)) > 127.5).long()
        data = ArrayDataset(x[:32], y[:32], x[32:], y[32:], 2, "generated", (0.5,) * 3, (0.25,) * 3)
        name = "generated"
    else:
        data = load_dataset(str(npz))
        name = str(npz)
    cfg = Config(dataset=name if npz is not None else "synthetic", model="resnet18", epochs=n_epochs,
                 device=str(device), progress=False, checkpoint_every=0,
                 batch_size=16 if quick else 64, eval_batch_size=32 if quick else 1024)
    from ies.training.loop import train

    runs = {}
    for method, threshold in (("baseline", 0.0), ("ies", 1e-3)):
        m = train(cfg.replace(threshold=threshold), dataset=data).metrics
        runs[method] = {k: m[k] for k in ("test_accuracy", "best_test_accuracy", "backprop_saving", "wall_time_s")}
        runs[method]["mean_epoch_s"] = m["epoch_seconds_total"] / m["epochs_completed"]
    s = runs["ies"]["backprop_saving"]
    speedup = runs["baseline"]["wall_time_s"] / runs["ies"]["wall_time_s"]
    ideal = speedup_from_backprop_saving(s)
    return {
        "data": name, "n_train": data.num_train, "epochs": n_epochs, "batch_size": cfg.batch_size, **runs,
        "accuracy_difference": runs["ies"]["test_accuracy"] - runs["baseline"]["test_accuracy"],
        "backprop_saved": s,
        "wall_clock_ratio": 1 / speedup,
        "speedup": speedup,
        "flop_ideal_speedup": ideal,
        "share_of_ideal": speedup / ideal,
    }


def partial_result(result: dict) -> None:
    """The figures so far, as one JSON line on stderr: what survives if the run is cut short."""
    print(json.dumps(result), file=sys.stderr, flush=True)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--npz", default="", help=f"the CIFAR-10 subset (default: {NPZ_NAME} in data/ or ../shared/data/)")
    p.add_argument("--batch-sizes", default="64,512")
    p.add_argument("--iters", type=int, default=50, help="timed iterations per throughput figure")
    p.add_argument("--epochs", type=int, default=40, help="epochs of each of the baseline and IES runs")
    p.add_argument("--compile", action="store_true", help="also torch.compile the throughput model")
    p.add_argument("--quick", action="store_true", help="tiny sizes on any device: checks that everything runs")
    p.add_argument("--device", default="auto")
    args = p.parse_args(argv)

    from ies.training.setup import resolve_device

    device = resolve_device(args.device)
    sizes = [int(b) for b in args.batch_sizes.split(",")]
    iters, warmup, n_epochs = args.iters, 10, args.epochs
    if args.quick:
        sizes, iters, warmup, n_epochs = [min(b, 4) for b in sizes[:2]] or [4], 2, 1, 2
    npz = Path(args.npz) if args.npz else next((c for c in CANDIDATES if c.exists()), None)
    if npz is not None and not npz.exists():
        print(json.dumps({"error": f"{npz} does not exist"}))
        return 2
    if args.quick:
        npz = None  # the generated stand-in, so that --quick stays quick
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = False  # as ies.train: remainder batches vary in size
    t0 = time.perf_counter()
    result = {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else str(device),
        "torch": torch.__version__,
        "quick": args.quick,
        "throughput": throughput(device, sizes, iters, warmup, args.compile),
    }
    partial_result(result)
    result["bookkeeping"] = bookkeeping(device, 10_000 if not args.quick else 256, 64, 200 if not args.quick else 5)
    partial_result(result)
    result["epochs"] = epochs(device, npz, n_epochs, args.quick)
    if "baseline" in result["epochs"]:
        base_epoch = result["epochs"]["baseline"]["mean_epoch_s"]
        result["bookkeeping"]["share_of_baseline_epoch"] = result["bookkeeping"]["per_epoch_s"] / base_epoch
    result["seconds"] = time.perf_counter() - t0
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
