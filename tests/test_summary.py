"""The module's closing table reads every notebook's verdicts from its metrics.json, exactly."""

import json

import pytest

from ies.course.summary import (
    COLUMNS,
    READERS,
    claim,
    claim_from_interval,
    decided_share,
    module_verdicts,
    tally,
    tally_text,
)
from ies.experiments import stats


def write(folder, name, metrics):
    (folder / name).mkdir()
    (folder / name / "metrics.json").write_text(json.dumps(metrics))


def test_module_verdicts_reads_each_notebook_in_order(tmp_path):
    write(tmp_path, "08_open_questions", {"claims": {"less saved under noise": "supported"},
                                          "claims_evidence": {"less saved under noise": "+0.10 ± 0.02"}})
    write(tmp_path, "03_training", {"backprop_saving": 0.365, "best_accuracy_difference_points": 0.1})
    write(tmp_path, "05_sharpness", {"verdicts": {"IES is flatter": "inconclusive (sign test): 3 of 5 probes"}})
    write(tmp_path, "06_transfer", {"verdict": {"probe_accuracy": {"mean_difference": 0.015, "ci_low": -0.01,
                                                                   "ci_high": 0.04, "n_seeds": 5,
                                                                   "verdict": "inconclusive"}}})
    write(tmp_path, "07_peers", {"verdicts": [{"budget": "2x", "claim": "ies beats infobatch",
                                               "difference": "+0.50 ± 0.20", "verdict": "supported"}]})
    table, missing = module_verdicts(tmp_path)
    assert list(table.columns) == [*COLUMNS, "seeds", "effect", "low", "high", "unit", "why"]
    assert missing == ["04_ablations"]
    assert table[COLUMNS].values.tolist() == [
        ["03", "IES saves back-propagation at about the same best accuracy (one seed)", "illustration (one seed)",
         "saved 36.5%, best accuracy +0.10 pt"],
        ["05", "IES is flatter", "inconclusive (sign test)", "3 of 5 probes"],
        ["06", "transfer: linear probe after IES pretraining is more accurate (paper: about +1.5)", "inconclusive",
         "+1.50 pt (95 % interval -1.00 .. +4.00, 5 seeds)"],
        ["07", "at 2x: ies beats infobatch", "supported", "+0.50 ± 0.20"],
        ["08", "less saved under noise", "supported", "+0.10 ± 0.02"],
    ]
    assert tally(table) == {"inconclusive": 2, "supported": 2, "illustration": 1}


def test_module_verdicts_of_an_empty_folder(tmp_path):
    table, missing = module_verdicts(tmp_path)
    assert table.empty and list(table.columns)[:4] == COLUMNS
    assert missing == list(READERS)


def test_a_claims_table_is_read_as_it_is_and_counted(tmp_path):
    rows = [claim("a holds", "supported", seeds=3, effect=1.5, low=0.5, high=2.5, evidence="e", why="w"),
            claim_from_interval("b holds", stats.interval([0.01, -0.01, 0.0]), 0.0),
            claim("c holds", "illustration (fewer than 3 seeds)", seeds=2)]
    write(tmp_path, "04_ablations", {"claims_table": rows, "claims": {"ignored": "supported"}})
    table, _ = module_verdicts(tmp_path)
    assert table["claim"].tolist() == ["a holds", "b holds", "c holds"]
    assert table.loc[0, ["notebook", "our verdict", "seeds", "effect", "low", "high", "why"]].tolist() == [
        "04", "supported", 3, 1.5, 0.5, 2.5, "w"]
    assert table.loc[1, "our verdict"] == stats.WITHIN_NOISE and "contains the bound" in table.loc[1, "why"]
    assert tally_text(table) == "1 supported, 1 inconclusive, 1 illustration: 1 of 3 decided (33 %)"
    assert decided_share(table) == pytest.approx(1 / 3)


def test_a_verdict_from_fewer_than_three_seeds_is_refused():
    with pytest.raises(ValueError, match="at least 3"):
        claim("x", "supported", seeds=2)
