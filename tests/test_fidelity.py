"""What the course says about the paper is what the paper says.

The paper's numbers, each with its setting, are in ``notebooks/paper-facts.md`` (a copy of the project's
shared ``paper-facts.md``). Two checks over the committed text:

1. **Known wrong claims** (found in review, issue 15) must not come back. Each entry of :data:`WRONG` is a
   regular expression and the reason it is wrong; every cell of every notebook, ``README.md`` and every
   ``.py`` file of ``ies/`` (subpackages too) is scanned, sentence by sentence.
2. **Every specific number attributed to the paper is in paper-facts.md** (a heuristic):

   - the text is cut into sentences: paragraphs and list items first, then at ``.``/``?``/``!`` followed by
     a space ("Fig. 5", "e.g." and the like do not end a sentence);
   - a sentence *attributes to the paper* when it names it (:data:`ATTRIBUTION`: "the paper", "the
     authors", "Table 1", "Fig. 5", ...);
   - in such a sentence every *specific* number (one with a decimal point, or 10 and above) must equal, as
     a number, one that appears in paper-facts.md, and every range ``a-b`` must appear there as a range;
     small integers (orders, epochs of a look-back, notebook numbers) are too common to tell anything;
   - checked: the markdown cells of the notebooks, the code cells' comments that name the paper and the
     string literals of each statement with a string that names it (:func:`code_claims`), and the prose
     of ``README.md`` (fenced code left out). Numbers of our own runs are computed by
     code cells, so they are never literals in this text.
"""

from __future__ import annotations

import ast
import io
import re
import tokenize
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parent.parent
FACTS = ROOT / "notebooks" / "paper-facts.md"
SHARED_FACTS = ROOT.parent / "shared" / "paper-facts.md"
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
PACKAGE = sorted((ROOT / "ies").rglob("*.py"))

#: ``(pattern, why it is wrong)``; a pattern is searched in every sentence (case-insensitive).
WRONG = [
    (r"40\s*[-–]\s*55", "not in the paper: Table 1 gives 54.6 % (ResNet-18, CIFAR-10), the summary 10-55 %"),
    (r"left implicit", "the paper has a random control: Random Remove in Fig. 5"),
    (r"^(?!.*probe)(?=.*\b1\.5\b)(?=.*fine-?tun)", "the paper's +1.5 is a linear probe, not fine-tuning"),
    (r"fine-tuned on new data sets", "the paper trains only the head (a linear probe)"),
    (r"within (about )?0\.2 (points|pt)", "the paper's delta robustness: within about 2 % (Fig. 5)"),
    (r"the paper: 0\.2", "the paper's delta robustness: within about 2 % (Fig. 5)"),
    (r"^(?!.*random)(?=.*10\s*[-–]\s*50\s*%)(?=.*(back-?prop|mini-batch|instances|saved))",
     "the paper's summary is 10-55 % of mini-batches saved"),
    (r"sharpness faster", "the paper's Fig. 4 gives sharpness at the end of training, not a rate"),
]
#: A sentence naming one of these attributes its numbers to the paper.
ATTRIBUTION = re.compile(r"\bthe paper\b|\bpaper's\b|\bthe authors\b|\bauthors'|\btable \d|\bfig\. ?\d|yuan et al",
                         re.IGNORECASE)
NUMBER = re.compile(r"(?<![\w.])(\d+(?:\.\d+)?)(?:\s*[-–]\s*(\d+(?:\.\d+)?))?(?![\w.]*\d)")
NOT_AN_END = re.compile(r"\b(Fig|Figs|Tab|e\.g|i\.e|vs|cf|approx|resp)\.\s", re.IGNORECASE)


def sentences(text: str) -> list[str]:
    """Paragraphs and list items, then sentences, each on one line."""
    pieces = re.split(r"\n\s*\n|\n\s*(?:[-*]|\d+\.)\s+|<br>|\|", text)
    out = []
    for piece in pieces:
        flat = NOT_AN_END.sub(lambda m: m.group(0).rstrip() + "\0", " ".join(piece.split()))
        out += [s.strip().replace("\0", " ") for s in re.split(r"(?<=[.!?])\s+", flat) if s.strip()]
    return out


def code_claims(source: str) -> list[str]:
    """The text of a code cell that speaks about the paper: each comment that names it, and all string
    literals of each top-level statement in which one string names it (e.g. a dict of the paper's numbers
    keyed by their settings). A cell that is not plain Python (a ``%pip`` line) gives nothing."""
    try:
        tree = ast.parse(source)
        comments = [t.string for t in tokenize.generate_tokens(io.StringIO(source).readline)
                    if t.type == tokenize.COMMENT]
    except (SyntaxError, tokenize.TokenError):
        return []
    out = [c.lstrip("# ") for c in comments if ATTRIBUTION.search(c)]
    for statement in tree.body:
        strings = [n.value for n in ast.walk(statement) if isinstance(n, ast.Constant) and isinstance(n.value, str)]
        if any(ATTRIBUTION.search(v) for v in strings):
            out += [f"The paper: {v}" for v in strings]
    return out


def readme_prose() -> str:
    return re.sub(r"```.*?```", "", (ROOT / "README.md").read_text(), flags=re.DOTALL)


