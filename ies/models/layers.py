"""Layers shared by the model zoo and the transformers."""

from __future__ import annotations

import torch
from torch import nn


class Float32Linear(nn.Linear):
    """A classifier layer that always runs in fp32, also inside a bf16 autocast region."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.autocast(device_type=x.device.type, enabled=False):
            return super().forward(x.float())
