"""Matching the peers to a budget on real (tiny) runs: the runner's cache, calibration, the matched runs."""

import json

import pandas as pd
import pytest

from ies import Config
from ies.data.datasets import synthetic
from ies.experiments.peers import (
    KNOBS,
    Runner,
    calibration_table,
    implausible,
    match_budgets,
    method_config,
    method_of,
    run_matched,
)

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
    assert set(KNOBS) == {"ies", "ies_recheck_lr", "infobatch", "small_loss_rescale", "selective_backprop",
                          "early_stop", "seta", "orderdp", "pfb"}
    lr = method_config(base, "ies_recheck_lr", 0.01, seed=1)
    assert (lr.selector, lr.recheck, lr.threshold, lr.seed) == ("ies", "lr", 0.01, 1)
    assert [method_of(c) for c in (method_config(base, "baseline"), lr, method_config(base, "ies", 0.1),
                                   method_config(base, "seta", 0.2))] == ["baseline", "ies_recheck_lr", "ies", "seta"]


def test_plausible_ranges_flag_a_knob_outside_them():
    assert implausible("ies", 0.1) == "" and implausible("infobatch", 0.7) == ""
    assert implausible("ies", 0.3) == ("ies: threshold = 0.3 is above 0.1, outside the plausible range [1e-05, 0.1] "
                                       "(the IES paper's CIFAR ablation spans delta = 1e-3 x 0.01 .. 100 (Fig. 5))")
    assert implausible("orderdp", 0.2).startswith("orderdp: orderdp_top_q = 0.2 is below 0.3, outside")
    assert implausible("early_stop", 1).startswith("early_stop: es_patience = 1 is below 2")
    for method, knob in KNOBS.items():  # every range lies inside the search bracket and says where it comes from
        low, high = knob.plausible
        assert knob.low <= low < high and knob.why, method
        assert knob.model is not None and 0 <= knob.model(low if low > 0 else knob.low) <= 1, method


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


def test_runner_names_runs_as_the_sweep_does_and_finds_the_free_pilots(tmp_path, data):
    base = Config(**TINY)
    runner = Runner(tmp_path, dataset=data, base=base)
    assert runner.folder(method_config(base, "baseline")).name == "threshold=0_seed=0"
    assert runner.folder(method_config(base, "infobatch", 0.5, seed=2)).name == "selector=infobatch_seed=2"
    assert runner.folder(method_config(base, "ies_recheck_lr", 0.01)).name == "threshold=0.01_recheck=lr_seed=0"
    a = runner(method_config(base, "infobatch", 0.25))
    runner(method_config(base, "infobatch", 0.25, seed=1))  # another seed: not a pilot of seed 0
    free = runner.finished_knobs(method_config(base, "infobatch"), "prune_ratio")
    assert free == {0.25: a["compute_saving"]}
    assert Runner(tmp_path, dataset=data, base=base, rerun=True).finished_knobs(base, "prune_ratio") == {}
    cals = match_budgets(base, ["infobatch"], [1 / (1 - a["compute_saving"])], runner, tolerance=1e-9)
    assert runner.free_pilots == 1 and runner.trained == 2  # matched by the run already there, nothing trained
    assert cals[("infobatch", 1 / (1 - a["compute_saving"]))].knob == 0.25


def test_two_jobs_train_through_the_sweep_into_the_same_folders(tmp_path, data):
    base = Config(**TINY)
    cfgs = [method_config(base, "baseline", seed=s) for s in (0, 1)]
    two = Runner(tmp_path, base=base, jobs=2)
    first = two.many(cfgs)
    assert two.trained == 2 and (tmp_path / "threshold=0_seed=1" / "metrics.json").exists()
    one = Runner(tmp_path, dataset=data, base=base)
    again = one.many(cfgs)
    assert (one.trained, one.reused) == (0, 2)
    assert [r["best_test_accuracy"] for r in again] == [r["best_test_accuracy"] for r in first]
    with pytest.raises(ValueError, match="jobs"):
        Runner(tmp_path, jobs=2)


def test_seed_drift_warns_when_the_seeds_miss_what_the_first_matched():
    from ies.experiments.budget import Calibration, Pilot
    from ies.experiments.peers import seed_drift

    cal = Calibration("threshold", 0.01, 0.299, 0.31, 0.03, True, (Pilot(0.01, 0.299),), "")
    rows = pd.DataFrame({"seed": [0, 1, 2], "compute_saving": [0.299, 0.247, 0.276]})
    assert seed_drift(rows, cal) == ("over 3 seeds it saved 27.4 % of the compute on average, short of the target "
                                     "31.0 % by more than the tolerance 3 pt (matched on the first seed: 29.9 %)")
    assert seed_drift(rows.assign(compute_saving=[0.299, 0.30, 0.31]), cal) == ""
