"""The module's closing table: every verdict the course notebooks computed, read from their ``metrics.json``.

Each notebook writes its results to ``metrics.json`` in its ``OUTPUT_DIR``. When the notebooks ran into one
folder (``python -m ies notebooks`` does that; by hand, the default ``runs/NN_name`` folders do too),
:func:`module_verdicts` gathers, notebook by notebook, the claim, our verdict and our evidence. Nothing in it
is written in advance: a notebook that did not run contributes nothing and is listed as missing.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path

import pandas as pd

from ..experiments import stats

#: The fields of one claim of a notebook's ``metrics.json`` ``claims_table`` (:func:`claim`).
CLAIM_FIELDS = ("claim", "verdict", "seeds", "effect", "low", "high", "unit", "evidence", "why")


def claim(text: str, verdict: str, *, seeds: int, effect: float = math.nan, low: float = math.nan,
          high: float = math.nan, unit: str = "pt", evidence: str = "", why: str = "") -> dict:
    """One row of a notebook's ``claims_table`` (its ``metrics.json``), the module's closing table reads it.

    ``text``: the claim as a sentence; ``verdict``: a word of :mod:`ies.experiments.stats` (or
    ``budget not reached``); ``seeds``: the seeds it rests on (below :data:`ies.experiments.stats.MIN_SEEDS`
    it must be an illustration); ``effect``, ``low``, ``high``: the mean difference and its 95 % interval
    in ``unit``; ``evidence``: our numbers; ``why``: the computed sentence of
    :func:`ies.experiments.stats.explain` (what the run could decide)."""
    if seeds < stats.MIN_SEEDS and stats.decided(verdict):
        raise ValueError(f"claim {text!r}: a verdict ({verdict}) from {seeds} seed(s); it needs at least "
                         f"{stats.MIN_SEEDS}")
    def number(x: float | None) -> float | None:  # JSON has no NaN: a missing number is null
        return None if x is None or not math.isfinite(x) else float(x)

    return {"claim": text, "verdict": verdict, "seeds": int(seeds), "effect": number(effect), "low": number(low),
            "high": number(high), "unit": unit, "evidence": evidence, "why": why}


def claim_from_interval(text: str, iv: stats.Interval, bound: float = 0.0, *, scale: float = 100.0,
                        unit: str = "pt", evidence: str = "") -> dict:
    """:func:`claim` of the one verdict rule on ``iv`` against ``bound``, in ``unit`` (``scale`` times the
    fractions of ``iv``), with :func:`ies.experiments.stats.explain` as ``why``."""
    return claim(text, stats.verdict(iv, bound), seeds=iv.n, effect=iv.mean * scale, low=iv.low * scale,
                 high=iv.high * scale, unit=unit, evidence=evidence or iv.pm(scale, unit),
                 why=stats.explain(iv, bound, scale, unit))

COLUMNS = ["notebook", "claim", "our verdict", "our evidence"]
"""Columns of :func:`module_verdicts`'s table."""


def _training(m: dict) -> list[tuple[str, str, str]]:
    best = m.get("best_accuracy_difference_points", float("nan"))
    return [("IES saves back-propagation at about the same best accuracy (one seed)", "illustration (one seed)",
             f"saved {m['backprop_saving']:.1%}, best accuracy {best:+.2f} pt")]


def _ablations(m: dict) -> list[tuple[str, str, str]]:
    evidence = m.get("claims_evidence", {})
    return [(c, v, evidence.get(c, "see notebook 04, section 6")) for c, v in m.get("claims", {}).items()]


def _sharpness(m: dict) -> list[tuple[str, str, str]]:  # "verdict: evidence" strings
    return [(c, v.split(":")[0], v.partition(": ")[2]) for c, v in m.get("verdicts", {}).items()]


