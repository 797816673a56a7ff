"""Whole-batch image augmentation on the device: one random draw per batch, no python loop over images."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def random_crop(x: torch.Tensor, pad: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Random crop of every image after zero padding by ``pad`` (torchvision ``RandomCrop(H, padding=pad)``).

    Args:
        x: ``(B, C, H, W)`` float images.
    Returns:
        ``(B, C, H, W)``; image ``b`` is ``pad(x[b])[:, dy:dy+H, dx:dx+W]`` with ``dy, dx`` uniform in
        ``0 .. 2*pad``.
    """
    b, c, h, w = x.shape
    offsets = torch.randint(0, 2 * pad + 1, (2, b), device=x.device, generator=generator)
    return crop_at(x, pad, offsets[0], offsets[1])


def crop_at(x: torch.Tensor, pad: int, dy: torch.Tensor, dx: torch.Tensor) -> torch.Tensor:
    """Zero-pad ``(B, C, H, W)`` images by ``pad`` and crop image ``b`` at ``(dy[b], dx[b])``."""
    b, c, h, w = x.shape
    padded = F.pad(x, (pad, pad, pad, pad))
    rows = (dy[:, None] + torch.arange(h, device=x.device))[:, None, :, None].expand(b, c, h, w + 2 * pad)
    picked_rows = padded.gather(2, rows)
    cols = (dx[:, None] + torch.arange(w, device=x.device))[:, None, None, :].expand(b, c, h, w)
    return picked_rows.gather(3, cols)


def random_flip(x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Flip each ``(B, C, H, W)`` image horizontally with probability 1/2."""
    flip = torch.rand(x.shape[0], device=x.device, generator=generator) < 0.5
    return torch.where(flip[:, None, None, None], x.flip(3), x)
