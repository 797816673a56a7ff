"""The peers' rules as pure tensor functions: InfoBatch / small-loss pruning, Selective Backprop, and
conventional early stopping with its validation split.

Each function takes and returns device tensors (no per-sample python, no host sync except where a
docstring says so); the selectors of :mod:`ies.selectors` only keep their state and call these.

- **InfoBatch** (Qin et al., ICLR 2024) and **small loss & rescale** (InfoBatch without annealing, the
  IES paper's baseline): :func:`prune_plan`, :func:`anneal_start`.
- **Selective Backprop** (Jiang et al., 2019): :class:`LossHistory`, :func:`keep_probability`,
  :func:`selective_keep`.
- **Conventional early stopping**: :class:`EarlyStopping`, :func:`stop_epoch`, :func:`validation_split`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction

import torch


# ---------------------------------------------------------------------- InfoBatch / small loss & rescale
def anneal_start(epochs: int, anneal_fraction: float) -> int:
    """The first 0-based epoch that trains on all data: ``epochs - round(anneal_fraction * epochs)``.

    Rounding is python's ``round`` (halves to even), the rule the training loop uses for IES's anneal,
    so one ``anneal_fraction`` means the same epochs for every selector. With the default 0.125:
    8 epochs -> epoch 7 only; 100 -> the last 12 (12.5 rounds to 12); 12 -> the last 2 (1.5 -> 2);
    4 -> none (0.5 -> 0); 200 -> the last 25. ``anneal_fraction = 0`` never anneals (small loss &
    rescale)."""
    if epochs < 1:
        raise ValueError(f"epochs must be >= 1, got {epochs}")
    if not 0 <= anneal_fraction <= 1:
        raise ValueError(f"anneal_fraction must be in [0, 1], got {anneal_fraction}")
    return epochs - round(anneal_fraction * epochs)


def below_mean(scores: torch.Tensor) -> torch.Tensor:
    """``(N,)`` bool: the samples whose score is strictly below the mean of the finite scores.

    ``scores`` ``(N,)`` float: each sample's last observed loss, ``+inf`` (or NaN) for a sample never
    observed or whose last loss was not finite. Non-finite scores are left out of the mean and are never
    below it (such a sample is always kept). No finite score: nothing is below the mean."""
    finite = torch.isfinite(scores)
    total = torch.where(finite, scores, 0).sum(dtype=torch.float64 if scores.device.type != "mps" else None)
    mean = total / finite.sum().clamp(min=1)
    return finite & (scores < mean.to(scores.dtype))


def prune_plan(scores: torch.Tensor, prune_ratio: float, generator: torch.Generator | None = None
               ) -> tuple[torch.Tensor, torch.Tensor]:
    """One epoch of prune-and-rescale: which samples train, and their loss weights.

    Of the ``m`` samples below the mean score (:func:`below_mean`), exactly
    ``n_keep = floor((1 - prune_ratio) * m)`` chosen uniformly at random (without replacement, from
    ``generator``) are kept and weighted ``1 / (1 - prune_ratio)``, so that the expected gradient of the
    below-mean group is unchanged; the other ``m - n_keep`` are left out of the epoch (no forward, no
    backward; their score stays as it was). Every other sample is kept at weight 1.

    Args:
        scores: ``(N,)`` float, the last observed loss per sample (``+inf`` = never observed).
        prune_ratio: share of the below-mean samples left out, in ``[0, 1)``.
        generator: the random stream (on ``scores.device``).

    Returns:
        ``keep`` ``(N,)`` bool and ``weights`` ``(N,)`` float32 (1 for every sample not kept-and-below-mean).
        No host sync: ``n_keep`` stays a device tensor.
    """
    if not 0 <= prune_ratio < 1:
        raise ValueError(f"prune_ratio must be in [0, 1), got {prune_ratio}")
    n = scores.numel()
    candidate = below_mean(scores)
    keys = torch.rand(n, generator=generator, device=scores.device)
    keys = torch.where(candidate, keys, 2.0)  # candidates first, in random order
    rank = torch.empty(n, dtype=torch.long, device=scores.device)
    rank[torch.argsort(keys)] = torch.arange(n, device=scores.device)
    keep_share = Fraction(1 - prune_ratio).limit_denominator(1_000_000)  # exact integer arithmetic below
    n_keep = candidate.sum() * keep_share.numerator // keep_share.denominator
    kept_candidate = candidate & (rank < n_keep)
    keep = ~candidate | kept_candidate
    weights = torch.where(kept_candidate, 1.0 / (1.0 - prune_ratio), 1.0).to(torch.float32)
    return keep, weights


def infobatch_plan(scores: torch.Tensor, epoch: int, epochs: int, prune_ratio: float, anneal_fraction: float,
                   generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`prune_plan` before :func:`anneal_start`, everything kept at weight 1 from there on
    (``epoch`` 0-based). ``anneal_fraction = 0`` is small loss & rescale. Returns ``keep`` ``(N,)`` bool,
    ``weights`` ``(N,)`` float32. The anneal epochs draw no random numbers."""
    if epoch >= anneal_start(epochs, anneal_fraction):
        n = scores.numel()
        return (torch.ones(n, dtype=torch.bool, device=scores.device),
                torch.ones(n, dtype=torch.float32, device=scores.device))
    return prune_plan(scores, prune_ratio, generator)


