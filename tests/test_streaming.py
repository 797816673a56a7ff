"""ies.train on a streaming dataset (an ImageFolder root, any map-style dataset) against the in-memory path."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from torch.utils.data import TensorDataset

from ies import Config, train
from ies.cli import main
from ies.data.datasets import IMAGENET_STATS, ArrayDataset, DeviceLoader, synthetic
from ies.data.streaming import StreamingData, StreamingLoader, image_folder_data

from .resuming import interrupted

# 36 training and 12 test images of 3 classes, 16x16 RGB; no augmentation; a few samples get excluded
TINY = dict(model="small_cnn", epochs=7, batch_size=8, eval_batch_size=16, lr=0.02, threshold=0.3,
            augment=False, image_size=0, device="cpu", progress=False, seed=0)


def write_split(root: Path, split: str, per_class: int, rng) -> None:
    for c in range(3):
        folder = root / split / f"class{c}"
        folder.mkdir(parents=True)
        for i in range(per_class):
            img = rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)
            img[..., c] = np.clip(img[..., c].astype(int) + 80, 0, 255)  # class c: a brighter channel c
            Image.fromarray(img).save(folder / f"{i:03d}.png")


def read_split(folder: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """The reference reading: sorted class folders numbered 0.., sorted files, PIL -> uint8 (H, W, C)."""
    xs, ys = [], []
    for label, cls in enumerate(sorted(p for p in folder.iterdir() if p.is_dir())):
        for path in sorted(cls.iterdir()):
            xs.append(np.asarray(Image.open(path).convert("RGB")))
            ys.append(label)
    return torch.as_tensor(np.stack(xs)), torch.as_tensor(ys)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny_imagenet")
    rng = np.random.default_rng(0)
    write_split(root, "train", 12, rng)
    write_split(root, "val", 4, rng)
    return root


@pytest.fixture(scope="module")
def in_memory(folder):
    """The same images as tensors, normalised with the same statistics as the ImageFolder path."""
    return ArrayDataset(*read_split(folder / "train"), *read_split(folder / "val"), 3, "tiny", *IMAGENET_STATS)


def history(cfg, dataset=None) -> pd.DataFrame:
    return train(cfg, dataset=dataset).history.drop(columns="epoch_seconds")


@pytest.fixture(scope="module")
def reference(in_memory):
    """The in-memory run, on one torch thread as the streaming runs it is compared with (the threads' order
    of summation moves the losses in their last digits)."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return history(Config(**TINY), in_memory)
    finally:
        torch.set_num_threads(old)


@pytest.mark.parametrize("workers", [0, 2])
def test_image_folder_trains_exactly_as_the_same_images_in_memory(folder, reference, workers, one_thread):
    got = history(Config(**TINY, dataset=str(folder), num_workers=workers))
    assert reference["forward_only_samples"].sum() > 0  # the tracking pass ran
    assert reference["backprop_samples"].iloc[-1] < 36  # samples were excluded
    pd.testing.assert_frame_equal(got, reference, check_exact=True)  # every column, bit for bit


def test_label_noise_applies_to_the_streamed_labels(folder, in_memory, one_thread):
    cfg = Config(**{**TINY, "epochs": 3}, label_noise=0.25)
    want = history(cfg, in_memory)
    pd.testing.assert_frame_equal(history(cfg.replace(dataset=str(folder), num_workers=0)), want, check_exact=True)
    with pytest.raises(ValueError, match="imbalance must be 1 on a streaming dataset"):
        train(cfg.replace(dataset=str(folder), imbalance=2.0, label_noise=0.0))


def test_any_map_style_dataset_trains_as_in_memory(one_thread):
    data = synthetic(600, num_classes=3, dim=12)
    cfg = Config(dataset="synthetic", model="mlp", epochs=4, batch_size=32, threshold=0.05, device="cpu",
                 progress=False, num_workers=0)
    streamed = StreamingData.from_datasets(TensorDataset(data.x_train, data.y_train),
                                           TensorDataset(data.x_test, data.y_test), name="synthetic")
    assert streamed.sample_shape == (12,) and streamed.num_classes == 3 and not streamed.is_image
    pd.testing.assert_frame_equal(history(cfg, streamed), history(cfg, data), check_exact=True)


