"""Planning a sweep: grid expansion, readable run ids, matched random controls, two-stage order.

A sweep is the product of its ``grid`` axes plus extra ``points``; every run is a :class:`Run` whose
id lists its overrides in ``Config`` field order. A random control (``random_budget="@<run_id>"``, or
a path to another run's ``history.csv``) depends on exactly one reference run, which depends on
nothing: the order is two stages, references first, then their random controls.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import os
import re
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from ...training.config import Config, cast

#: Fields the sweep sets itself: they cannot be grid axes or point overrides.
SWEEP_FIELDS = ("output", "resume")

RandomControl = bool | Iterable[str | Mapping[str, Any]] | Callable[["PlannedRun"], bool]


def _fields() -> dict[str, dataclasses.Field]:
    return {f.name: f for f in dataclasses.fields(Config)}


@dataclasses.dataclass
class PlannedRun:
    """One planned run of a sweep.

    Attributes:
        run_id: folder name under the sweep's output, built from the overrides.
        setting: the run id without the seed (runs differing only in seed share it).
        overrides: the fields changed from the base configuration (values cast to the field types;
            ``random_budget`` may be ``"@<run_id>"``).
        config: the full configuration (``None`` if the overrides are invalid).
        error: why the configuration is invalid (empty when it is valid).
        depends_on: the run of this sweep whose ``history.csv`` is this run's ``random_budget``, if any.
        reusable: set by the executor: a run still to do that counts as cached if another process sharing
            the cache finishes it first.
    """

    run_id: str
    setting: str
    overrides: dict[str, Any]
    config: Config | None = None
    error: str = ""
    depends_on: str | None = None
    reusable: bool = False


def format_value(value: Any) -> str:
    """A value as it appears in a run id: ``0.001``, ``1e-05``, ``true``, a short string, or a hash."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:g}"
    text = str(value)
    if re.fullmatch(r"[\w.+-]{1,40}", text):
        return text
    return "h" + hashlib.sha1(text.encode()).hexdigest()[:8]


def run_id(overrides: Mapping[str, Any], *, drop: Iterable[str] = ()) -> str:
    """The readable, deterministic id of a run: ``key=value`` joined by ``_`` in ``Config`` field
    order, without the keys in ``drop`` and without a ``random_budget`` that names a sweep run
    (``@...``: ``selector=random`` already tells the run apart); ``base`` when nothing is left."""
    drop = set(drop)
    keys = [k for k in overrides if k not in drop
            and not (k == "random_budget" and str(overrides[k]).startswith("@"))]
    keys.sort(key=field_order)
    return "_".join(f"{k}={format_value(overrides[k])}" for k in keys) or "base"


def field_order(name: str) -> tuple[int, str]:
    """Sort key: ``Config`` field order, unknown names last (alphabetically)."""
    order = list(_fields())
    return (order.index(name) if name in order else len(order), name)


def setting_id(overrides: Mapping[str, Any]) -> str:
    """The id of a setting: :func:`run_id` without the seed (what seeds are averaged over)."""
    return run_id(_normalize(overrides), drop=("seed",))


def check_keys(keys: Iterable[str], what: str = "grid") -> None:
    """Raise a one-line ``ValueError`` for a key that is not a ``Config`` field (closest one
    suggested) or that the sweep sets itself; ``what`` names where the key came from."""
    for key in keys:
        if key in SWEEP_FIELDS:
            raise ValueError(f"{what} key {key!r}: {key} is set by the sweep, it cannot be an override")
        if key not in _fields():
            try:
                Config.from_dict({key: None})
            except ValueError as e:  # "unknown config field 'x' (did you mean 'y'?)"
                raise ValueError(f"{what} key {key!r}: {e}") from None


def expand(grid: Mapping[str, Iterable[Any]] | None = None,
           points: Iterable[Mapping[str, Any]] | None = None) -> list[dict[str, Any]]:
    """The override dicts of a sweep: the product of the ``grid`` axes, then each point crossed
    with the grid axes it does not set. Duplicates are dropped, the order is kept."""
    axes = {k: _as_list(v) for k, v in (grid or {}).items()}
    out: list[dict[str, Any]] = []
    if axes or not points:
        out += [dict(zip(axes, combo, strict=True)) for combo in itertools.product(*axes.values())]
    for point in points or ():
        free = {k: v for k, v in axes.items() if k not in point}
        for combo in itertools.product(*free.values()):
            out.append({**point, **dict(zip(free, combo, strict=True))})
    seen, unique = set(), []
    for o in out:
        key = json.dumps(_normalize(o), sort_keys=True, default=str)
        if key not in seen:
            seen.add(key)
            unique.append(o)
    return unique


