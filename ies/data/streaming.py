"""Streaming datasets for :func:`ies.train`: data too large for memory, decoded by DataLoader workers.

- :class:`StreamingData`: the description of such a data set (the counterpart of
  :class:`ies.data.datasets.ArrayDataset`): two map-style datasets, their labels as tensors, the input shape, the
  normalisation and the transforms. :func:`image_folder_data` builds one from an ImageFolder root (what
  ``Config.dataset`` takes as a path: ``root/train/<class>/<image>`` and ``root/val/<class>/<image>``);
  :meth:`StreamingData.from_datasets` from any map-style datasets returning ``(x, y)``.
- :class:`StreamingLoader`: the counterpart of :class:`ies.data.datasets.DeviceLoader`, with the same interface
  (``device``, ``generator``, ``y``, ``is_image``, ``len()``, ``batches(indices, batch_size, shuffle=...,
  augment=...)`` yielding ``(x, y, idx)`` on the device), so the epoch steps of :mod:`ies.training.epoch` run
  unchanged. The order is drawn exactly as ``DeviceLoader`` draws it (``torch.randperm`` of the given
  indices with the loader's generator, on the device), so a run on the same images gives the same
  history whichever loader serves them.

Underneath, one ``torch.utils.data.DataLoader`` per split (``num_workers``, pinned memory on CUDA,
persistent workers) reads the batches the loader has already ordered: a batch sampler hands each worker
a whole batch of indices. Workers decode and crop the images and return uint8 tensors with their
indices attached; the copy to the device is non-blocking, and the float conversion and the
normalisation happen there (4x less to copy than float, the same arithmetic as ``DeviceLoader``). The
labels are those of the description (``y_train`` / ``y_test``, so label noise applies), looked up on the
device by index.

Augmentation: a training pass with ``augment=True`` applies the training transform in the workers
(ImageFolder: ``RandomResizedCrop`` + horizontal flip). Every sample's random draws are seeded by one
seed per pass, drawn from the loader's generator, plus the sample's index, so they do not depend on
``num_workers`` or on which worker reads the sample, and a resumed run (the generator restored) draws
them again.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import torch
import torchvision
from torch.utils.data import DataLoader, Dataset, Subset, default_collate
from torchvision.transforms import v2

from . import checks
from .datasets import DATASETS, IMAGENET_STATS, batch_bounds, load_dataset, pass_order

Batch = tuple[torch.Tensor, torch.Tensor, torch.Tensor]
LAYOUT = "an ImageFolder root holds train/<class>/<image> and val/<class>/<image>"


@dataclass
class StreamingData:
    """A labelled train/test split served from map-style datasets (it need not fit in memory).

    Attributes:
        train, test: map-style datasets; item ``i`` is ``(x, y)`` (``y`` is not read: the labels below
            are used) with ``x`` a PIL image, a uint8 ``(C, H, W)`` image tensor (normalised on the
            device with ``mean``/``std``), or a float tensor (a ``(C, H, W)`` image or an ``(L,)`` signal,
            used as it is).
        y_train: ``(N,)`` int64 labels of ``train`` in ``0 .. num_classes-1``; y_test: ``(M,)`` of ``test``.
        num_classes: number of classes. name: short name (the root folder's name for an ImageFolder).
        sample_shape: one input as the model is built for it: ``(H, W, C)`` for images, ``(L,)`` signals.
        mean, std: per-channel normalisation of uint8 images (``None``: 0.5 and 0.25, as ``DeviceLoader``).
        train_transform: applied to ``x`` in training passes with augmentation (``None``: no augmentation).
        eval_transform: applied to ``x`` otherwise (``None``: ``x`` as it is).
    """

    train: Dataset
    test: Dataset
    y_train: torch.Tensor
    y_test: torch.Tensor
    num_classes: int
    name: str
    sample_shape: tuple[int, ...]
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    train_transform: Callable | None = None
    eval_transform: Callable | None = None

    @property
    def is_image(self) -> bool:
        return len(self.sample_shape) == 3

    @property
    def num_train(self) -> int:
        return int(self.y_train.shape[0])

    def subset(self, n: int) -> StreamingData:
        """``n`` training samples, the same fixed random draw as :meth:`ies.data.datasets.ArrayDataset.subset`."""
        if n <= 0 or n >= self.num_train:
            return self
        keep = torch.randperm(self.num_train, generator=torch.Generator().manual_seed(0))[:n].sort().values
        return replace(self, train=Subset(self.train, keep.tolist()), y_train=self.y_train[keep])

    @classmethod
    def from_datasets(cls, train: Dataset, test: Dataset, *, name: str = "streaming",
                      y_train: torch.Tensor | None = None, y_test: torch.Tensor | None = None,
                      num_classes: int | None = None, mean=None, std=None, train_transform: Callable | None = None,
                      eval_transform: Callable | None = None) -> StreamingData:
        """Describe two map-style datasets returning ``(x, y)``. The labels are ``y_train``/``y_test``,
        else the datasets' ``targets`` attribute, else read item by item once (which decodes every
        sample: give them when that is slow); ``num_classes`` defaults to the largest label + 1; the
        input shape is read from ``train[0]`` through ``eval_transform``."""
        y_train = labels_of(train) if y_train is None else torch.as_tensor(y_train, dtype=torch.int64)
        y_test = labels_of(test) if y_test is None else torch.as_tensor(y_test, dtype=torch.int64)
        if y_train.numel() == 0:
            raise ValueError("train holds no samples")
        if num_classes is None:  # the test labels are checked against it (ies.data.checks.check_labels)
            num_classes = checks.derived_class_count(y_train, f"dataset {name}")
        x = decoded(train, 0, eval_transform)
        if x.dim() not in (1, 3):
            raise ValueError(f"items must be (C, H, W) images or (L,) signals, got shape {tuple(x.shape)}")
        shape = (*x.shape[1:], x.shape[0]) if x.dim() == 3 else tuple(x.shape)
        return cls(train, test, y_train, y_test, num_classes, name, tuple(shape), mean, std,
                   train_transform, eval_transform)


def labels_of(dataset: Dataset) -> torch.Tensor:
    """``(N,)`` int64: ``dataset.targets`` if it has them, else ``dataset[i][1]`` read for every ``i``."""
    targets = getattr(dataset, "targets", None)
    if targets is None:
        targets = [int(dataset[i][1]) for i in range(len(dataset))]
    return torch.as_tensor(targets, dtype=torch.int64).reshape(-1)


class DecodeError(checks.InputError):
    """An image (a sample) that cannot be read or transformed; the message names its file (one line, exit 2)."""


def sample_name(dataset: Dataset, i: int) -> str:
    """The file of sample ``i`` of ``dataset`` (through any ``Subset``; an ImageFolder's ``samples``), or
    ``sample i``."""
    while isinstance(dataset, Subset):
        dataset, i = dataset.dataset, dataset.indices[i]
    samples = getattr(dataset, "samples", None)
    return str(samples[i][0]) if samples is not None else f"sample {i}"


def decoded(dataset: Dataset, i: int, transform: Callable | None = None) -> torch.Tensor:
    """``as_tensor(dataset[i][0], transform)``; :class:`DecodeError` naming the file when that fails (a
    corrupt or truncated image: PIL's errors, or any other of the dataset or the transform)."""
    try:
        return as_tensor(dataset[i][0], transform)
    except Exception as e:  # noqa: BLE001 - PIL raises OSError, SyntaxError, ValueError, DecompressionBombError...
        raise DecodeError(f"image {sample_name(dataset, i)} cannot be decoded ({type(e).__name__}: "
                          f"{checks.one_line(e)[:300]}); expected an image file PIL can read") from None


@dataclass
class _Failed:
    """What a worker returns instead of a batch when a sample cannot be decoded: the message, raised as
    :class:`DecodeError` by the training process (one line, however many workers)."""

    message: str


def _collate(items):
    return items if isinstance(items, _Failed) else default_collate(items)


def as_tensor(x, transform: Callable | None = None) -> torch.Tensor:
    """``transform(x)`` (or ``x``) as a plain tensor: PIL images and ``(H, W, C)`` arrays become uint8
    ``(C, H, W)``."""
    x = transform(x) if transform is not None else x
    if not isinstance(x, torch.Tensor):
        x = v2.functional.to_image(x)
    return x.as_subclass(torch.Tensor)


def is_folder_path(name: str) -> bool:
    """Whether ``Config.dataset`` names a directory (an ImageFolder root): it contains a path separator
    or is an existing directory (a registered name or an ``.npz`` file is checked first by the caller)."""
    return "/" in name or os.sep in name or Path(name).expanduser().is_dir()


def folder_transforms(image_size: int, height: int, width: int) -> tuple[Callable, Callable]:
    """The ``(train, eval)`` transforms of an ImageFolder to uint8 ``(C, S, S)`` tensors. ``image_size``
    S > 0: training ``RandomResizedCrop(S)`` + flip, evaluation resize to ``S * 8/7`` + centre crop S (as
    :func:`ies.data.datasets.image_folder`); 0: the images as they are (``height`` x ``width``), training a random
    crop with padding 4 + flip (the CIFAR augmentation)."""
    if image_size:
        train = [v2.RandomResizedCrop(image_size, antialias=True), v2.RandomHorizontalFlip()]
        test = [v2.Resize(round(image_size * 8 / 7), antialias=True), v2.CenterCrop(image_size)]
    else:
        train, test = [v2.RandomCrop((height, width), padding=4), v2.RandomHorizontalFlip()], []
    return (v2.Compose([v2.ToImage(), *train, v2.ToPureTensor()]),
            v2.Compose([v2.ToImage(), *test, v2.ToPureTensor()]))


def _split(root: Path, split: str) -> torchvision.datasets.ImageFolder:
    if not (root / split).is_dir():
        raise FileNotFoundError(f"dataset {root} has no {split}/ folder ({LAYOUT})")
    try:
        return torchvision.datasets.ImageFolder(str(root / split))
    except FileNotFoundError as e:  # no class folder, or a class folder without images
        raise ValueError(f"dataset {root}: {split}/ holds no images ({e}; {LAYOUT})") from None


def image_folder_data(root: str | os.PathLike, image_size: int = 224, size: int = 0, mean=None,
                      std=None) -> StreamingData:
    """The ImageFolder root ``root`` (``root/train/<class>/<image>``, ``root/val/<class>/<image>``, the
    usual ImageNet layout with the validation images sorted into class folders) as :class:`StreamingData`:
    classes numbered in sorted folder order, normalised with ``mean``/``std`` (default ImageNet's),
    ``image_size`` as :func:`folder_transforms`, ``size`` training samples kept as ``Config.dataset_size``.
    Errors name ``dataset``: ``FileNotFoundError`` for a missing folder, ``ValueError`` for one without
    images or for splits whose classes differ."""
    root = Path(root).expanduser()
    if not root.is_dir():
        raise FileNotFoundError(f"dataset {root}: no such directory ({LAYOUT})")
    train, test = _split(root, "train"), _split(root, "val")
    if train.classes != test.classes:
        raise ValueError(f"dataset {root}: train/ and val/ have different class folders "
                         f"({len(train.classes)} and {len(test.classes)}; {LAYOUT})")
    first = decoded(train, 0)
    train_tf, eval_tf = folder_transforms(image_size, first.shape[1], first.shape[2])
    data = StreamingData.from_datasets(train, test, name=root.name, num_classes=len(train.classes),
                                       mean=mean or IMAGENET_STATS[0], std=std or IMAGENET_STATS[1],
                                       train_transform=train_tf, eval_transform=eval_tf)
    return data.subset(size)


class _Keyed(Dataset):
    """Reads whole batches for the DataLoader: a key ``(seed, indices)`` (``indices`` a numpy array)
    gives ``[(x_i, i), ...]``; ``seed < 0`` applies the eval transform, else the training transform with
    the CPU random generator seeded ``seed + i`` for sample ``i`` (the caller's random state restored)."""

    def __init__(self, dataset: Dataset, train_transform: Callable | None, eval_transform: Callable | None) -> None:
        self.dataset, self.train_transform, self.eval_transform = dataset, train_transform, eval_transform

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key):
        return self.__getitems__(key)

    def __getitems__(self, key) -> list[tuple[torch.Tensor, int]] | _Failed:
        seed, indices = key
        items = []
        try:
            for i in indices.tolist():  # per sample: the decoding itself, in a worker
                if seed < 0:
                    items.append((decoded(self.dataset, i, self.eval_transform), i))
                    continue
                with torch.random.fork_rng(devices=[]):
                    torch.default_generator.manual_seed(seed + i)
                    items.append((decoded(self.dataset, i, self.train_transform), i))
        except DecodeError as e:  # returned, not raised: no worker traceback in the training process
            return _Failed(str(e))
        return items


class _Batches:
    """The batch sampler: the keys of the current pass, set by :meth:`StreamingLoader.batches`."""

    def __init__(self) -> None:
        self.keys: list = []

    def __iter__(self):
        return iter(self.keys)

    def __len__(self) -> int:
        return len(self.keys)


class StreamingLoader:
    """Serves batches of one split of a :class:`StreamingData` through DataLoader workers, with the
    interface of :class:`ies.data.datasets.DeviceLoader`.

    Args:
        dataset: the map-style dataset (items ``(x, y)``, see :class:`StreamingData`).
        y: its ``(N,)`` int64 labels (kept on ``device`` as ``.y``).
        device: where batches go.
        is_image: whether the items are images (``(B, C, H, W)`` batches).
        mean, std: per-channel normalisation of uint8 images, on the device (default 0.5 and 0.25).
        train_transform, eval_transform: as in :class:`StreamingData`.
        augment: apply ``train_transform`` in passes that ask for augmentation.
        generator: a ``torch.Generator`` on ``device``: the shuffling and the per-pass augmentation seed.
        num_workers: DataLoader worker processes (0: read in this process); the results do not depend
            on it. Workers are persistent: one pass at a time per loader (passes run one after another).
        channels_last: image batches in channels_last memory format (as ``DeviceLoader``).
    """

    def __init__(self, dataset: Dataset, y: torch.Tensor, device: torch.device, *, is_image: bool = True,
                 mean: tuple[float, ...] | None = None, std: tuple[float, ...] | None = None,
                 train_transform: Callable | None = None, eval_transform: Callable | None = None,
                 augment: bool = False, generator: torch.Generator | None = None, num_workers: int = 0,
                 channels_last: bool = True) -> None:
        if len(dataset) != y.shape[0]:
            raise ValueError(f"dataset has {len(dataset)} samples, y {y.shape[0]}")
        self.device = torch.device(device)
        self.y = y.to(self.device)
        self.is_image = is_image
        self.generator = generator
        self.augment = augment and train_transform is not None
        self.channels_last = channels_last and is_image
        if is_image:
            m = torch.tensor(mean if mean else (0.5,), device=self.device).view(1, -1, 1, 1)
            s = torch.tensor(std if std else (0.25,), device=self.device).view(1, -1, 1, 1)
            self._scale, self._shift = 1.0 / (255.0 * s), -m / s
        self._keys = _Batches()
        self.loader = DataLoader(
            _Keyed(dataset, train_transform, eval_transform), batch_sampler=self._keys, num_workers=num_workers,
            collate_fn=_collate,
            pin_memory=self.device.type == "cuda", persistent_workers=num_workers > 0,
            generator=torch.Generator(),  # the DataLoader's own seed draws leave the global random state alone
        )

    def __len__(self) -> int:
        return int(self.y.shape[0])

    def inputs(self, xb: torch.Tensor) -> torch.Tensor:
        """A worker's batch on the device: uint8 images -> normalised float ``(B, C, H, W)`` (the arithmetic
        and memory layout of ``DeviceLoader``), anything else as it is."""
        x = xb.to(self.device, non_blocking=True)
        if x.dtype != torch.uint8:
            return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x
        x = torch.addcmul(self._shift, x.contiguous(memory_format=torch.channels_last).float(), self._scale)
        return x if self.channels_last else x.contiguous()

    def batches(self, indices: torch.Tensor | None = None, batch_size: int = 256, *, shuffle: bool = False,
                augment: bool = False, min_last: int = 0) -> Iterator[Batch]:
        """Yield ``(inputs, targets, indices)`` on the device over ``indices`` (default: every sample) once
        each, in batches of ``batch_size`` (the last has the remainder; fewer than ``min_last`` samples: merged
        into the one before); shuffled as ``DeviceLoader`` shuffles. One host read of the order per pass
        (and of the augmentation seed)."""
        indices = pass_order(indices, len(self), batch_size, self.device, self.generator if shuffle else None)
        seed = -1
        if augment and self.augment:
            seed = int(torch.randint(0, 2**62, (1,), device=self.device, generator=self.generator))
        order = indices.cpu().numpy()
        self._keys.keys = [(seed, order[a:b]) for a, b in batch_bounds(order.size, batch_size, min_last)]
        for batch in self.loader:
            if isinstance(batch, _Failed):
                raise DecodeError(batch.message)
            xb, ib = batch
            idx = ib.to(self.device, non_blocking=True)
            yield self.inputs(xb), self.y[idx], idx


def loaders(data: StreamingData, device: torch.device, generator: torch.Generator, *, augment: bool,
            num_workers: int, channels_last: bool) -> tuple[StreamingLoader, StreamingLoader]:
    """The training loader (``augment``, shuffled with ``generator``) and the test loader of ``data``."""
    common = dict(is_image=data.is_image, mean=data.mean, std=data.std, eval_transform=data.eval_transform,
                  num_workers=num_workers, channels_last=channels_last)
    train = StreamingLoader(data.train, data.y_train, device, train_transform=data.train_transform,
                            augment=augment, generator=generator, **common)
    return train, StreamingLoader(data.test, data.y_test, device, **common)


def check_transforms(cfg) -> None:
    """The data transforms that need the images in memory (the long tail keeps a subset, the subgroup
    edits images) are not done on a streaming dataset: ``ValueError`` naming the field. Label noise is."""
    if cfg.imbalance != 1:
        raise ValueError(f"imbalance must be 1 on a streaming dataset (an ImageFolder), got {cfg.imbalance}")
    if cfg.subgroup_share:
        raise ValueError(f"subgroup_share must be 0 on a streaming dataset (an ImageFolder), got {cfg.subgroup_share}")


def load(cfg):
    """The data of ``cfg``: :func:`image_folder_data` for a directory, else :func:`ies.data.datasets.load_dataset`."""
    name = cfg.dataset
    if name not in DATASETS and not name.endswith(".npz") and is_folder_path(name):
        return image_folder_data(name, cfg.image_size, cfg.dataset_size)
    return load_dataset(name, cfg.data_dir, cfg.dataset_size, getattr(cfg, "test_size", 0))
