"""Matching the peers to a budget on real (tiny) runs: the runner's cache, calibration, the matched runs."""

import json

import pytest

from ies import Config
from ies.data.datasets import synthetic
from ies.experiments.peers import KNOBS, Runner, calibration_table, match_budgets, method_config, run_matched

TINY = dict(dataset="synthetic", dataset_size=300, model="mlp", batch_size=32, epochs=6, progress=False, seed=0)


@pytest.fixture(scope="module")
def data():
    return synthetic(300)


def test_method_config_sets_the_knob_and_the_baseline():
    base = Config(**TINY)
    assert method_config(base, "baseline").is_baseline
    cfg = method_config(base, "infobatch", 0.3, seed=2)
    assert (cfg.selector, cfg.prune_ratio, cfg.seed) == ("infobatch", 0.3, 2)
    assert method_config(base, "early_stop", 3).es_patience == 3
    assert set(KNOBS) == {"ies", "infobatch", "small_loss_rescale", "selective_backprop", "early_stop", "seta",
                          "orderdp", "pfb"}


def test_runner_reuses_a_finished_run_and_only_that(tmp_path, data):
    runner = Runner(tmp_path, dataset=data)
    cfg = method_config(Config(**TINY), "infobatch", 0.5)
    a = runner(cfg)
    b = runner(cfg)
    assert (runner.trained, runner.reused) == (1, 1)
    assert a["compute_saving"] == b["compute_saving"] and a["history"]["backprop_samples"].tolist() == \
        b["history"]["backprop_samples"].tolist()
    runner(cfg.replace(prune_ratio=0.25))
    assert runner.trained == 2
    metrics = runner.folder(cfg) / "metrics.json"  # as if interrupted after epoch 1: trained again (resumed)
    metrics.write_text(json.dumps({**json.loads(metrics.read_text()), "epochs_completed": 1}))
    c = runner(cfg)
    assert runner.trained == 3
    assert c["history"]["backprop_samples"].tolist() == a["history"]["backprop_samples"].tolist()
    Runner(tmp_path, dataset=data, rerun=True)(cfg)  # rerun: trained anew, the same numbers
    assert json.loads(metrics.read_text())["compute_saving"] == a["compute_saving"]


def test_match_then_run_reuses_the_pilot_of_the_first_seed(tmp_path, data):
    runner = Runner(tmp_path, dataset=data)
    base = Config(**TINY)
    cals = match_budgets(base, ["infobatch"], [1.25], runner, tolerance=0.03, max_pilots=5)
    cal = cals[("infobatch", 1.25)]
    assert runner.trained == len({p.knob for p in cal.pilots})
    assert abs(cal.saving - 0.2) <= 0.03 or not cal.matched
    table = calibration_table(cals)
    assert table.loc[0, "budget"] == "1.25x" and table.loc[0, "knob"] == "prune_ratio"
    before = runner.trained
    runs, histories = run_matched(base, cals, [0, 1], runner)
    assert runner.trained == before + 3  # baseline seeds 0 and 1, infobatch seed 1; infobatch seed 0 is the pilot
    assert runs[["method", "budget", "seed"]].values.tolist() == [
        ["baseline", "-", 0, ], ["infobatch", "1.25x", 0], ["baseline", "-", 1], ["infobatch", "1.25x", 1]]
    first = runs[(runs["method"] == "infobatch") & (runs["seed"] == 0)]["compute_saving"].iloc[0]
    assert first == pytest.approx(cal.saving)
    assert set(histories["method"]) == {"baseline", "infobatch"} and len(histories) == 4 * 6
