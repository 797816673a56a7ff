"""Lines per module of ``ies/`` and its longest functions, measured with ``ast``; prints JSON.

    python benchmarks/code_size.py            # the 10 largest modules and functions
    python benchmarks/code_size.py --check    # exit 1 if a module is over 400 lines or a function over 80

The limits are the project's (issue 11): small files, functions that read at once.
"""

from __future__ import annotations

import argparse
import ast
import json
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "ies"
MAX_MODULE_LINES, MAX_FUNCTION_LINES = 400, 80


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


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--top", type=int, default=10)
    p.add_argument("--check", action="store_true", help="fail when a limit is broken")
    args = p.parse_args(argv)
    modules, functions = measure()
    top = lambda d: dict(sorted(d.items(), key=lambda kv: -kv[1])[: args.top])  # noqa: E731
    over = {k: v for k, v in modules.items() if v > MAX_MODULE_LINES}
    over |= {k: v for k, v in functions.items() if v > MAX_FUNCTION_LINES}
    print(json.dumps({"modules": top(modules), "functions": top(functions), "total_lines": sum(modules.values()),
                      "over_limits": over}, indent=2))
    return 1 if args.check and over else 0


if __name__ == "__main__":
    sys.exit(main())
