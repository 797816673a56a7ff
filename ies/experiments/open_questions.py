"""The experiments of notebook 08 (the paper's open questions): the settings, the sweep points, the
per-run table and the verdicts, so that the notebook only narrates and plots.

Four questions, each a *section* of settings run over the same seeds (runs of one seed start from the same
weights, see the same data order and, with a data transform, the same transformed data):

- ``noise``: the baseline and IES under label noise (does IES exclude the noisy samples? does conventional
  early stopping fire before anything is mastered?), next to the same pair on clean data;
- ``long_tail`` and ``subgroup``: the baseline, IES and IES with a per-class (per-group) cap on the
  excluded share, and a random control with exactly the capped run's per-epoch budget (equal compute);
- ``architecture``: IES and the baseline with the small transformer and with the CNN, on the same data.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from ..training.config import Config
from . import stats
from .sweep import run_id, run_sweep
from .sweep.cache import read_json

Setting = tuple[str, dict[str, Any]]  # (section, overrides of the base configuration)


def settings(*, noise_rate: float = 0.2, noise_type: str = "symmetric", imbalance: float = 10.0,
             subgroup_share: float = 0.1, subgroup_attribute: str = "noise", cap: float = 0.1,
             transformer_lr: float = 0.03, twins: Iterable[str] = ("long_tail", "subgroup"),
             level_threshold: float = 0.1) -> dict[str, Setting]:
    """``label -> (section, overrides)`` of every setting. ``threshold=0.0`` marks a baseline; the cap
    settings use ``class_cap=cap`` (by class for the long tail, by subgroup for the subgroup); ``twins``:
    the sections whose capped setting gets a matched random control (``random @ cap``), built by
    :func:`points`. The architecture section compares the transformer (SGD at ``transformer_lr``) with the
    base model's ``clean`` runs, on the same data. The ``levels`` section (label noise, where the losses
    plateau at different levels: fitted samples low, unfitted noisy ones high) runs N = 2 and the loss
    rule's order N = 0 at one threshold ``level_threshold`` (0: no such section)."""
    noise = {"label_noise": float(noise_rate), "noise_type": noise_type}
    tail = {"imbalance": float(imbalance)}
    group = {"subgroup_share": float(subgroup_share), "subgroup_attribute": subgroup_attribute}
    vit = {"model": "transformer", "lr": float(transformer_lr)}
    out = {
        "clean · baseline": ("noise", {"threshold": 0.0}),
        "clean · IES": ("noise", {}),
        "noisy · baseline": ("noise", {**noise, "threshold": 0.0}),
        "noisy · IES": ("noise", noise),
        "long tail · baseline": ("long_tail", {**tail, "threshold": 0.0}),
        "long tail · IES": ("long_tail", tail),
        "long tail · IES + cap": ("long_tail", {**tail, "class_cap": float(cap)}),
        "subgroup · baseline": ("subgroup", {**group, "threshold": 0.0}),
        "subgroup · IES": ("subgroup", group),
        "subgroup · IES + cap": ("subgroup", {**group, "class_cap": float(cap), "cap_by": "subgroup"}),
        "transformer · baseline": ("architecture", {**vit, "threshold": 0.0}),
        "transformer · IES": ("architecture", vit),
    }
    if level_threshold:
        at = f"noisy δ={level_threshold:g}"  # the context of the label: the data and the threshold
        out[f"{at} · N=2"] = ("levels", {**noise, "threshold": float(level_threshold)})
        out[f"{at} · N=0"] = ("levels", {**noise, "threshold": float(level_threshold), "order": 0})
    for section, prefix in (("long_tail", "long tail"), ("subgroup", "subgroup")):
        if section in twins:
            capped = out[f"{prefix} · IES + cap"][1]
            plain = {k: v for k, v in capped.items() if k not in ("class_cap", "cap_by")}
            out[f"{prefix} · random @ cap"] = (section, {**plain, "selector": "random", "random_budget": "@cap"})
    return out


def points(table: Mapping[str, Setting], seeds: Sequence[int]) -> tuple[list[dict[str, Any]], dict[str, str]]:
    """The sweep points (every setting with every seed, ``seed`` set in each) and ``run_id -> label``.
    A random control's ``random_budget="@cap"`` becomes the id of its section's capped run of the same seed."""
    out, label_of = [], {}
    for label, (_, overrides) in table.items():
        for seed in seeds:
            o = {**overrides, "seed": int(seed)}
            if o.get("random_budget") == "@cap":
                capped_label = label.replace("random @ cap", "IES + cap")
                o["random_budget"] = "@" + run_id({**table[capped_label][1], "seed": int(seed)})
            out.append(o)
            label_of[run_id(o)] = label
    return out, label_of


