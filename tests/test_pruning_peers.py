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
from ies.data.datasets import synthetic
from ies.experiments.peers import KNOBS, Runner, match_budgets, method_config
from ies.models.zoo import cifar_resnet, cnn1d, mlp, small_cnn, transformer
from ies.selectors.pfb import first_stage, flop_fraction
from ies.selectors.rules_pruning import orderdp_plan, orderdp_sizes, seta_anneal_start, seta_plan
from ies.training.loop import run_epoch
from ies.training.setup import build_run

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


@pytest.mark.parametrize("method, target", [("orderdp", 1 / 3), ("seta", 0.5), ("pfb", 0.3)])  # seta: 0.29 at 0
def test_the_knob_is_registered_and_calibrates_to_a_budget(method, target, data, tmp_path):
    knob = KNOBS[method]
    runner = Runner(tmp_path, dataset=data)
    base = Config(**{**TINY, "model": "cnn1d"})
    cals = match_budgets(base, [method], [1 / (1 - target)], runner, tolerance=0.03, max_pilots=6)
    (cal,) = cals.values()
    assert cal.name == knob.field and cal.matched and abs(cal.saving - target) <= 0.03
    assert getattr(method_config(base, method, cal.knob), knob.field) == cal.knob


# ---------------------------------------------------------------------- PFB
def staged_counter(seed=0):
    """cnn1d for the 40-long synthetic signals, with hooks counting the samples through its first stage
    and through the whole model (with grad / without)."""
    torch.manual_seed(seed)
    model = cnn1d(40, 4)
    counts = {"stage": 0, "grad": 0, "nograd": 0}

    def whole(module, inputs, output):
        counts["grad" if torch.is_grad_enabled() else "nograd"] += output.shape[0]

    model[3].register_forward_hook(lambda m, i, o: counts.__setitem__("stage", counts["stage"] + o.shape[0]))
    model.register_forward_hook(whole)
    return model, counts


def test_first_stage_of_each_staged_model_and_its_measured_flop_share():
    net = cnn1d(40, 4)
    stage = first_stage(net)
    assert [type(m) for m in stage] == [nn.Unflatten, nn.Conv1d, nn.BatchNorm1d, nn.ReLU]
    assert stage[1] is net[1]  # the model's own layers
    # conv 1->32 (k5, s2: 19 out) = 2*32*5*19; convs 32->32 (k3: 10 and 5 out); linear 32->4
    flops = [2 * 32 * 5 * 19, 2 * 32 * 32 * 3 * 10, 2 * 32 * 32 * 3 * 5, 2 * 32 * 4]
    assert flop_fraction(net, stage, torch.randn(1, 40)) == flops[0] / sum(flops)
    cnn = small_cnn(10)
    assert [type(m) for m in first_stage(cnn)] == [nn.Sequential, nn.MaxPool2d]
    res = cifar_resnet(18, 10)
    assert list(first_stage(res)) == [res.conv1, res.bn1, res.relu, res.maxpool, res.layer1]
    share = flop_fraction(res, first_stage(res), torch.randn(1, 3, 32, 32))
    assert 0.2 < share < 0.3  # stem + 2 of the 8 blocks at full resolution (one of four equal-cost stages)
    assert first_stage(mlp(40, 4)) is None and first_stage(transformer((40,), 4)) is None


def test_pfb_refuses_a_model_without_a_first_stage(data):
    with pytest.raises(ValueError, match="selector 'pfb' needs a model with a first stage"):
        build_run(Config(**TINY, selector="pfb"), dataset=data)  # TINY's mlp


def test_pfb_blocks_the_densest_of_every_batch_and_counts_the_first_stage_share(data):
    model, counts = staged_counter()
    cfg = Config(**{**TINY, "model": "cnn1d"}, selector="pfb", pfb_prune_ratio=0.4, pfb_centres=100,
                 anneal_fraction=0.25)
    seen = []

    def hook(epoch, m, tracker):
        seen.append(dict(counts))
        counts.update(stage=0, grad=0, nograd=0)

    r = train(cfg, dataset=data, model=model, on_epoch_end=hook)
    h, n_test = r.history, len(data.y_test)
    fraction = 2 * 32 * 5 * 19 / (2 * 32 * 5 * 19 + 2 * 32 * 32 * 3 * 15 + 2 * 32 * 4)
    # batches of 32 x 7 + 16: floor(12.8) = 12 and floor(6.4) = 6 blocked; epoch 1 fills the 100 centres first
    assert h["n_mastered"].tolist() == [90 - 4 * 12] + [90] * 5 + [0, 0]
    assert h["backprop_samples"].tolist() == [N - b for b in h["n_mastered"]]
    for epoch, (row, c) in enumerate(zip(h.to_dict("records")[:6], seen, strict=False)):
        measured = epoch == 0  # the FLOP share is measured once, on one sample: a stage and a whole forward
        assert c["grad"] == row["backprop_samples"] and c["nograd"] == n_test + measured
        assert c["stage"] - measured - c["grad"] - c["nograd"] == N  # every sample ran the first stage alone
        assert row["forward_samples"] == pytest.approx(fraction * N + row["backprop_samples"])
    for row, c in zip(h.to_dict("records")[6:], seen[6:], strict=True):  # anneal: no first-stage pass
        assert c["stage"] == c["grad"] + c["nograd"] == N + n_test and row["forward_samples"] == N
    assert r.metrics["compute_saving"] == pytest.approx(saving_from_columns(h))


def test_pfb_resumes_bit_for_bit(data, tmp_path):
    cfg = Config(**{**TINY, "model": "cnn1d"}, selector="pfb", output=str(tmp_path / "full"))
    full = train(cfg, dataset=data)
    cut = cfg.replace(output=str(tmp_path / "cut"))
    interrupted(cut, 4, dataset=data)
    resumed = train(cut.replace(resume=True), dataset=data)
    cols = [c for c in full.history.columns if c != "epoch_seconds"]
    assert full.history[cols].equals(resumed.history[cols])
    for va, vb in zip(full.model.state_dict().values(), resumed.model.state_dict().values(), strict=True):
        assert torch.equal(va, vb)


def test_cli_trains_pfb_on_the_offline_default_and_its_columns_give_its_saving(tmp_path):
    test_cli_trains_on_the_offline_default_and_its_columns_give_its_saving("pfb", tmp_path)
