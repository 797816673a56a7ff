"""The rules of three dynamic-pruning peers as pure tensor functions: SeTa, OrderDP and Partial Forward
Blocking. As in :mod:`ies.selectors.rules`, each takes and returns device tensors, with no per-sample
python; a host sync is named where a rule has one (once per epoch, never per batch).

- **SeTa** (Zhou, Gao, Wang, "Scale Efficient Training for Large Datasets", CVPR 2025; code
  ``mrazhou/SeTa``, ``seta.py``): :func:`seta_plan`, :func:`seta_choose` with :func:`kmeans_1d`, :func:`equal_groups`,
  :func:`seta_window`, :func:`seta_anneal_start`.
- **OrderDP** (Jin et al., "OrderDP: A Theoretically Guaranteed Lossless Dynamic Data Pruning Framework",
  ICLR 2026; code ``shengze-xu/OrderDP``, ``cifar/orderDP/orderDP.py``): :func:`orderdp_sizes`,
  :func:`orderdp_plan`, :func:`orderdp_choose`.
- **Partial Forward Blocking** (Wu et al., ICCV 2025, arXiv 2506.23674): :func:`pooled`,
  :class:`Centres`, :func:`density`, :func:`block_dense`.
"""

from __future__ import annotations

import math
from fractions import Fraction

import torch

INITIAL_SCORE = 3.0
"""The score of a never-trained sample in SeTa and OrderDP: both authors' codes start every score at 3."""


# ---------------------------------------------------------------------- SeTa
def seta_anneal_start(epochs: int, anneal: float) -> int:
    """The first 0-based epoch of SeTa's annealing: the authors' sampler prunes in epoch ``e`` (1-based)
    while ``e <= epochs x delta`` with ``delta = 1 - anneal`` (their 0.875), so annealing starts at
    ``floor(epochs x (1 - anneal))`` (0-based), computed exactly: 6 epochs -> 5, 20 -> 17, 4 -> 3, 8 -> 7."""
    if epochs < 1 or not 0 <= anneal <= 1:
        raise ValueError(f"seta_anneal must be in [0, 1] and epochs >= 1, got {anneal}, {epochs}")
    return math.floor(epochs * (1 - Fraction(anneal).limit_denominator(1_000_000)))


def seta_keep_count(n: int, prune_ratio: float) -> int:
    """Samples of the random draw: ``int(n x keep)`` with ``keep = min(1, max(0.1, 1 - prune_ratio))``,
    the authors' float arithmetic."""
    return int(n * min(1.0, max(0.1, 1.0 - prune_ratio)))


def kmeans_1d(x: torch.Tensor, k: int, iters: int = 50) -> torch.Tensor:
    """Lloyd's k-means on the values ``x`` ``(M,)`` into ``k`` groups; returns the ``(M,)`` int64 group of
    each value, groups numbered by increasing centre (0 = the smallest values).

    Deterministic (the authors use scikit-learn's ``KMeans(k, random_state=0)``, k-means++ seeded):
    the centres start at the ``(j + 1/2) / k`` quantiles of ``x`` and take ``iters`` Lloyd steps in
    float64. In one dimension the groups are intervals: each value goes to the nearest centre (the
    midpoints between sorted centres are the boundaries; a value on a boundary goes to the upper group);
    a centre left without values keeps its place (its group stays empty)."""
    m = x.numel()
    if m == 0 or k <= 1:
        return torch.zeros(m, dtype=torch.long, device=x.device)
    v = x.detach().double().flatten()
    pos = ((torch.arange(k, device=x.device, dtype=torch.float64) + 0.5) * m / k).long().clamp(max=m - 1)
    centres = torch.sort(v).values[pos]
    for _ in range(iters):
        labels = torch.searchsorted((centres[1:] + centres[:-1]) / 2, v, right=True)
        sums = torch.zeros(k, dtype=torch.float64, device=x.device).index_add_(0, labels, v)
        counts = torch.bincount(labels, minlength=k)
        centres = torch.sort(torch.where(counts > 0, sums / counts.clamp(min=1), centres)).values
    return torch.searchsorted((centres[1:] + centres[:-1]) / 2, v, right=True)


def equal_groups(m: int, k: int, device: torch.device | str = "cpu") -> tuple[torch.Tensor, int]:
    """The authors' grouping when every score is equal (``torch.chunk`` of the draw into ``k``): chunks of
    ``ceil(m / k)`` in draw order, so ``ceil(m / ceil(m / k))`` groups (fewer than ``k`` for some ``m``:
    9 into 4 gives 3, 3, 3). Returns the ``(m,)`` group of each position and the number of groups."""
    size = max(1, math.ceil(m / k))
    return torch.arange(m, device=device) // size, max(1, math.ceil(m / size))


