"""The module's closing table: every verdict the course notebooks computed, read from their ``metrics.json``.

Each notebook writes its results to ``metrics.json`` in its ``OUTPUT_DIR``. When the notebooks ran into one
folder (``python -m ies notebooks`` does that; by hand, the default ``runs/NN_name`` folders do too),
:func:`module_verdicts` gathers, notebook by notebook, the claim, our verdict and our evidence. Nothing in it
is written in advance: a notebook that did not run contributes nothing and is listed as missing.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pandas as pd

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

    Returns the table (columns :data:`COLUMNS`, one row per claim, in notebook order) and the names of the
    notebooks with no ``metrics.json`` there."""
    rows, missing = [], []
    for name, read in READERS.items():
        path = Path(folder) / name / "metrics.json"
        if not path.exists():
            missing.append(name)
            continue
        rows += [(name[:2], *row) for row in read(json.loads(path.read_text()))]
    return pd.DataFrame(rows, columns=COLUMNS), missing


def tally(table: pd.DataFrame) -> dict[str, int]:
    """How many claims got each verdict (the words before any parenthesis: ``supported``, ...)."""
    return table["our verdict"].str.split(" [(]", regex=True).str[0].value_counts().to_dict()
