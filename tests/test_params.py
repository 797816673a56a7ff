"""``ies.course.params.cast_params``: notebook parameters as their declared types, or one line naming the
parameter and the type; used by every course notebook (checked here with ``ast``), tried with papermill."""

from __future__ import annotations

import ast
from pathlib import Path

import nbformat
import pytest

from ies.course.params import ParameterError, cast_params, cast_value
from ies.course.runner import run_notebook

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))


@pytest.mark.parametrize(("value", "kind", "expected"), [
    ("5e-4", float, 5e-4), (3, float, 3.0), (" 0.25 ", float, 0.25), (1e-3, float, 1e-3),
    ("7", int, 7), (7.0, int, 7), ("7.0", int, 7), (-2, int, -2), ("12345678901234567890", int, 12345678901234567890),
    ("true", bool, True), ("No", bool, False), (1, bool, True), (0, bool, False), (True, bool, True), ("", bool, False),
    (5, str, "5"), ("cpu", str, "cpu"),
])
def test_cast_value(value, kind, expected):
    got = cast_value("X", value, kind)
    assert got == expected and type(got) is kind


@pytest.mark.parametrize(("value", "kind", "message"), [
    ("abc", float, "parameter THRESHOLD must be a float (e.g. 0.001), got 'abc'"),
    ("5.5", int, "parameter THRESHOLD must be an int (a whole number), got '5.5'"),
    (2.5, int, "parameter THRESHOLD must be an int (a whole number), got 2.5"),
    ("ten", int, "parameter THRESHOLD must be an int, got 'ten'"),
    (True, float, "parameter THRESHOLD must be a float, not a bool, got True"),
    (True, int, "parameter THRESHOLD must be an int, not a bool, got True"),
    ("maybe", bool, "parameter THRESHOLD must be a bool (True or False), got 'maybe'"),
    (None, float, "parameter THRESHOLD must be a float (e.g. 0.001), got None"),
])
def test_cast_value_names_the_parameter_and_the_type(value, kind, message):
    with pytest.raises(ParameterError) as info:
        cast_value("THRESHOLD", value, kind)
    assert str(info.value) == message


def test_cast_params_replaces_all_or_nothing():
    ns = {"SEED": "3", "THRESHOLD": "1e-3", "RESUME": "false", "OTHER": "untouched"}
    cast_params(ns, SEED=int, THRESHOLD=float, RESUME=bool)
    assert ns == {"SEED": 3, "THRESHOLD": 1e-3, "RESUME": False, "OTHER": "untouched"}
    bad = {"SEED": "3", "THRESHOLD": "abc"}
    with pytest.raises(ParameterError, match="THRESHOLD"):
        cast_params(bad, SEED=int, THRESHOLD=float)
    assert bad == {"SEED": "3", "THRESHOLD": "abc"}, "nothing half-written"
    with pytest.raises(ParameterError, match="no parameter EPOCHS"):
        cast_params({"SEED": 1}, SEED=int, EPOCHS=int)
    with pytest.raises(TypeError, match="list"):
        cast_params({"X": 1}, X=list)


def cast_call(nb) -> ast.Call:
    """The ``cast_params(globals(), ...)`` call of the cell after the parameters cell."""
    code = [c for c in nb.cells if c.cell_type == "code"]
    params = next(i for i, c in enumerate(code) if "parameters" in c.metadata.get("tags", []))
    calls = [n for n in ast.walk(ast.parse(code[params + 1].source))
             if isinstance(n, ast.Call) and getattr(n.func, "id", "") == "cast_params"]
    assert len(calls) == 1, "the derived-values cell casts the parameters with one cast_params call"
    return calls[0]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_every_notebook_casts_every_parameter_as_declared(path):
    nb = nbformat.read(path, as_version=4)
    cell = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
    declared = {n.target.id: n.annotation.id for n in ast.parse(cell.source).body}
    call = cast_call(nb)
    assert ast.unparse(call.args[0]) == "globals()"
    assert {k.arg: ast.unparse(k.value) for k in call.keywords} == declared


def test_papermill_bad_parameter_names_it(tmp_path):
    """``papermill ... -p THRESHOLD abc``: the notebook stops at the cast with one line naming THRESHOLD."""
    path = ROOT / "notebooks" / "02_mastery_criteria.ipynb"
    result = run_notebook(path, tmp_path, {"PROFILE": "smoke", "THRESHOLD": "abc"}, cwd=ROOT, progress=False)
    assert result.status == "failed"
    assert result.error.endswith("ParameterError: parameter THRESHOLD must be a float (e.g. 0.001), got 'abc'")
    assert not (tmp_path / path.stem / "metrics.json").exists()
