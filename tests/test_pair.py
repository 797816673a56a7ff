"""The course's run pair (``ies.course.pair``): trained once, read back exactly, shared only when identical."""

from __future__ import annotations

import pandas as pd
import pytest
import torch

from ies import train
from ies.course.notebook import predictions
from ies.course.pair import PROBES, Probe, course_pair, pair_config, pair_folder
from ies.data.datasets import synthetic

SMALL = dict(dataset="synthetic", model="mlp", epochs=8, batch_size=100, lr=0.05, device="cpu", progress=False)
PROBE = Probe(size=64, every=3, batch=64, iters=40, trace_samples=1, grad_batches=2, grad_batch_size=32)


def config(seed, **kw):
    return pair_config("smoke", {**SMALL, **kw}, seed=seed)


@pytest.fixture(scope="module")
def data():
    return synthetic(400)


def test_pair_config_keeps_the_profile_unless_told():
    cfg = pair_config("teaching", seed=0, device="cpu", data_dir="", threshold=None, epochs=0, model="")
    assert (cfg.dataset, cfg.model, cfg.epochs, cfg.dataset_size, cfg.threshold, cfg.seed) == (
        "mnist1d", "auto", 60, 0, 1e-3, 0)
    assert pair_config("teaching", seed=3, epochs=7, threshold=2e-3).epochs == 7
    assert pair_config("teaching", seed=3, threshold=2e-3).threshold == 2e-3
    # a preset's fields as given (False and 0 too), then the notebook's parameters where they are set
    preset = {"model": "small_cnn", "epochs": 50, "augment": False, "dataset_size": 2000, "min_last_batch": 16}
    cfg = pair_config("teaching", preset, seed=1, dataset="x.npz", model="", epochs=30)
    assert (cfg.model, cfg.epochs, cfg.augment, cfg.dataset_size, cfg.dataset) == (
        "small_cnn", 30, False, 2000, "x.npz")
    with pytest.raises(ValueError, match="PROFILE must be one of"):
        pair_config("nope", seed=0)
    with pytest.raises(ValueError, match="probe every"):
        Probe(every=0)


def test_trained_once_then_read_back_exactly(tmp_path, data, one_thread):
    cfg = config(seed=1)
    first = course_pair(cfg, data, tmp_path, probe=PROBE)
    again = course_pair(cfg, data, tmp_path, probe=PROBE)
    assert first.trained and not again.trained and again.folder == first.folder
    assert first.runs["baseline"].metrics["backprop_saving"] == 0.0
    for method in ("baseline", "ies"):
        a, b = first.runs[method], again.runs[method]
        pd.testing.assert_frame_equal(a.history, b.history, check_dtype=False)
        assert a.metrics == b.metrics
        assert torch.equal(a.loss_matrix, b.loss_matrix) and torch.equal(a.mastered_matrix, b.mastered_matrix)
        assert torch.equal(predictions(a.model, data), predictions(b.model, data))
        assert b.config.threshold == (0.0 if method == "baseline" else cfg.threshold)
    assert first.at_init == pytest.approx(again.at_init, nan_ok=True)
    history = again.histories()["ies"]
    assert history.epoch.iloc[0] == 0 and len(history) == cfg.epochs + 1
    assert history.top_eigenvalue.iloc[0] == pytest.approx(first.at_init["top_eigenvalue"])


def test_the_pair_is_the_plain_runs_and_the_probe_changes_nothing(tmp_path, data, one_thread):
    cfg = config(seed=2, threshold=0.5)
    pair = course_pair(cfg, data, tmp_path, probe=PROBE)
    plain = course_pair(cfg, data, tmp_path, probe=False)
    assert plain.folder != pair.folder and plain.trained and plain.at_init == {}
    own = train(cfg.replace(keep_loss_matrix=True), dataset=data)  # the IES run as anyone would train it
    assert own.metrics["backprop_saving"] > 0
    for run in (pair.runs["ies"], plain.runs["ies"]):
        shared = [c for c in own.history.columns if c != "epoch_seconds"]
        pd.testing.assert_frame_equal(run.history[shared], own.history[shared], check_dtype=False)
        assert torch.equal(run.loss_matrix, own.loss_matrix)


def test_the_profile_probe_only_on_the_profile_pair(tmp_path, data, one_thread):
    # the profile's own pair (mnist1d) would carry 05's probe; any other configuration carries none
    other = config(seed=0)
    assert course_pair(other, data, tmp_path).at_init == {}
    own = pair_config("smoke", seed=0, device="cpu")
    assert pair_folder(own, PROBES["smoke"], tmp_path) != pair_folder(own, None, tmp_path)
    assert pair_folder(own, None, tmp_path).name == "seed0"
    assert pair_folder(own.replace(seed=4), None, tmp_path).parent == pair_folder(own, None, tmp_path).parent


def test_a_damaged_pair_is_trained_again(tmp_path, data, one_thread):
    cfg = config(seed=3)
    first = course_pair(cfg, data, tmp_path, probe=False)
    (first.folder / "ies" / "pair.pt").write_bytes(b"torn")
    again = course_pair(cfg, data, tmp_path, probe=False)
    assert again.trained
    assert torch.equal(again.runs["ies"].loss_matrix, first.runs["ies"].loss_matrix)
