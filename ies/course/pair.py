"""The course's run pair: a baseline and an IES run of one seed, trained once per run folder.

Notebooks 02 (what the rule masters), 03 (what it saves and costs) and 05 (why it works) study the same two
runs: MNIST-1D, the 1-D CNN, 60 epochs, delta 1e-3 in the ``teaching`` profile. :func:`course_pair` trains
a pair the first time a notebook asks for it and stores it in the run folder's cache
(:func:`ies.course.notebook.shared_runs`); the notebooks after it read the stored runs. So that 05 can read a
pair 02 trained, the pair of a profile's own configuration always carries 05's sharpness probe
(:data:`PROBES`), whichever notebook trains it.

A stored pair is ``<runs>/pair-<dataset>-<digest>/seed<k>/``: ``at_init.json`` (the probe at the initial
weights, which both runs share) and per run (``baseline``, ``ies``) the loop's ``history.csv`` and
``metrics.json`` plus ``pair.pt`` (final weights, metrics, the ``(N, epochs)`` loss and mastered
matrices). The digest covers every configuration field but the seed, and the probe's settings: two
notebooks share a pair only when they ask for the same one. A pair missing any file is trained again.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pandas as pd
import torch

from ..data.datasets import ArrayDataset, DeviceLoader
from ..experiments.sharpness import SharpnessProbe, fixed_batches
from ..experiments.sweep.cache import claimed
from ..models.zoo import build_model
from ..training.checkpoint import write_json
from ..training.config import Config
from ..training.loop import RunResult, train
from ..training.setup import resolve_device, seed_everything
from .notebook import config_digest, resolve_profile

#: The pair's configuration per profile (``Config`` fields; the notebooks add seed, device, data and delta).
PAIRS: dict[str, dict] = {
    "smoke": {"dataset": "mnist1d", "dataset_size": 1000, "model": "auto", "epochs": 10},
    "teaching": {"dataset": "mnist1d", "dataset_size": 0, "model": "auto", "epochs": 60},
    "full": {"dataset": "cifar10", "dataset_size": 0, "model": "resnet18", "epochs": 200},
}
#: The pair's threshold unless a notebook's ``THRESHOLD`` says otherwise (the authors' CIFAR-10 delta).
THRESHOLD = 1e-3


@dataclass(frozen=True)
class Probe:
    """The settings of notebook 05's sharpness probe (:class:`ies.experiments.sharpness.SharpnessProbe`)."""

    size: int = 512
    """Fixed training samples on which sharpness is measured."""
    every: int = 5
    """Measure after epoch 1, every this many epochs, and after the last."""
    batch: int = 512
    """Batch size over the fixed samples."""
    iters: int = 100
    """Lanczos iterations at most for the top Hessian eigenvalue."""
    trace_samples: int = 6
    """Hutchinson vectors for the Hessian trace (0: no trace)."""
    grad_batches: int = 16
    """Random mini-batches drawn for the gradient norms with and without the mastered samples."""
    grad_batch_size: int = 64
    """Samples per such mini-batch (the training batch size)."""

    def __post_init__(self) -> None:
        for name in ("size", "every", "batch", "iters", "grad_batches", "grad_batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"probe {name} must be >= 1, got {getattr(self, name)}")
        if self.trace_samples < 0:
            raise ValueError(f"probe trace_samples must be >= 0, got {self.trace_samples}")


#: 05's probe per profile.
PROBES: dict[str, Probe] = {
    "smoke": Probe(size=256, every=5, batch=256, iters=30, trace_samples=2, grad_batches=4),
    "teaching": Probe(),
    "full": Probe(size=4096, every=10, batch=512, iters=100, trace_samples=20, grad_batches=32),
}
METHODS = ("baseline", "ies")


def pair_config(profile: str, fields: dict | None = None, *, seed: int, device: str = "auto", data_dir: str = "",
                threshold: float | None = None, dataset: str = "", model: str = "", epochs: int = 0) -> Config:
    """The profile's pair configuration (:data:`PAIRS`), then ``fields`` (any other ``Config`` fields, e.g. a
    preset's, taken as given), then a notebook's parameters ``dataset``, ``model``, ``epochs``, where empty or
    0 keeps the value before; ``threshold`` ``None`` is :data:`THRESHOLD`. ``device`` is resolved (``auto`` ->
    ``cuda`` or ``cpu``), so that notebooks that name it differently share the pair."""
    given = {k: v for k, v in {"dataset": dataset, "model": model, "epochs": int(epochs)}.items() if v}
    return Config.from_dict({**resolve_profile(profile, PAIRS), "threshold": THRESHOLD, **(fields or {}), **given,
                             "seed": seed, "device": str(resolve_device(device)), "data_dir": data_dir,
                             **({} if threshold is None else {"threshold": threshold})})


@dataclass
class Pair:
    """A baseline and an IES run of one seed (what :func:`course_pair` returns).

    Attributes:
        runs: ``{"baseline": RunResult, "ies": RunResult}``; each has ``loss_matrix`` and ``mastered_matrix``
            ``(N, epochs)`` and its final ``model`` (``tracker`` is ``None`` for a stored run).
        at_init: the probe's columns at the shared initial weights (``{}`` without a probe).
        folder: where the pair is stored.
        trained: whether this call trained it (``False``: read from the run folder).
    """

    runs: dict[str, RunResult]
    at_init: dict = field(default_factory=dict)
    folder: Path = Path()
    trained: bool = False

    def histories(self) -> dict[str, pd.DataFrame]:
        """Each run's history, with the probe's epoch-0 row first when the pair has a probe."""
        if not self.at_init:
            return {m: r.history for m, r in self.runs.items()}
        start = pd.DataFrame([{"epoch": 0, **self.at_init}])
        return {m: pd.concat([start, r.history], ignore_index=True) for m, r in self.runs.items()}


def pair_folder(cfg: Config, probe: Probe | None, runs: str | Path) -> Path:
    """``<runs>/pair-<dataset>-<digest>/seed<k>``: the digest of every field of ``cfg`` but the seed and the
    output, and of ``probe``'s settings."""
    digest = config_digest(cfg, {"probe": asdict(probe) if probe else None})
    return Path(runs).expanduser() / f"pair-{cfg.dataset.replace('/', '_')}-{digest}" / f"seed{cfg.seed}"


def course_pair(cfg: Config, data: ArrayDataset, runs: str | Path, *, profile: str = "teaching",
                probe: Probe | None | bool = None) -> Pair:
    """The baseline (``threshold=0``) and IES run of ``cfg``, read from ``runs`` if stored there, else trained
    (both from the same initial weights) and stored.

    Args:
        cfg: the IES run's configuration (its ``threshold``; the baseline's is 0).
        data: the training and test data (``load_dataset(cfg.dataset, ...)``).
        runs: the run folder's cache (:func:`ies.course.notebook.shared_runs`).
        profile: the notebook's profile; its probe is :data:`PROBES` ``[profile]``.
        probe: ``None``: the profile's probe when ``cfg`` is the profile's own pair (so that 05 finds it),
            none otherwise; ``True``: the profile's probe; ``False``: none; or a :class:`Probe`.
    """
    if probe is None:
        own = pair_config(profile, seed=cfg.seed, device=cfg.device, data_dir=cfg.data_dir)
        probe = PROBES[profile] if cfg.replace(output=own.output) == own else False
    if probe is True:
        probe = PROBES[profile]
    probe = probe or None
    folder = pair_folder(cfg, probe, runs)
    folder.mkdir(parents=True, exist_ok=True)
    with claimed(folder):  # the sweep's folder lock: one process trains a pair, the others then read it
        stored = _read(cfg, data, folder, probe)
        if stored is not None:
            return stored
        return _train(cfg, data, folder, probe)


def _run_config(cfg: Config, method: str, folder: Path) -> Config:
    threshold = 0.0 if method == "baseline" else cfg.threshold
    return cfg.replace(threshold=threshold, output=str(folder / method), keep_loss_matrix=True, checkpoint_every=0,
                       resume=False, overwrite=True)


def _fresh_model(cfg: Config, data: ArrayDataset) -> torch.nn.Module:
    """The initial weights :func:`ies.train` draws for ``cfg.seed``."""
    seed_everything(cfg.seed)
    return build_model(cfg.model, tuple(data.x_train.shape[1:]), data.num_classes).to(resolve_device(cfg.device))


def _probe(cfg: Config, data: ArrayDataset, probe: Probe) -> SharpnessProbe:
    device = resolve_device(cfg.device)
    batches = fixed_batches(data, probe.size, batch_size=probe.batch, device=device, seed=cfg.seed)
    view = DeviceLoader(data.x_train, data.y_train, device, mean=data.mean, std=data.std)  # no augmentation
    return SharpnessProbe(batches, every=probe.every, iters=probe.iters, trace_samples=probe.trace_samples,
                          last_epoch=cfg.epochs, train_data=view, grad_batches=probe.grad_batches,
                          grad_batch_size=probe.grad_batch_size, seed=cfg.seed)


def _train(cfg: Config, data: ArrayDataset, folder: Path, probe: Probe | None) -> Pair:
    at_init = _probe(cfg, data, probe).measure(_fresh_model(cfg, data)) if probe else {}
    runs = {}
    for method in METHODS:
        run_cfg = _run_config(cfg, method, folder)
        hook = _probe(cfg, data, probe) if probe else None
        result = train(run_cfg, dataset=data, model=_fresh_model(cfg, data), on_epoch_end=hook)
        torch.save({"model": result.model.state_dict(), "metrics": result.metrics, "loss_matrix": result.loss_matrix,
                    "mastered_matrix": result.mastered_matrix}, folder / method / "pair.pt")
        runs[method] = result
    write_json(folder / "at_init.json", {"probe": asdict(probe) if probe else None, "at_init": at_init})
    return Pair(runs, at_init, folder, trained=True)


def _read(cfg: Config, data: ArrayDataset, folder: Path, probe: Probe | None) -> Pair | None:
    """The stored pair, or ``None`` when a file is missing or unreadable (then it is trained again)."""
    try:
        meta = json.loads((folder / "at_init.json").read_text())
        runs = {}
        for method in METHODS:
            stored = torch.load(folder / method / "pair.pt", map_location="cpu", weights_only=True)
            model = _fresh_model(cfg, data)
            model.load_state_dict(stored["model"])
            history = pd.read_csv(folder / method / "history.csv")
            runs[method] = RunResult(_run_config(cfg, method, folder), history, stored["metrics"], model, None,
                                     stored["loss_matrix"], stored["mastered_matrix"])
    except Exception:  # a torn or foreign file fails in many ways (EOF, unpickling, shapes): train it again
        return None
    if meta.get("probe") != (asdict(probe) if probe else None):
        return None
    at_init = {k: (float("nan") if v is None else v) for k, v in (meta.get("at_init") or {}).items()}
    return Pair(runs, at_init, folder, trained=False)
