"""Datasets as in-memory tensors, and a device-resident loader that batches any index subset.

Every dataset that fits in memory (MNIST-1D, the synthetic blobs, CIFAR-10/100, any ``.npz``) is loaded
into one :class:`ArrayDataset` (CPU tensors); :class:`DeviceLoader` moves it to the training device
once and then builds every batch there: shuffling with ``torch.randperm`` on the device, crop and flip
of the whole batch at once, normalisation. That is the path of :func:`ies.train` and the CLI.

ImageFolder-style directories (ImageNet scale) do not fit it: ``ies.train`` streams them from disk
through DataLoader workers instead (:mod:`ies.data.streaming`; ``Config.dataset`` = the root). For your own
loop, :func:`image_folder` gives one split as a torchvision dataset, to use with :mod:`ies.method.generic` (one
process) or :mod:`ies.method.distributed` (several).
"""

from __future__ import annotations

import os
import socket
import zipfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torchvision
from torchvision.transforms import v2

from . import augment as aug
from . import checks


class DatasetUnavailable(FileNotFoundError, RuntimeError):
    """A named dataset is not on disk and could not be downloaded (the message says how to get it)."""


CIFAR_STATS = {
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010)),
    "cifar100": ((0.507, 0.487, 0.441), (0.267, 0.256, 0.276)),
}


@dataclass
class ArrayDataset:
    """A labelled train/test split held as tensors.

    Attributes:
        x_train: ``(N, L)`` float32 signals or ``(N, H, W, C)`` uint8 images.
        y_train: ``(N,)`` int64 labels in ``0 .. num_classes-1``.
        x_test, y_test: the same for the test split.
        num_classes: number of classes.
        name: short name (``mnist1d``, ``cifar10``, a file stem, ...).
        mean, std: per-channel normalisation of images (``None`` for signals, already standardised).
    """

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    num_classes: int
    name: str
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None

    @property
    def is_image(self) -> bool:
        return self.x_train.dim() == 4

    @property
    def num_train(self) -> int:
        return int(self.y_train.shape[0])

    @property
    def sample_shape(self) -> tuple[int, ...]:
        """One input: ``(L,)`` or ``(H, W, C)``."""
        return tuple(self.x_train.shape[1:])

    def subset(self, n: int) -> ArrayDataset:
        """``n`` training samples drawn at random with a fixed seed (the same ones in every run, kept in
        their original order, so a file sorted by label still gives every class); the test split is
        kept whole."""
        if n <= 0 or n >= self.num_train:
            return self
        keep = torch.randperm(self.num_train, generator=torch.Generator().manual_seed(0))[:n].sort().values
        return ArrayDataset(
            self.x_train[keep], self.y_train[keep], self.x_test, self.y_test, self.num_classes, self.name,
            self.mean, self.std,
        )


def default_data_dir() -> Path:
    """``$IES_DATA_DIR`` if set, else ``data/`` next to the package's repository (or the cwd)."""
    env = os.environ.get("IES_DATA_DIR")
    if env:
        return Path(env).expanduser()
    repo = Path(__file__).resolve().parents[2]  # ies/data/datasets.py -> the repository
    return repo / "data" if (repo / "pyproject.toml").exists() else Path.cwd() / "data"


def load_dataset(name: str, data_dir: str | os.PathLike | None = None, size: int = 0,
                 test_size: int = 0) -> ArrayDataset:
    """Load a dataset by name (a key of :data:`DATASETS`) or ``.npz`` path; ``size`` as ``Config.dataset_size``,
    ``test_size`` as ``Config.test_size`` (``mnist1d`` only)."""
    root = Path(data_dir) if data_dir else default_data_dir()
    if test_size:
        if name != "mnist1d":
            raise ValueError(f"test_size applies to the generated mnist1d only, got {test_size} for {name!r}")
        return mnist1d(root, size or 5000, test_size)
    if str(name).endswith(".npz"):
        return npz(name).subset(size)
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}: use one of {sorted(DATASETS)} or a .npz path")
    return DATASETS[name](root, size)


