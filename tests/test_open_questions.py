"""The experiment helpers of notebook 08: settings and sweep points, claims, early stopping."""

import math

import pandas as pd
import pytest

from ies import Config
from ies.experiments import open_questions as oq
from ies.experiments.sweep import run_id


def test_every_setting_is_a_valid_config_and_twins_point_at_their_capped_run():
    table = oq.settings(twins=("subgroup",))
    for _, overrides in table.values():
        Config(**{**overrides, "random_budget": "ref.csv"} if "random_budget" in overrides else overrides)
    pts, label_of = oq.points(table, [0, 1])
    assert len(pts) == 2 * len(table) and len(label_of) == len(pts)
    twins = [p for p in pts if p.get("selector") == "random"]
    assert [p["seed"] for p in twins] == [0, 1]
    for p in twins:
        ref = p["random_budget"][1:]
        assert label_of[ref] == "subgroup · IES + cap" and ref.endswith(f"seed={p['seed']}")
        assert "class_cap" not in p
    assert "long tail · random @ cap" not in table
    # the levels section: N = 2 and the loss rule's order N = 0 under noise at one threshold; 0 leaves it out
    assert table["noisy δ=0.1 · N=0"] == ("levels", {"label_noise": 0.2, "noise_type": "symmetric",
                                                      "threshold": 0.1, "order": 0})
    assert table["noisy δ=0.1 · N=2"][1]["threshold"] == 0.1 and "order" not in table["noisy δ=0.1 · N=2"][1]
    assert not any(s == "levels" for s, _ in oq.settings(level_threshold=0).values())


def test_claim_pairs_by_seed_and_uses_the_one_verdict_rule():
    runs = pd.DataFrame({"label": ["a", "a", "a", "b", "b", "b"], "seed": [0, 1, 2, 0, 1, 2],
                         "m": [0.5, 0.6, 0.7, 0.4, 0.5, 0.6]})
    row = oq.claim(runs, "a beats b", "m", "a", "b")
    assert row["verdict"] == "supported" and row["difference"] == "+10.00 pt [+10.00, +10.00] (3 seeds)"
    assert (row["seeds"], row["effect"], row["low"], row["high"], row["bound"]) == pytest.approx((3, 10, 10, 10, 0))
    assert "all of it above the bound +0.00 pt" in row["why"]
    assert oq.claim(runs, "b beats a", "m", "b", "a")["verdict"] == "not supported"
    two = oq.claim(runs[runs.seed < 2], "two", "m", "a", "b")
    assert two["verdict"] == "illustration (fewer than 3 seeds)" and two["seeds"] == 2
    # an accuracy measured on 100 test samples: the spread is floored at sqrt(p (1 - p) / 100), p the mean of
    # both sides (0.55): the half-width is t(0.975, 2) * 0.04975 / sqrt(3) = 12.36 pt
    floored = oq.claim(runs, "a beats b", "m", "a", "b", n_test=100)
    half = 4.302652729911275 * math.sqrt(0.55 * 0.45 / 100) / math.sqrt(3)
    assert floored["verdict"] == "inconclusive (within seed noise)"
    assert (floored["low"], floored["high"]) == pytest.approx((10 - 100 * half, 10 + 100 * half))
    # every seed exactly at the bound (both sides all zero): a tie, said as such
    zeros = runs.assign(m=0.0)
    tie = oq.claim(zeros, "a excludes more than b", "m", "a", "b")
    assert tie["verdict"] == oq.TIE and "every one of the 3 seeds gives exactly +0.00 pt" in tie["why"]


def test_early_stop_epoch_by_hand():
    curve = [0.1, 0.5, 0.4, 0.5, 0.45, 0.6, 0.59, 0.58]
    assert oq.early_stop_epoch(curve, 2) == (4, 2)  # no new best in epochs 3, 4 (a tie is not one)
    assert oq.early_stop_epoch(curve, 3) == (5, 2)
    assert oq.early_stop_epoch([0.1, 0.2, 0.3], 2) == (3, 3)  # never fires
    with pytest.raises(ValueError, match="^patience"):
        oq.early_stop_epoch(curve, 0)
    assert oq.first_exclusion_epoch([0, 0, 3, 0]) == 3 and oq.first_exclusion_epoch([0, 0]) == 0


def test_run_table_reads_metrics_and_group_headlines(tmp_path):
    overrides = {"threshold": 0.0, "seed": 0}
    rid = run_id(overrides)
    (tmp_path / rid).mkdir()
    (tmp_path / rid / "metrics.json").write_text(
        '{"test_accuracy": 0.8, "best_test_accuracy": 0.85, "backprop_saving": 0.0, "compute_saving": 0.0,'
        ' "num_test": 400, "groups": {"worst_class_test_accuracy": 0.5}}')
    results = pd.DataFrame({"run_id": [rid, "other"], "status": ["done", "failed"], "seed": [0, 0]})
    table = oq.run_table(results, tmp_path, {rid: "clean · baseline"}, oq.settings())
    assert table.to_dict("records") == [{
        "label": "clean · baseline", "section": "noise", "seed": 0, "run_id": rid, "test_accuracy": 0.8,
        "best_test_accuracy": 0.85, "backprop_saving": 0.0, "compute_saving": 0.0, "num_test": 400,
        "worst_class_test_accuracy": 0.5}]
    assert not math.isnan(table.test_accuracy[0])


def test_run_settings_in_process_runs_references_first_then_caches(tmp_path):
    base = Config(dataset="synthetic", dataset_size=600, model="mlp", epochs=6, threshold=0.05, lr=0.05,
                  progress=False, device="cpu", checkpoint_every=0, track_grad_norm=False)
    table = {"b": ("x", {"threshold": 0.0}), "c": ("x", {"class_cap": 0.3}),
             "r": ("x", {"selector": "random", "random_budget": "@cap"})}
    # the twin's capped run is looked up by label: name them as the settings() convention does
    table = {"s · baseline": table["b"], "s · IES + cap": table["c"], "s · random @ cap": table["r"]}
    pts, label_of = oq.points(table, [0])
    first = oq.run_settings(base, pts, tmp_path, jobs=1)
    assert first["status"].tolist() == ["done", "done", "done"]
    again = oq.run_settings(base, pts, tmp_path, jobs=1)
    assert again["status"].tolist() == ["cached"] * 3
    runs = oq.run_table(again, tmp_path, label_of, table)
    by = runs.set_index("label")
    assert by.loc["s · baseline", "backprop_saving"] == 0
    capped = pd.read_csv(tmp_path / by.loc["s · IES + cap", "run_id"] / "history.csv")
    twin = pd.read_csv(tmp_path / by.loc["s · random @ cap", "run_id"] / "history.csv")
    assert capped["n_mastered"].sum() > 0
    assert twin["forward_only_samples"].tolist() == capped["forward_only_samples"].tolist()  # equal compute
