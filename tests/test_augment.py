"""Whole-batch crop + flip against torchvision's per-image functional ops on the same parameters."""

import pytest
import torch
import torchvision.transforms.v2.functional as TF

from ies.data import augment as aug
from ies.data.datasets import DeviceLoader


def images(n=6, h=7, w=9, c=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(1, 256, (n, h, w, c), dtype=torch.uint8, generator=g)  # no zeros: padding shows


def fork(g):
    """A copy of generator ``g`` in its current state (the draws ``g`` is about to make)."""
    copy = torch.Generator(device=g.device)
    copy.set_state(g.get_state())
    return copy


def reference(img_hwc, pad, dy, dx, flip):
    """torchvision on one image: pad, crop at (dy, dx) of the padded image, then maybe flip."""
    h, w = img_hwc.shape[:2]
    out = TF.crop(TF.pad(img_hwc.permute(2, 0, 1), [pad]), int(dy), int(dx), h, w)
    return (TF.horizontal_flip(out) if flip else out).permute(1, 2, 0)


def test_pad_images_matches_torchvision_pad():
    x = images()
    xp = aug.pad_images(x, 3)
    assert xp.shape == (6, 13, 15, 3) and xp.dtype == torch.uint8 and xp.is_contiguous()
    for b in range(6):
        assert torch.equal(xp[b].permute(2, 0, 1), TF.pad(x[b].permute(2, 0, 1), [3]))


@pytest.mark.parametrize("pad", [0, 1, 4])
def test_crop_flip_equals_torchvision_on_every_offset(pad):
    x = images()
    xp = aug.pad_images(x, pad)
    h, w = x.shape[1:3]
    offsets = [(dy, dx, f) for dy in range(2 * pad + 1) for dx in range(2 * pad + 1) for f in (False, True)]
    dy, dx, flip = (torch.tensor(v) for v in zip(*offsets, strict=True))
    idx = torch.arange(len(offsets)) % x.shape[0]
    out = aug.crop_flip(xp, idx, h, w, dy, dx, flip)
    assert out.shape == (len(offsets), h, w, 3) and out.dtype == torch.uint8
    for k, (a, b, f) in enumerate(offsets):
        assert torch.equal(out[k], reference(x[idx[k]], pad, a, b, f)), (a, b, f)


def test_crop_without_offset_is_identity_and_flip_reverses_columns():
    x = images()
    xp = aug.pad_images(x, 4)
    idx = torch.tensor([2, 0, 5])
    four = torch.full((3,), 4)
    same = aug.crop_flip(xp, idx, 7, 9, four, four, torch.zeros(3, dtype=torch.bool))
    assert torch.equal(same, x[idx])
    flipped = aug.crop_flip(xp, idx, 7, 9, four, four, torch.ones(3, dtype=torch.bool))
    assert torch.equal(flipped, x[idx].flip(2))


def test_crop_bounds_padding_is_zero_and_content_is_a_shifted_window():
    x = images(n=1, h=8, w=8)
    xp = aug.pad_images(x, 4)
    # the extreme corner: 4 zero rows on top, 4 zero columns on the left, then the image's top-left 4x4
    out = aug.crop_flip(xp, torch.tensor([0]), 8, 8, torch.tensor([0]), torch.tensor([0]), torch.tensor([False]))[0]
    assert (out[:4] == 0).all() and (out[:, :4] == 0).all()
    assert torch.equal(out[4:, 4:], x[0, :4, :4])
    out = aug.crop_flip(xp, torch.tensor([0]), 8, 8, torch.tensor([8]), torch.tensor([8]), torch.tensor([False]))[0]
    assert (out[4:] == 0).all() and (out[:, 4:] == 0).all()
    assert torch.equal(out[:4, :4], x[0, 4:, 4:])


def test_random_draws_cover_every_offset_and_flip_half_the_time():
    g = torch.Generator().manual_seed(1)
    dy, dx, flip = aug.draw(4000, 4, "cpu", g)
    for d in (dy, dx):
        assert d.min() == 0 and d.max() == 8
        assert set(d.tolist()) == set(range(9))
        counts = torch.bincount(d, minlength=9).float()
        assert (counts / 4000 - 1 / 9).abs().max() < 0.03
    assert 0.45 < flip.float().mean() < 0.55
    _, _, none = aug.draw(100, 4, "cpu", g, flip=False)
    assert not none.any()


def test_random_crop_flip_uses_the_drawn_parameters():
    x = images(n=32)
    xp = aug.pad_images(x, 4)
    idx = torch.randperm(32, generator=torch.Generator().manual_seed(3))[:20]
    g = torch.Generator().manual_seed(7)
    dy, dx, flip = aug.draw(20, 4, "cpu", fork(g))
    out = aug.random_crop_flip(xp, idx, 4, g)
    assert out.shape == (20, 7, 9, 3)
    for k in range(20):
        assert torch.equal(out[k], reference(x[idx[k]], 4, dy[k], dx[k], bool(flip[k])))


@pytest.mark.parametrize("channels_last", [False, True])
def test_device_loader_batches_equal_the_torchvision_pipeline(channels_last):
    x = images(n=10, h=8, w=8)
    y = torch.arange(10)
    mean, std = (0.4, 0.5, 0.6), (0.2, 0.25, 0.3)
    gen = torch.Generator().manual_seed(5)
    loader = DeviceLoader(x, y, "cpu", mean=mean, std=std, augment=True, generator=gen, channels_last=channels_last)
    idx = torch.tensor([9, 3, 3, 0])
    dy, dx, flip = aug.draw(4, 4, "cpu", fork(gen))
    out = loader.inputs(idx, augment=True)
    assert out.shape == (4, 3, 8, 8) and out.dtype == torch.float32
    assert out.is_contiguous(memory_format=torch.channels_last if channels_last else torch.contiguous_format)
    for k in range(4):
        ref = reference(x[idx[k]], 4, dy[k], dx[k], bool(flip[k])).permute(2, 0, 1)
        ref = TF.normalize(TF.to_dtype(ref, torch.float32, scale=True), list(mean), list(std))
        torch.testing.assert_close(out[k], ref, rtol=1e-5, atol=1e-5)
    clean = loader.inputs(idx, augment=False)
    ref = TF.normalize(x[idx].permute(0, 3, 1, 2).float() / 255, list(mean), list(std))
    torch.testing.assert_close(clean, ref, rtol=1e-5, atol=1e-5)


def test_loader_without_augment_ignores_the_augment_flag():
    x = images(n=4)
    loader = DeviceLoader(x, torch.arange(4), "cpu", augment=False)
    idx = torch.arange(4)
    assert torch.equal(loader.inputs(idx, augment=True), loader.inputs(idx, augment=False))
