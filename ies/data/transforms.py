"""Data transforms for the paper's open questions: label noise, a long tail, a minority subgroup.

Each transform takes an :class:`~ies.data.datasets.ArrayDataset` and returns ``(dataset, truth)``: a new data set
(the input is never modified) and a :class:`Truth` recording what the transform introduced (which
training labels were flipped, which training samples were kept, who belongs to the minority subgroup).
The test labels are never changed. Transforms compose: pass the previous ``truth`` on and the new one
keeps every earlier record aligned with the new training set.

All draws use a private ``torch.Generator`` seeded with ``seed``: the same call gives the same data set
on every machine and never touches the global random state.

- :func:`symmetric_noise`: exactly ``round(rate * N)`` training labels replaced by a uniformly drawn
  *other* class.
- :func:`asymmetric_noise`: class-pair flips (:data:`ASYMMETRIC_PAIRS`): exactly ``round(rate * n_c)``
  samples of every source class ``c`` relabelled as its partner.
- :func:`long_tailed`: ``n_c = floor(n_max * imbalance ** (-c / (C - 1)))`` training samples of class ``c``;
  the test set is kept whole (balanced).
- :func:`minority_subgroup`: a visible attribute (see :data:`ATTRIBUTES`) on a share of the samples of some
  classes, in the training *and* the test split, with the group label (1 = minority) kept for both.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, replace

import torch

from .datasets import ArrayDataset

# CIFAR-10 classes: 0 airplane, 1 automobile, 2 bird, 3 cat, 4 deer, 5 dog, 6 frog, 7 horse, 8 ship, 9 truck.
CIFAR10_PAIRS = {9: 1, 2: 0, 4: 7, 3: 5, 5: 3}
"""The standard CIFAR-10 asymmetric flips: truck->automobile, bird->airplane, deer->horse, cat<->dog."""
MNIST1D_PAIRS = {2: 7, 3: 8, 5: 6, 6: 5, 7: 1}
"""MNIST-1D's classes are the ten digits drawn as 1-D templates; we flip them as the usual MNIST
asymmetric noise does for the digits they stand for: 2->7, 3->8, 5<->6, 7->1 (the other classes keep
their labels)."""
ASYMMETRIC_PAIRS = {"cifar10": CIFAR10_PAIRS, "mnist1d": MNIST1D_PAIRS}
"""Source class -> noisy label, by data set name (a ``cifar10_*.npz`` file uses the CIFAR-10 pairs)."""

ATTRIBUTES = ("invert", "noise")
"""Minority attributes. ``invert``: images become ``255 - x`` (a colour negative), 1-D signals ``-x``
(the same polarity reversal). ``noise``: additive Gaussian noise of standard deviation ``noise_std``
(signals, already standardised: in their units; images: in units of 255, then rounded and clipped)."""


@dataclass(frozen=True)
class Truth:
    """What the transforms introduced; every ``(N,)`` field is aligned with the returned ``y_train``.

    Attributes:
        clean_y_train: ``(N,)`` int64, the training labels before any label noise.
        noisy: ``(N,)`` bool, True where the training label was flipped (``y_train != clean_y_train``).
        group_train: ``(N,)`` int64 subgroup label of each training sample (0 = majority, 1 = minority).
        group_test: ``(M,)`` int64 subgroup label of each test sample.
        source_index: ``(N,)`` int64, each training sample's index in the data set the first transform saw.
        steps: the transforms applied, in order, with their parameters.
    """

    clean_y_train: torch.Tensor
    noisy: torch.Tensor
    group_train: torch.Tensor
    group_test: torch.Tensor
    source_index: torch.Tensor
    steps: tuple[str, ...] = ()

    @classmethod
    def identity(cls, data: ArrayDataset) -> Truth:
        """The record of an untouched data set: clean labels, nobody flipped, everyone in group 0."""
        n, m = data.num_train, int(data.y_test.shape[0])
        return cls(data.y_train.clone(), torch.zeros(n, dtype=torch.bool), torch.zeros(n, dtype=torch.int64),
                   torch.zeros(m, dtype=torch.int64), torch.arange(n))

    def _take(self, keep: torch.Tensor, step: str) -> Truth:
        return replace(self, clean_y_train=self.clean_y_train[keep], noisy=self.noisy[keep],
                       group_train=self.group_train[keep], source_index=self.source_index[keep],
                       steps=(*self.steps, step))


def _with(data: ArrayDataset, **changes) -> ArrayDataset:
    return replace(data, **changes)


def _start(data: ArrayDataset, truth: Truth | None) -> Truth:
    truth = Truth.identity(data) if truth is None else truth
    if truth.noisy.shape[0] != data.num_train or truth.group_test.shape[0] != data.y_test.shape[0]:
        raise ValueError("truth does not belong to this data set (its sizes differ)")
    return truth


def _check_rate(rate: float) -> None:
    if not (isinstance(rate, (int, float)) and math.isfinite(rate) and 0 <= rate < 1):
        raise ValueError(f"rate must be in [0, 1), got {rate!r}")


def symmetric_noise(data: ArrayDataset, rate: float, seed: int = 0,
                    truth: Truth | None = None) -> tuple[ArrayDataset, Truth]:
    """Replace exactly ``round(rate * N)`` training labels, chosen uniformly without replacement, by a
    class drawn uniformly among the ``C - 1`` *other* classes (every chosen label really changes).

    Returns the data set with the new ``y_train`` and the truth with ``noisy`` marking the flips."""
    _check_rate(rate)
    truth = _start(data, truth)
    g = torch.Generator().manual_seed(seed)
    n, c = data.num_train, data.num_classes
    count = round(rate * n)
    if count and c < 2:
        raise ValueError("symmetric_noise needs at least 2 classes")
    chosen = torch.randperm(n, generator=g)[:count]
    y = data.y_train.clone()
    y[chosen] = (y[chosen] + torch.randint(1, max(c, 2), (count,), generator=g)) % c
    noisy = truth.noisy.clone()
    noisy[chosen] = True
    noisy &= y != truth.clean_y_train  # a second noise step could flip a label back
    return _with(data, y_train=y), replace(truth, noisy=noisy, steps=(*truth.steps, f"symmetric_noise({rate})"))


def pairs_for(data: ArrayDataset) -> dict[int, int]:
    """The asymmetric pairing of ``data`` by its name (:data:`ASYMMETRIC_PAIRS`); ValueError if none."""
    name = data.name
    key = "cifar10" if re.fullmatch(r"cifar10(_.*)?", name) else name
    if key not in ASYMMETRIC_PAIRS:
        raise ValueError(f"no asymmetric pairing is defined for data set {name!r}: pass pairs={{source: target}}")
    return ASYMMETRIC_PAIRS[key]


def asymmetric_noise(data: ArrayDataset, rate: float, seed: int = 0, pairs: dict[int, int] | None = None,
                     truth: Truth | None = None) -> tuple[ArrayDataset, Truth]:
    """Relabel exactly ``round(rate * n_c)`` training samples of every source class ``c`` of ``pairs``
    (default :func:`pairs_for`) as ``pairs[c]``; the samples are drawn uniformly within the class, and
    the classes are chosen from the labels *before* this call (so cat<->dog swaps two disjoint sets)."""
    _check_rate(rate)
    truth = _start(data, truth)
    pairs = pairs_for(data) if pairs is None else dict(pairs)
    for src, dst in pairs.items():
        if not (0 <= src < data.num_classes and 0 <= dst < data.num_classes) or src == dst:
            raise ValueError(f"pairs: {src}->{dst} is not a flip between two of the {data.num_classes} classes")
    g = torch.Generator().manual_seed(seed)
    y0 = data.y_train
    y = y0.clone()
    noisy = truth.noisy.clone()
    for src, dst in sorted(pairs.items()):  # a loop over (at most C) classes, not samples
        members = torch.nonzero(y0 == src).flatten()
        chosen = members[torch.randperm(members.numel(), generator=g)[: round(rate * members.numel())]]
        y[chosen] = dst
        noisy[chosen] = True
    noisy &= y != truth.clean_y_train
    return _with(data, y_train=y), replace(truth, noisy=noisy, steps=(*truth.steps, f"asymmetric_noise({rate})"))


def long_tailed_counts(n_max: int, num_classes: int, imbalance: float) -> list[int]:
    """``n_c = floor(n_max * imbalance ** (-c / (C - 1)))`` for ``c = 0 .. C-1`` (class 0 the largest,
    the last class ``n_max / imbalance``); a single class keeps ``n_max``."""
    if not (isinstance(imbalance, (int, float)) and math.isfinite(imbalance) and imbalance >= 1):
        raise ValueError(f"imbalance must be a finite number >= 1, got {imbalance!r}")
    if num_classes == 1:
        return [n_max]
    # float64 with a tiny tolerance so that exact products (e.g. 400 / 10 at the last class) floor to themselves
    return [math.floor(n_max * imbalance ** (-c / (num_classes - 1)) * (1 + 1e-12)) for c in range(num_classes)]


def long_tailed(data: ArrayDataset, imbalance: float, seed: int = 0, n_max: int | None = None,
                truth: Truth | None = None) -> tuple[ArrayDataset, Truth]:
    """Keep :func:`long_tailed_counts` training samples of each class, drawn uniformly within the class
    and kept in their original order; the test split is kept whole (balanced, so per-class recall is
    measured on as many samples for the tail as for the head).

    ``n_max`` defaults to the size of the smallest class, so every class can supply its count (it must
    not exceed it). Class order is the label order: class 0 is the head, class ``C - 1`` the tail."""
    counts = torch.bincount(data.y_train, minlength=data.num_classes)
    smallest = int(counts.min())
    n_max = smallest if n_max is None else n_max
    if not 1 <= n_max <= smallest:
        raise ValueError(f"n_max must be in 1..{smallest} (the smallest class), got {n_max}")
    wanted = long_tailed_counts(n_max, data.num_classes, imbalance)
    truth = _start(data, truth)
    g = torch.Generator().manual_seed(seed)
    parts = []
    for c, k in enumerate(wanted):  # a loop over classes
        members = torch.nonzero(data.y_train == c).flatten()
        parts.append(members[torch.randperm(members.numel(), generator=g)[:k]])
    keep = torch.cat(parts).sort().values
    out = _with(data, x_train=data.x_train[keep], y_train=data.y_train[keep])
    return out, truth._take(keep, f"long_tailed({imbalance})")


def _apply_attribute(x: torch.Tensor, attribute: str, noise_std: float, g: torch.Generator) -> torch.Tensor:
    if attribute == "invert":
        return 255 - x if x.dtype == torch.uint8 else -x
    noise = torch.randn(x.shape, generator=g) * noise_std
    if x.dtype == torch.uint8:
        return (x.float() + 255 * noise).round().clamp(0, 255).to(torch.uint8)
    return x + noise.to(x.dtype)


def _pick_share(y: torch.Tensor, classes: list[int], share: float, g: torch.Generator) -> torch.Tensor:
    """(K,) indices: exactly round(share * n_c) samples of each class in ``classes``."""
    parts = []
    for c in classes:
        members = torch.nonzero(y == c).flatten()
        parts.append(members[torch.randperm(members.numel(), generator=g)[: round(share * members.numel())]])
    return torch.cat(parts) if parts else torch.zeros(0, dtype=torch.int64)


def minority_subgroup(data: ArrayDataset, share: float, classes: tuple[int, ...] | None = None,
                      attribute: str = "invert", noise_std: float = 1.0, seed: int = 0,
                      truth: Truth | None = None) -> tuple[ArrayDataset, Truth]:
    """Give a visible attribute (:data:`ATTRIBUTES`) to exactly ``round(share * n_c)`` samples of each
    class ``c`` in ``classes`` (default: every class), in the training split (``n_c`` counted on the
    clean labels) and, with the same share, in the test split; those samples get group label 1.

    ``share`` must be in (0, 0.5] (a minority). The labels are unchanged: the subgroup is a nuisance
    attribute the model has to learn to see through, as "male" is for "attractive" on CelebA."""
    if not (isinstance(share, (int, float)) and math.isfinite(share) and 0 < share <= 0.5):
        raise ValueError(f"share must be in (0, 0.5], got {share!r}")
    if attribute not in ATTRIBUTES:
        raise ValueError(f"attribute must be one of {ATTRIBUTES}, got {attribute!r}")
    if not (math.isfinite(noise_std) and noise_std > 0):
        raise ValueError(f"noise_std must be > 0, got {noise_std!r}")
    classes = list(range(data.num_classes)) if classes is None else [int(c) for c in classes]
    bad = [c for c in classes if not 0 <= c < data.num_classes]
    if bad or not classes or len(set(classes)) != len(classes):
        raise ValueError(f"classes must be distinct classes in 0..{data.num_classes - 1}, got {classes}")
    truth = _start(data, truth)
    g = torch.Generator().manual_seed(seed)
    tr = _pick_share(truth.clean_y_train, classes, share, g)
    te = _pick_share(data.y_test, classes, share, g)
    x_train, x_test = data.x_train.clone(), data.x_test.clone()
    x_train[tr] = _apply_attribute(x_train[tr], attribute, noise_std, g)
    x_test[te] = _apply_attribute(x_test[te], attribute, noise_std, g)
    group_train, group_test = truth.group_train.clone(), truth.group_test.clone()
    group_train[tr], group_test[te] = 1, 1
    step = f"minority_subgroup({share}, {classes}, {attribute})"
    return (_with(data, x_train=x_train, x_test=x_test),
            replace(truth, group_train=group_train, group_test=group_test, steps=(*truth.steps, step)))


NOISE_TYPES = ("symmetric", "asymmetric")


def apply_transforms(data: ArrayDataset, *, label_noise: float = 0.0, noise_type: str = "symmetric",
                     imbalance: float = 1.0, subgroup_share: float = 0.0, subgroup_classes: tuple[int, ...] = (),
                     subgroup_attribute: str = "invert", seed: int = 0) -> tuple[ArrayDataset, Truth]:
    """The transforms a run asks for, in a fixed order: the long tail (``imbalance > 1``), then the
    minority subgroup (``subgroup_share > 0``, on ``subgroup_classes``, empty = every class), then label
    noise (``label_noise > 0``, ``noise_type`` symmetric or asymmetric), so the noise rate is a share of
    the final training set. Each draw uses its own seed derived from ``seed`` (the data set is the same
    for every selector run with that seed). With nothing asked, ``data`` is returned as it is."""
    if noise_type not in NOISE_TYPES:
        raise ValueError(f"noise_type must be one of {NOISE_TYPES}, got {noise_type!r}")
    _check_rate(label_noise)
    truth = Truth.identity(data)
    if imbalance != 1:
        data, truth = long_tailed(data, imbalance, seed=seed, truth=truth)
    if subgroup_share:
        data, truth = minority_subgroup(data, subgroup_share, tuple(subgroup_classes) or None,
                                        subgroup_attribute, seed=seed + 1, truth=truth)
    if label_noise:
        noise = symmetric_noise if noise_type == "symmetric" else asymmetric_noise
        data, truth = noise(data, label_noise, seed=seed + 2, truth=truth)
    return data, truth