def run_settings(base: Config, points: list[dict[str, Any]], output: str | Path, *, jobs: int = 1,
                 rerun: bool = False) -> pd.DataFrame:
    """Run the sweep ``points`` over ``base`` into ``output`` and return the results table of
    :func:`ies.experiments.sweep.run_sweep`: with ``jobs > 1`` that many processes, with ``jobs = 1`` every run
    in this process (``in_process``), which on one or two CPU cores is the faster way for many short runs."""
    return run_sweep(base, points=points, output=output, jobs=jobs, rerun=rerun, progress=False, in_process=jobs == 1)


def run_table(results: pd.DataFrame, output: str | Path, label_of: Mapping[str, str],
              table: Mapping[str, Setting]) -> pd.DataFrame:
    """One row per finished run: ``label``, ``section``, ``seed``, ``run_id``, the accuracies and savings
    of its ``metrics.json`` and its ``groups`` headline figures (NaN where a run has none)."""
    rows = []
    for r in results[results["status"].isin(("done", "cached"))].itertuples():
        label = label_of.get(r.run_id)
        if label is None:
            continue
        metrics = read_json(Path(output).expanduser() / r.run_id / "metrics.json")
        row = {"label": label, "section": table[label][0], "seed": int(r.seed), "run_id": r.run_id}
        for key in ("test_accuracy", "best_test_accuracy", "backprop_saving", "compute_saving", "num_test"):
            row[key] = metrics.get(key, math.nan)
        row.update(metrics.get("groups", {}))
        rows.append(row)
    return pd.DataFrame(rows)


#: The verdict of a claim whose every seed gives exactly the bound (e.g. both sides all zero): a tie.
TIE = "inconclusive (an exact tie)"


def claim(runs: pd.DataFrame, text: str, metric: str, a: str, b: str, bound: float = 0.0, *,
          scale: float = 100.0, unit: str = "pt", n_test: int | None = None,
          confidence: float = 0.95) -> dict[str, Any]:
    """The claim "``metric`` of ``a`` minus that of ``b`` is above ``bound``", judged over the seeds by
    :func:`ies.experiments.stats.verdict` (paired by seed, 95 % t interval; below 3 seeds an illustration).
    With ``n_test`` (the test samples an accuracy of ``metric`` is measured on: the test split, or a group's
    share of it) the spread is floored at the binomial noise of the two sides' mean
    (:func:`ies.experiments.stats.binomial_floor`). Every seed exactly at the bound is a tie (:data:`TIE`),
    not seed noise.

    Returns one row of the claims table: ``claim, metric, a, b, difference``
    (:meth:`~ies.experiments.stats.Interval.pm`), ``seeds, effect, low, high`` (``scale``-d, in ``unit``),
    ``bound`` (``scale``-d), ``verdict`` and ``why`` (:func:`ies.experiments.stats.explain`)."""
    diffs = stats.paired_differences(runs, metric, a, b, by="label", pair="seed")
    floor = 0.0
    if n_test and len(diffs):
        sides = pd.to_numeric(runs.loc[runs["label"].isin([a, b]), metric], errors="coerce")
        floor = stats.binomial_floor(float(sides.mean()), int(n_test))
    iv = stats.interval(diffs, confidence, floor)
    word, why = stats.verdict(iv, bound), stats.explain(iv, bound, scale, unit)
    if iv.n >= stats.MIN_SEEDS and bool((diffs == bound).all()):
        word = TIE
        why = (f"every one of the {iv.n} seeds gives exactly {bound * scale:+.2f} {unit} (both sides equal, e.g. "
               "all zero): there is no difference to judge")
    return {"claim": text, "metric": metric, "a": a, "b": b, "difference": iv.pm(scale, unit), "seeds": iv.n,
            "effect": iv.mean * scale, "low": iv.low * scale, "high": iv.high * scale, "unit": unit,
            "bound": bound * scale, "verdict": word, "why": why}


def early_stop_epoch(values: Sequence[float], patience: int) -> tuple[int, int]:
    """``(stop, best)``: conventional early stopping on a validation curve ``values`` (higher is better,
    one value per epoch): training stops at the first epoch (1-based) that ends ``patience`` epochs
    without a new best, and keeps the weights of the ``best`` epoch; ``stop`` is ``len(values)`` when it
    never fires. Ties do not count as improvements."""
    if patience < 1:
        raise ValueError(f"patience must be >= 1, got {patience}")
    best_value, best = -math.inf, 0
    for epoch, value in enumerate(values, start=1):
        if value > best_value:
            best_value, best = value, epoch
        elif epoch - best >= patience:
            return epoch, best
    return len(values), best


def first_exclusion_epoch(n_mastered: Sequence[int]) -> int:
    """The first epoch (1-based) at whose end the selector excluded any sample (0: never), from a
    history's ``n_mastered`` column."""
    return next((epoch for epoch, n in enumerate(n_mastered, start=1) if n > 0), 0)