def update_scores(scores: torch.Tensor, idx: torch.Tensor, losses: torch.Tensor) -> torch.Tensor:
    """Write the observed ``losses`` ``(B,)`` of samples ``idx`` ``(B,)`` int64 into ``scores`` ``(N,)``
    in place (NaN stored as ``+inf``: such a sample is kept until it has a finite loss) and return it.
    Samples not in ``idx`` (e.g. pruned this epoch) keep their score."""
    losses = losses.detach().to(scores.dtype)
    return scores.index_copy_(0, idx, torch.nan_to_num(losses, nan=math.inf))


# ---------------------------------------------------------------------- Selective Backprop
class LossHistory:
    """The recent-loss history of Selective Backprop: a ring buffer of the last ``size`` per-sample
    losses, on the device. Unfilled slots hold ``+inf``; ``count`` (host int, known from batch shapes,
    no sync) is how many are filled.

    Attributes:
        values: ``(size,)`` float32, the buffer (order of insertion modulo ``size``).
        count: number of filled slots, ``<= size``.
    """

    def __init__(self, size: int, device: torch.device | str = "cpu") -> None:
        if size < 1:
            raise ValueError(f"sb_history must be >= 1, got {size}")
        self.size = size
        self.values = torch.full((size,), math.inf, device=device)
        self.count = 0
        self._next = 0

    def push(self, losses: torch.Tensor) -> None:
        """Append ``losses`` ``(B,)`` (the oldest entries are overwritten; NaN is stored as ``+inf``)."""
        losses = torch.nan_to_num(losses.detach().float().flatten(), nan=math.inf)[-self.size:]
        b = losses.numel()
        slots = (self._next + torch.arange(b, device=self.values.device)) % self.size
        self.values[slots] = losses
        self._next = (self._next + b) % self.size
        self.count = min(self.count + b, self.size)

    def percentile(self, losses: torch.Tensor) -> torch.Tensor:
        """``(B,)`` float32: the empirical CDF of the history at each loss, ``#{h <= loss} / count``
        (1 for a non-finite loss, 0 on an empty history). Vectorised: ``searchsorted`` on the sorted
        buffer (the ``+inf`` of unfilled slots sort last and are never counted for a finite loss)."""
        losses = torch.nan_to_num(losses.detach().float().flatten(), nan=math.inf)
        if self.count == 0:
            return torch.zeros_like(losses)
        below = torch.searchsorted(torch.sort(self.values).values, losses, right=True)
        return below.clamp(max=self.count).float() / self.count

    def state_dict(self) -> dict:
        return {"values": self.values.clone(), "count": self.count, "next": self._next}

    def load_state_dict(self, state: dict) -> None:
        self.values.copy_(state["values"])
        self.count = int(state["count"])
        self._next = int(state["next"])


def keep_probability(percentile: torch.Tensor, beta: float) -> torch.Tensor:
    """Selective Backprop's selection probability ``percentile ** beta`` ``(B,)`` (``beta > 0``; larger
    beta keeps fewer, mostly the largest losses). For a loss stream whose history has the same
    distribution, the expected kept share is about ``1 / (beta + 1)``."""
    if not beta > 0:
        raise ValueError(f"beta must be > 0, got {beta}")
    return percentile.clamp(0, 1).pow(beta)


