"""The peers through the one training loop: infobatch, small_loss_rescale, selective_backprop, early_stop.
The counts of the history against a model that counts what passes through it; the rules against
ies.selectors.rules; the CLI and ies.experiments.sweep."""

import json
import math
import subprocess
import sys

import pytest
import torch
from torch import nn

import ies.selectors.selective_backprop as sb_module
from ies import Config, train
from ies.cli import main
from ies.data.datasets import synthetic
from ies.experiments.sweep import run_sweep
from ies.selectors.rules import below_mean, stop_epoch
from ies.training.loop import run_epoch
from ies.training.setup import build_run

from .counting import ForwardCounter

N = 240  # synthetic(300): 80 % train
TINY = dict(dataset="synthetic", dataset_size=300, model="mlp", batch_size=32, epochs=8, progress=False, seed=0)


@pytest.fixture(scope="module")
def data():
    return synthetic(300)


def counter_model(seed=0):
    torch.manual_seed(seed)
    return ForwardCounter(nn.Sequential(nn.Flatten(), nn.Linear(40, 32), nn.ReLU(), nn.Linear(32, 4)))


def counted_run(cfg, data):
    model = counter_model(cfg.seed)
    seen = []

    def hook(epoch, m, tracker):
        seen.append((m.with_grad, m.without_grad, list(m.grad_batches)))
        m.with_grad, m.without_grad, m.grad_batches = 0, 0, []

    return train(cfg, dataset=data, model=model, on_epoch_end=hook), seen


def test_infobatch_books_add_up_and_the_last_epoch_anneals(data):
    r, seen = counted_run(Config(**TINY, selector="infobatch", prune_ratio=0.5), data)
    h, n_test = r.history, len(data.y_test)
    assert [s[0] for s in seen] == h["backprop_samples"].tolist()  # back-propagated = forwarded with grad
    assert all(s[1] == n_test for s in seen)  # no-grad forwards: the test evaluation only
    assert (h["forward_samples"] == h["backprop_samples"]).all()  # the pruned are not forwarded at all
    assert (h["forward_only_samples"] == 0).all()
    # pruned at the end of epoch e = left out of epoch e + 1; the first and the anneal epoch (8 x 0.125) train all
    assert h["backprop_samples"].tolist()[1:] == [N - k for k in h["n_mastered"].tolist()[:-1]]
    assert h["backprop_samples"].iloc[0] == N and h["backprop_samples"].iloc[-1] == N
    assert h["backprop_samples"].iloc[1:7].lt(N).all()
    want = 1 - (h["forward_samples"].sum() + 2 * h["backprop_samples"].sum()) / (3 * N * 8)
    assert r.metrics["compute_saving"] == pytest.approx(want)
    assert r.metrics["compute_saving"] == pytest.approx(r.metrics["backprop_saving"])  # 3 units per pruned sample
    small = counted_run(Config(**TINY, selector="small_loss_rescale", prune_ratio=0.5), data)[0].history
    assert small["backprop_samples"].iloc[-1] < N  # no anneal
    assert small["backprop_samples"].tolist()[:7] == h["backprop_samples"].tolist()[:7]  # the same draws until then


def test_infobatch_prunes_below_mean_samples_and_rescales_the_kept_ones(data):
    run = build_run(Config(**TINY, selector="infobatch", prune_ratio=0.75), dataset=data)
    sel = run.selector
    run_epoch(run, 0)
    scores = sel.scores.clone()
    assert torch.isfinite(scores).all()  # every sample trained in epoch 1 and has a score
    low = below_mean(scores)
    m = int(low.sum())
    assert int(sel.excluded.sum()) == m - math.floor(0.25 * m)
    assert not (sel.excluded & ~low).any()  # only below-mean samples are pruned
    assert torch.equal(sel.weights[low & ~sel.excluded], torch.full((m - int(sel.excluded.sum()),), 4.0))
    assert (sel.weights[~low] == 1).all()
    pruned = sel.excluded.clone()
    row = run_epoch(run, 1)
    assert row["backprop_samples"] == N - int(pruned.sum())
    assert torch.equal(sel.scores[pruned], scores[pruned])  # not forwarded: score unchanged
    assert not torch.equal(sel.scores[~pruned], scores[~pruned])


