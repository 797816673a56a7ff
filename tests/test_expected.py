"""The instructor's expected results from reference runs (ies.course.expected, --expected)."""

import json

import pandas as pd
import pytest

from ies.course import expected
from ies.course.runner import main


def _run(folder, verdicts, effects, seconds):
    rows = [{"claim": c, "verdict": v, "seeds": 3, "effect": e, "unit": "pt"}
            for (c, v), e in zip(verdicts, effects, strict=True)]
    (folder / "04_ablations").mkdir(parents=True)
    (folder / "04_ablations" / "metrics.json").write_text(json.dumps({"claims_table": rows}))
    (folder / "summary.txt").write_text("notebook  status  seconds  key metrics\n"
                                        f"04_ablations  ok  {seconds}  runs=33\n")
    return folder


def _three(tmp_path):
    return [_run(tmp_path / "ref0", [("a", "supported"), ("b", "supported")], [1.0, 0.5], 100.0),
            _run(tmp_path / "ref1", [("a", "supported"), ("b", "inconclusive (within seed noise)")], [2.0, 0.1], 110.0),
            _run(tmp_path / "ref2", [("a", "supported"), ("b", "not supported")], [1.5, -0.3], 90.0)]


def test_reference_table_sets_stable_findings_apart(tmp_path):
    table = expected.reference_table(_three(tmp_path)).set_index("claim")
    assert table.loc["a", "stable"] and not table.loc["b", "stable"]
    assert (table.loc["a", "effect_min"], table.loc["a", "effect_max"]) == (1.0, 2.0)
    assert table.loc["b", "verdicts"] == "supported | inconclusive (within seed noise) | not supported"
    with pytest.raises(ValueError, match="at least 3"):
        expected.reference_table(_three(tmp_path / "x")[:2])


def test_expected_section_is_rewritten_between_its_markers(tmp_path):
    runs = _three(tmp_path)
    guide = tmp_path / "INSTRUCTORS.md"
    guide.write_text(f"# Guide\n\nbefore\n\n{expected.START}\nold numbers\n{expected.END}\n\nafter\n")
    assert main(["--notebooks", str(tmp_path / "nb"), "--expected", *map(str, runs)]) == 2  # no notebooks there
    nb = tmp_path / "nb"
    nb.mkdir()
    (nb / "01_x.ipynb").write_text("{}")
    guide.rename(nb / "INSTRUCTORS.md")
    assert main(["--notebooks", str(nb), "--expected", *map(str, runs)]) == 0
    text = (nb / "INSTRUCTORS.md").read_text()
    assert "old numbers" not in text and text.startswith("# Guide\n\nbefore") and text.rstrip().endswith("after")
    assert "- 04: a: **supported** (effect +1.00 .. +2.00 pt, 3 seeds)" in text
    assert "- 04: b: **supported | inconclusive (within seed noise) | not supported**" in text
    assert "| 04_ablations | 100 s | 110 s | 90 s |" in text and "1 of 2 claims got the same verdict" in text
    assert main(["--notebooks", str(nb), "--expected", *map(str, runs)]) == 0  # idempotent
    assert (nb / "INSTRUCTORS.md").read_text() == text
    records = pd.DataFrame(json.loads((runs[0] / "expected_results.json").read_text()))
    assert records["claim"].tolist() == ["a", "b"]
    assert main(["--notebooks", str(nb), "--expected", str(runs[0]), str(runs[1])]) == 2  # fewer than 3 runs
