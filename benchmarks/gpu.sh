#!/usr/bin/env bash
# GPU figures of the image path (see benchmarks/gpu_throughput.py): throughput of the training step and
# of the tracking pass for ResNet-18 (bf16, channels_last) at batch 64 and 512, the bookkeeping cost,
# and 40 epochs of baseline vs IES on the CIFAR-10 subset. Prints JSON; expected 2-4 minutes on an H200
# (killed after TIMEOUT=360 s).
#
#   benchmarks/gpu.sh [path/to/cifar10_subset_10k.npz] [extra options of gpu_throughput.py]
#
# Without a path it looks for data/cifar10_subset_10k.npz (git-ignored: copy the file there when the
# repository travels without ../shared), shared/data/ and ../shared/data/. QUICK=1 runs tiny sizes
# (a CPU is enough) to check that the script works. PYTHON picks the interpreter (default: .venv/bin/python
# if it exists, else python3); it needs torch with CUDA, torchvision, numpy, pandas and tqdm.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-}
if [ -z "$PY" ]; then
  if [ -x .venv/bin/python ]; then PY=.venv/bin/python; else PY=python3; fi
fi
NPZ=""
if [ $# -gt 0 ] && [ "${1#-}" = "$1" ]; then NPZ=$1; shift; fi
if [ -z "$NPZ" ]; then
  for c in data/cifar10_subset_10k.npz shared/data/cifar10_subset_10k.npz ../shared/data/cifar10_subset_10k.npz; do
    if [ -f "$c" ]; then NPZ=$c; break; fi
  done
fi
ARGS=()
if [ -n "$NPZ" ]; then ARGS+=(--npz "$NPZ"); fi
if [ -n "${QUICK:-}" ]; then ARGS+=(--quick); fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
exec timeout "${TIMEOUT:-360}" "$PY" benchmarks/gpu_throughput.py "${ARGS[@]}" "$@"
