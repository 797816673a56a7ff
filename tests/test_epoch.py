"""The epoch's steps used alone (ies.training.epoch, ies.training.loop.run_epoch) and the compute accounting."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from ies import Config, train
from ies.data.datasets import DeviceLoader, synthetic
from ies.selectors import Plan
from ies.training.epoch import evaluate, track_pass, train_pass
from ies.training.loop import run_epoch
from ies.training.setup import build_run

from .counting import ForwardCounter

TINY = dict(dataset="synthetic", dataset_size=300, model="mlp", batch_size=32, epochs=6, progress=False, seed=0)


@pytest.fixture(scope="module")
def data():
    return synthetic(300)


def test_steps_used_alone_count_what_they_forward(data):
    cfg = Config(**TINY, threshold=0.05)
    run = build_run(cfg, dataset=data, model=ForwardCounter(nn.Linear(40, 4)))
    plan = Plan(train=torch.arange(0, 150), track=torch.arange(150, 240))  # 60 samples left out
    stats = train_pass(run.model, run.opt, run.train_data, plan, 32, observe=run.selector.observe)
    assert (stats.forward_samples, stats.backprop_samples, stats.steps) == (150, 150, 5)
    assert run.model.with_grad == 150 and run.model.without_grad == 0
    assert track_pass(run.model, run.train_data, plan.track, 64, run.selector.observe) == 90
    assert run.model.without_grad == 90 and run.model.training  # its mode restored
    recorded = torch.isfinite(run.selector.tracker.current)
    assert recorded[:240].all() and not recorded[240:].any()
    evaluate(run.model, run.test_data, 64)
    assert run.model.without_grad == 90 + len(run.test_data)


def test_weighted_plan_steps_on_the_weighted_mean():
    x, y = torch.randn(8, 3), torch.tensor([0, 1, 0, 1, 1, 0, 1, 0])
    loader = DeviceLoader(x, y, "cpu", generator=torch.Generator().manual_seed(0))
    model = nn.Linear(3, 2)
    reference = nn.Linear(3, 2)
    reference.load_state_dict(model.state_dict())
    weights = torch.arange(1.0, 9.0)
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    train_pass(model, opt, loader, Plan(train=torch.arange(8), track=torch.arange(0), weights=weights), 8)
    loss = (F.cross_entropy(reference(x), y, reduction="none") * weights).mean()  # one batch: order irrelevant
    loss.backward()
    with torch.no_grad():
        for p in reference.parameters():
            p -= 0.5 * p.grad
    for a, b in zip(model.parameters(), reference.parameters(), strict=True):
        torch.testing.assert_close(a, b)


def test_history_counts_and_compute_saving(data):
    ies = train(Config(**TINY, threshold=0.05), dataset=data)
    h, m, n = ies.history, ies.metrics, 240
    assert h["forward_only_samples"].sum() > 0, "something must be excluded for the test to mean anything"
    assert (h["forward_samples"] == n).all()  # IES forwards every sample once: train or track
    assert (h["backprop_samples"] + h["forward_only_samples"] == n).all()
    want = 1 - (h["forward_samples"].sum() + 2 * h["backprop_samples"].sum()) / (3 * n * len(h))
    assert m["compute_saving"] == pytest.approx(want)
    assert m["compute_saving"] == pytest.approx(2 / 3 * m["backprop_saving"])
    assert m["flop_ideal_speedup"] == pytest.approx(1 / (1 - want))
    base = train(Config(**TINY, threshold=0.0), dataset=data).metrics
    assert (base["compute_saving"], base["flop_ideal_speedup"], base["backprop_saving"]) == (0.0, 1.0, 0.0)
    clean = train(Config(**TINY, threshold=0.05, loss_source="clean"), dataset=data).history
    assert (clean["forward_samples"] == clean["backprop_samples"] + n).all()  # the clean pass sees every sample


def test_run_epoch_times_its_phases(data):
    run = build_run(Config(**TINY, threshold=0.05), dataset=data)
    phases: dict[str, float] = {}
    row = run_epoch(run, 0, phases)
    assert set(phases) == {"plan", "train", "track", "decide", "evaluate"}
    assert all(s >= 0 for s in phases.values())
    assert sum(phases.values()) <= row["epoch_seconds"] + 1e-3


def test_a_loss_source_that_is_not_one_is_refused():
    with pytest.raises(ValueError, match="loss_source"):
        Config(loss_source="official")  # the rule's name, not a loss source
    with pytest.raises(ValueError, match="loss_source"):
        Config(loss_source="offical")
