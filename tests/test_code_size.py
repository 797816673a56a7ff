"""The size limits of the package (small files, functions that read at once), measured with ast."""

import importlib.util
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "code_size.py"


def load():
    spec = importlib.util.spec_from_file_location("code_size", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_measure_counts_lines_and_functions(tmp_path):
    code_size = load()
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "a.py").write_text("def f():\n    x = 1\n    return x\n\n\nclass C:\n    def g(self):\n        pass\n")
    modules, functions = code_size.measure(pkg)
    assert modules == {"pkg/a.py": 8}
    assert functions == {"pkg/a.py:f": 3, "pkg/a.py:g": 2}


def test_no_module_over_400_lines_and_no_function_over_80():
    code_size = load()
    modules, functions = code_size.measure()
    assert {m: n for m, n in modules.items() if n > code_size.MAX_MODULE_LINES} == {}
    assert {f: n for f, n in functions.items() if n > code_size.MAX_FUNCTION_LINES} == {}
