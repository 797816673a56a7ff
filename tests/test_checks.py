"""The YOUR-CODE exercises and their checks (``ies.course.checks``).

Every course notebook has at least one cell tagged ``exercise`` followed by a cell calling a check. Here, in
this process: each exercise cell's solution passes its check, the student copy's blank of the same cell fails
it, and typical mistakes get their hint. (The notebooks' smoke runs run the same checks on the real runs:
``tests/test_notebooks.py`` for the solutions, ``tests/test_course.py`` for the student copies.)
"""

from __future__ import annotations

import ast
from pathlib import Path

import nbformat
import numpy as np
import pytest
import torch

import ies
from ies.course import checks
from ies.course import colab as course

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
CHECK_NAMES = {fn.__name__: ex for ex, fn in checks.CHECKS.items()}


def exercises(path: Path) -> list[tuple[nbformat.NotebookNode, list[tuple[str, str]]]]:
    """``[(exercise cell, [(check name, function name), ...])]``: each exercise cell and the checks the next
    code cell calls, with the name of the student's function each is given."""
    cells = nbformat.read(path, as_version=4).cells
    out = []
    for i, cell in enumerate(cells):
        if course.is_exercise(cell):
            after = next(c for c in cells[i + 1 :] if c.cell_type == "code")
            calls = [(n.func.id, n.args[0].id) for n in ast.walk(ast.parse(after.source))
                     if isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id in CHECK_NAMES]
            out.append((cell, calls))
    return out


ALL = [(p, j) for p in NOTEBOOKS for j in range(len(exercises(p)))]


def run_cell(source: str) -> dict:
    namespace = {"ies": ies, "torch": torch, "np": np}
    exec(compile(source, "exercise-cell", "exec"), namespace)
    return namespace


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_every_notebook_has_a_checked_exercise_with_difficulty_and_time(path):
    found = exercises(path)
    assert found, f"{path.name} has no cell tagged 'exercise'"
    cells = nbformat.read(path, as_version=4).cells
    for cell, calls in found:
        assert calls, f"{path.name}: the code cell after an exercise calls no check of ies.course.checks"
        intro = cells[cells.index(cell) - 1]
        assert intro.cell_type == "markdown" and "**Difficulty:**" in intro.source and " min" in intro.source
        blank = [ln for ln in course.blank_solution(cell.source).splitlines() if ln.strip()]
        solution = [ln for ln in cell.source.splitlines() if ln.strip() and not ln.strip().startswith("#")]
        assert 3 <= len(solution) - len(blank) + 1 <= 30, f"{path.name}: the student writes no real code"


@pytest.mark.parametrize(("path", "j"), ALL, ids=[f"{p.stem[:2]}-{j}" for p, j in ALL])
def test_solution_passes_and_blank_fails(path, j):
    cell, calls = exercises(path)[j]
    solved = run_cell(cell.source)
    blank = run_cell(course.blank_solution(cell.source))
    for check, fn in calls:
        good = getattr(checks, check)(solved[fn])
        assert good.ok, f"{path.name}: the solution fails {check}: {good}"
        assert "right" in str(good)
        bad = getattr(checks, check)(blank[fn])
        assert not bad.ok, f"{path.name}: the student copy's blank passes {check}"
        assert "not yet" in str(bad) and "Your function returned None" in bad.message
        assert checks.RESULTS[CHECK_NAMES[check]] is False


def test_the_student_copy_blanks_the_solution_and_keeps_the_check():
    path = NOTEBOOKS[0]
    nb = nbformat.read(path, as_version=4)
    copy, _ = course.student_copy(nb)
    sources = [c.source for c in copy.cells]
    for cell, _ in exercises(path):
        assert cell.source not in sources
        assert course.blank_solution(cell.source) in sources
        assert "# BEGIN SOLUTION" not in course.blank_solution(cell.source)
        after = [c.source for c in nb.cells][nb.cells.index(cell) + 1]
        assert after in sources, "the check cell stays in the student copy"


def test_blank_solution_markers():
    src = ("x = 1\ndef f(a):\n    \"\"\"doc\"\"\"\n    # BEGIN SOLUTION\n    b = a + 1\n    return b\n"
           "    # END SOLUTION\ny = f(2) * 3  # SOLUTION")
    assert course.blank_solution(src) == (
        "x = 1\ndef f(a):\n    \"\"\"doc\"\"\"\n    ...  # YOUR CODE HERE\ny = ...  # YOUR CODE HERE")
    ns = {}
    exec(course.blank_solution(src), ns)
    assert ns["f"](1) is None and ns["y"] is ...
    for broken in ("# BEGIN SOLUTION\nx = 1", "x = 1\n# END SOLUTION", "x = 1"):
        with pytest.raises(ValueError):
            course.blank_solution(broken)


# ---------------------------------------------------------------------- the hints name the mistake
def test_hints_for_typical_mistakes():
    def padded(h, n):
        return torch.cat([torch.zeros(*h.shape[:-1], n, dtype=h.dtype), torch.diff(h, n=n)], -1) if n else h

    assert "T - N entries" in checks.check_backward_difference(padded).message
    assert "sign is flipped" in checks.check_backward_difference(
        lambda h, n: h if n == 0 else (-1) ** n * torch.diff(h, n=n)).message
    assert "sum" in checks.check_official_rule(
        lambda h, d, w=3: torch.diff(h, n=2).abs()[:, -w:].sum(1) < d).message
    assert "only the last" in checks.check_official_rule(lambda h, d, w=3: torch.diff(h, n=2).abs()[:, -1] < d).message
    assert "raised ZeroDivisionError" in checks.check_replay(lambda L, d: 1 / 0).message
    assert "forward pass" in checks.check_speedup_from_counts(lambda c, n: 1 / (sum(c) / (n * len(c)))).message
    from scipy import stats

    def z_interval(a, b, c=0.95):
        d = np.asarray(a) - np.asarray(b)
        half = stats.norm.ppf(0.5 + c / 2) * d.std(ddof=1) / np.sqrt(len(d))
        return d.mean() - half, d.mean() + half

    assert "Student's t" in checks.check_paired_interval(z_interval).message

    def gradient(model, loss_fn, x, y, v):
        return list(torch.autograd.grad(loss_fn(model(x), y), list(model.parameters())))

    assert "That is the gradient" in checks.check_hvp(gradient).message
    assert "backprop saving" in checks.check_compute_saving(lambda f, b, n: 1 - sum(b) / (n * len(b))).message
    assert "divide by all N" in checks.check_class_exclusion_share(
        lambda m, y, c: torch.bincount(y[m], minlength=c).double() / len(y)).message
    assert "NaN, not 0" in checks.check_class_exclusion_share(
        lambda m, y, c: torch.nan_to_num(torch.bincount(y[m], minlength=c) / torch.bincount(y, minlength=c))).message

    def own_stats(probe, x, y):
        x = (x - x.mean(0)) / x.std(0)
        return ((x @ probe.weight.T + probe.bias).argmax(1) == y).double().mean().item()

    message = checks.check_probe_accuracy(own_stats).message
    assert "own mean and std" in message or "right" in str(checks.check_probe_accuracy(own_stats))


def test_a_check_never_raises_and_write_metrics_reports_it(tmp_path):
    from ies.course.notebook import write_metrics

    checks.RESULTS.clear()
    assert not checks.check_hvp("not a function").ok
    assert not checks.check_replay(...).ok
    import json

    write_metrics(tmp_path, {"a": 1})
    assert json.loads((tmp_path / "metrics.json").read_text()) == {"a": 1, "exercises": {"05.1": False, "02.1": False}}
    checks.RESULTS.clear()
