"""One way to switch a model to eval mode for a while and put its train/eval mode back."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from torch import nn


@contextlib.contextmanager
def evaluating(model: nn.Module) -> Iterator[nn.Module]:
    """``with evaluating(model):`` runs the block in eval mode, then restores the mode it found."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)
