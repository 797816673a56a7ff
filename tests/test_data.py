"""Datasets and the device-resident loader: coverage of any index subset, .npz files end to end,
the offline message of CIFAR, ImageFolder directories through DataLoader workers."""

import json

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from ies import MasteryTracker, cli
from ies.data import datasets as D
from ies.method.generic import ActiveSampler, IndexedDataset


def image_arrays(n_train=40, n_test=12, size=16, classes=3, seed=0):
    rng = np.random.default_rng(seed)
    return {
        "x_train": rng.integers(0, 256, (n_train, size, size, 3), dtype=np.uint8),
        "y_train": rng.integers(0, classes, n_train),
        "x_test": rng.integers(0, 256, (n_test, size, size, 3), dtype=np.uint8),
        "y_test": rng.integers(0, classes, n_test),
    }


@pytest.mark.parametrize("n,min_last,sizes", [(131, 16, [64, 67]), (144, 16, [64, 64, 16]), (131, 0, [64, 64, 3]),
                                               (10, 16, [10]), (128, 16, [64, 64])])
def test_a_small_last_batch_is_merged_into_the_one_before(n, min_last, sizes):
    loader = D.DeviceLoader(torch.zeros(n, 4), torch.zeros(n, dtype=torch.long), "cpu")
    batches = list(loader.batches(None, 64, shuffle=True, min_last=min_last))
    assert [b[2].numel() for b in batches] == sizes
    assert sorted(torch.cat([b[2] for b in batches]).tolist()) == list(range(n))