def mnist1d(root: Path, num_samples: int = 5000, test_samples: int = 0) -> ArrayDataset:
    """MNIST-1D (Greydanus, 2020) generated locally with the ``mnist1d`` package: 10 classes of
    40-sample 1-D signals, 80 % train / 20 % test, cached in ``root`` as ``.npz``. With ``test_samples``:
    80 % of ``num_samples`` for training and ``test_samples`` for testing, generated together (the
    generator makes ``total // 10`` samples per class and shuffles them before the split)."""
    if test_samples < 0:
        raise ValueError(f"test_size must be >= 0, got {test_samples}")
    train = int(num_samples * 0.8)
    total = train + test_samples if test_samples else num_samples
    if test_samples and total % 10:
        raise ValueError(f"test_size: training ({train}) + test samples ({test_samples}) must be a multiple "
                         f"of the 10 classes, got {total}")
    path = Path(root) / f"mnist1d_{num_samples}{f'_test{test_samples}' if test_samples else ''}.npz"
    if not path.exists():
        from mnist1d.data import get_dataset_args, make_dataset  # here: mnist1d imports matplotlib and scipy

        args = get_dataset_args()
        args.num_samples = total
        if test_samples:  # int(total * train_split) is the split index: exactly `train` training samples
            args.train_split = (train + 0.5) / total
        state = np.random.get_state()
        try:
            d = make_dataset(args)  # seeds numpy with args.seed (42): the dataset is fixed
        finally:
            np.random.set_state(state)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp.npz")
        np.savez(tmp, x=d["x"], y=d["y"], x_test=d["x_test"], y_test=d["y_test"])
        os.replace(tmp, path)
    with np.load(path) as f:
        return ArrayDataset(
            torch.as_tensor(f["x"], dtype=torch.float32),
            torch.as_tensor(f["y"], dtype=torch.int64),
            torch.as_tensor(f["x_test"], dtype=torch.float32),
            torch.as_tensor(f["y_test"], dtype=torch.int64),
            10,
            "mnist1d",
        )


def synthetic(num_samples: int = 5000, num_classes: int = 4, dim: int = 40, seed: int = 0) -> ArrayDataset:
    """Gaussian blobs in ``dim`` dimensions with label noise-free but overlapping classes: a tiny,
    fast, fully offline data set for tests. 80 % train / 20 % test."""
    g = torch.Generator().manual_seed(seed)
    centers = torch.randn(num_classes, dim, generator=g) * 1.5
    y = torch.randint(0, num_classes, (num_samples,), generator=g)
    x = centers[y] + torch.randn(num_samples, dim, generator=g) * 2.0
    split = int(0.8 * num_samples)
    return ArrayDataset(x[:split], y[:split], x[split:], y[split:], num_classes, "synthetic")