def test_batches_match_the_device_loader_and_augmentation_ignores_the_workers(folder, in_memory, one_thread):
    data = image_folder_data(folder, image_size=0)
    gen = lambda: torch.Generator().manual_seed(3)  # noqa: E731
    loaders = [StreamingLoader(data.train, data.y_train, "cpu", mean=data.mean, std=data.std, augment=True,
                               train_transform=data.train_transform, eval_transform=data.eval_transform,
                               generator=gen(), num_workers=w) for w in (0, 2)]
    memory = DeviceLoader(in_memory.x_train, in_memory.y_train, "cpu", mean=data.mean, std=data.std, generator=gen())
    augmented = [torch.cat([x for x, _, _ in loader.batches(None, 8, augment=True)]) for loader in loaders]
    subset = torch.tensor([5, 30, 2, 17, 8, 11, 25])
    loaders[1].generator.manual_seed(3)  # as fresh as memory's
    plain = [list(loader.batches(subset, 3, shuffle=True)) for loader in (loaders[1], memory)]
    for (xa, ya, ia), (xb, yb, ib) in zip(*plain, strict=True):  # the same order, images and labels
        assert torch.equal(xa, xb) and torch.equal(ya, yb) and torch.equal(ia, ib)
    merged = [[i for _, _, i in loader.batches(subset, 3, min_last=2)] for loader in (loaders[1], memory)]
    assert [i.tolist() for i in merged[0]] == [i.tolist() for i in merged[1]] == [[5, 30, 2], [17, 8, 11, 25]]
    assert torch.equal(augmented[0], augmented[1])  # per-sample seeds: independent of the workers
    again = torch.cat([x for x, _, _ in loaders[0].batches(None, 8, augment=True)])
    unaugmented = torch.cat([x for x, _, _ in loaders[0].batches(None, 8)])
    assert not torch.equal(again, augmented[0]) and not torch.equal(augmented[0], unaugmented)


def test_augmented_streaming_run_resumes_bit_identically(folder, tmp_path, one_thread):
    cfg = Config(**{**TINY, "epochs": 4, "augment": True}, dataset=str(folder), num_workers=0,
                 output=str(tmp_path / "full"))
    full = train(cfg)
    cut = cfg.replace(output=str(tmp_path / "cut"))
    interrupted(cut, 3)  # the checkpoint holds epochs 1..2
    resumed = train(cut.replace(resume=True))
    cols = [c for c in full.history.columns if c != "epoch_seconds"]
    pd.testing.assert_frame_equal(resumed.history[cols], full.history[cols], check_exact=True)
    plain = train(cfg.replace(augment=False, output="")).history[cols]
    assert not plain["train_loss"].equals(full.history["train_loss"])  # the augmentation did change the losses


def test_folder_transforms_crop_to_image_size(folder):
    data = image_folder_data(folder, image_size=12, size=10)
    assert data.sample_shape == (12, 12, 3) and data.num_train == 10 and data.name == folder.name
    loader = StreamingLoader(data.train, data.y_train, "cpu", train_transform=data.train_transform,
                             eval_transform=data.eval_transform, augment=True, generator=torch.Generator())
    for augment in (False, True):
        x, y, idx = next(loader.batches(None, 4, augment=augment))
        assert x.shape == (4, 3, 12, 12) and x.dtype == torch.float32 and torch.equal(y, data.y_train[idx])


def make_empty(root: Path) -> Path:
    (root / "train" / "a").mkdir(parents=True)
    (root / "val" / "a").mkdir(parents=True)
    return root


@pytest.mark.parametrize("case,error,message", [
    ("missing", FileNotFoundError, r"dataset \S+missing: no such directory"),
    ("empty", ValueError, r"dataset \S+empty: train/ holds no images"),
    ("no_val", FileNotFoundError, r"dataset \S+no_val has no val/ folder"),
])
def test_bad_image_folder_is_one_error_naming_dataset_and_writes_nothing(tmp_path, case, error, message, capsys):
    root = tmp_path / case
    if case == "empty":
        make_empty(root)
    elif case == "no_val":
        (root / "train" / "a").mkdir(parents=True)
        Image.new("RGB", (4, 4)).save(root / "train" / "a" / "0.png")
    out = tmp_path / "out"
    with pytest.raises(error, match=message):
        train(Config(**TINY, dataset=str(root), output=str(out)))
    assert not out.exists()
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--dataset", str(root), "--output", str(out), "--no-progress"])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and err.startswith("error: dataset ") and err.count("\n") == 1
    assert not out.exists()
