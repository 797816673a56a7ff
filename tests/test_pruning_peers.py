"""SeTa, OrderDP and PFB through the one training loop: the history's counts against a model that counts
what passes through it, the plans against ies.selectors.rules_pruning, exact resume, and the CLI."""

import json
import math
import subprocess
import sys

import pytest
import torch
from torch import nn

from ies import Config, train
from ies.data import synthetic
from ies.peers import KNOBS, Runner, match_budgets, method_config
from ies.selectors.rules_pruning import orderdp_plan, orderdp_sizes, seta_anneal_start, seta_plan
from ies.setup import build_run
from ies.training import run_epoch

from .counting import ForwardCounter
from .resuming import interrupted

N = 240  # synthetic(300): 80 % train
TINY = dict(dataset="synthetic", dataset_size=300, model="mlp", batch_size=32, epochs=8, progress=False, seed=0)


@pytest.fixture(scope="module")
def data():
    return synthetic(300)


def counted_run(cfg, data, model=None):
    torch.manual_seed(cfg.seed)
    model = ForwardCounter(model or nn.Sequential(nn.Flatten(), nn.Linear(40, 32), nn.ReLU(), nn.Linear(32, 4)))
    seen = []

    def hook(epoch, m, tracker):
        seen.append((m.with_grad, m.without_grad))
        m.with_grad, m.without_grad = 0, 0

    return train(cfg, dataset=data, model=model, on_epoch_end=hook), seen


def saving_from_columns(h, epochs=8):
    return 1 - (h["forward_samples"].sum() + 2 * h["backprop_samples"].sum()) / (3 * N * epochs)


def test_seta_trains_its_draw_then_a_sliding_window_of_groups_and_the_books_add_up(data):
    cfg = Config(**TINY, selector="seta", seta_prune_ratio=0.2, seta_groups=5, seta_window=0.5)
    r, seen = counted_run(cfg, data)
    h, n_test = r.history, len(data.y_test)
    kept = h["backprop_samples"].tolist()
    assert [s[0] for s in seen] == kept and all(s[1] == n_test for s in seen)  # no forward but the trained
    assert (h["forward_samples"] == h["backprop_samples"]).all() and (h["forward_only_samples"] == 0).all()
    assert seta_anneal_start(8, 0.125) == 7
    assert kept[0] == kept[7] == int(N * 0.8)  # the first epoch and the (partial) anneal: the whole draw
    assert all(k < int(N * 0.8) for k in kept[1:7])  # a window of round(2.5) = 2 of the 5 groups
    assert r.metrics["compute_saving"] == pytest.approx(saving_from_columns(h))


def test_seta_plan_is_the_rule_on_the_scores_of_the_trained_samples(data):
    run = build_run(Config(**TINY, selector="seta"), dataset=data)
    sel, state = run.selector, run.generators["selector"].get_state()  # the selector draws only at its decisions
    first = sel.keep.clone()
    run_epoch(run, 0)
    assert (sel.scores[~first] == 3.0).all() and (sel.scores[first] != 3.0).all()  # only the trained refresh
    want = seta_plan(sel.scores, 1, 0.1, 5, 0.9, False, torch.Generator().set_state(state))
    assert torch.equal(sel.keep, want) and sel.iteration == 2  # epoch 2: iteration 1, groups 1..4 of 5


def test_orderdp_keeps_an_exact_share_of_top_losses_and_the_books_add_up(data):
    cfg = Config(**TINY, selector="orderdp", orderdp_pool=0.5, orderdp_top_q=0.5)
    r, seen = counted_run(cfg, data)
    h = r.history
    assert orderdp_sizes(N, 0.5, 0.5) == (120, 60)
    assert h["backprop_samples"].tolist() == [60] * 8 and [s[0] for s in seen] == [60] * 8  # no annealing
    assert (h["forward_samples"] == 60).all() and (h["n_mastered"] == N - 60).all()
    assert r.metrics["compute_saving"] == pytest.approx(saving_from_columns(h)) == pytest.approx(0.75)


def test_orderdp_trains_the_largest_stale_losses_of_its_pool(data):
    run = build_run(Config(**TINY, selector="orderdp", orderdp_pool=0.5, orderdp_top_q=0.5), dataset=data)
    sel, state = run.selector, run.generators["selector"].get_state()
    run_epoch(run, 0)
    scores = sel.scores.clone()
    assert torch.equal(sel.keep, orderdp_plan(scores, 120, 60, torch.Generator().set_state(state)))
    plan = sel.keep.clone()
    run_epoch(run, 1)
    assert torch.equal(sel.scores != scores, plan)  # exactly the 60 trained refreshed their score


@pytest.mark.parametrize("selector", ["seta", "orderdp"])
def test_an_interrupted_run_resumes_bit_for_bit(selector, data, tmp_path):
    cfg = Config(**TINY, selector=selector, output=str(tmp_path / "full"))
    full = train(cfg, dataset=data)
    cut = cfg.replace(output=str(tmp_path / "cut"))
    interrupted(cut, 5, dataset=data)  # the checkpoint holds epochs 1..4
    resumed = train(cut.replace(resume=True), dataset=data)
    cols = [c for c in full.history.columns if c != "epoch_seconds"]
    assert full.history[cols].equals(resumed.history[cols])
    for (ka, va), (kb, vb) in zip(full.model.state_dict().items(), resumed.model.state_dict().items(), strict=True):
        assert ka == kb and torch.equal(va, vb)


@pytest.mark.parametrize("selector", ["seta", "orderdp"])
def test_cli_trains_on_the_offline_default_and_its_columns_give_its_saving(selector, tmp_path):
    out = tmp_path / selector
    cmd = [sys.executable, "-m", "ies", "train", "--selector", selector, "--dataset-size", "500", "--epochs", "6",
           "--device", "cpu", "--no-progress", "--output", str(out)]
    subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=600)
    metrics = json.loads((out / "metrics.json").read_text())
    import pandas as pd

    h = pd.read_csv(out / "history.csv")
    n = 400  # mnist1d(500): 80 % train
    want = 1 - (h["forward_samples"].sum() + 2 * h["backprop_samples"].sum()) / (3 * n * 6)
    assert metrics["config"]["selector"] == selector and metrics["config"]["dataset"] == "mnist1d"
    assert metrics["compute_saving"] == pytest.approx(want) and 0 < want < 1
    assert math.isfinite(metrics["test_accuracy"])


@pytest.mark.parametrize("method, target", [("orderdp", 1 / 3), ("seta", 0.5)])  # seta saves 0.29 at ratio 0
def test_the_knob_is_registered_and_calibrates_to_a_budget(method, target, data, tmp_path):
    knob = KNOBS[method]
    runner = Runner(tmp_path, dataset=data)
    cals = match_budgets(Config(**TINY), [method], [1 / (1 - target)], runner, tolerance=0.03, max_pilots=6)
    (cal,) = cals.values()
    assert cal.name == knob.field and cal.matched and abs(cal.saving - target) <= 0.03
    assert getattr(method_config(Config(**TINY), method, cal.knob), knob.field) == cal.knob
