"""Checks of a data set's labels before training, and the error they raise: one line naming the data and
what was expected (:mod:`ies.training.faults` tells the whole story of bad inputs and exit codes)."""

from __future__ import annotations

import torch

MAX_CLASSES = 1_000_000
"""A class count derived from the labels (largest label + 1) above this is refused as implausible."""



class InputError(ValueError):
    """A bad input: a configuration value, a path, a data file, a checkpoint (one line, exit 2)."""



def one_line(error: BaseException) -> str:
    """The message of ``error`` on one line (the lines of a longer message joined by ``"; "``)."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return "; ".join(lines) or type(error).__name__



def derived_class_count(y_train: torch.Tensor, where: str) -> int:
    """The number of classes of integer labels ``y_train`` (largest + 1), refused (``InputError`` naming
    ``where``) when there are no labels or when it is implausible: above :data:`MAX_CLASSES` or above the
    number of training samples (labels must be ``0 .. num_classes-1``)."""
    if y_train.numel() == 0:
        raise InputError(f"{where}: y_train holds no samples; expected at least one training sample")
    top = int(y_train.max())
    if top + 1 > min(MAX_CLASSES, y_train.numel()):
        raise InputError(f"{where}: y_train's largest label is {top}, which makes {top + 1} classes for "
                         f"{y_train.numel()} training samples; expected labels 0..num_classes-1 with "
                         f"num_classes at most {min(MAX_CLASSES, y_train.numel())}")
    return top + 1


def check_labels(y_train: torch.Tensor, y_test: torch.Tensor, num_classes: int, where: str) -> None:
    """``InputError`` naming ``where`` unless both splits hold samples and every label of either split
    lies in ``0 .. num_classes-1``."""
    for split, y in (("y_train", y_train), ("y_test", y_test)):
        if y.numel() == 0:
            raise InputError(f"{where}: {split} holds no samples; expected at least one")
        if y.dtype.is_floating_point or y.dtype == torch.bool or y.is_complex():
            raise InputError(f"{where}: {split} must hold integer labels, got {y.dtype}")
        lo, hi = (int(v) for v in torch.aminmax(y))
        if lo < 0 or hi >= num_classes:
            extra = " (outside the training classes)" if split == "y_test" else ""
            raise InputError(f"{where}: {split} holds labels {lo}..{hi}{extra}; expected 0..{num_classes - 1} "
                             f"(num_classes {num_classes})")


