"""Everything a run needs before its first epoch: the device, seeds, the optimiser and schedule, and
:class:`Run` (model, loaders, selector and generators) built from a ``Config`` by :func:`build_run`."""

from __future__ import annotations

import contextlib
import random
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from ..data import streaming
from ..data.datasets import ArrayDataset, DeviceLoader
from ..data.transforms import Truth, apply_transforms
from ..models.zoo import FixedShapeCompiled, build_model
from ..selectors import SELECTOR_SEED_OFFSET, SELECTORS, Selector
from . import faults
from .config import Config, subgroup_classes


def resolve_device(name: str) -> torch.device:
    """``auto`` -> CUDA if available, else MPS if available, else CPU."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={name!r} asked for CUDA, but torch sees no CUDA device")
    return device


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (CPU and CUDA)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def make_optimizer(cfg: Config, model: nn.Module) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler]:
    """The optimiser and per-epoch schedule of ``cfg`` (default: the authors' SGD 0.1, momentum 0.9,
    weight decay 5e-4, ExponentialLR 0.96)."""
    if cfg.optimizer == "sgd":
        opt = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    else:
        opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.schedule == "exponential":
        sched = torch.optim.lr_scheduler.ExponentialLR(opt, gamma=cfg.gamma)
    elif cfg.schedule == "cosine":
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=cfg.epochs)
    else:
        sched = torch.optim.lr_scheduler.ConstantLR(opt, factor=1.0, total_iters=0)
    return opt, sched


@dataclass
class Run:
    """The live objects of one run.

    ``model`` is the module whose weights are trained and saved; ``step_model`` is what the passes call
    (the same module, or its fixed-shape compiled wrapper). ``generators``: ``loader`` (data order and
    augmentation) and ``selector`` (the selector's own draws). ``data`` is the data set as trained, after
    the config's transforms; ``truth`` is what they introduced (:class:`ies.data.transforms.Truth`)."""

    cfg: Config
    device: torch.device
    data: ArrayDataset | streaming.StreamingData
    model: nn.Module
    step_model: nn.Module
    opt: torch.optim.Optimizer
    sched: torch.optim.lr_scheduler.LRScheduler
    train_data: DeviceLoader | streaming.StreamingLoader
    test_data: DeviceLoader | streaming.StreamingLoader
    selector: Selector
    generators: dict[str, torch.Generator]
    eval_batch_size: int
    amp: contextlib.AbstractContextManager
    grad_params: list[torch.Tensor] | None
    truth: Truth | None = None


def transformed(cfg: Config, data: ArrayDataset) -> tuple[ArrayDataset, Truth]:
    """``data`` after the transforms ``cfg`` asks for (label noise, long tail, subgroup; drawn with
    ``cfg.seed``) and the truth they introduced (:func:`ies.data.transforms.apply_transforms`)."""
    return apply_transforms(data, label_noise=cfg.label_noise, noise_type=cfg.noise_type, imbalance=cfg.imbalance,
                            subgroup_share=cfg.subgroup_share, subgroup_classes=subgroup_classes(cfg),
                            subgroup_attribute=cfg.subgroup_attribute, seed=cfg.seed)


def build_run(cfg: Config, dataset: ArrayDataset | streaming.StreamingData | None = None,
              model: nn.Module | None = None) -> Run:
    """Seed, load the data (or take ``dataset``; a :class:`~ies.data.streaming.StreamingData` or an ImageFolder
    root is served by DataLoader workers), apply the config's transforms to it (:func:`transformed`),
    build the model (or take ``model``), the optimiser, the loaders and the selector of ``cfg``."""
    device = resolve_device(cfg.device)
    seed_everything(cfg.seed)
    where = f"dataset {cfg.dataset}" if dataset is None else "dataset (given to train)"
    try:
        data = dataset if dataset is not None else streaming.load(cfg)
    except (NotADirectoryError, IsADirectoryError, PermissionError, FileExistsError) as e:  # data_dir, the path
        raise faults.InputError(f"{where}: {faults.one_line(e)}") from None
    faults.check_labels(data.y_train, data.y_test, data.num_classes, where)
    is_streaming = isinstance(data, streaming.StreamingData)
    if is_streaming:
        streaming.check_transforms(cfg)
    data, truth = transformed(cfg, data)
    probe = model is None  # a model of our own: check that it takes the data's inputs (a user's may count calls)
    if model is None:
        model = build_model(cfg.model, data.sample_shape, data.num_classes)
    model = model.to(device)
    cuda = device.type == "cuda"
    if cuda and cfg.channels_last and data.is_image:
        model = model.to(memory_format=torch.channels_last)
    if probe:
        faults.check_input_size(model, data.sample_shape, cfg.model, where, device)
    eval_batch_size = cfg.eval_batch_size or (128 if device.type == "cpu" else 1024)
    # compiled graphs only ever see these batch sizes; each pass's remainder batch runs eagerly
    step_model = FixedShapeCompiled(model, (cfg.batch_size, eval_batch_size)) if cfg.compile else model
    amp = torch.autocast("cuda", dtype=torch.bfloat16) if (cuda and cfg.amp) else contextlib.nullcontext()
    opt, sched = make_optimizer(cfg, model)
    generators = {
        "loader": torch.Generator(device=device).manual_seed(cfg.seed),  # data order and augmentation
        "selector": torch.Generator(device=device).manual_seed(cfg.seed + SELECTOR_SEED_OFFSET),
    }
    selector = SELECTORS[cfg.selector](cfg, data.num_train, device, generators["selector"])
    if cfg.class_cap < 1:  # the given (possibly noisy) labels, or the subgroup
        selector.set_cap_groups(data.y_train if cfg.cap_by == "class" else truth.group_train)
    # channels_last image batches on every device; the model is converted on CUDA only (above)
    if is_streaming:
        train_data, test_data = streaming.loaders(data, device, generators["loader"], augment=cfg.augment,
                                                  num_workers=cfg.num_workers, channels_last=cfg.channels_last)
    else:
        train_data = DeviceLoader(data.x_train, data.y_train, device, mean=data.mean, std=data.std,
                                  augment=cfg.augment, generator=generators["loader"], channels_last=cfg.channels_last)
        test_data = DeviceLoader(data.x_test, data.y_test, device, mean=data.mean, std=data.std,
                                 channels_last=cfg.channels_last)
    selector.prepare(train_data.y)
    selector.attach_model(model)
    grad_params = [p for p in model.parameters() if p.requires_grad] if cfg.track_grad_norm else None
    return Run(cfg, device, data, model, step_model, opt, sched, train_data, test_data, selector, generators,
               eval_batch_size, amp, grad_params, truth)
