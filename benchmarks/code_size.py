"""Lines per layer and per module of ``ies/``, its longest functions, and how many of the package's modules
an import loads; measured with ``ast`` and a fresh interpreter; prints JSON.

    python benchmarks/code_size.py                 # this tree
    python benchmarks/code_size.py --package DIR/ies   # another checkout (e.g. an older commit, for a before/after)

A layer is a folder directly under ``ies/`` (a module directly in ``ies/`` counts as ``top``). The import
counts run ``from ies import MasteryTracker`` and ``ies.train`` with ``DIR`` first on ``sys.path``.
"""

from __future__ import annotations

import argparse
import ast
import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "ies"


def measure(package: Path = PACKAGE) -> tuple[dict[str, int], dict[str, int]]:
    """``{module: lines}`` and ``{module:function: lines}`` (nested functions and methods included)."""
    modules, functions = {}, {}
    for path in sorted(package.rglob("*.py")):
        name = str(path.relative_to(package.parent))
        text = path.read_text()
        modules[name] = len(text.splitlines())
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                functions[f"{name}:{node.name}"] = node.end_lineno - node.lineno + 1
    return modules, functions


def layers(modules: dict[str, int]) -> dict[str, dict[str, int]]:
    """``{layer: {"modules": count, "lines": total}}``."""
    count, lines = Counter(), Counter()
    for name, n in modules.items():
        parts = Path(name).parts
        layer = parts[1] if len(parts) > 2 else "top"
        count[layer] += 1
        lines[layer] += n
    return {k: {"modules": count[k], "lines": lines[k]} for k in sorted(count)}


def loaded(package: Path, statement: str) -> int:
    """How many modules of the package ``statement`` loads in a fresh interpreter."""
    code = f"import sys; sys.path.insert(0, {str(package.parent)!r})\n{statement}\n" \
           "print(sum(m == 'ies' or m.startswith('ies.') for m in sys.modules))"
    return int(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--top", type=int, default=10)
    p.add_argument("--package", type=Path, default=PACKAGE)
    args = p.parse_args(argv)
    modules, functions = measure(args.package)
    top = lambda d: dict(sorted(d.items(), key=lambda kv: -kv[1])[: args.top])  # noqa: E731
    print(json.dumps({"layers": layers(modules), "modules": top(modules), "functions": top(functions),
                      "total_lines": sum(modules.values()),
                      "loaded_by_tracker": loaded(args.package, "from ies import MasteryTracker"),
                      "loaded_by_train": loaded(args.package, "import ies; ies.train")}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