def _transfer(m: dict) -> list[tuple[str, str, str]]:
    what = {"probe_accuracy": "transfer: linear probe after IES pretraining is more accurate (paper: about +1.5)",
            "finetune_accuracy": "transfer: fine-tuning after IES pretraining is more accurate (beyond the paper)"}
    rows = []
    for metric, v in m.get("verdict", {}).items():
        span = f"{100 * v['mean_difference']:+.2f} pt (95 % interval {100 * v['ci_low']:+.2f} .. " \
               f"{100 * v['ci_high']:+.2f}, {v['n_seeds']} seeds)"
        rows.append((what.get(metric, metric), v["verdict"], span))
    return rows


def _peers(m: dict) -> list[tuple[str, str, str]]:
    return [(f"at {r['budget']}: {r['claim']}", r["verdict"], r["difference"]) for r in m.get("verdicts", [])]


def _open_questions(m: dict) -> list[tuple[str, str, str]]:
    evidence = m.get("claims_evidence", {})
    return [(c, v, evidence.get(c, "see notebook 08")) for c, v in m.get("claims", {}).items()]


READERS: dict[str, Callable[[dict], list[tuple[str, str, str]]]] = {
    "03_training": _training, "04_ablations": _ablations, "05_sharpness": _sharpness,
    "06_transfer": _transfer, "07_peers": _peers, "08_open_questions": _open_questions,
}
"""Notebook folder name -> reader of its ``metrics.json`` into ``(claim, verdict, evidence)`` rows."""


def module_verdicts(folder: str | Path) -> tuple[pd.DataFrame, list[str]]:
    """The verdicts of every notebook of :data:`READERS` that ran into ``folder`` (``folder/NN_name/metrics.json``).

    A notebook's ``claims_table`` (rows of :func:`claim`) is read as it is; a ``metrics.json`` without one
    goes through its reader of :data:`READERS`. Returns the table (columns :data:`COLUMNS` and
    :data:`CLAIM_FIELDS`' ``seeds``, ``effect``, ``low``, ``high``, ``unit``, ``why``; one row per claim, in
    notebook order) and the names of the notebooks with no ``metrics.json`` there."""
    rows, missing = [], []
    for name, read in READERS.items():
        path = Path(folder) / name / "metrics.json"
        if not path.exists():
            missing.append(name)
            continue
        metrics = json.loads(path.read_text())
        if "claims_table" in metrics:
            rows += [{"notebook": name[:2], "our verdict": c["verdict"], "our evidence": c.get("evidence", ""),
                      **{k: c.get(k) for k in CLAIM_FIELDS if k not in ("verdict", "evidence")}}
                     for c in metrics["claims_table"]]
        else:
            rows += [dict(zip(COLUMNS, (name[:2], *row), strict=True)) for row in read(metrics)]
    columns = [*COLUMNS, "seeds", "effect", "low", "high", "unit", "why"]
    return pd.DataFrame(rows, columns=columns), missing


def decided_share(table: pd.DataFrame) -> float:
    """The share of the table's claims that are decided (``supported`` or ``not supported``); NaN for none."""
    if not len(table):
        return math.nan
    return float(table["our verdict"].isin(stats.DECIDED).mean())


def tally_text(table: pd.DataFrame) -> str:
    """``2 supported, 1 not supported, 3 inconclusive: 3 of 6 decided (50 %)``; ``no claims`` for none."""
    if not len(table):
        return "no claims"
    counts = tally(table)
    order = ["supported", "not supported", "inconclusive", "illustration", "budget not reached", "not run"]
    words = sorted(counts, key=lambda w: order.index(w) if w in order else len(order))
    n_decided = int(table["our verdict"].isin(stats.DECIDED).sum())
    return (", ".join(f"{counts[w]} {w}" for w in words)
            + f": {n_decided} of {len(table)} decided ({100 * decided_share(table):.0f} %)")


def tally(table: pd.DataFrame) -> dict[str, int]:
    """How many claims got each verdict (the words before any parenthesis: ``supported``, ...)."""
    return table["our verdict"].str.split(" [(]", regex=True).str[0].value_counts().to_dict()