def npz(path: str | os.PathLike) -> ArrayDataset:
    """A ``.npz`` file holding uint8 ``x_train`` (N, H, W, C), ``y_train``, ``x_test``, ``y_test``.

    Labels are integers ``0 .. num_classes-1`` (``num_classes`` = the largest label + 1); the
    normalisation statistics are computed per channel on ``x_train``. The CLI takes the path as
    ``--dataset path/to/file.npz``.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"dataset file {path} does not exist")
    expected = "an .npz archive of the arrays x_train, y_train, x_test, y_test"
    try:
        archive = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:  # not a numpy file, pickled objects, truncated
        raise ValueError(f"dataset file {path} is not {expected} ({e})") from None
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise ValueError(f"dataset file {path} holds a single array, expected {expected}")
    with archive as f:
        missing = {"x_train", "y_train", "x_test", "y_test"} - set(f.files)
        if missing:
            raise ValueError(f"{path} lacks the arrays {sorted(missing)}")
        try:
            xs = {k: f[k] for k in ("x_train", "y_train", "x_test", "y_test")}
        except (ValueError, OSError, EOFError, zipfile.BadZipFile, zlib.error) as e:  # objects, a truncated member
            raise ValueError(f"dataset file {path} is not {expected} of numbers ({e})") from None
    for split in ("train", "test"):
        x, y = xs[f"x_{split}"], xs[f"y_{split}"]
        if x.dtype != np.uint8 or x.ndim != 4:
            raise ValueError(f"{path}: x_{split} must be uint8 (N, H, W, C), got {x.dtype} {x.shape}")
        if y.size != x.shape[0] or not np.issubdtype(y.dtype, np.integer):
            raise ValueError(f"{path}: y_{split} must hold {x.shape[0]} integer labels, got {y.dtype} {y.shape}")
        if y.size and y.min() < 0:
            raise ValueError(f"{path}: y_{split} has negative labels")
    if xs["x_train"].shape[1:] != xs["x_test"].shape[1:]:
        raise ValueError(f"{path}: x_train and x_test images differ in shape")
    y_train = torch.as_tensor(xs["y_train"].astype(np.int64)).flatten()
    y_test = torch.as_tensor(xs["y_test"].astype(np.int64)).flatten()
    num_classes = checks.derived_class_count(y_train, f"dataset {path}")  # test labels: checked against it
    x = torch.as_tensor(xs["x_train"])
    mean, std = channel_stats(x)
    return ArrayDataset(x, y_train, torch.as_tensor(xs["x_test"]), y_test, num_classes, path.stem, mean, std)


def channel_stats(x: torch.Tensor, chunk: int = 4096) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and standard deviation of uint8 ``(N, H, W, C)`` images scaled to [0, 1],
    computed in float64 over chunks (no float copy of the whole set)."""
    c = x.shape[-1]
    total = torch.zeros(c, dtype=torch.float64)
    squares = torch.zeros(c, dtype=torch.float64)
    for start in range(0, x.shape[0], chunk):
        part = x[start : start + chunk].reshape(-1, c).double()
        total += part.sum(0)
        squares += (part * part).sum(0)
    count = x[..., 0].numel()
    mean = total / count
    var = (squares - count * mean * mean) / max(count - 1, 1)
    return tuple((mean / 255).tolist()), tuple((var.clamp(min=0).sqrt() / 255).tolist())


def cifar(name: str, root: Path) -> ArrayDataset:
    """CIFAR-10/100 through torchvision, downloaded into ``root`` where a network exists."""
    cls = torchvision.datasets.CIFAR10 if name == "cifar10" else torchvision.datasets.CIFAR100
    folder = "cifar-10-batches-py" if name == "cifar10" else "cifar-100-python"
    root = Path(root)
    if not (root / folder).exists():
        old = socket.getdefaulttimeout()
        socket.setdefaulttimeout(20)
        try:
            cls(str(root), train=True, download=True)
        except Exception as e:  # no network: say how to get the files, never hang
            raise DatasetUnavailable(
                f"{name} is not in {root} and could not be downloaded ({type(e).__name__}: {e}). "
                f"Download {cls.url} on a machine with a network, unpack it so that {root / folder} "
                f"exists (or set IES_DATA_DIR / data_dir to where it is)."
            ) from None
        finally:
            socket.setdefaulttimeout(old)
    train = cls(str(root), train=True, download=False)
    test = cls(str(root), train=False, download=False)
    mean, std = CIFAR_STATS[name]
    return ArrayDataset(
        torch.as_tensor(train.data), torch.as_tensor(train.targets, dtype=torch.int64),
        torch.as_tensor(test.data), torch.as_tensor(test.targets, dtype=torch.int64),
        len(train.classes), name, mean, std,
    )


IMAGENET_STATS = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))


