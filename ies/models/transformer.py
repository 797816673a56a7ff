"""Small transformers, so that the architecture question (does IES carry to attention?) can be asked on a CPU.

- :class:`PatchTransformer1d`: MNIST-1D signals ``(B, 40)`` cut into overlapping patches by a strided
  1-D convolution, a learned position embedding and a class token, pre-norm encoder blocks.
- :class:`TinyViT`: 32x32 images ``(B, C, 32, 32)`` cut into 4x4 patches (64 tokens), the same blocks.

Both use :class:`torch.nn.TransformerEncoder` (pre-norm, GELU, no dropout: the paper trains without it)
and end with an fp32 classifier (:class:`ies.models.layers.Float32Linear`) on the class token. Their default
sizes stay below a few hundred thousand parameters (``PatchTransformer1d()`` about 70 k, ``TinyViT()``
about 140 k, printed by :func:`count_parameters`).
"""

from __future__ import annotations

import torch
from torch import nn

from .layers import Float32Linear


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


class _Encoder(nn.Module):
    """Class token + position embedding + ``depth`` pre-norm blocks + final norm + fp32 head:
    ``(B, T, dim)`` tokens -> ``(B, num_classes)``."""

    def __init__(self, tokens: int, dim: int, depth: int, heads: int, mlp_ratio: int, num_classes: int) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim ({dim}) must be divisible by heads ({heads})")
        self.cls = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos = nn.Parameter(torch.randn(1, tokens + 1, dim) * 0.02)
        layer = nn.TransformerEncoderLayer(dim, heads, dim * mlp_ratio, dropout=0.0, activation="gelu",
                                           batch_first=True, norm_first=True)
        self.blocks = nn.TransformerEncoder(layer, depth, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(dim)
        self.head = Float32Linear(dim, num_classes)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        x = torch.cat([self.cls.expand(tokens.shape[0], -1, -1), tokens], dim=1) + self.pos
        return self.head(self.norm(self.blocks(x))[:, 0])


class PatchTransformer1d(nn.Module):
    """A patch transformer for 1-D signals: ``(B, length)`` float -> ``(B, num_classes)`` logits.

    Patches of ``patch`` samples every ``stride`` samples (overlapping when ``stride < patch``; the
    signal is zero-padded by ``patch // 2`` on each side) are embedded linearly to ``dim`` channels.

    Args:
        length: signal length (40 for MNIST-1D).
        num_classes: number of classes.
        dim, depth, heads, mlp_ratio: width, number of blocks, attention heads, MLP expansion.
        patch, stride: patch length and step (defaults 8 and 4: 11 tokens for length 40).
    """

    def __init__(self, length: int = 40, num_classes: int = 10, dim: int = 64, depth: int = 2, heads: int = 4,
                 mlp_ratio: int = 2, patch: int = 8, stride: int = 4) -> None:
        super().__init__()
        if length < 1 or patch < 1 or stride < 1:
            raise ValueError(f"length, patch and stride must be >= 1, got {length}, {patch}, {stride}")
        self.length = length
        self.embed = nn.Conv1d(1, dim, patch, stride=stride, padding=patch // 2)
        tokens = (length + 2 * (patch // 2) - patch) // stride + 1
        self.encoder = _Encoder(tokens, dim, depth, heads, mlp_ratio, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 2 or x.shape[1] != self.length:
            raise ValueError(f"expected (B, {self.length}) signals, got {tuple(x.shape)}")
        return self.encoder(self.embed(x.unsqueeze(1)).transpose(1, 2))


class TinyViT(nn.Module):
    """A tiny vision transformer: ``(B, in_channels, size, size)`` float -> ``(B, num_classes)`` logits.

    Non-overlapping ``patch x patch`` patches (64 tokens for 32x32 images and patch 4), embedded by a
    strided convolution; works with channels_last batches.

    Args:
        num_classes: number of classes.
        in_channels: image channels (3).
        size: image side (32); must be divisible by ``patch``.
        dim, depth, heads, mlp_ratio, patch: as :class:`PatchTransformer1d`.
    """

    def __init__(self, num_classes: int = 10, in_channels: int = 3, size: int = 32, dim: int = 64, depth: int = 4,
                 heads: int = 4, mlp_ratio: int = 2, patch: int = 4) -> None:
        super().__init__()
        if size % patch:
            raise ValueError(f"size ({size}) must be divisible by patch ({patch})")
        self.size = size
        self.embed = nn.Conv2d(in_channels, dim, patch, stride=patch)
        self.encoder = _Encoder((size // patch) ** 2, dim, depth, heads, mlp_ratio, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or x.shape[-2:] != (self.size, self.size):
            raise ValueError(f"expected (B, C, {self.size}, {self.size}) images, got {tuple(x.shape)}")
        return self.encoder(self.embed(x).flatten(2).transpose(1, 2))
