"""Whole-batch image augmentation on the device: one random draw per batch, no python loop over images.

The standard CIFAR augmentation (torchvision ``RandomCrop(H, padding=pad)`` then
``RandomHorizontalFlip()``) is done here as *one* indexing kernel: the images are stored zero-padded
once, uint8, channels last, ``(N, H + 2 pad, W + 2 pad, C)``, and the crop offset and the flip of
every image of the batch turn into row and column indices, so gathering the batch from the data set,
cropping and flipping are a single ``xp[idx, rows, cols]``.

Functions:

- :func:`pad_images`: the padded storage (done once per data set).
- :func:`draw`: the random parameters of a batch (crop offsets ``dy, dx`` in ``0 .. 2 pad``, flips).
- :func:`crop_flip`: gather + crop + flip of a batch for given parameters (what the tests check
  against ``torchvision.transforms.v2.functional``).
- :func:`random_crop_flip`: :func:`draw` then :func:`crop_flip`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def pad_images(x: torch.Tensor, pad: int) -> torch.Tensor:
    """Zero-pad ``(N, H, W, C)`` images by ``pad`` pixels on each side: ``(N, H + 2 pad, W + 2 pad, C)``."""
    if pad == 0:
        return x.contiguous()
    return F.pad(x, (0, 0, pad, pad, pad, pad)).contiguous()


def draw(
    batch: int, pad: int, device: torch.device | str, generator: torch.Generator | None = None, flip: bool = True
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Random parameters of a batch: crop offsets ``dy, dx`` uniform in ``0 .. 2 pad`` (into the padded
    image; ``pad`` = the uncropped centre) and ``flip`` with probability 1/2 (all False if not ``flip``).

    Two random calls on ``generator``, in this order: ``randint`` of shape ``(2, batch)``, then ``rand(batch)``.
    """
    offsets = torch.randint(0, 2 * pad + 1, (2, batch), device=device, generator=generator)
    flips = torch.rand(batch, device=device, generator=generator) < 0.5
    if not flip:
        flips = torch.zeros_like(flips)
    return offsets[0], offsets[1], flips


def crop_flip(
    xp: torch.Tensor,
    idx: torch.Tensor,
    height: int,
    width: int,
    dy: torch.Tensor,
    dx: torch.Tensor,
    flip: torch.Tensor,
) -> torch.Tensor:
    """Gather images ``idx`` from padded storage, crop and flip them, in one indexing kernel.

    Args:
        xp: ``(N, H + 2 pad, W + 2 pad, C)`` padded images (see :func:`pad_images`), any dtype.
        idx: ``(B,)`` which images.
        height, width: ``H, W``, the size of the crop (the original image size).
        dy, dx: ``(B,)`` top-left corner of each crop in the padded image, in ``0 .. 2 pad``.
        flip: ``(B,)`` bool, flip the crop horizontally.
    Returns:
        ``(B, H, W, C)``: image ``b`` is ``hflip?(xp[idx[b], dy[b]:dy[b]+H, dx[b]:dx[b]+W])``, i.e.
        torchvision's ``crop(pad(img, pad), dy, dx, H, W)`` followed by ``hflip`` where ``flip``.
    """
    rows = dy[:, None] + torch.arange(height, device=xp.device)
    j = torch.arange(width, device=xp.device)
    cols = dx[:, None] + torch.where(flip[:, None], width - 1 - j, j)
    return xp[idx[:, None, None], rows[:, :, None], cols[:, None, :]]


def random_crop_flip(
    xp: torch.Tensor,
    idx: torch.Tensor,
    pad: int,
    generator: torch.Generator | None = None,
    flip: bool = True,
) -> torch.Tensor:
    """Random crop (offsets uniform in ``0 .. 2 pad``) and, if ``flip``, random horizontal flip of images
    ``idx`` of the padded storage ``xp``: ``(B, H, W, C)`` with ``H = xp.shape[1] - 2 pad``."""
    height, width = xp.shape[1] - 2 * pad, xp.shape[2] - 2 * pad
    dy, dx, flips = draw(idx.numel(), pad, xp.device, generator, flip)
    return crop_flip(xp, idx, height, width, dy, dx, flips)
