"""The faults a run can meet, how they are reported, and the checks that find them before training.

Every bad input is found before the first epoch where it can be (the configuration's fields, the output
folder, the data's labels and shapes, the checkpoint to resume) and raised as a ``ValueError`` (or
``FileNotFoundError``) whose message is one line naming the thing and what was expected; the command
line prints it after ``error:`` and exits with :data:`EXIT_BAD_INPUT`. A run whose training loss stops
being finite raises ``FloatingPointError`` after writing that epoch (its folder holds every epoch up to
the failure); the command line exits with :data:`EXIT_DIVERGED`.

The label checks and :class:`~ies.data.checks.InputError` live with the data (:mod:`ies.data.checks`), the
index check with the tracker (:class:`~ies.method.tracker.IndexRangeError`), the run folder's in
:mod:`ies.training.rundir`.
"""

from __future__ import annotations

import torch

from ..data.checks import InputError, check_labels, one_line  # noqa: F401 - the loop and the CLI use them from here

EXIT_BAD_INPUT = 2
"""Exit code of a bad input (argparse's own), found before training or while reading the data."""
EXIT_DIVERGED = 3
"""Exit code of a run stopped because its mean training loss was not finite (``allow_nonfinite=False``)."""
EXIT_INTERRUPTED = 130
"""Exit code of a run stopped by Ctrl-C (128 + SIGINT, the shell's convention)."""

INT_LIMITS = {
    "epochs": 100_000, "batch_size": 1 << 24, "eval_batch_size": 1 << 24, "min_last_batch": 1 << 24,
    "window": 1000, "patience": 1000, "sb_history": 1 << 24, "es_patience": 100_000, "checkpoint_every": 100_000,
    "image_size": 8192, "num_workers": 512, "seed": (1 << 32) - 1, "dataset_size": 1 << 40,
    "test_size": 1_000_000,
}
"""Upper bounds of the integer fields of ``Config``: far beyond any real run, low enough that a typo
(``--epochs 99999999999999999999999``) is refused at once instead of running until killed or
asking for an impossible allocation. ``seed`` is numpy's bound."""
GENERATED_LIMIT = 1_000_000
"""Largest ``dataset_size`` of a generated data set (``mnist1d``, ``synthetic``): it is built in memory."""
GENERATED_DATASETS = ("mnist1d", "synthetic")

def check_int_limits(values: dict) -> None:
    """``InputError`` naming the first field of ``values`` above its :data:`INT_LIMITS` bound."""
    for name, high in INT_LIMITS.items():
        if name in values and values[name] > high:
            raise InputError(f"{name} must be <= {high}, got {values[name]}")
    if values.get("dataset") in GENERATED_DATASETS and values.get("dataset_size", 0) > GENERATED_LIMIT:
        raise InputError(f"dataset_size must be <= {GENERATED_LIMIT} for the generated dataset "
                         f"{values['dataset']!r}, got {values['dataset_size']}")



def _runs(model: torch.nn.Module, shape: tuple[int, ...], device: torch.device) -> bool:
    x = torch.zeros(1, *((shape[2], shape[0], shape[1]) if len(shape) == 3 else shape), device=device)
    try:
        with torch.no_grad():
            model(x)
        return True
    except (RuntimeError, ValueError, IndexError):
        return False


def check_input_size(model: torch.nn.Module, shape: tuple[int, ...], name: str, where: str,
                     device: torch.device) -> None:
    """One no-grad forward in eval mode of a zero input of ``shape`` (``(H, W, C)`` or ``(L,)``) through
    ``model`` (model ``name``, data ``where``); if it fails, ``InputError`` saying the smallest square
    image (or signal length) the model takes. Side-effect free: eval mode reads no random numbers and
    updates no statistics; the model's mode is restored."""
    was_training = model.training
    model.eval()
    try:
        if _runs(model, shape, device):
            return
        side = lambda s: (s, s, shape[-1]) if len(shape) == 3 else (s,)  # noqa: E731
        works = next((s for s in (2**k for k in range(1, 13)) if _runs(model, side(s), device)), None)
        if works is None:
            raise InputError(f"{where}: model {name!r} does not take inputs of shape {shape}")
        low = works // 2
        while works - low > 1:  # bisect (low fails, works works)
            mid = (low + works) // 2
            low, works = (low, mid) if _runs(model, side(mid), device) else (mid, works)
        kind = f"images of at least {works}x{works}" if len(shape) == 3 else f"signals of length at least {works}"
        got = f"{shape[0]}x{shape[1]}" if len(shape) == 3 else f"length {shape[0]}"
        raise InputError(f"{where}: model {name!r} takes {kind}, got {got}; use larger inputs or another model")
    finally:
        model.train(was_training)
