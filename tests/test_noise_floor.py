"""The augmentation noise floor: the |D_N| that loss noise alone produces, and its measurement."""

import math

import pytest
import torch

from ies.data.datasets import DeviceLoader
from ies.experiments.noise_floor import augmented_losses, difference_floor, noise_floor
from ies.models.zoo import small_cnn


def test_difference_floor_values():
    s = torch.tensor([1.0, 0.5])
    assert torch.allclose(difference_floor(s, 2), s * math.sqrt(2 / math.pi) * math.sqrt(6))
    assert torch.allclose(difference_floor(s, 1), s * math.sqrt(2 / math.pi) * math.sqrt(2))
    assert torch.equal(difference_floor(s, 0), s)


@pytest.mark.parametrize("order", [1, 2, 3])
def test_floor_is_the_mean_abs_difference_of_pure_noise(order):
    g = torch.Generator().manual_seed(order)
    losses = 0.7 + 0.01 * torch.randn(20000, 40, generator=g, dtype=torch.float64)  # (samples, epochs)
    d = torch.diff(losses, n=order, dim=1).abs().mean()
    want = difference_floor(torch.tensor(0.01, dtype=torch.float64), order)
    assert abs(d / want - 1) < 0.01


def _images(n=24, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 256, (n, 32, 32, 3), dtype=torch.uint8, generator=g)
    return x, torch.randint(0, 10, (n,), generator=g)


def test_no_augmentation_no_spread_and_mode_restored():
    torch.manual_seed(0)
    x, y = _images()
    model = small_cnn(10, width=8).train()
    plain = DeviceLoader(x, y, torch.device("cpu"), augment=False)
    losses = augmented_losses(model, plain, draws=3, batch_size=10)
    assert losses.shape == (24, 3) and model.training
    assert torch.equal(losses[:, 0], losses[:, 2])
    f = noise_floor(model, plain, 1e-3, draws=3)
    assert f["median_spread"] == 0 and f["share_below_threshold"] == 1.0 and f["samples"] == 24


def test_crops_move_the_loss_and_subsets_work():
    torch.manual_seed(0)
    x, y = _images()
    model = small_cnn(10, width=8)
    loader = DeviceLoader(x, y, torch.device("cpu"), augment=True, generator=torch.Generator().manual_seed(1))
    idx = torch.tensor([3, 5, 7, 11])
    losses = augmented_losses(model, loader, idx, draws=4)
    assert losses.shape == (4, 4) and (losses.std(dim=1) > 0).all()
    f = noise_floor(model, loader, 1e-6, indices=idx, draws=4)
    assert f["share_below_threshold"] == 0.0 and f["floor_over_threshold"] > 1
    with pytest.raises(ValueError, match="draws"):
        augmented_losses(model, loader, idx, draws=1)
