"""The package's floor plan: the layers contract of ``pyproject.toml`` holds (and breaking it fails), the
tracker loads no course dependency, and no module of ``ies`` takes part in an import cycle."""

from __future__ import annotations

import ast
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LINT = Path(sys.executable).with_name("lint-imports")
HEAVY = ("pandas", "matplotlib", "seaborn", "scipy", "tqdm", "torchvision", "mnist1d")


def lint(root: Path) -> subprocess.CompletedProcess:
    """``lint-imports`` on the tree at ``root`` (its ``pyproject.toml``, its ``ies/``), in a fresh process."""
    env = {**os.environ, "PYTHONPATH": str(root)}
    return subprocess.run([str(LINT), "--no-cache"], cwd=root, env=env, capture_output=True, text=True, timeout=120)


def test_the_contract_has_at_least_five_layers_and_holds():
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    contracts = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]
    layers = next(c for c in contracts if c["type"] == "layers")["layers"]
    assert len(layers) >= 5 and layers[-1] == "ies.method | ies.data | ies.models"
    result = lint(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Contracts: 1 kept, 0 broken." in result.stdout


@pytest.mark.parametrize("module, upward", [
    ("ies/method/criteria.py", "from ..training import config"),   # the method importing the loop
    ("ies/selectors/base.py", "from ..experiments import stats"),  # a selector importing the course's statistics
    ("ies/data/augment.py", "from ..models import layers"),        # two independent siblings
])
def test_an_upward_import_breaks_the_contract(tmp_path, module, upward):
    shutil.copytree(ROOT / "ies", tmp_path / "ies", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    path = tmp_path / module
    path.write_text(path.read_text() + f"\n{upward}  # noqa\n")
    result = lint(tmp_path)
    assert result.returncode == 1 and "layers BROKEN" in result.stdout, result.stdout + result.stderr


def loaded_modules(statement: str) -> list[str]:
    code = f"import json, sys\n{statement}\nprint(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    return json.loads(out.stdout)


def test_the_tracker_loads_the_method_alone():
    torch_alone = set(loaded_modules("import torch"))
    tracker = set(loaded_modules("from ies import MasteryTracker"))
    ours = sorted(m for m in tracker if m == "ies" or m.startswith("ies."))
    assert ours == ["ies", "ies.method", "ies.method.criteria", "ies.method.tracker"]
    # torch itself imports tqdm where it is installed (torch.hub); ies adds no heavy module on top of torch
    assert {m.split(".")[0] for m in tracker - torch_alone} & set(HEAVY) == set()
    assert {"pandas", "matplotlib", "seaborn", "scipy", "torchvision", "mnist1d"} & tracker == set()


def test_the_loop_stays_out_of_the_course():
    loaded = set(loaded_modules("import ies; ies.train"))
    assert not any(m.startswith(("ies.experiments", "ies.course", "ies.cli")) for m in loaded)
    assert {"matplotlib", "seaborn", "scipy", "papermill", "nbformat"} & loaded == set()


def imports_of(path: Path, module: str, modules: set[str]) -> set[str]:
    """The modules of ``ies`` that ``module`` (file ``path``) imports, anywhere in the file but under
    ``TYPE_CHECKING``; a package's own submodules (its ``__init__`` re-exporting them) do not count."""
    tree = ast.parse(path.read_text())
    is_pkg = path.name == "__init__.py"
    skip = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
            for n in ast.walk(node)}
    found = set()
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = module.split(".") if is_pkg else module.split(".")[:-1]
            base = base[: len(base) - node.level + 1] if node.level else []
            root = ".".join(base + ([node.module] if node.module else []))
            names = [root] + [f"{root}.{a.name}" for a in node.names]
        else:
            continue
        found |= {n for n in names if n in modules and n != module and not (is_pkg and n.startswith(module + "."))}
    return found


def package_graph() -> dict[str, set[str]]:
    files = {}
    for path in (ROOT / "ies").rglob("*.py"):
        name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
        files[name.removesuffix(".__init__")] = path
    return {m: imports_of(p, m, set(files)) for m, p in files.items()}


def test_no_import_cycle_among_the_modules():
    graph = package_graph()
    state: dict[str, int] = {}  # 1 on the path, 2 done
    cycles = []

    def visit(m: str, path: list[str]) -> None:
        state[m] = 1
        for n in sorted(graph[m]):
            if state.get(n) == 1:
                cycles.append(path[path.index(n):] + [n])
            elif n not in state:
                visit(n, path + [n])
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m, [m])
    assert cycles == []


def test_the_cycle_check_finds_a_cycle(tmp_path):
    a, b = tmp_path / "a.py", tmp_path / "b.py"
    a.write_text("def f():\n    from .b import g\n")  # a lazy import counts too
    b.write_text("from .a import f\n")
    assert imports_of(a, "ies.a", {"ies.a", "ies.b"}) == {"ies.b"}
    assert imports_of(b, "ies.b", {"ies.a", "ies.b"}) == {"ies.a"}


def test_at_most_eight_modules_at_the_top():
    top = sorted(p.name for p in (ROOT / "ies").glob("*.py"))
    assert len(top) <= 8, top


COURSE_ONLY = ("ies/course/", "ies/experiments/plotting.py", "ies/experiments/peers_report.py", "ies/cli.py")
"""The modules the ``course`` extra serves (figures, notebooks); the CLI imports the runner lazily."""


def third_party_imports(path: Path) -> set[str]:
    """Top-level names of the modules ``path`` imports that are neither ours nor the standard library's."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return {n for n in names if n != "ies" and n not in sys.stdlib_module_names}


def test_the_library_needs_only_its_core_dependencies():
    tomllib = pytest.importorskip("tomllib")
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    core = {d.split(">")[0].split("=")[0].split("[")[0].strip().replace("-", "_") for d in project["dependencies"]}
    needed = {}
    for path in (ROOT / "ies").rglob("*.py"):
        rel = str(path.relative_to(ROOT))
        if not rel.startswith(COURSE_ONLY):
            for name in third_party_imports(path) - core:
                needed.setdefault(name, []).append(rel)
    assert needed == {}
    assert {"matplotlib", "seaborn"} <= {d.split(">")[0] for d in project["optional-dependencies"]["course"]}
    method = [p for p in (ROOT / "ies" / "method").rglob("*.py")]
    assert set().union(*(third_party_imports(p) for p in method)) == {"torch"}
