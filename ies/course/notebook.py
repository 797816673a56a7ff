"""What the course notebooks share, so that they stay thin.

- running a notebook: :func:`resolve_profile` (the ``smoke`` / ``teaching`` / ``full`` settings table
  read by ``PROFILE``), :func:`output_dir` and :func:`write_metrics` (its ``metrics.json``);
- one cache of training runs per run folder, shared by the notebooks: :func:`shared_runs` (the same
  configuration is trained once, whichever notebook asks first);
- analysis of recorded runs (replaying the rule on a loss matrix is :mod:`ies.method.replay`):
  :func:`coefficient_of_variation` of the differences across samples, and
  :func:`predictions` of a model on a split.

Casting the notebooks' parameters is :func:`ies.course.params.cast_params`; the tooling around the notebooks
(setup cell, Colab links, student copies, HTML) is :mod:`ies.course.colab`.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import torch

from ..data.datasets import DeviceLoader
from ..training.checkpoint import write_json

PROFILES = ("smoke", "teaching", "full")


def resolve_profile(profile: str, table: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The settings of ``profile`` from ``table`` (``{"smoke": {...}, "teaching": {...}, "full": {...}}``).

    Raises ``ValueError`` naming ``PROFILE`` for anything else.
    """
    profile = str(profile).strip().lower()
    if profile not in PROFILES:
        raise ValueError(f"PROFILE must be one of {PROFILES}, got {profile!r}")
    missing = [p for p in PROFILES if p not in table]
    if missing:
        raise ValueError(f"the profile table lacks {missing}")
    return dict(table[profile])


def output_dir(path: str | os.PathLike) -> Path:
    """Create and return the notebook's output folder."""
    out = Path(path).expanduser()
    out.mkdir(parents=True, exist_ok=True)
    return out


def write_metrics(out: str | os.PathLike, metrics: dict[str, Any]) -> Path:
    """Write ``metrics.json`` into ``out`` atomically and return its path. The outcomes of the exercises'
    checks run in this kernel (:data:`ies.course.checks.RESULTS`) are added as ``exercises``."""
    from .checks import RESULTS

    if RESULTS:
        metrics = {**metrics, "exercises": dict(RESULTS)}
    path = Path(out) / "metrics.json"
    write_json(path, metrics)
    return path


#: Fields of a sweep's base configuration that do not decide which runs it holds (the sweep sets them).
_PER_RUN = ("seed", "output", "resume", "overwrite")


def config_digest(cfg, extra: dict | None = None) -> str:
    """10 hex digits naming ``cfg`` (a :class:`~ies.Config`) by every field but the per-run ones (seed, output,
    resume, overwrite), and ``extra`` (other settings the runs depend on) when given."""
    fields = {k: v for k, v in cfg.to_dict().items() if k not in _PER_RUN}
    key = fields if extra is None else {"config": fields, **extra}
    return hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:10]


def shared_runs(output_dir: str | os.PathLike, runs_dir: str = "", base=None) -> Path:
    """The run folder's cache of training runs, for :func:`ies.experiments.sweep.run_sweep`'s ``output``.

    ``runs_dir`` when given, else ``runs`` next to the notebook's ``output_dir``: ``python -m ies
    notebooks`` writes every notebook's ``OUTPUT_DIR`` into one run folder, so its notebooks share one
    cache, and a configuration another notebook trained is reused, not trained again. With ``base`` (the
    sweep's base :class:`~ies.Config`) the folder is ``<dataset>-<digest>`` under it, the digest of every
    field but the seed and the output, so sweeps of different bases never share a run id.
    """
    root = Path(runs_dir).expanduser() if runs_dir else Path(output_dir).expanduser().parent / "runs"
    if base is not None:
        root = root / f"{base.dataset.replace('/', '_')}-{config_digest(base)}"
    root.mkdir(parents=True, exist_ok=True)
    return root


# ---------------------------------------------------------------------- analysis of recorded runs
def coefficient_of_variation(values: torch.Tensor, dim: int = 0) -> torch.Tensor:
    """std / mean along ``dim`` (float64; NaN entries ignored; NaN where the mean is 0)."""
    values = values.double()
    mean = values.nanmean(dim=dim)
    centred = values - mean.unsqueeze(dim)
    count = (~values.isnan()).sum(dim=dim)
    std = (centred.pow(2).nansum(dim=dim) / (count - 1).clamp(min=1)).sqrt()
    return torch.where(mean != 0, std / mean, torch.full_like(mean, float("nan")))


@torch.no_grad()
def predictions(model: torch.nn.Module, data, split: str = "train", batch_size: int = 1024) -> torch.Tensor:
    """``(N,)`` int64 on the CPU: ``model``'s predicted class of every sample of ``data``'s
    ``split`` (``train`` or ``test``, an :class:`~ies.data.datasets.ArrayDataset`), in eval mode, without
    augmentation, on the model's device. The model's train/eval mode is restored."""
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    x, y = (data.x_train, data.y_train) if split == "train" else (data.x_test, data.y_test)
    device = next(model.parameters()).device
    loader = DeviceLoader(x, y, device, mean=data.mean, std=data.std)
    was_training = model.training
    model.eval()
    try:
        return torch.cat([model(xb).argmax(dim=1).cpu() for xb, _, _ in loader.batches(None, batch_size)])
    finally:
        model.train(was_training)
