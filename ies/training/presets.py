"""Named presets: small sets of :class:`~ies.Config` field values registered under a name.

``python -m ies train --preset cifar-cpu --dataset PATH.npz`` starts from the preset's values, and every
option given explicitly overrides them (``--preset cifar-cpu --epochs 30``). Add a preset by adding an
entry to :data:`PRESETS` (field name -> value, as :meth:`Config.from_dict` takes them) with a comment
that says where its values come from.
"""

from __future__ import annotations

import difflib
from typing import Any

from .config import Config

PRESETS: dict[str, dict[str, Any]] = {
    # Real CIFAR-10 images (any .npz in the CIFAR layout: pass dataset=...) on a 2-core CPU: small_cnn on
    # 2000 images, 50 epochs, SGD 0.05 x 0.92^t (ends at lr 7.7e-4), the paper's delta 1e-3, no
    # augmentation, losses from a CLEAN pass (eval mode, unaugmented, end of epoch; a random crop + flip
    # moves a small CNN's losses by ~300 x delta, train-mode mid-epoch losses by more than delta too), and
    # a remainder batch under 16 samples merged into the one before (1-sample batches spiked training).
    # Measured (benchmarks/RECIPE_NOTES.md, seeds 0-2): IES saves 31-41 % of backprop (mean 35 %) at a
    # best test accuracy of 57.5 % against the baseline's 57.6 % (seed spread 0.36 pt); compute saved only
    # ~2 %, the clean pass forwarding every sample. With recheck="lr": 35-40 % of backprop and 10-16 % of
    # compute saved, best accuracy again 57.5 %.
    "cifar-cpu": {
        "model": "small_cnn", "dataset_size": 2000, "epochs": 50, "lr": 0.05, "gamma": 0.92,
        "augment": False, "loss_source": "clean", "eval_batch_size": 64, "threshold": 1e-3, "min_last_batch": 16,
    },
    # The paper's ImageNet-1k recipe, against an ImageFolder root (root/train/<class>/, root/val/<class>/):
    #   python -m ies train --preset imagenet --dataset /path/to/imagenet --output runs/imagenet --num-workers 16
    # From /work/shared/paper-facts.md ("Setting and metrics", "Table 2"): 150 epochs, batch 128, delta 1,
    # the last 10 % of the epochs on all data (annealing); SGD momentum 0.9, weight decay 5e-4, the SGD(E)
    # schedule (lr 0.1, ExponentialLR 0.96, the code's default) with ResNet-101, Table 2's row with the most
    # saved (77.4 -> 77.4 best top-1, 34.2 % of mini-batches saved, 1 run). Not stated there, our choice:
    # the standard torchvision ImageNet input pipeline (224x224 RandomResizedCrop + flip for training, resize
    # 256 + centre crop 224 for evaluation, ImageNet mean/std); everything else is Config's default.
    # Expected cost: the baseline back-propagates 150 x 1,281,167 = 192.2 M samples (46.6 GFLOPs each for
    # ResNet-101 at 224x224, a forward 15.6: torch.utils.flop_counter), about 8.9e18 FLOPs; at Table 2's
    # 34.2 % IES back-propagates about 126.4 M and forwards the other 65.7 M without gradient, 0.77 of the
    # baseline's compute, in line with the paper's ~1.3x average wall-time gain on ImageNet-1k (README).
    "imagenet": {
        "model": "imagenet_resnet101", "epochs": 150, "batch_size": 128, "threshold": 1.0,
        "anneal_fraction": 0.1, "optimizer": "sgd", "lr": 0.1, "momentum": 0.9, "weight_decay": 5e-4,
        "schedule": "exponential", "gamma": 0.96, "augment": True, "image_size": 224,
    },
}
"""Preset name -> ``Config`` field overrides."""


def preset(name: str) -> dict[str, Any]:
    """A copy of the overrides of preset ``name``; ``ValueError`` naming ``preset`` if there is none."""
    if name not in PRESETS:
        close = difflib.get_close_matches(str(name), list(PRESETS), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ValueError(f"preset must be one of {tuple(PRESETS)}, got {name!r}{hint}")
    return dict(PRESETS[name])


def config_with_preset(name: str | None, **overrides: Any) -> Config:
    """The :class:`Config` of preset ``name`` (none if ``name`` is empty or None) with ``overrides``
    applied on top (strings are cast as by :meth:`Config.from_dict`)."""
    values = preset(name) if name else {}
    return Config.from_dict({**values, **overrides})
