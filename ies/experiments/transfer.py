"""Transfer: is a network pretrained with IES a better starting point for another task?

What the paper reports (Yuan et al., ICLR 2025, its transfer tables): networks pretrained on
ImageNet-1k with IES or without, then **a linear probe** (only the classification head trained on the
frozen backbone, Adam 1e-3, no augmentation, 224x224 inputs). After **1 epoch** of the probe, ResNet-101
and DenseNet-121 on CIFAR-10, CIFAR-100 and Caltech-101 gain 1.45 points on average with IES
pretraining: the "+1.5 %" (:data:`PAPER_TRANSFER`). After 5 epochs of the probe the gains are smaller
on average.

The protocol here, :func:`transfer_experiment`, asks the same question at a small scale:

1. pretrain on a *source* task with the baseline (``threshold=0``) and with IES, same seed and same
   number of epochs, through :func:`ies.train`;
2. measure each pretrained network on a *target* task in two ways:

   - **linear probe** (:func:`ies.experiments.linear_probe.linear_probe`), the paper's measure: frozen network,
     penultimate features, an L2-regularised logistic regression fitted to convergence (L-BFGS, the L2
     strength chosen on validation data) rather than by one epoch of Adam;
   - **full fine-tuning** (:func:`ies.experiments.finetune.fine_tune`), which the paper does not report: a new
     head and every layer trained for a few epochs;

   both give the accuracy on the target's test split;
3. repeat over seeds and report mean and spread per method (:func:`method_table`) and the paired
   difference IES - baseline judged by :func:`ies.experiments.stats.verdict` (:func:`claim_verdict`).

Data: :func:`split_classes` makes a split-class pair out of one data set (the offline default:
MNIST-1D classes 0-4 -> 5-9, :func:`load_pair`); the full-size pair is CIFAR-100 -> CIFAR-10.

The probe and fine-tuning live in :mod:`ies.experiments.linear_probe` and :mod:`ies.experiments.finetune`; their
public names
are re-exported here.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import pandas as pd
import torch
from torch import nn

from ..data.datasets import ArrayDataset, load_dataset
from ..models.zoo import build_model
from ..training.config import Config
from ..training.loop import RunResult, train
from . import stats
from .finetune import FineTuneConfig, FineTuneResult, accuracy, fine_tune, replace_head
from .linear_probe import (
    DEFAULT_L2_GRID,
    ProbeConfig,
    ProbeResult,
    extract_features,
    final_linear,
    fit_logistic,
    fit_probe,
    linear_probe,
    logistic_objective,
)

__all__ = [
    "DEFAULT_L2_GRID", "METRICS", "PAIRS", "PAPER_TRANSFER", "FineTuneConfig", "FineTuneResult", "ProbeConfig",
    "ProbeResult", "TransferRun", "Verdict", "accuracy", "claim_verdict", "extract_features", "final_linear",
    "fine_tune", "fit_logistic", "fit_probe", "linear_probe", "load_pair", "logistic_objective",
    "method_differences", "method_table", "replace_head", "split_classes",
    "transfer_experiment",
]

#: Named source -> target pairs for :func:`load_pair`.
PAIRS = ("mnist1d-split", "cifar100-cifar10", "cifar10-cifar100")

#: Metrics of one row of :func:`transfer_experiment` that :func:`method_table` aggregates.
METRICS = ("source_accuracy", "backprop_saved", "pretrain_seconds", "probe_accuracy", "finetune_accuracy")

#: The setting the paper's "+1.5 %" transfer gain comes from (its transfer tables: 1 epoch of the probe).
PAPER_TRANSFER = ("a linear probe (only the head trained, Adam, 1 epoch) on ImageNet-1k-pretrained ResNet-101 "
                  "and DenseNet-121, mean of 6 gains over CIFAR-10, CIFAR-100 and Caltech-101")


# ---------------------------------------------------------------------------------------------- data
def split_classes(data: ArrayDataset, classes: Sequence[int], name: str | None = None) -> ArrayDataset:
    """The samples of ``data`` whose label is in ``classes``, relabelled ``0 .. len(classes)-1``.

    Class ``classes[j]`` becomes label ``j``; samples keep their order; train and test are both
    filtered. ``mean``/``std`` (image normalisation) are kept.
    """
    classes = [int(c) for c in classes]
    if not classes or len(set(classes)) != len(classes):
        raise ValueError(f"classes must be a non-empty list of distinct labels, got {classes}")
    bad = [c for c in classes if not 0 <= c < data.num_classes]
    if bad:
        raise ValueError(f"classes {bad} are not labels of {data.name} (0 .. {data.num_classes - 1})")
    relabel = torch.full((data.num_classes,), -1, dtype=torch.int64)
    relabel[torch.tensor(classes)] = torch.arange(len(classes))

    def pick(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        new = relabel[y]
        keep = new >= 0
        return x[keep], new[keep]

    x_train, y_train = pick(data.x_train, data.y_train)
    x_test, y_test = pick(data.x_test, data.y_test)
    if y_train.numel() == 0 or y_test.numel() == 0:
        raise ValueError(f"{data.name} has no {'training' if y_train.numel() == 0 else 'test'} sample of classes "
                         f"{classes}")
    if name is None:
        name = f"{data.name}[{','.join(map(str, classes))}]"
    return ArrayDataset(x_train, y_train, x_test, y_test, len(classes), name, data.mean, data.std)


def load_pair(pair: str, data_dir: str = "", size: int = 0) -> tuple[ArrayDataset, ArrayDataset]:
    """A ``(source, target)`` pair by name (see :data:`PAIRS`).

    - ``mnist1d-split``: MNIST-1D (``size`` samples generated, 0 = 5000), source = classes 0-4,
      target = classes 5-9 relabelled 0-4. Offline; the two tasks share the signal family
      (templates, shifts, noise) but no class.
    - ``cifar100-cifar10`` / ``cifar10-cifar100``: the two CIFAR sets through torchvision
      (``size`` keeps the first ``size`` training samples of each, 0 = all).
    """
    if pair == "mnist1d-split":
        data = load_dataset("mnist1d", data_dir or None, size)
        return split_classes(data, range(0, 5)), split_classes(data, range(5, 10))
    if pair in ("cifar100-cifar10", "cifar10-cifar100"):
        src, dst = pair.split("-")
        return load_dataset(src, data_dir or None, size), load_dataset(dst, data_dir or None, size)
    raise ValueError(f"unknown pair {pair!r}: use one of {PAIRS}")


# ---------------------------------------------------------------------------------------------- protocol
@dataclass
class TransferRun:
    """Everything about one (method, seed) of :func:`transfer_experiment`, for a closer look: the table
    ``row``, the pretraining run (``None`` for ``scratch``), the pretrained ``model``, the linear-probe
    and the fine-tuning results."""

    row: dict
    pretrain: RunResult | None
    model: nn.Module
    probe: ProbeResult
    finetune: FineTuneResult


def transfer_experiment(
    cfg: Config,
    source: ArrayDataset,
    target: ArrayDataset,
    seeds: Sequence[int] = (0, 1, 2),
    *,
    probe: ProbeConfig = ProbeConfig(),  # noqa: B008 (frozen, immutable)
    finetune: FineTuneConfig = FineTuneConfig(),  # noqa: B008
    scratch: bool = False,
    progress: bool = True,
    on_run: Callable[[TransferRun], None] | None = None,
) -> pd.DataFrame:
    """Pretrain on ``source`` with the baseline and with IES, then linear-probe and fine-tune on ``target``.

    For each seed ``s``: ``ies.train(cfg.replace(seed=s, threshold=0), dataset=source)`` (baseline)
    and ``ies.train(cfg.replace(seed=s), dataset=source)`` (IES, ``cfg.threshold`` must be > 0), same
    epochs; each pretrained model is then measured by :func:`linear_probe` and :func:`fine_tune` on
    ``target`` (both with seed ``s``, so the two methods see the same validation split, head
    initialisation and batch order). ``scratch=True`` adds a third method, ``scratch``: the same
    architecture freshly initialised (seed ``s``), probed and fine-tuned the same way: the reference
    that says how much pretraining helps at all.

    Returns one row per (method, seed): ``method``, ``seed``, ``source_accuracy`` (final test accuracy
    on the source), ``backprop_saved`` (excluded sample-epochs / (N x epochs)), ``pretrain_seconds``,
    ``probe_accuracy``, ``probe_l2`` (the chosen strength), ``finetune_accuracy``, ``finetune_seconds``.
    ``on_run`` is called with a :class:`TransferRun` as each row is made (keep what you need: the
    models of every run are not kept).
    """
    if cfg.threshold <= 0 or cfg.selector != "ies":
        raise ValueError("transfer_experiment needs an IES configuration: selector='ies' and threshold > 0")
    if not seeds:
        raise ValueError("seeds must not be empty")
    rows = []
    for seed in seeds:
        seed = int(seed)
        runs = {m: train(cfg.replace(seed=seed, threshold=t, progress=progress), dataset=source)
                for m, t in (("baseline", 0.0), ("ies", cfg.threshold))}
        models = {m: (r.model, r) for m, r in runs.items()}
        if scratch:
            torch.manual_seed(seed)
            model = build_model(cfg.model, tuple(source.x_train.shape[1:]), source.num_classes)
            models["scratch"] = (model.to(next(runs["baseline"].model.parameters()).device), None)
        for method, (model, run) in models.items():
            p = linear_probe(model, target, batch_size=probe.batch_size, l2_grid=probe.l2_grid,
                             val_fraction=probe.val_fraction, seed=seed, max_iter=probe.max_iter,
                             tol=probe.tol)
            ft = fine_tune(model, target, finetune, seed=seed, progress=progress)
            nan = float("nan")
            row = {
                "method": method, "seed": seed,
                "source_accuracy": run.metrics["test_accuracy"] if run else nan,
                "backprop_saved": run.metrics["backprop_saving"] if run else nan,
                "pretrain_seconds": run.metrics["wall_time_s"] if run else nan,
                "probe_accuracy": p.test_accuracy, "probe_l2": p.l2,
                "finetune_accuracy": ft.test_accuracy, "finetune_seconds": ft.seconds,
            }
            rows.append(row)
            if on_run is not None:
                on_run(TransferRun(row, run, model, p, ft))
    return pd.DataFrame(rows)


# ---------------------------------------------------------------------------------------------- tables
def method_table(df: pd.DataFrame, metrics: Sequence[str] = METRICS) -> pd.DataFrame:
    """Mean and standard deviation over seeds of each metric, one row per method (columns
    ``(metric, "mean")``, ``(metric, "std")``, then ``("n_seeds", "")``); methods in the order they appear."""
    metrics = [m for m in metrics if m in df]
    order = list(dict.fromkeys(df["method"]))
    table = df.groupby("method", sort=False)[metrics].agg(["mean", "std"]).reindex(order)
    table[("n_seeds", "")] = df.groupby("method", sort=False)["seed"].nunique().reindex(order)
    return table


def method_differences(
    df: pd.DataFrame, metric: str, method: str = "ies", reference: str = "baseline"
) -> pd.Series:
    """``metric`` of ``method`` minus that of ``reference``, per seed (seeds that have both):
    :func:`ies.experiments.stats.paired_differences` over the ``method`` column."""
    return stats.paired_differences(df, metric, method, reference, by="method")




@dataclass
class Verdict:
    """The paired comparison of one metric, IES - baseline, over seeds (see :func:`claim_verdict`).

    ``mean``, ``std``: of the per-seed differences; ``ci_low``, ``ci_high``: the two-sided confidence
    interval of their mean (:func:`ies.experiments.stats.interval`); ``wins``: seeds where IES is ahead;
    ``verdict``: the word of :func:`ies.experiments.stats.verdict` (bound 0); ``supports``: that verdict as
    ``True`` (supported) / ``False`` (not supported) / ``None`` (inconclusive or not run);
    ``text``: one sentence."""

    metric: str
    mean: float
    std: float
    ci_low: float
    ci_high: float
    n: int
    wins: int
    claimed: float
    supports: bool | None
    text: str = field(repr=False)
    verdict: str = stats.NOT_RUN
    why: str = ""
    """:func:`ies.experiments.stats.explain` of the interval against 0: what the seeds could decide."""


_HOW = {
    stats.SUPPORTED: "support the claim: the whole {pct} interval is above 0",
    stats.NOT_SUPPORTED: "contradict the claim: IES is worse, the whole {pct} interval is below 0",
    stats.WITHIN_NOISE: "neither support nor contradict the claim: the {pct} interval contains 0",
    stats.FEW_SEEDS: "cannot be judged, only illustrated: a verdict needs at least 3 seeds",
    stats.NOT_RUN: "cannot be judged: no seed has both methods",
}


def claim_verdict(
    df: pd.DataFrame, metric: str = "probe_accuracy", claimed: float = 0.015, confidence: float = 0.95,
    n_test: int | None = None,
) -> Verdict:
    """Do the runs of ``df`` support the claim that IES pretraining transfers better (by about ``claimed``)?

    The per-seed difference IES - baseline of ``metric`` (:func:`method_differences`), its ``confidence``
    interval (:func:`ies.experiments.stats.interval`) and the one verdict rule
    (:func:`ies.experiments.stats.verdict`, bound 0:
    *IES is better*). The default metric is the linear probe's accuracy, the paper's measure
    (:data:`PAPER_TRANSFER`); for another metric the text says that the paper did not measure it.
    ``text`` gives the difference, the interval, the verdict and whether ``claimed`` lies in the interval;
    ``why`` what the seeds could decide (:func:`ies.experiments.stats.explain`). With ``n_test`` (the target's
    test samples) the spread is floored at the binomial noise of the two methods' mean accuracy
    (:func:`ies.experiments.stats.binomial_floor`).
    """
    diff = method_differences(df, metric)
    floor = 0.0
    if n_test and len(diff):
        sides = pd.to_numeric(df.loc[df["method"].isin(["baseline", "ies"]), metric], errors="coerce")
        floor = stats.binomial_floor(float(sides.mean()), int(n_test))
    iv = stats.interval(diff, confidence, floor)
    word = stats.verdict(iv, 0.0)
    supports = {stats.SUPPORTED: True, stats.NOT_SUPPORTED: False}.get(word)
    wins = int((diff > 0).sum())
    pct = f"{100 * confidence:g} %"
    interval = f" ({pct} interval {100 * iv.low:+.2f} .. {100 * iv.high:+.2f})" if iv.n > 1 else ""
    inside = ""
    if iv.n > 1:
        inside = f"; the claimed {100 * claimed:+.1f} is {'inside' if iv.low <= claimed <= iv.high else 'outside'} " \
                 "the interval"
    paper = f"the paper reports about {100 * claimed:+.1f} points for {PAPER_TRANSFER}"
    if metric != "probe_accuracy":
        paper += f" (it did not measure {metric.replace('_', ' ')}: not a like-for-like comparison)"
    text = (f"{metric.replace('_', ' ')}: IES - baseline = {100 * iv.mean:+.2f} points{interval} over {iv.n} "
            f"seed(s), IES ahead in {wins} of {iv.n}; {paper}. Our runs {_HOW[word].format(pct=pct)} "
            f"[{word}]{inside}.")
    return Verdict(metric, iv.mean, iv.std, iv.low, iv.high, iv.n, wins, claimed, supports, text, word,
                   stats.explain(iv, 0.0))