def test_selective_backprop_books_add_up_and_kept_share_matches_its_probabilities(data, monkeypatch):
    probs = []
    original = sb_module.selective_keep

    def recording(history, losses, beta, generator):
        keep, prob = original(history, losses, beta, generator)
        probs.append(prob)
        return keep, prob

    monkeypatch.setattr(sb_module, "selective_keep", recording)
    r, seen = counted_run(Config(**{**TINY, "epochs": 12}, selector="selective_backprop", sb_beta=1.0), data)
    h, n_test = r.history, len(data.y_test)
    assert [s[0] for s in seen] == h["backprop_samples"].tolist()
    assert [s[1] for s in seen] == [N + n_test] * 12  # every sample forwarded once to be selected, + the test
    assert (h["forward_samples"] == N + h["backprop_samples"]).all()
    assert (h["forward_only_samples"] == N - h["backprop_samples"]).all()
    for (_, _, sizes), kept in zip(seen, h["backprop_samples"], strict=True):  # full batches, the remainder last
        assert sizes == [32] * (kept // 32) + ([kept % 32] if kept % 32 else [])
    p = torch.cat(probs).double()
    kept, expected, sd = h["backprop_samples"].sum(), float(p.sum()), float((p * (1 - p)).sum().sqrt())
    assert 0 < kept < N * 12
    assert abs(kept - expected) < 4 * sd  # Bernoulli draws around their probabilities
    want = 1 - (h["forward_samples"].sum() + 2 * h["backprop_samples"].sum()) / (3 * N * 12)
    assert r.metrics["compute_saving"] == pytest.approx(want)
    assert r.metrics["compute_saving"] < 2 / 3


def test_early_stop_stops_on_the_validation_curve_and_counts_against_the_full_run(data, tmp_path):
    cfg = Config(**{**TINY, "epochs": 20}, selector="early_stop", es_patience=2, val_fraction=0.1,
                 output=str(tmp_path / "es"))
    r, seen = counted_run(cfg, data)
    h = r.history
    assert len(h) < 20 and r.metrics["stopped_early"] and r.metrics["epochs_completed"] == len(h)
    assert stop_epoch(h["val_accuracy"].tolist(), 2) == len(h)  # the plain rule on the recorded curve
    n_val = 24  # 10 % of 60 per class, 4 classes
    assert (h["backprop_samples"] == N - n_val).all() and (h["forward_samples"] == N).all()
    assert [s[0] for s in seen] == [N - n_val] * len(h)
    assert [s[1] for s in seen] == [n_val + len(data.y_test)] * len(h)  # validation + test, no grad
    want = 1 - (N * len(h) + 2 * (N - n_val) * len(h)) / (3 * N * 20)  # against the full 20 epochs
    assert r.metrics["compute_saving"] == pytest.approx(want)
    again = train(cfg.replace(resume=True), dataset=data, model=counter_model())  # a stopped run stays stopped
    assert len(again.history) == len(h)


@pytest.mark.parametrize("args, message", [
    (["--selector", "infobach"], r"selector must be one of .* \(did you mean 'infobatch'\?\)"),
    (["--selector", "infobatch", "--prune-ratio", "1"], r"prune_ratio must be in \[0, 1\), got 1.0"),
    (["--prune-ratio=-0.1"], r"prune_ratio must be in \[0, 1\)"),
    (["--selector", "selective_backprop", "--sb-beta", "0"], "sb_beta must be a finite number > 0, got 0"),
    (["--sb-beta=-1"], "sb_beta must be"),
    (["--val-fraction", "1"], r"val_fraction must be in \(0, 1\)"),
    (["--es-patience", "0"], "es_patience must be >= 1"),
])
def test_bad_peer_knobs_exit_2_before_training(args, message, capsys, tmp_path):
    import re

    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--output", str(tmp_path / "never"), *args])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and re.search(message, err)
    assert not (tmp_path / "never").exists()


def test_cli_trains_infobatch_on_mnist1d(tmp_path):
    out = tmp_path / "ib"
    cmd = [sys.executable, "-m", "ies", "train", "--selector", "infobatch", "--prune-ratio", "0.5",
           "--dataset", "mnist1d", "--dataset-size", "600", "--model", "mlp", "--epochs", "3", "--no-progress",
           "--output", str(out)]
    subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=300)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["config"]["selector"] == "infobatch" and metrics["config"]["prune_ratio"] == 0.5
    assert 0 < metrics["compute_saving"] < 0.5  # epoch 1 trains all; 3 epochs: no anneal epoch (round(0.375) = 0)


def test_every_peer_runs_through_the_sweep_on_mnist1d(tmp_path):
    base = Config(dataset="mnist1d", dataset_size=600, model="mlp", epochs=2, progress=False)
    points = [{"selector": "infobatch", "prune_ratio": 0.5}, {"selector": "small_loss_rescale"},
              {"selector": "selective_backprop", "sb_beta": 2.0}, {"selector": "early_stop", "es_patience": 1}]
    results = run_sweep(base, points=points, output=tmp_path / "sweep", jobs=2, progress=False)
    assert results["status"].tolist() == ["done"] * 4, results["error"].tolist()
    assert (results["compute_saving"] > 0).all()
    again = run_sweep(base, points=points, output=tmp_path / "sweep", jobs=2, progress=False)
    assert again["status"].tolist() == ["cached"] * 4  # early-stopped runs count as finished too