def image_folder(root: str | os.PathLike, train: bool = True, image_size: int = 224, mean=None, std=None):
    """An ImageFolder-style directory (``root/<class>/<image>``, e.g. ``imagenet/train``) as a
    ``torchvision.datasets.ImageFolder`` with the usual ImageNet transforms, decoded by DataLoader workers.

    ``train=True``: ``RandomResizedCrop(image_size)`` + horizontal flip; ``train=False``: resize to
    ``image_size * 8/7`` and centre crop. Both end as normalised float ``(C, image_size, image_size)``.

    This is for your own loop. :func:`ies.train` does not use this function: given a root holding
    ``train/`` and ``val/`` (``Config.dataset``), it builds its own loaders (:mod:`ies.data.streaming`) with
    the same crops, which return uint8 images and normalise them on the device. In your loop, use it with
    the generic API (it yields ``(x, y, index)``)::

        from ies.method.generic import IndexedDataset, ActiveSampler
        data = IndexedDataset(image_folder("imagenet/train"))
        active = DataLoader(data, batch_size=256, sampler=ActiveSampler(tracker, seed=0),
                            num_workers=8, pin_memory=True, persistent_workers=True)
        mastered = DataLoader(data, batch_size=1024, sampler=ActiveSampler(tracker, "mastered"),
                              num_workers=8, pin_memory=True)

    (see ``ies.method.generic`` and, for several GPUs, ``ies.method.distributed``).
    """
    mean, std = mean or IMAGENET_STATS[0], std or IMAGENET_STATS[1]
    if train:
        head = [v2.RandomResizedCrop(image_size, antialias=True), v2.RandomHorizontalFlip()]
    else:
        head = [v2.Resize(round(image_size * 8 / 7), antialias=True), v2.CenterCrop(image_size)]
    transform = v2.Compose([v2.ToImage(), *head, v2.ToDtype(torch.float32, scale=True), v2.Normalize(mean, std)])
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"image folder {root} does not exist (expected root/<class>/<image files>)")
    return torchvision.datasets.ImageFolder(str(root), transform=transform)


