"""The small transformers: shapes, parameter budgets, bad input, and real learning on MNIST-1D."""

import pytest
import torch

from ies import Config, train
from ies.models.transformer import PatchTransformer1d, TinyViT, count_parameters

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def test_shapes_and_parameter_budget():
    torch.manual_seed(0)
    signal, vit = PatchTransformer1d(40, 10), TinyViT(10)
    assert signal(torch.randn(3, 40)).shape == (3, 10)
    images = torch.randn(2, 3, 32, 32).contiguous(memory_format=torch.channels_last)
    assert vit(images).shape == (2, 10)
    assert count_parameters(signal) < 100_000 and count_parameters(vit) < 300_000
    assert count_parameters(PatchTransformer1d(40, 10)) == count_parameters(signal)  # deterministic build


def test_bad_shapes_are_clear_errors():
    with pytest.raises(ValueError, match=r"expected \(B, 40\)"):
        PatchTransformer1d(40, 10)(torch.randn(2, 41))
    with pytest.raises(ValueError, match="expected"):
        TinyViT(10)(torch.randn(2, 3, 28, 28))
    with pytest.raises(ValueError, match="divisible"):
        TinyViT(10, dim=30, heads=4)


def test_the_patch_transformer_learns_mnist1d():
    torch.manual_seed(0)
    cfg = Config(dataset="mnist1d", dataset_size=1000, epochs=8, batch_size=32,
                 optimizer="adam", lr=3e-3, weight_decay=0.0, schedule="cosine", threshold=0, device="cpu",
                 progress=False, track_grad_norm=False)
    result = train(cfg, model=PatchTransformer1d(40, 10))
    acc = result.history.test_accuracy
    assert acc.max() > 0.5  # chance is 0.1 (measured: 0.69 after 8 epochs, 200 test samples)
    assert acc.iloc[-1] > acc.iloc[0]


def test_the_tiny_vit_learns_a_separable_image_task():
    # two classes told apart by the colour of the top half: a transformer must get them right
    g = torch.Generator().manual_seed(0)
    y = torch.arange(64) % 2
    x = torch.randint(0, 100, (64, 3, 16, 16), generator=g).float() / 255
    x[y == 1, :, :8] += 0.6
    torch.manual_seed(0)
    model = TinyViT(2, size=16, depth=1)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    for _ in range(30):
        loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert (model(x).argmax(1) == y).float().mean() == 1.0
