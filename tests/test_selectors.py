"""The selectors beside IES: ``random`` (the matched-budget control) and ``loss`` (the N = 0 rule)."""

import pandas as pd
import pytest
import torch

from ies import Config, train
from ies.data.datasets import synthetic

N_TRAIN = 240  # synthetic(300): 80 % train
TINY = dict(dataset="synthetic", dataset_size=300, model="mlp", batch_size=32, epochs=6, progress=False, seed=0)


@pytest.fixture(scope="module")
def data():
    return synthetic(300)


def _budget(tmp_path, counts):
    path = tmp_path / "budget.csv"
    pd.DataFrame({"epoch": range(1, len(counts) + 1), "forward_only_samples": counts}).to_csv(path, index=False)
    return str(path)


def test_random_excludes_exactly_the_budget_each_epoch(tmp_path, data):
    counts = [7, 0, 120, 239, 240, 1000]  # the first epoch too; more than N is clamped to N
    cfg = Config(**TINY, selector="random", random_budget=_budget(tmp_path, counts), keep_loss_matrix=True)
    r = train(cfg, dataset=data)
    want = [min(c, N_TRAIN) for c in counts]
    assert r.history["forward_only_samples"].tolist() == want
    assert r.history["backprop_samples"].tolist() == [N_TRAIN - w for w in want]
    # the set decided at the end of epoch e is the one left out in epoch e + 1
    assert r.mastered_matrix.sum(0).tolist()[:-1] == want[1:]
    assert r.metrics["backprop_saving"] == pytest.approx(sum(want) / (N_TRAIN * len(counts)))


def test_random_matches_a_reference_ies_run(tmp_path, data):
    ref = train(Config(**{**TINY, "epochs": 8}, threshold=0.05, order=1, output=str(tmp_path / "ies")), dataset=data)
    excluded = ref.history["forward_only_samples"].tolist()
    assert sum(excluded) > 0, "the reference must exclude something for the test to mean anything"
    cfg = Config(**{**TINY, "epochs": 8}, selector="random", random_budget=str(tmp_path / "ies" / "history.csv"),
                 keep_loss_matrix=True)
    rnd = train(cfg, dataset=data)
    assert rnd.history["forward_only_samples"].tolist() == excluded
    assert rnd.metrics["backprop_saving"] == ref.metrics["backprop_saving"]
    # a shorter run takes the first epochs of the budget
    short = train(cfg.replace(epochs=5, keep_loss_matrix=False), dataset=data)
    assert short.history["forward_only_samples"].tolist() == excluded[:5]


def test_random_sets_are_seeded_and_change_every_epoch(tmp_path, data):
    cfg = Config(**TINY, selector="random", random_budget=_budget(tmp_path, [0, 100, 100, 100, 100, 100]),
                 keep_loss_matrix=True)
    a = train(cfg, dataset=data).mastered_matrix
    b = train(cfg, dataset=data).mastered_matrix
    c = train(cfg.replace(seed=1), dataset=data).mastered_matrix
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    sets = [frozenset(torch.nonzero(a[:, e]).flatten().tolist()) for e in range(5)]
    assert len(set(sets)) == 5  # a fresh random draw every epoch


def test_random_respects_the_anneal_phase(tmp_path, data):
    cfg = Config(**TINY, selector="random", random_budget=_budget(tmp_path, [0, 50, 50, 50, 50, 50]),
                 anneal_fraction=0.5)
    r = train(cfg, dataset=data)
    assert r.history["forward_only_samples"].tolist() == [0, 50, 50, 0, 0, 0]


def test_random_budget_must_cover_the_run(tmp_path, data):
    with pytest.raises(ValueError, match="has 3 epochs"):
        train(Config(**TINY, selector="random", random_budget=_budget(tmp_path, [0, 1, 2])), dataset=data)
    path = tmp_path / "no_column.csv"
    pd.DataFrame({"epoch": range(1, 7)}).to_csv(path, index=False)
    with pytest.raises(ValueError, match="forward_only_samples"):
        train(Config(**TINY, selector="random", random_budget=str(path)), dataset=data)
    with pytest.raises(ValueError, match="random_budget"):
        Config(selector="random")


def test_loss_selector_is_the_order_0_paper_rule(data):
    cfg = Config(**TINY, selector="loss", threshold=0.05, order=3, rule="official")
    # the configuration keeps what was asked (no silent rewrite); the selector applies the N = 0 rule
    assert (cfg.selector, cfg.order, cfg.rule, cfg.threshold) == ("loss", 3, "official", 0.05)
    tracker = train(cfg.replace(epochs=1), dataset=data).tracker
    assert (tracker.order, tracker.rule, tracker.threshold) == (0, "paper", 0.05)
    assert Config(selector="loss", threshold=0).is_baseline


def test_loss_selector_masters_exactly_the_samples_below_the_threshold(data):
    delta = 0.05
    r = train(Config(**TINY, selector="loss", threshold=delta, keep_loss_matrix=True), dataset=data)
    losses, mastered = r.loss_matrix, r.mastered_matrix
    assert mastered.any(), "some samples must fall below the threshold for the test to mean anything"
    assert torch.equal(mastered, losses.double() < delta)
    h = r.history
    assert h["forward_only_samples"].tolist()[1:] == mastered.sum(0).tolist()[:-1]


def test_loss_selector_with_patience_needs_consecutive_epochs(data):
    delta = 0.05
    r = train(Config(**TINY, selector="loss", threshold=delta, patience=2, keep_loss_matrix=True), dataset=data)
    below = r.loss_matrix.double() < delta
    want = torch.zeros_like(below)
    want[:, 1:] = below[:, 1:] & below[:, :-1]
    assert torch.equal(r.mastered_matrix, want)
