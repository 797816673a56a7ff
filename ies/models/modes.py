"""Context managers that put a model (or torch) into a mode for a measurement and restore it afterwards.

- :func:`evaluating`: eval mode for every module, each module's own train/eval flag restored on exit
  (a model that was partly in eval mode, e.g. with frozen BatchNorm layers, comes back exactly so);
- :func:`strict_fp32`: no TF32 in CUDA matmuls and convolutions (plain fp32), restored on exit;
- :func:`plain_eval`: both, and autocast off: the setting of an exact measurement.

Gradients are not touched: wrap in ``torch.no_grad()`` (or ``enable_grad()``) as needed.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn


@contextlib.contextmanager
def evaluating(model: nn.Module) -> Iterator[nn.Module]:
    """``model`` in eval mode inside the block; every module's ``training`` flag as it was afterwards
    (also when the block raises). Yields ``model``."""
    modes = [(m, m.training) for m in model.modules()]
    try:
        model.eval()
        yield model
    finally:
        for m, mode in modes:
            m.training = mode


@contextlib.contextmanager
def strict_fp32(device: torch.device) -> Iterator[None]:
    """Turn TF32 off for CUDA matmuls and convolutions (cuDNN uses it for convolutions by default) inside
    the block; a no-op on other devices."""
    if device.type != "cuda":
        yield
        return
    matmul, conv = torch.backends.cuda.matmul, torch.backends.cudnn
    if hasattr(matmul, "fp32_precision"):  # torch >= 2.9
        old = (matmul.fp32_precision, conv.conv.fp32_precision)
        matmul.fp32_precision, conv.conv.fp32_precision = "ieee", "ieee"
        try:
            yield
        finally:
            matmul.fp32_precision, conv.conv.fp32_precision = old
    else:
        old = (matmul.allow_tf32, conv.allow_tf32)
        matmul.allow_tf32, conv.allow_tf32 = False, False
        try:
            yield
        finally:
            matmul.allow_tf32, conv.allow_tf32 = old


@contextlib.contextmanager
def plain_eval(model: nn.Module) -> Iterator[torch.device]:
    """:func:`evaluating` ``model``, autocast off and :func:`strict_fp32` on its device; yields the device."""
    device = next(model.parameters()).device
    with evaluating(model), torch.autocast(device.type, enabled=False), strict_fp32(device):
        yield device
