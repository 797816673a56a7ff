"""Sharpness during training, and the comparison of a baseline and an IES run (notebook 05).

- :class:`SharpnessProbe`: an ``on_epoch_end`` callback of :func:`ies.train` that records, every few
  epochs, the curvature of the loss on fixed batches (:func:`fixed_batches`) and the gradient norm of
  mini-batches with and without the mastered samples at the same weights;
- :func:`compare_histories`: the numbers behind the paper's two mechanism claims (Fig. 4: IES trains
  with larger gradient norms; it ends in flatter minima), from the histories of two such runs;
- :func:`claim_intervals`: one summary per claim and seed (the share of that run pair's comparisons that
  go the claimed way) judged by the one verdict rule over seeds (:func:`ies.experiments.stats.verdict`);
  :func:`claim_sign_tests`: the same summaries as a sign test over seeds, an illustration.

The measurements themselves (top Hessian eigenvalue, Hessian trace, SAM value, Hessian-vector products,
per-batch gradient norms) live in :mod:`ies.experiments.curvature` and are re-exported here.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from ..data.datasets import DeviceLoader
from ..models.modes import plain_eval
from . import stats
from .curvature import (
    Batch,
    LossFn,
    batch_grad_norms,
    hessian_top_eigenvalue,
    hessian_trace,
    hessian_vector_product,
    measure_sharpness,
    sam_sharpness,
)

__all__ = [
    "CLAIMS",
    "SharpnessProbe",
    "batch_grad_norms",
    "claim_intervals",
    "claim_sign_tests",
    "compare_histories",
    "fixed_batches",
    "hessian_top_eigenvalue",
    "hessian_trace",
    "hessian_vector_product",
    "measure_sharpness",
    "sam_sharpness",
]


# ---------------------------------------------------------------------------- the probe
def fixed_batches(
    dataset, size: int, batch_size: int = 1024, device: str | torch.device = "cpu", seed: int = 0
) -> list[Batch]:
    """A fixed random subset of ``size`` training samples of an :class:`ies.data.datasets.ArrayDataset`,
    served as a list of ``(inputs, targets)`` batches on ``device``, normalised as in training and
    without augmentation (``size <= 0`` or larger than the split: every training sample)."""
    n = dataset.num_train
    gen = torch.Generator().manual_seed(seed)
    idx = torch.randperm(n, generator=gen)[: size if 0 < size < n else n].sort().values
    loader = DeviceLoader(dataset.x_train[idx], dataset.y_train[idx], torch.device(device),
                          mean=dataset.mean, std=dataset.std)
    return [(x, y) for x, y, _ in loader.batches(None, batch_size)]


@dataclass
class SharpnessProbe:
    """An ``on_epoch_end`` callback for :func:`ies.train`: sharpness on fixed batches, and the
    mini-batch gradient norm with and without the mastered samples at the same weights.

    On epoch 1, every ``every`` epochs and on ``last_epoch`` (if given) it returns the columns

    - ``probe_loss`` (``L`` on ``batches``), ``probe_grad_norm`` (``||grad L||``), ``top_eigenvalue``,
      ``lanczos_steps``, ``sam_sharpness`` and, if ``trace_samples > 0``, ``hessian_trace`` and
      ``hessian_trace_se``;
    - if ``train_data`` (an :class:`ies.data.datasets.DeviceLoader` over the whole training split) is given:
      ``train_loss_all``, the eval-mode mean loss over every training sample (the same kind of number
      for any run, unlike the history's ``tracked_loss``); ``grad_norm_all`` and ``grad_norm_active``,
      the mean gradient norm of ``grad_batches`` random mini-batches of ``grad_batch_size`` drawn from
      every training sample, and of the same draw with the mastered samples (``tracker.mastered``: those
      the next epoch leaves out) replaced by further unmastered ones (see :meth:`active_grad_norms`);
      they coincide when nothing is mastered. Eval mode, no augmentation: a same-weights comparison,
      not the training steps' own norms;
    - ``probe_seconds``;

    and on other epochs the same keys with NaN. :meth:`measure` gives the sharpness columns for any
    weights (e.g. the initial ones). Nothing here changes the run (see :mod:`ies.experiments.curvature`).
    """

    batches: list[Batch]
    every: int = 5
    loss_fn: LossFn = field(default=F.cross_entropy)
    iters: int = 100
    tol: float = 1e-3
    rho: float = 0.05
    trace_samples: int = 0
    last_epoch: int = 0
    train_data: object = None
    grad_batches: int = 8
    grad_batch_size: int = 64
    seed: int = 0

    def __post_init__(self) -> None:
        self.batches = list(self.batches)
        if self.every < 1:
            raise ValueError(f"every must be >= 1, got {self.every}")

    @property
    def keys(self) -> list[str]:
        keys = ["probe_loss", "probe_grad_norm", "top_eigenvalue", "lanczos_steps", "sam_sharpness"]
        if self.trace_samples > 0:
            keys += ["hessian_trace", "hessian_trace_se"]
        if self.train_data is not None:
            keys += ["train_loss_all", "grad_norm_all", "grad_norm_active"]
        return [*keys, "probe_seconds"]

    def measure(self, model: nn.Module) -> dict[str, float]:
        """The sharpness columns at the model's current weights."""
        m = measure_sharpness(model, self.loss_fn, self.batches, rho=self.rho, iters=self.iters, tol=self.tol)
        row = {"probe_loss": m["loss"], "probe_grad_norm": m["grad_norm"], "top_eigenvalue": m["top_eigenvalue"],
               "lanczos_steps": m["lanczos_steps"], "sam_sharpness": m["sam_sharpness"]}
        if self.trace_samples > 0:
            row["hessian_trace"], row["hessian_trace_se"] = hessian_trace(
                model, self.loss_fn, self.batches, samples=self.trace_samples, seed=self.seed)
        return row

    def active_grad_norms(self, model: nn.Module, mastered: torch.Tensor, epoch: int = 0) -> dict[str, float]:
        """``grad_norm_all`` and ``grad_norm_active`` (see the class docstring) for the mask ``mastered``.

        Paired draws: one random order of every training sample (seeded by ``seed`` and ``epoch``); the
        "all" mini-batches are its first ``grad_batches * grad_batch_size`` samples, the "active" ones
        the first as many *unmastered* samples in the same order, so the two sets differ only by the
        mastered samples swapped for unmastered ones.
        """
        data = self.train_data
        mastered = mastered.to(data.device)
        k = self.grad_batches * self.grad_batch_size
        gen = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        order = torch.randperm(len(data), generator=gen).to(data.device)
        row = {}
        for name, picks in (("all", order[:k]), ("active", order[~mastered[order]][:k])):
            batches = [(data.inputs(idx, augment=False), data.y[idx]) for idx in picks.split(self.grad_batch_size)
                       if idx.numel()]
            norms = batch_grad_norms(model, self.loss_fn, batches) if batches else []
            row[f"grad_norm_{name}"] = float(np.mean(norms)) if norms else float("nan")
        return row

    def __call__(self, epoch: int, model: nn.Module, tracker=None) -> dict[str, float]:
        if not (epoch == 1 or epoch % self.every == 0 or epoch == self.last_epoch):
            return dict.fromkeys(self.keys, float("nan"))
        t0 = time.perf_counter()
        row = self.measure(model)
        if self.train_data is not None:
            mastered = tracker.mastered if tracker is not None else torch.zeros(len(self.train_data), dtype=torch.bool)
            row["train_loss_all"] = _streamed_loss(model, self.loss_fn, self.train_data)
            row.update(self.active_grad_norms(model, mastered, epoch))
        row["probe_seconds"] = time.perf_counter() - t0
        return row


def _streamed_loss(model: nn.Module, loss_fn: LossFn, loader: DeviceLoader, batch_size: int = 1024) -> float:
    """The eval-mode mean loss over every sample of a DeviceLoader, one batch in memory at a time."""
    total, count = 0.0, 0
    with plain_eval(model), torch.no_grad():
        for x, y, _ in loader.batches(None, batch_size):
            total += loss_fn(model(x), y).double() * len(y)
            count += len(y)
    return float(total / max(count, 1))


# ---------------------------------------------------------------------------- comparing two runs
def _median(x: pd.Series) -> float:
    return float(x.median()) if len(x) else float("nan")


def _share(hits: pd.Series) -> float:
    """The fraction of True in a boolean Series (NaN when empty)."""
    return float(hits.mean()) if len(hits) else float("nan")


def _final(x: pd.Series) -> float:
    return float(x.iloc[-1]) if len(x) else float("nan")


def compare_histories(baseline: pd.DataFrame, ies: pd.DataFrame) -> dict[str, float]:
    """The numbers that check the paper's two claims, from the histories of a baseline and an IES run
    of the same configuration and seed, both trained with a :class:`SharpnessProbe` (rows matched by
    ``epoch``; rows without a training epoch, e.g. an epoch-0 measurement, are ignored where the
    quantity needs one).

    Claim 1 (gradient norms), over the epochs that IES trained with samples left out:
    ``step_epochs``, ``step_ratio_median`` (IES / baseline ``grad_norm_mean``), ``step_ies_larger``
    (fraction of those epochs with a ratio > 1); the loss over all training samples, IES / baseline:
    ``loss_count`` comparisons, ``loss_ratio_median``, ``loss_ies_lower`` (fraction < 1),
    ``loss_ratio_final`` (the last one), from ``train_loss_all`` at the probes after the first mastery
    if the probe recorded it, else from ``tracked_loss`` over the epochs above; at the same weights
    (the IES run's probes taken with samples mastered): ``same_probes``, ``same_ratio_median``
    (``grad_norm_active / grad_norm_all``), ``same_above_1`` (fraction > 1).

    Claim 2 (sharpness), over the probes after the first epoch that ended with samples mastered, for
    each of ``top_eigenvalue``, ``sam_sharpness`` and (if measured) ``hessian_trace``:
    ``{col}_probes``, ``{col}_ies_lower`` (fraction with IES < baseline), ``{col}_ratio_median`` and
    ``{col}_ratio_final`` (IES / baseline at the last probe). Fractions and medians are NaN when
    there is nothing to count. :func:`claim_intervals` judges these over seeds (one summary per seed).
    """
    both = baseline.merge(ies, on="epoch", suffixes=("_b", "_i"))
    trained = both[both["forward_only_samples_i"] > 0]
    mastered_epochs = ies.loc[ies["n_mastered"] > 0, "epoch"]
    after = both[both["epoch"] > mastered_epochs.min()] if len(mastered_epochs) else both.iloc[:0]

    step = trained["grad_norm_mean_i"] / trained["grad_norm_mean_b"]
    out = {"step_epochs": float(len(step)), "step_ratio_median": _median(step), "step_ies_larger": _share(step > 1)}
    if "train_loss_all" in ies and "train_loss_all" in baseline:
        rows = after.dropna(subset=["train_loss_all_b", "train_loss_all_i"])
        loss = rows["train_loss_all_i"] / rows["train_loss_all_b"]
    else:
        loss = trained["tracked_loss_i"] / trained["tracked_loss_b"]
    out.update(loss_count=float(len(loss)), loss_ratio_median=_median(loss), loss_ies_lower=_share(loss < 1),
               loss_ratio_final=_final(loss))
    if "grad_norm_active" in ies:
        probes = ies.dropna(subset=["grad_norm_active"])
        probes = probes[probes["n_mastered"] > 0]
        same = probes["grad_norm_active"] / probes["grad_norm_all"]
        out.update(same_probes=float(len(same)), same_ratio_median=_median(same), same_above_1=_share(same > 1))
    for col in ("top_eigenvalue", "sam_sharpness", "hessian_trace"):
        if col in ies:
            rows = after.dropna(subset=[f"{col}_b", f"{col}_i"])
            ratio = rows[f"{col}_i"] / rows[f"{col}_b"]
            out.update({f"{col}_probes": float(len(ratio)), f"{col}_ies_lower": _share(ratio < 1),
                        f"{col}_ratio_median": _median(ratio), f"{col}_ratio_final": _final(ratio)})
    return out


#: The claims :func:`claim_intervals` judges: name -> (share key, count key of :func:`compare_histories`,
#: the claim in words). The share is the fraction of comparisons that go the claimed way.
CLAIMS: dict[str, tuple[str, str, str]] = {
    "same_weights": ("same_above_1", "same_probes",
                     "at the same weights, mini-batches without the mastered samples have the larger gradient norm"),
    "steps": ("step_ies_larger", "step_epochs",
              "IES's training steps have the larger mean gradient norm than the baseline's"),
    "loss": ("loss_ies_lower", "loss_count", "IES's loss over all training samples is the lower one"),
    "top_eigenvalue": ("top_eigenvalue_ies_lower", "top_eigenvalue_probes", "IES has the lower top Hessian eigenvalue"),
    "sam_sharpness": ("sam_sharpness_ies_lower", "sam_sharpness_probes", "IES has the lower SAM value"),
    "hessian_trace": ("hessian_trace_ies_lower", "hessian_trace_probes", "IES has the lower Hessian trace"),
}


def _per_seed(claims: pd.DataFrame | Iterable[Mapping[str, float]]) -> list[Mapping[str, float]]:
    return [claims[c] for c in claims.columns] if isinstance(claims, pd.DataFrame) else list(claims)


def claim_intervals(claims: pd.DataFrame | Iterable[Mapping[str, float]], confidence: float = 0.95) -> pd.DataFrame:
    """Each claim of :data:`CLAIMS` judged by the one verdict rule on **one summary per seed**: the share of
    that run pair's comparisons that go the claimed way, minus 1/2 (comparisons of one run are correlated,
    so they are never pooled into one test). A claim holds when the mean of those summaries is above 0:
    :func:`ies.experiments.stats.verdict` of their t interval (no verdict below 3 seeds).

    ``claims``: one :func:`compare_histories` result per seed (dicts, or a DataFrame with one column per
    seed). Per claim: ``claim`` (words), ``seeds`` (those with comparisons), ``share`` (their mean share),
    ``low`` / ``high`` (the interval of the mean share), ``verdict``, ``why``
    (:func:`ies.experiments.stats.explain`, in points of share) and ``text`` (one line). Claims whose keys
    are absent (e.g. no Hessian trace measured) are left out.
    """
    rows = {}
    for name, (share_key, count_key, words) in CLAIMS.items():
        per_seed = _per_seed(claims)
        if not per_seed or any(share_key not in c or count_key not in c for c in per_seed):
            continue
        shares = [float(c[share_key]) for c in per_seed if float(c[count_key]) > 0]
        iv = stats.interval(np.asarray(shares, dtype=float) - 0.5, confidence)
        word = stats.verdict(iv, 0.0)
        low, high = (iv.low + 0.5, iv.high + 0.5) if iv.n > 1 else (float("nan"), float("nan"))
        span = f", {100 * confidence:g} % interval {low:.0%} .. {high:.0%}" if iv.n > 1 else ""
        rows[name] = {"claim": words, "seeds": iv.n, "share": iv.mean + 0.5, "low": low, "high": high,
                      "verdict": word, "why": stats.explain(iv, 0.0, 100.0, "pt"),
                      "text": f"{word}: in the claimed direction in {iv.mean + 0.5:.0%} of a run's comparisons on "
                              f"average over {iv.n} seed(s){span}"}
    return pd.DataFrame.from_dict(rows, orient="index",
                                  columns=["claim", "seeds", "share", "low", "high", "verdict", "why", "text"])


def claim_sign_tests(claims: pd.DataFrame | Iterable[Mapping[str, float]], alpha: float = 0.05) -> pd.DataFrame:
    """Each claim of :data:`CLAIMS` as a two-sided sign test over **seeds**: a seed wins when more than half of
    its run pair's comparisons go the claimed way (one summary per seed, never pooled comparisons). With 3
    seeds its smallest p-value is 0.25: an illustration beside :func:`claim_intervals`, which gives the verdict.

    ``claims`` as in :func:`claim_intervals`. Per claim: ``n`` = seeds with comparisons, ``wins``, ``p_value``
    = :func:`ies.experiments.stats.sign_test`, ``verdict`` = :func:`ies.experiments.stats.sign_verdict` at
    ``alpha``, ``text`` = ``"inconclusive (within seed noise): 3 of 3 seeds (sign test p = 0.25)"``.
    """
    rows = {}
    for name, (share_key, count_key, words) in CLAIMS.items():
        per_seed = _per_seed(claims)
        if not per_seed or any(share_key not in c or count_key not in c for c in per_seed):
            continue
        shares = [float(c[share_key]) for c in per_seed if float(c[count_key]) > 0]
        n, wins = len(shares), sum(x > 0.5 for x in shares)
        p, word = stats.sign_test(wins, n), stats.sign_verdict(wins, n, alpha)
        rows[name] = {"claim": words, "wins": wins, "n": n, "p_value": p, "verdict": word,
                      "text": f"{word}: {wins} of {n} seeds (sign test p = {p:.2g})"}
    return pd.DataFrame.from_dict(rows, orient="index",
                                  columns=["claim", "wins", "n", "p_value", "verdict", "text"])