def selective_keep(history: LossHistory, losses: torch.Tensor, beta: float,
                   generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Which samples of a forwarded batch get a backward pass (Selective Backprop).

    Variant followed: the paper's basic Selective Backprop (Jiang et al., 2019, "Accelerating deep
    learning by focusing on the biggest losers"): every sample is forwarded fresh, its loss is pushed into
    the history of the most recent ``history.size`` losses, and it is kept with probability (its
    percentile in that history) ** ``beta``, by an independent Bernoulli draw. Not the *stale* variant
    (selection from losses of an earlier epoch to skip forwards too): the issue asks for every sample
    forwarded, and the stale losses would make the accounting depend on a second knob. The batch's own
    losses enter the history before the percentiles are read, so a sample is compared with itself too
    and its probability is at least ``(1 / count) ** beta > 0``: no extra minimum probability.

    Args:
        history: the recent-loss history (updated in place).
        losses: ``(B,)`` per-sample losses of the batch just forwarded.
        beta: selectivity, ``> 0``.
        generator: the random stream (on the history's device).

    Returns:
        ``keep`` ``(B,)`` bool and the probabilities ``(B,)`` float32.
    """
    history.push(losses)
    prob = keep_probability(history.percentile(losses), beta)
    draw = torch.rand(prob.shape, generator=generator, device=prob.device)
    return draw < prob, prob


# ---------------------------------------------------------------------- conventional early stopping
@dataclass
class EarlyStopping:
    """Stop when the validation metric has not improved for ``patience`` epochs.

    An epoch *improves* when its value beats the best so far by more than ``min_delta``
    (``value > best + min_delta`` in ``mode="max"``, e.g. accuracy; ``value < best - min_delta`` in
    ``mode="min"``, e.g. loss); the first finite value always improves, a non-finite one never does.
    :meth:`update` returns True after the epoch at which ``patience`` epochs in a row have not improved
    (``epoch - best_epoch >= patience``). The best epoch is the one to report (best-so-far).
    """

    patience: int
    min_delta: float = 0.0
    mode: str = "max"
    best: float = math.nan
    best_epoch: int = 0
    epoch: int = 0

    def __post_init__(self) -> None:
        if self.patience < 1:
            raise ValueError(f"es_patience must be >= 1, got {self.patience}")
        if not (math.isfinite(self.min_delta) and self.min_delta >= 0):
            raise ValueError(f"es_min_delta must be a finite number >= 0, got {self.min_delta}")
        if self.mode not in ("max", "min"):
            raise ValueError(f"mode must be 'max' or 'min', got {self.mode!r}")

    def update(self, value: float) -> bool:
        """Record the next epoch's validation ``value`` (a host float); True = stop after this epoch."""
        self.epoch += 1
        value = float(value)
        if math.isfinite(value):
            sign = 1.0 if self.mode == "max" else -1.0
            if math.isnan(self.best) or sign * (value - self.best) > self.min_delta:
                self.best, self.best_epoch = value, self.epoch
        return self.epoch - self.best_epoch >= self.patience

    def state_dict(self) -> dict:
        return {"best": self.best, "best_epoch": self.best_epoch, "epoch": self.epoch}

    def load_state_dict(self, state: dict) -> None:
        self.best, self.best_epoch, self.epoch = float(state["best"]), int(state["best_epoch"]), int(state["epoch"])


def stop_epoch(curve, patience: int, min_delta: float = 0.0, mode: str = "max") -> int | None:
    """The 1-based epoch after which :class:`EarlyStopping` stops on the validation ``curve`` (a
    sequence of floats, one per epoch), or ``None`` if it never fires within the curve."""
    rule = EarlyStopping(patience, min_delta, mode)
    for value in curve:
        if rule.update(value):
            return rule.epoch
    return None


def validation_split(labels: torch.Tensor, fraction: float, seed: int, *, stratified: bool = True
                     ) -> tuple[torch.Tensor, torch.Tensor]:
    """Carve a validation split out of the training set, deterministically from ``seed``.

    ``stratified``: each class ``c`` with ``n_c`` samples gives ``floor(fraction * n_c + 1/2)`` of them
    (rounded half up) chosen uniformly at random; otherwise ``floor(fraction * N + 1/2)`` of all. The
    draw uses a CPU generator seeded with ``seed`` (the same split on every device).

    Args:
        labels: ``(N,)`` int64 class of every training sample.
        fraction: share held out, in ``(0, 1)``.
        seed: the split's seed.

    Returns:
        ``train_idx`` ``(N - V,)`` and ``val_idx`` ``(V,)``, int64, sorted, disjoint, covering ``0..N-1``,
        on ``labels.device``.
    """
    if not 0 < fraction < 1:
        raise ValueError(f"val_fraction must be in (0, 1), got {fraction}")
    y = labels.detach().long().cpu()
    n = y.numel()
    gen = torch.Generator().manual_seed(seed)
    order = torch.argsort(torch.rand(n, generator=gen))
    if stratified:
        perm = order[torch.argsort(y[order], stable=True)]  # grouped by class, random inside
        counts = torch.bincount(y, minlength=int(y.max()) + 1 if n else 0)
        starts = torch.cumsum(counts, 0) - counts
        position = torch.arange(n) - starts[y[perm]]
        n_val = torch.floor(fraction * counts.double() + 0.5).long()
        is_val = position < n_val[y[perm]]
    else:
        perm = order
        is_val = torch.arange(n) < math.floor(fraction * n + 0.5)
    val = torch.sort(perm[is_val]).values
    train = torch.sort(perm[~is_val]).values
    return train.to(labels.device), val.to(labels.device)
