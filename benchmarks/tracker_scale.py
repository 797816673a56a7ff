"""Benchmark: the tracker's memory and cost at 1.28 M, 10 M and 100 M samples on the CPU.

Prints JSON. ``python benchmarks/tracker_scale.py [--sizes 1281167,10000000,100000000] [--threads 1]
[--dtypes float32,float16] [--batch 256] [--chunk 0]``

Each size runs in a fresh subprocess (so that its peak memory is its own). There, with ``--threads``
torch threads:

* ``bytes_per_sample``: the tracker's own tensors (ring, counts, current and last epoch, decision)
  divided by N: ``(lookback + 2) * itemsize + 9`` (37 bytes with float32 and the default rule);
* ``step_extra_bytes_per_sample``: the peak resident memory during ``step()`` above the resident memory
  just before it (Linux: the peak is reset through ``/proc/self/clear_refs`` and read from ``VmHWM``),
  divided by N: the temporaries of ``step()``, bounded by its slices (:attr:`MasteryTracker.chunk`;
  ``--chunk N`` sets it, ``--chunk 0`` keeps the default);
* ``record_s``: one epoch of ``record`` in shuffled batches of ``--batch`` losses; ``step_s``: the
  ``step()`` that closes it (the look-back full, so the rule runs on every sample);
  ``epoch_s`` their sum; ``peak_rss_bytes``: the process's peak over the whole run, input data included.

The look-back is filled with one ``record`` of all samples per epoch (not timed); the timed epoch is
the first one with a decision. Times are of one epoch (the 100 M run takes a few minutes in all).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

import torch

from ies.method.tracker import TRACKER_DTYPES, MasteryTracker


def _rss(field: str) -> int:
    """``VmRSS`` or ``VmHWM`` of this process, bytes (Linux)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"{field} not in /proc/self/status")


def _reset_peak() -> None:
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # resets VmHWM to the current VmRSS


def one(n: int, dtype: str, batch: int, chunk: int, threshold: float) -> dict:
    tracker = MasteryTracker(n, threshold, order=2, window=3, patience=1, rule="official",
                             dtype=TRACKER_DTYPES[dtype])
    if chunk:
        tracker.chunk = chunk
    own = [tracker._ring, tracker._count, tracker._current, tracker._last, tracker._mastered]
    g = torch.Generator().manual_seed(0)
    base = torch.rand(n, generator=g)
    everyone = torch.arange(n)
    for e in range(tracker.lookback - 1):  # fill all but the last look-back epoch
        tracker.record(everyone, base * 0.9**e)
        tracker.step()
    del everyone
    order = torch.randperm(n, generator=g)
    shuffled = (base * 0.9**tracker.lookback + 1e-4 * torch.rand(n, generator=g))[order]
    del base
    t0 = time.perf_counter()
    for start in range(0, n, batch):  # what a training loop has at hand after each forward
        tracker.record(order[start : start + batch], shuffled[start : start + batch])
    t1 = time.perf_counter()
    before = _rss("VmRSS")
    _reset_peak()
    t2 = time.perf_counter()
    tracker.step()
    t3 = time.perf_counter()
    extra = _rss("VmHWM") - before
    return {
        "samples": n, "dtype": dtype, "chunk": tracker.chunk,
        "bytes_per_sample": sum(t.numel() * t.element_size() for t in own) / n,
        "step_extra_bytes_per_sample": round(extra / n, 2),
        "record_s": round(t1 - t0, 3), "step_s": round(t3 - t2, 3), "epoch_s": round(t1 - t0 + t3 - t2, 3),
        "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        "mastered": int(tracker.mastered.sum()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="1281167,10000000,100000000")
    parser.add_argument("--dtypes", default="float32")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--chunk", type=int, default=0)
    parser.add_argument("--threshold", type=float, default=1e-3)
    parser.add_argument("--one", type=int, default=0, help=argparse.SUPPRESS)  # the subprocess of one size
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.one:
        print(json.dumps(one(args.one, args.dtypes, args.batch, args.chunk, args.threshold)))
        return
    rows = []
    for dtype in args.dtypes.split(","):
        for n in (int(s) for s in args.sizes.split(",")):
            cmd = [sys.executable, __file__, "--one", str(n), "--dtypes", dtype, "--threads", str(args.threads),
                   "--batch", str(args.batch), "--chunk", str(args.chunk), "--threshold", str(args.threshold)]
            out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=os.environ).stdout
            rows.append(json.loads(out.strip().splitlines()[-1]))
            print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    print(json.dumps({"torch_threads": args.threads, "load_average": os.getloadavg(), "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