def seta_window(num_groups: int, iteration: int, window_scale: float) -> tuple[int, int]:
    """The groups ``[start, stop)`` SeTa trains at its ``iteration`` (0-based count of pruned epochs): all
    of them at iteration 0, then a window of ``round(num_groups x window_scale)`` groups (python's round,
    halves to even: 5 x 0.9 -> 4, 5 x 0.5 -> 2) sliding from easy to hard, ``start = iteration mod
    (num_groups - window + 1)``, and round again."""
    if iteration == 0:
        return 0, num_groups
    window = round(num_groups * window_scale)
    if window < 1:
        raise ValueError(f"seta_window x seta_groups must round to >= 1 group, got {num_groups} x {window_scale}")
    window = min(window, num_groups)
    start = iteration % (num_groups - window + 1)
    return start, start + window


def seta_plan(scores: torch.Tensor, iteration: int, prune_ratio: float, num_groups: int, window_scale: float,
              anneal: bool, generator: torch.Generator | None = None) -> torch.Tensor:
    """One epoch of SeTa: the ``(N,)`` bool mask of the samples that train.

    1. a uniformly random draw of ``seta_keep_count(N, prune_ratio)`` samples (from ``generator``);
    2. ``anneal``: the draw trains as it is (the authors' partial annealing: a random share, no groups);
    3. otherwise :func:`seta_choose` picks the groups of the draw that train.

    ``scores`` ``(N,)`` float: the last training loss of each sample (:data:`INITIAL_SCORE` before)."""
    n = scores.numel()
    draw = torch.randperm(n, generator=generator, device=scores.device)[:seta_keep_count(n, prune_ratio)]
    if anneal or draw.numel() == 0:
        return torch.zeros(n, dtype=torch.bool, device=scores.device).index_fill_(0, draw, True)
    return seta_choose(scores, draw, iteration, num_groups, window_scale)


def seta_choose(scores: torch.Tensor, draw: torch.Tensor, iteration: int, num_groups: int, window_scale: float
                ) -> torch.Tensor:
    """SeTa's choice within a random ``draw`` ``(M,)`` int64 (M >= 1) of the ``scores`` ``(N,)``: the
    draw's scores are split into ``num_groups`` groups by :func:`kmeans_1d` (all equal:
    :func:`equal_groups`, in draw order) and the groups of :func:`seta_window` train. A non-finite score
    counts as the largest finite one (no finite score: all equal). An empty choice trains the draw's
    first sample (the authors' code: one random sample). Returns the ``(N,)`` bool mask.
    One host sync: whether the drawn scores are all equal."""
    n, m = scores.numel(), draw.numel()
    s = scores[draw].double()
    finite = torch.isfinite(s)
    top = torch.where(finite, s, -math.inf).max()
    s = torch.where(finite, s, torch.where(torch.isfinite(top), top, 0.0))
    if bool(s.max() == s.min()):  # the one sync
        groups, count = equal_groups(m, num_groups, scores.device)
    else:
        groups, count = kmeans_1d(s, num_groups), num_groups
    start, stop = seta_window(count, iteration, window_scale)
    chosen = (groups >= start) & (groups < stop)
    chosen[0] |= ~chosen.any()  # never an empty epoch
    return torch.zeros(n, dtype=torch.bool, device=scores.device).index_fill_(0, draw[chosen], True)


# ---------------------------------------------------------------------- OrderDP
def orderdp_sizes(n: int, pool: float, top_q: float) -> tuple[int, int]:
    """The pool and kept sizes of OrderDP for ``n`` samples, the authors' float arithmetic:
    ``pool_size = int(pool x n)`` and ``kept = int(top_q x pool_size)`` (0.8 and 0.375 of 500: 400, 150)."""
    pool_size = int(pool * n)
    return pool_size, int(top_q * pool_size)


def orderdp_plan(scores: torch.Tensor, pool_size: int, kept: int, generator: torch.Generator | None = None
                 ) -> torch.Tensor:
    """One epoch of OrderDP: a uniformly random pool of ``pool_size`` samples (from ``generator``), then
    :func:`orderdp_choose`. Returns the ``(N,)`` bool mask; exactly ``kept`` are True. No host sync."""
    pool = torch.randperm(scores.numel(), generator=generator, device=scores.device)[:pool_size]
    return orderdp_choose(scores, pool, kept)