def pass_order(indices: torch.Tensor | None, n: int, batch_size: int, device: torch.device,
               generator: torch.Generator | None) -> torch.Tensor:
    """The order of one pass of a loader of ``n`` samples over ``indices`` (default: all of them) on
    ``device``: shuffled by ``torch.randperm`` with ``generator`` when one is given (no host sync)."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    indices = torch.arange(n, device=device) if indices is None else indices.to(device)
    if generator is not None:
        indices = indices[torch.randperm(indices.numel(), device=device, generator=generator)]
    return indices


def batch_bounds(n: int, batch_size: int, min_last: int = 0) -> list[tuple[int, int]]:
    """``(start, stop)`` of the batches of ``n`` samples: ``batch_size`` each, the remainder last; a
    remainder of fewer than ``min_last`` samples is merged into the batch before it (if there is one)."""
    bounds = [*range(0, n, batch_size), n]
    if len(bounds) > 2 and bounds[-1] - bounds[-2] < min_last:
        del bounds[-2]
    return list(zip(bounds[:-1], bounds[1:], strict=True))


class DeviceLoader:
    """Serves batches of one split from tensors kept on ``device``.

    Images stay uint8 ``(N, H, W, C)`` on the device (4x smaller than float). A training loader
    (``augment=True``) stores them zero-padded by ``pad`` once, so that gathering a batch, the random
    crop and the horizontal flip of every image are one indexing kernel (:mod:`ies.data.augment`); the batch
    is then turned into float ``(B, C, H, W)`` and normalised in one more. Signals are served as they are.

    Args:
        x: ``(N, ...)`` inputs; y: ``(N,)`` int64 labels.
        device: where to keep them.
        mean, std: per-channel image normalisation (images only; default 0.5 and 0.25).
        augment: random crop (zero padding ``pad``) + horizontal flip of training batches of images.
        generator: a ``torch.Generator`` on ``device`` used for shuffling and augmentation
            (its state is what makes a run reproducible and resumable).
        pad: padding of the random crop (4 for CIFAR).
        channels_last: image batches in channels_last memory format: the natural layout of the uint8
            storage (no extra copy), what cuDNN prefers with bf16, and on a CPU about 1.3x faster for
            ``small_cnn`` than contiguous NCHW (measured). The values are the same either way.
    """

    def __init__(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        device: torch.device,
        *,
        mean: tuple[float, ...] | None = None,
        std: tuple[float, ...] | None = None,
        augment: bool = False,
        generator: torch.Generator | None = None,
        pad: int = 4,
        channels_last: bool = True,
    ) -> None:
        if x.shape[0] != y.shape[0]:
            raise ValueError(f"x has {x.shape[0]} samples, y {y.shape[0]}")
        self.device = torch.device(device)
        self.is_image = x.dim() == 4
        self.augment = augment and self.is_image
        self.generator = generator
        self.pad = pad if self.augment else 0
        self.y = y.to(self.device)
        if self.is_image:
            self._xp = aug.pad_images(x.to(self.device), self.pad)
            p, h, w = self.pad, x.shape[1], x.shape[2]
            self.x = self._xp[:, p : p + h, p : p + w]  # the unpadded images, a view
            c = x.shape[-1]
            m = torch.tensor(mean if mean else (0.5,) * c, device=self.device).view(1, c, 1, 1)
            s = torch.tensor(std if std else (0.25,) * c, device=self.device).view(1, c, 1, 1)
            self._scale = 1.0 / (255.0 * s)
            self._shift = -m / s
            self.channels_last = channels_last
        else:
            self.x = x.to(self.device)
            self.channels_last = False

    def __len__(self) -> int:
        return int(self.y.shape[0])

    def inputs(self, idx: torch.Tensor, augment: bool) -> torch.Tensor:
        """The model inputs of samples ``idx``: ``(B, C, H, W)`` float for images, ``(B, L)`` signals.

        ``augment`` applies the random crop and flip if the loader was built with ``augment=True``.
        """
        if not self.is_image:
            return self.x[idx]
        if augment and self.augment:
            xb = aug.random_crop_flip(self._xp, idx, self.pad, self.generator)
        else:
            xb = self.x[idx]
        # (B, H, W, C) uint8 -> (B, C, H, W) float with channels_last strides, normalised in one kernel
        x = torch.addcmul(self._shift, xb.permute(0, 3, 1, 2).float(), self._scale)
        return x if self.channels_last else x.contiguous()

    def batches(
        self,
        indices: torch.Tensor | None = None,
        batch_size: int = 256,
        *,
        shuffle: bool = False,
        augment: bool = False,
        min_last: int = 0,
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        """Yield ``(inputs, targets, indices)`` over ``indices`` (default: every sample) once each.

        Shuffling uses ``torch.randperm`` with the loader's generator on the device (no host sync).
        Every batch has ``batch_size`` samples but the last, which has the remainder; a remainder of fewer
        than ``min_last`` samples is merged into the batch before it (if there is one).
        """
        indices = pass_order(indices, len(self), batch_size, self.device, self.generator if shuffle else None)
        for start, stop in batch_bounds(indices.numel(), batch_size, min_last):
            idx = indices[start:stop]
            yield self.inputs(idx, augment), self.y[idx], idx


DATASETS: dict[str, Callable[[Path, int], ArrayDataset]] = {
    "mnist1d": lambda root, size: mnist1d(root, size or 5000),
    "synthetic": lambda root, size: synthetic(size or 5000),
    "cifar10": lambda root, size: cifar("cifar10", root).subset(size),
    "cifar100": lambda root, size: cifar("cifar100", root).subset(size),
}
"""The registry of named datasets: name -> ``load(root, size)`` (``size`` as ``Config.dataset_size``).
Add a dataset here; ``Config.dataset`` and the CLI take its name at once (``.npz`` paths need no entry)."""