def plan(base: Config | None, grid: Mapping[str, Iterable[Any]] | None = None,
         points: Iterable[Mapping[str, Any]] | None = None, *, output: str | os.PathLike = "runs/sweep",
         random_control: RandomControl = False) -> list[PlannedRun]:
    """The runs of a sweep: references first, then the random controls that depend on them.

    A grid axis that is not a ``Config`` field raises ``ValueError`` (every run would be invalid);
    a bad point only makes its own runs invalid (``config=None`` and ``error``).
    ``random_control``: ``True`` adds a matched random twin to every IES run that can exclude
    anything (``selector="ies"``, ``threshold > 0``); a list of settings (ids or override dicts)
    adds twins to the runs of those settings only; a callable decides per :class:`Run`."""
    check_keys(grid or {})
    base = base or Config()
    out = Path(output).expanduser().resolve()
    runs = _unique_ids([_make_run(base, o) for o in expand(grid, points)])
    if random_control:
        twins = [{**r.overrides, "selector": "random", "random_budget": f"@{r.run_id}"}
                 for r in runs if _wants_twin(r, random_control)]
        runs = _unique_ids(runs + [_make_run(base, o) for o in twins])
    ids = {r.run_id for r in runs}
    by_path = {str(out / r.run_id / "history.csv"): r.run_id for r in runs}
    for r in runs:
        if r.config is not None:
            _resolve_budget(r, out, ids, by_path)
    for r in runs:  # a reference must itself depend on nothing: depth 1
        ref = next((x for x in runs if x.run_id == r.depends_on), None)
        if ref is not None and ref.depends_on is not None:
            r.config, r.depends_on = None, None
            r.error = f"random_budget refers to {ref.run_id!r}, which is itself a random control"
    return [r for r in runs if r.depends_on is None] + [r for r in runs if r.depends_on is not None]


def _resolve_budget(r: PlannedRun, out: Path, ids: set[str], by_path: Mapping[str, str]) -> None:
    """Point ``r.config`` at its output folder and its ``random_budget`` at a real path;
    set ``r.depends_on`` when the budget is another run of this sweep."""
    budget = r.config.random_budget
    if budget.startswith("@"):
        ref = budget[1:]
        if ref not in ids:
            r.config, r.error = None, f"random_budget refers to {ref!r}, which is not a run of this sweep"
            return
        r.depends_on, budget = ref, str(out / ref / "history.csv")
    elif budget:
        budget = str(Path(budget).expanduser().resolve())
        r.depends_on = by_path.get(budget)
    if r.depends_on == r.run_id:
        r.config, r.error, r.depends_on = None, "random_budget refers to the run itself", None
        return
    r.config = r.config.replace(output=str(out / r.run_id), random_budget=budget)


def _make_run(base: Config, overrides: Mapping[str, Any]) -> PlannedRun:
    overrides = dict(overrides)
    try:
        check_keys(overrides, "point")
        overrides = _normalize(overrides, strict=True)
        config, error = base.replace(**overrides), ""
    except ValueError as e:
        config, error = None, str(e)
    return PlannedRun(run_id(overrides), run_id(overrides, drop=("seed",)), overrides, config, error)


def _normalize(overrides: Mapping[str, Any], strict: bool = False) -> dict[str, Any]:
    """Cast values to the field types (``"1e-3"`` and ``1e-3`` are the same point); with ``strict``
    a value that cannot be cast raises, otherwise it is kept as given."""
    fields, out = _fields(), {}
    for k, v in overrides.items():
        try:
            out[k] = cast(fields[k], v) if k in fields else v
        except ValueError:
            if strict:
                raise
            out[k] = v
    return out


def _wants_twin(run: PlannedRun, which: RandomControl) -> bool:
    cfg = run.config
    if cfg is None or cfg.selector != "ies" or cfg.threshold == 0:
        return False
    if which is True:
        return True
    if callable(which):
        return bool(which(run))
    wanted = {w if isinstance(w, str) else setting_id(w) for w in which}
    return run.setting in wanted


def _unique_ids(runs: list[PlannedRun]) -> list[PlannedRun]:
    """Runs whose ids collide (different overrides, same readable id) get a hash suffix."""
    counts: dict[str, int] = {}
    for r in runs:
        counts[r.run_id] = counts.get(r.run_id, 0) + 1
    for r in runs:
        if counts[r.run_id] > 1:
            digest = hashlib.sha1(json.dumps(r.overrides, sort_keys=True, default=str).encode()).hexdigest()[:8]
            r.run_id = f"{r.run_id}_{digest}"
            r.setting = f"{r.setting}_{digest}"
    return runs


def _as_list(values: Any) -> list[Any]:
    if isinstance(values, (str, bytes)) or not isinstance(values, Iterable):
        return [values]
    return list(values)