def orderdp_choose(scores: torch.Tensor, pool: torch.Tensor, kept: int) -> torch.Tensor:
    """The ``kept`` samples of ``pool`` ``(P,)`` int64 with the largest ``scores`` ``(N,)`` (stale losses;
    ``+inf`` and NaN first), ties broken by pool order (the authors' ``topk`` leaves them unspecified):
    the ``(N,)`` bool mask."""
    order = torch.argsort(torch.nan_to_num(scores[pool], nan=math.inf), descending=True, stable=True)
    keep = torch.zeros(scores.numel(), dtype=torch.bool, device=scores.device)
    return keep.index_fill_(0, pool[order[:kept]], True)


# ---------------------------------------------------------------------- Partial Forward Blocking
def pooled(features: torch.Tensor) -> torch.Tensor:
    """``(B, C, *spatial)`` stage output -> ``(B, C)`` float32 global average pool (``(B, C)`` as is)."""
    f = features.detach().float()
    return f.flatten(2).mean(2) if f.dim() > 2 else f


def density(z: torch.Tensor, centres: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """``(B,)`` density of each pooled feature ``z`` ``(B, D)`` under the mixture of isotropic Gaussians at
    ``centres`` ``(K, D)`` with mixing ``weights`` ``(K,)``: ``sum_k w_k exp(-|z - c_k|^2 / (2 h^2)) /
    sum_k w_k``, the bandwidth ``h^2`` the batch's mean squared distance to its nearest centre (a
    scale-free choice of ours). Relative values only matter: a rare sample has a low density."""
    d2 = torch.cdist(z.double(), centres.double()).pow(2)
    h2 = d2.min(1).values.mean().clamp(min=1e-12)
    w = weights.double()
    return (torch.exp(-d2 / (2 * h2)) @ w / w.sum().clamp(min=1e-12)).float()


def block_dense(dens: torch.Tensor, prune_ratio: float) -> torch.Tensor:
    """``(B,)`` bool: the ``B - floor(prune_ratio x B)`` samples of lowest density continue (ties by
    position); the others are blocked after the first stage. Exact integer count, no host sync."""
    b = dens.numel()
    share = Fraction(prune_ratio).limit_denominator(1_000_000)
    blocked = b * share.numerator // share.denominator
    rank = torch.empty(b, dtype=torch.long, device=dens.device)
    rank[torch.argsort(dens, stable=True)] = torch.arange(b, device=dens.device)
    return rank < b - blocked


class Centres:
    """The running centres of PFB's density estimate: ``k`` centres in the pooled-feature space, filled by
    the first ``k`` features seen, then moved by an exponential moving average (``momentum`` ``a``):
    each batch assigns every feature to its nearest centre; a centre with assigned features moves
    ``a`` of the way to their mean, and every mixing weight moves ``a`` of the way to its share of the
    batch (our estimator: the paper names an adaptive distribution estimate without this detail here).

    Attributes:
        centres: ``(k, D)`` float32 (``D`` known at the first batch); weights: ``(k,)`` float32;
        filled: how many centres hold a feature (host int, from batch shapes).
    """

    def __init__(self, k: int, momentum: float = 0.1, device: torch.device | str = "cpu") -> None:
        if k < 1:
            raise ValueError(f"pfb_centres must be >= 1, got {k}")
        self.k, self.momentum, self.device = k, momentum, device
        self.centres = torch.zeros(0, device=device)
        self.weights = torch.full((k,), 1.0 / k, device=device)
        self.filled = 0

    @property
    def full(self) -> bool:
        return self.filled >= self.k

    def update(self, z: torch.Tensor) -> None:
        """Add the ``(B, D)`` features of a batch: fill empty centres first, then move the centres."""
        if self.filled == 0:
            self.centres = torch.zeros(self.k, z.shape[1], device=self.device)
        take = min(self.k - self.filled, z.shape[0])
        if take:
            self.centres[self.filled:self.filled + take] = z[:take]
            self.filled += take
            z = z[take:]
        if not z.shape[0]:
            return
        a = self.momentum
        near = torch.cdist(z, self.centres).argmin(1)
        counts = torch.bincount(near, minlength=self.k).float()
        sums = torch.zeros_like(self.centres).index_add_(0, near, z)
        means = sums / counts.clamp(min=1).unsqueeze(1)
        self.centres = torch.where((counts > 0).unsqueeze(1), (1 - a) * self.centres + a * means, self.centres)
        self.weights = (1 - a) * self.weights + a * counts / z.shape[0]

    def state_dict(self) -> dict:
        return {"centres": self.centres.clone(), "weights": self.weights.clone(), "filled": self.filled}

    def load_state_dict(self, state: dict) -> None:
        self.centres = state["centres"].to(self.device)
        self.weights = state["weights"].to(self.device)
        self.filled = int(state["filled"])