@pytest.mark.parametrize("augment", [False, True])
@pytest.mark.parametrize("batch_size", [1, 7, 64])
def test_every_active_index_exactly_once_per_epoch(augment, batch_size):
    arrays = image_arrays(n_train=50)
    x, y = torch.as_tensor(arrays["x_train"]), torch.as_tensor(arrays["y_train"])
    gen = torch.Generator().manual_seed(0)
    loader = D.DeviceLoader(x, y, "cpu", augment=augment, generator=gen)
    active = torch.tensor([0, 3, 4, 9, 10, 11, 25, 26, 48, 49])
    orders = []
    for _ in range(3):  # epochs
        seen, sizes = [], []
        for xb, yb, idx in loader.batches(active, batch_size, shuffle=True, augment=True):
            assert xb.shape == (idx.numel(), 3, 16, 16) and xb.dtype == torch.float32
            assert torch.equal(yb, y[idx])
            seen += idx.tolist()
            sizes.append(idx.numel())
        assert sorted(seen) == active.tolist()
        assert sizes == [batch_size] * (10 // batch_size) + ([10 % batch_size] if 10 % batch_size else [])
        orders.append(seen)
    if batch_size < 10:
        assert orders[0] != orders[1]  # reshuffled every epoch
    everything = [i for _, _, idx in loader.batches(None, 16) for i in idx.tolist()]
    assert everything == list(range(50))  # no indices: every sample, in order


def test_shuffling_is_reproducible_from_the_generator():
    x, y = torch.randn(30, 5), torch.arange(30)

    def order(seed):
        loader = D.DeviceLoader(x, y, "cpu", generator=torch.Generator().manual_seed(seed))
        return [i for _, _, idx in loader.batches(None, 8, shuffle=True) for i in idx.tolist()]

    assert order(1) == order(1) != order(2)
    expected = torch.randperm(30, generator=torch.Generator().manual_seed(1)).tolist()
    assert order(1) == expected
    loader = D.DeviceLoader(x, y, "cpu")
    xb, yb, idx = next(loader.batches(torch.tensor([4, 2]), 8))
    assert torch.equal(xb, x[[4, 2]]) and torch.equal(yb, y[[4, 2]])  # signals are served as they are


def test_npz_loads_with_per_channel_statistics(tmp_path):
    arrays = image_arrays()
    path = tmp_path / "tiny.npz"
    np.savez(path, **arrays)
    ds = D.load_dataset(str(path))
    assert ds.name == "tiny" and ds.is_image and ds.num_train == 40 and ds.num_classes == 3
    assert ds.x_train.dtype == torch.uint8 and ds.y_train.dtype == torch.int64
    x = arrays["x_train"].reshape(-1, 3) / 255
    np.testing.assert_allclose(ds.mean, x.mean(0), rtol=1e-9)
    np.testing.assert_allclose(ds.std, x.std(0, ddof=1), rtol=1e-9)
    assert D.load_dataset(str(path), size=10).num_train == 10
    mean, std = D.channel_stats(torch.as_tensor(arrays["x_train"]), chunk=7)  # chunking changes nothing
    np.testing.assert_allclose(mean, ds.mean, rtol=1e-12)
    np.testing.assert_allclose(std, ds.std, rtol=1e-12)


@pytest.mark.parametrize(
    "change, message",
    [
        ({"x_train": np.zeros((4, 8, 8, 3), np.float32)}, "uint8"),
        ({"x_test": np.zeros((4, 8, 8), np.uint8)}, "uint8"),
        ({"y_train": np.zeros(3, np.int64)}, "labels"),
        ({"y_test": -np.ones(12, np.int64)}, "negative"),
        ({"x_test": np.zeros((12, 8, 8, 3), np.uint8)}, "shape"),
    ],
)
def test_npz_rejects_malformed_files(tmp_path, change, message):
    arrays = {**image_arrays(), **change}
    path = tmp_path / "bad.npz"
    np.savez(path, **arrays)
    with pytest.raises(ValueError, match=message):
        D.npz(path)
    np.savez(path, x_train=arrays["x_train"])
    with pytest.raises(ValueError, match="lacks"):
        D.npz(path)
    with pytest.raises(FileNotFoundError):
        D.npz(tmp_path / "missing.npz")


def test_cli_trains_on_an_npz_file_end_to_end(tmp_path, capsys):
    path = tmp_path / "tiny.npz"
    np.savez(path, **image_arrays())
    out = tmp_path / "run"
    rc = cli.main(["train", "--dataset", str(path), "--model", "small_cnn", "--epochs", "2", "--batch-size", "16",
                   "--device", "cpu", "--output", str(out), "--no-progress", "--lr", "0.05"])
    assert rc == 0
    printed = json.loads(capsys.readouterr().out)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["epochs_completed"] == 2 and metrics["num_train"] == 40
    assert metrics["config"]["dataset"] == str(path)
    assert printed["test_accuracy"] == metrics["test_accuracy"]
    assert (out / "history.csv").read_text().count("\n") == 3


def test_cifar_offline_says_where_to_put_the_files(tmp_path, monkeypatch):
    import torchvision

    class Offline:
        url = "https://example.invalid/cifar-10-python.tar.gz"

        def __init__(self, *args, **kwargs):
            raise OSError("network is unreachable")

    monkeypatch.setattr(torchvision.datasets, "CIFAR10", Offline)
    with pytest.raises(RuntimeError, match="cifar-10-batches-py") as err:
        D.load_dataset("cifar10", tmp_path)
    assert str(tmp_path) in str(err.value) and Offline.url in str(err.value)


def test_unknown_dataset_name():
    with pytest.raises(ValueError, match="unknown dataset"):
        D.load_dataset("imagenet-but-not-a-file")


def write_image_folder(root, classes=("cat", "dog"), per_class=3, size=(20, 24)):
    from PIL import Image

    rng = np.random.default_rng(0)
    for c in classes:
        (root / c).mkdir(parents=True)
        for i in range(per_class):
            Image.fromarray(rng.integers(0, 256, (*size, 3), dtype=np.uint8)).save(root / c / f"{i}.png")


@pytest.mark.parametrize("train", [True, False])
def test_image_folder_through_dataloader_workers_and_the_active_sampler(tmp_path, train):
    write_image_folder(tmp_path / "train")
    data = IndexedDataset(D.image_folder(tmp_path / "train", train=train, image_size=16))
    assert len(data) == 6
    tracker = MasteryTracker(len(data), threshold=0.1, order=1, patience=1, rule="paper")
    loader = DataLoader(data, batch_size=4, sampler=ActiveSampler(tracker, seed=0), num_workers=2)
    seen = []
    for x, y, idx in loader:
        assert x.shape == (idx.numel(), 3, 16, 16) and x.dtype == torch.float32
        assert torch.equal(y, (idx >= 3).long())  # ImageFolder: classes in sorted order, files in order
        seen += idx.tolist()
    assert sorted(seen) == list(range(6))
    with pytest.raises(FileNotFoundError):
        D.image_folder(tmp_path / "nowhere")


def test_subset_of_a_label_sorted_file_is_a_fixed_random_draw(tmp_path):
    arrays = image_arrays(n_train=30)
    arrays["y_train"] = np.sort(arrays["y_train"])
    np.savez(tmp_path / "sorted.npz", **arrays)
    small = D.load_dataset(str(tmp_path / "sorted.npz"), size=12)
    again = D.load_dataset(str(tmp_path / "sorted.npz"), size=12)
    assert small.num_train == 12 and torch.equal(small.y_train, again.y_train)  # the same draw every time
    assert small.y_train.unique().numel() == 3  # every class, although the file is sorted by label
    assert (small.y_train.diff() >= 0).all()  # original order kept
    full = torch.as_tensor(arrays["x_train"])
    rows = [int((full == x).flatten(1).all(1).nonzero()[0]) for x in small.x_train]
    assert rows == sorted(set(rows)) and torch.equal(small.y_train, torch.as_tensor(arrays["y_train"][rows]))


def test_mnist1d_test_size_generates_a_larger_test_split_and_keeps_the_training_size(tmp_path):
    from ies import Config

    d = D.load_dataset("mnist1d", tmp_path, 500, test_size=600)  # 80 % of 500 for training, 600 for testing
    assert d.num_train == 400 and len(d.y_test) == 600 and d.x_test.shape[1:] == d.x_train.shape[1:]
    assert (tmp_path / "mnist1d_500_test600.npz").exists()
    assert set(d.y_test.tolist()) == set(range(10))
    again = D.load_dataset("mnist1d", tmp_path, 500, test_size=600)  # from the cache: the same samples
    assert torch.equal(again.x_test, d.x_test) and torch.equal(again.y_train, d.y_train)
    with pytest.raises(ValueError, match="test_size applies to the generated mnist1d only"):
        D.load_dataset("synthetic", tmp_path, 500, test_size=600)
    with pytest.raises(ValueError, match="multiple of the 10 classes"):
        D.load_dataset("mnist1d", tmp_path, 500, test_size=605)
    with pytest.raises(ValueError, match="test_size applies to the generated mnist1d only"):
        Config(dataset="synthetic", test_size=10)
    with pytest.raises(ValueError, match="test_size must be >= 0"):
        Config(test_size=-1)
