"""The augmentation noise floor: how far a fresh random crop and flip move a sample's loss, against delta.

IES tracks each sample's loss on a *new* random augmentation every epoch. At fixed weights that alone
makes the loss of sample ``i`` a random variable with some spread ``sigma_i``; with independent draws
in consecutive epochs, the order-``N`` difference ``D_N = sum_j (-1)^j C(N, j) L(t - j)`` then has
standard deviation ``sigma_i * sqrt(C(2N, N))`` (``sqrt(6)`` for ``N = 2``) and, for roughly Gaussian
spread, a mean absolute value of ``sqrt(2 / pi) * sqrt(C(2N, N)) * sigma_i`` (about ``1.95 sigma_i``
for ``N = 2``): :func:`difference_floor`. The ``official`` rule averages ``|D_N|`` over a window, which
does not lower that mean; a sample whose floor is well above ``delta`` is (almost) never mastered,
however well trained, while the weights still change on top of it.

A model that fits its training set with a wide margin has losses near zero on every augmentation, so
the spread is tiny; an underfitting model (or a small one on real images) has losses of order 1 that
a crop moves by tenths, far above ``delta = 1e-3``. :func:`noise_floor` measures it.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..data.datasets import DeviceLoader


@torch.no_grad()
def augmented_losses(
    model: nn.Module,
    loader: DeviceLoader,
    indices: torch.Tensor | None = None,
    draws: int = 8,
    batch_size: int = 256,
) -> torch.Tensor:
    """``(n, draws)`` each sample's eval-mode loss on ``draws`` fresh augmentations at the current weights
    (``loader``'s augmentation and generator; the plain inputs if it does not augment). The model's
    train/eval mode is restored. ``indices``: ``(n,)`` samples (default: all)."""
    if draws < 2:
        raise ValueError(f"draws must be >= 2, got {draws}")
    was_training = model.training
    model.eval()
    columns = []
    for _ in range(draws):
        parts = [F.cross_entropy(model(x).float(), y, reduction="none")
                 for x, y, _ in loader.batches(indices, batch_size, augment=True)]
        columns.append(torch.cat(parts))
    model.train(was_training)
    return torch.stack(columns, dim=1)


def difference_floor(spread: torch.Tensor, order: int = 2) -> torch.Tensor:
    """Mean ``|D_order|`` that loss noise of standard deviation ``spread`` causes alone (independent,
    Gaussian draws each epoch, weights fixed): ``sqrt(2 / pi) * sqrt(C(2 order, order)) * spread``.
    For ``order = 0`` (the loss itself) the floor is not a difference: it returns ``spread``."""
    if order == 0:
        return spread
    return spread * math.sqrt(2.0 / math.pi) * math.sqrt(math.comb(2 * order, order))


def noise_floor(
    model: nn.Module,
    loader: DeviceLoader,
    threshold: float,
    *,
    order: int = 2,
    indices: torch.Tensor | None = None,
    draws: int = 8,
    batch_size: int = 256,
) -> dict[str, float]:
    """Summary of the augmentation noise floor of ``model`` on ``loader``'s samples against ``threshold``.

    Returns (python floats, one host sync):
        ``mean_loss``: mean loss over samples and draws; ``median_spread``: median over samples of the
        per-sample standard deviation across draws; ``median_floor``: median :func:`difference_floor`;
        ``floor_over_threshold``: ``median_floor / threshold``; ``share_below_threshold``: the share of
        samples whose floor is below ``threshold`` (those augmentation alone does not keep from
        being mastered); ``draws``, ``samples``.
    """
    losses = augmented_losses(model, loader, indices, draws, batch_size)
    spread = losses.double().std(dim=1)
    floor = difference_floor(spread, order)
    values = torch.stack([losses.double().mean(), spread.median(), floor.median(),
                          (floor < threshold).double().mean()]).tolist()
    return {
        "mean_loss": values[0],
        "median_spread": values[1],
        "median_floor": values[2],
        "floor_over_threshold": values[2] / threshold if threshold > 0 else math.inf,
        "share_below_threshold": values[3],
        "draws": draws,
        "samples": int(losses.shape[0]),
    }
