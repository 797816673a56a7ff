"""Every dotted name ``ies.x.y`` that the README, the notebooks and their guides, and the package's docstrings and
comments name is importable: a module, or an attribute of one."""

from __future__ import annotations

import importlib
import io
import re
import tokenize
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NAME = re.compile(r"(?<![\w./-])ies(?:\.[A-Za-z_]\w*)+")


def resolves(name: str) -> bool:
    """``name`` is a module of the package, or attributes of the longest module prefix that imports."""
    parts = name.split(".")
    for k in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:k]))
        except ImportError:
            continue
        for part in parts[k:]:
            if not hasattr(obj, part):
                return False
            obj = getattr(obj, part)
        return True
    return False


def prose(path: Path) -> str:
    """A markdown file whole; of a python file, its strings and comments (code may name a variable ``ies``)."""
    text = path.read_text()
    if path.suffix != ".py":
        return text
    tokens = tokenize.generate_tokens(io.StringIO(text).readline)
    return "\n".join(t.string for t in tokens if t.type in (tokenize.STRING, tokenize.COMMENT))


def named(text: str) -> set[str]:
    return {n for n in NAME.findall(text) if not n.endswith((".py", ".csv", ".json", ".md"))}


def test_the_finder_reads_docstrings_and_knows_a_broken_name(tmp_path):
    f = tmp_path / "m.py"
    f.write_text('"""See :func:`ies.train` and :mod:`ies.nowhere.thing`."""\nies = {}\nies.items()\n')
    assert named(prose(f)) == {"ies.train", "ies.nowhere.thing"}
    assert resolves("ies.train") and resolves("ies.method.tracker.MasteryTracker")
    assert not resolves("ies.nowhere.thing") and not resolves("ies.method.tracker.NoSuchThing")


def test_every_named_ies_path_resolves():
    files = [ROOT / "README.md", *ROOT.glob("notebooks/*.md"), *ROOT.glob("notebooks/*.ipynb"),
             *ROOT.glob("benchmarks/*.md"), *(ROOT / "ies").rglob("*.py")]
    broken = {}
    for path in files:
        for name in named(prose(path)):
            if not resolves(name):
                broken.setdefault(name, []).append(str(path.relative_to(ROOT)))
    assert broken == {}