def texts() -> list[tuple[str, str]]:
    """``(where, text)`` of everything scanned for the known wrong claims."""
    out = [("README.md", (ROOT / "README.md").read_text())]
    for path in NOTEBOOKS:
        nb = nbformat.read(path, as_version=4)
        out += [(f"{path.name} cell {cell.get('id')}", cell.source) for cell in nb.cells]
    out += [(str(path.relative_to(ROOT)), path.read_text()) for path in PACKAGE]
    return out


def attributed_texts() -> list[tuple[str, str]]:
    """``(where, text)`` whose sentences naming the paper must quote only paper-facts.md."""
    out = [("README.md", readme_prose())]
    for path in NOTEBOOKS:
        for cell in nbformat.read(path, as_version=4).cells:
            where = f"{path.name} cell {cell.get('id')}"
            if cell.cell_type == "markdown":
                out.append((where, cell.source))
            elif cell.cell_type == "code":
                out.append((where, "\n\n".join(code_claims(cell.source))))
    return out


def fact_numbers() -> tuple[set[float], set[tuple[float, float]]]:
    """Every number of paper-facts.md, and every range ``a-b`` in it."""
    text = FACTS.read_text()
    numbers, ranges = set(), set()
    for match in re.finditer(r"\d+(?:\.\d+)?", text):
        numbers.add(float(match.group(0)))
    for match in re.finditer(r"(\d+(?:\.\d+)?)\s*[-–]\s*(\d+(?:\.\d+)?)", text):
        ranges.add((float(match.group(1)), float(match.group(2))))
    return numbers, ranges


def specific(value: str) -> bool:
    return "." in value or float(value) >= 10


def unsupported_numbers(sentence: str, numbers: set[float], ranges: set[tuple[float, float]]) -> list[str]:
    """The specific numbers (and ranges) of ``sentence`` that paper-facts.md lacks."""
    bad = []
    for match in NUMBER.finditer(sentence):
        low, high = match.group(1), match.group(2)
        if high is not None:
            if (specific(low) or specific(high)) and (float(low), float(high)) not in ranges:
                bad.append(match.group(0))
        elif specific(low) and float(low) not in numbers:
            bad.append(low)
    return bad


def test_the_facts_are_in_the_repository():
    assert FACTS.exists(), "notebooks/paper-facts.md: the paper's numbers the course may quote"
    text = FACTS.read_text()
    assert "54.6" in text and "10-55" in text and "linear probe" in text


@pytest.mark.skipif(not SHARED_FACTS.exists(), reason="no shared paper-facts.md next to this checkout")
def test_the_facts_are_the_shared_ones():
    assert FACTS.read_text() == SHARED_FACTS.read_text(), "notebooks/paper-facts.md differs from ../shared"


def test_the_heuristics_on_known_sentences():
    numbers, ranges = fact_numbers()
    assert sentences("On CIFAR-10 (Fig. 5) it saves 40-55 %. Next one.") == [
        "On CIFAR-10 (Fig. 5) it saves 40-55 %.", "Next one."]
    assert unsupported_numbers("Table 1: 54.6 % saved, the summary 10-55 %", numbers, ranges) == []
    assert unsupported_numbers("the paper saves 40-55 % and 47.3 %", numbers, ranges) == ["40-55", "47.3"]
    assert unsupported_numbers("delta 1e-3, N = 2, 3 runs", numbers, ranges) == []
    wrong = [pattern for pattern, _ in WRONG]
    assert re.search(wrong[2], "Fine-tuned, they reach +1.5 % higher accuracy", re.IGNORECASE)
    assert not re.search(wrong[2], "The +1.5 is a linear probe; we also fine-tune", re.IGNORECASE)
    assert re.search(wrong[6], "it reduces the back-propagated instances by 10-50 %", re.IGNORECASE)
    assert not re.search(wrong[6], "Random Remove (10-50 %) is drawn too", re.IGNORECASE)


@pytest.mark.parametrize("pattern, why", WRONG, ids=[w for _, w in WRONG])
def test_no_known_wrong_claim(pattern, why):
    found = [f"{where}: {s[:160]}" for where, text in texts() for s in sentences(text)
             if re.search(pattern, s, re.IGNORECASE)]
    assert not found, f"{why}:\n" + "\n".join(found)


def test_numbers_attributed_to_the_paper_are_in_the_facts():
    numbers, ranges = fact_numbers()
    found = []
    for where, text in attributed_texts():
        for s in sentences(text):
            if ATTRIBUTION.search(s):
                bad = unsupported_numbers(s, numbers, ranges)
                if bad:
                    found.append(f"{where}: {bad} in: {s[:200]}")
    assert not found, "numbers attributed to the paper that notebooks/paper-facts.md lacks:\n" + "\n".join(found)


def test_notebooks_compare_best_accuracy_with_the_paper():
    """The paper reports the best test accuracy over epochs: notebooks 03 and 04 say so and show ours."""
    for name in ("03_training", "04_ablations"):
        text = "\n".join(c.source for c in nbformat.read(ROOT / "notebooks" / f"{name}.ipynb", as_version=4).cells)
        assert "best test accuracy" in text.lower() and "best_test_accuracy" in text, name
