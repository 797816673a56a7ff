"""The instructor's expected results: ranges over reference runs of the teaching profile, written by a command.

A teacher needs to know which findings a class will see whatever the seed and which depend on it. Run the
notebooks three or more times with other seeds, e.g.::

    python -m ies notebooks --seed 0 --output runs/ref0
    python -m ies notebooks --seed 10 --output runs/ref1
    python -m ies notebooks --seed 20 --output runs/ref2
    python -m ies notebooks --expected runs/ref0 runs/ref1 runs/ref2   # rewrites INSTRUCTORS.md's section

:func:`reference_table` reads every run's closing table (:func:`ies.course.summary.module_verdicts`) and,
per claim, the verdicts and the range of the effect over the runs; a claim is **stable** when every run gave
it the same verdict, **seed-sensitive** otherwise. :func:`expected_markdown` writes both lists, with the
notebooks' run times; :func:`update_section` puts it between the markers of ``INSTRUCTORS.md``.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from .summary import module_verdicts

#: The markers around the generated section of ``INSTRUCTORS.md``.
START, END = "<!-- expected results: start (python -m ies notebooks --expected) -->", "<!-- expected results: end -->"
#: The fewest reference runs a range is written from.
MIN_RUNS = 3


def reference_table(run_dirs: Sequence[str | os.PathLike]) -> pd.DataFrame:
    """One row per claim of the reference runs: ``notebook``, ``claim``, ``runs`` (in how many it appears),
    ``verdicts`` (each run's, in order, joined by ``" | "``), ``stable`` (one verdict in every run),
    ``effect_min`` / ``effect_max`` (the range of the mean effect), ``unit`` and ``seeds`` (the most a run used)."""
    if len(run_dirs) < MIN_RUNS:
        raise ValueError(f"--expected needs at least {MIN_RUNS} reference runs, got {len(run_dirs)}")
    tables = []
    for k, folder in enumerate(run_dirs):
        if not Path(folder).is_dir():
            raise ValueError(f"--expected: {folder} is not a folder of a notebooks run")
        table, _ = module_verdicts(folder)
        tables.append(table.assign(run=k))
    every = pd.concat(tables, ignore_index=True)
    if every.empty:
        raise ValueError("--expected: the reference runs hold no verdicts (did notebooks 03-08 run?)")
    rows = []
    for (notebook, claim), group in every.groupby(["notebook", "claim"], sort=False):
        words = group["our verdict"].tolist()
        effects = pd.to_numeric(group["effect"], errors="coerce").dropna()
        rows.append({"notebook": notebook, "claim": claim, "runs": len(group), "verdicts": " | ".join(words),
                     "stable": len(group) == len(run_dirs) and len(set(words)) == 1,
                     "effect_min": float(effects.min()) if len(effects) else math.nan,
                     "effect_max": float(effects.max()) if len(effects) else math.nan,
                     "unit": next((u for u in group["unit"] if isinstance(u, str) and u), ""),
                     "seeds": int(pd.to_numeric(group["seeds"], errors="coerce").max())
                     if group["seeds"].notna().any() else 0})
    return pd.DataFrame(rows)


def run_seconds(run_dirs: Sequence[str | os.PathLike]) -> pd.DataFrame:
    """Per notebook, its seconds in each reference run (``summary.txt`` of ``python -m ies notebooks``)."""
    columns = {}
    for k, folder in enumerate(run_dirs):
        path = Path(folder) / "summary.txt"
        seconds = {}
        for line in path.read_text().splitlines()[1:] if path.exists() else []:
            parts = line.split()
            if len(parts) >= 3 and parts[1] == "ok":
                seconds[parts[0]] = float(parts[2])
        columns[f"run {k}"] = seconds
    return pd.DataFrame(columns)


def _range(row) -> str:
    if not math.isfinite(row.effect_min):
        return ""
    unit = f" {row.unit}" if row.unit else ""
    if math.isclose(row.effect_min, row.effect_max, abs_tol=5e-3):
        return f"effect {row.effect_min:+.2f}{unit}"
    return f"effect {row.effect_min:+.2f} .. {row.effect_max:+.2f}{unit}"


def expected_markdown(table: pd.DataFrame, seconds: pd.DataFrame, labels: Sequence[str]) -> str:
    """The generated section: the reference runs, the notebooks' run times, the stable findings, the
    seed-sensitive ones (each with its verdicts and the range of its effect)."""
    n = len(labels)
    lines = [f"Written by `python -m ies notebooks --expected` from {n} reference runs of the teaching profile "
             f"({', '.join(f'`{x}`' for x in labels)}). A class's run should land inside these ranges; a verdict "
             "listed as seed-sensitive may come out either way.", ""]
    if len(seconds):
        total = seconds.sum()
        lines += ["| notebook | " + " | ".join(seconds.columns) + " |",
                  "| --- |" + " --- |" * len(seconds.columns)]
        lines += [f"| {name} | " + " | ".join("" if pd.isna(v) else f"{v:.0f} s" for v in row) + " |"
                  for name, row in seconds.iterrows()]
        lines += ["| all | " + " | ".join(f"{v:.0f} s" for v in total) + " |", ""]
    decided = table["verdicts"].str.split(" | ", regex=False).map(
        lambda ws: sum(w in ("supported", "not supported") for w in ws) / max(len(ws), 1))
    lines.append(f"{int(table['stable'].sum())} of {len(table)} claims got the same verdict in every run; "
                 f"on average {100 * decided.mean():.0f} % of a claim's verdicts were decided.")
    for title, part in (("Stable findings (the same verdict in every reference run)", table[table["stable"]]),
                        ("Seed-sensitive findings (the verdict changed between reference runs)",
                         table[~table["stable"]])):
        lines += ["", f"**{title}**", ""]
        if part.empty:
            lines.append("- none")
        for row in part.itertuples():
            word = row.verdicts.split(" | ")[0] if row.stable else row.verdicts
            extra = ", ".join(x for x in (_range(row), f"{row.seeds} seeds" if row.seeds else "") if x)
            lines.append(f"- {row.notebook}: {row.claim}: **{word}**" + (f" ({extra})" if extra else ""))
    return "\n".join(lines) + "\n"


def update_section(path: str | os.PathLike, text: str) -> bool:
    """Replace what lies between :data:`START` and :data:`END` in ``path`` by ``text`` (the markers are
    added at the end when missing); returns whether the file changed."""
    path = Path(path)
    old = path.read_text()
    block = f"{START}\n{text.rstrip()}\n{END}"
    if START in old and END in old:
        head, rest = old.split(START, 1)
        new = head + block + rest.split(END, 1)[1]
    else:
        new = old.rstrip() + "\n\n" + block + "\n"
    if new != old:
        path.write_text(new)
    return new != old


def write_expected(run_dirs: Sequence[str | os.PathLike], instructors: str | os.PathLike) -> tuple[bool, Path]:
    """The whole command: the table of ``run_dirs`` written into ``instructors``' section (and next to it
    as ``expected_results.json`` in the first run's folder); returns whether the file changed and the json."""
    table = reference_table(run_dirs)
    text = expected_markdown(table, run_seconds(run_dirs), [Path(d).name for d in run_dirs])
    changed = update_section(instructors, text)
    out = Path(run_dirs[0]) / "expected_results.json"
    out.write_text(json.dumps(table.to_dict(orient="records"), indent=1, default=str) + "\n")
    return changed, out
