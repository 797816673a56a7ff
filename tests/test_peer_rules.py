"""The peers' rules on hand-made loss sequences: InfoBatch / small loss & rescale, Selective Backprop,
conventional early stopping and its validation split."""

import math

import pytest
import torch

from ies.selectors.rules import (
    EarlyStopping,
    LossHistory,
    anneal_start,
    below_mean,
    infobatch_plan,
    keep_probability,
    prune_plan,
    selective_keep,
    stop_epoch,
    update_scores,
    validation_split,
)

INF = math.inf


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


# ---------------------------------------------------------------------- InfoBatch / small loss & rescale
def test_below_mean_ignores_unobserved_and_nonfinite_scores():
    scores = torch.tensor([0.1, 0.2, 0.3, 0.4, 5.0, INF, math.nan])
    # mean of the finite scores = 6.0 / 5 = 1.2
    assert below_mean(scores).tolist() == [True, True, True, True, False, False, False]
    assert not below_mean(torch.full((4,), INF)).any()  # nothing observed yet: everything is kept
    assert not below_mean(torch.ones(5)).any()  # equal scores: none strictly below the mean


def test_prune_plan_leaves_out_the_drawn_share_of_the_below_mean_samples():
    scores = torch.tensor([0.1, 0.2, 0.3, 0.4, 5.0, INF])
    keep, weights = prune_plan(scores, 0.5, gen(0))
    # the plain reference: the same draw, candidates 0..3 ranked by their key, the 2 smallest kept
    keys = torch.rand(6, generator=gen(0))
    ranked = sorted(range(4), key=lambda i: float(keys[i]))
    kept, pruned = set(ranked[:2]), set(ranked[2:])
    assert {i for i in range(6) if not keep[i]} == pruned
    assert keep[4] and keep[5]  # above the mean, never observed
    assert weights.dtype == torch.float32
    assert weights.tolist() == [2.0 if i in kept else 1.0 for i in range(6)]


@pytest.mark.parametrize("ratio, m, kept, weight", [(0.5, 4, 2, 2.0), (0.3, 4, 2, 1 / 0.7), (0.3, 10, 7, 1 / 0.7),
                                                    (0.75, 8, 2, 4.0), (0.2, 5, 4, 1.25), (0.0, 6, 6, 1.0)])
def test_prune_plan_counts_and_rescale_weights_are_exact(ratio, m, kept, weight):
    scores = torch.cat([torch.arange(1, m + 1) * 0.01, torch.tensor([100.0])])  # m below the mean
    keep, weights = prune_plan(scores, ratio, gen(3))
    assert int(keep[:m].sum()) == kept  # floor((1 - ratio) * m)
    assert bool(keep[m])
    assert torch.equal(weights[:m][keep[:m]], torch.full((kept,), weight, dtype=torch.float32))
    assert (weights[:m][~keep[:m]] == 1).all() and weights[m] == 1


def test_prune_plan_draws_afresh_and_is_seeded():
    scores = torch.linspace(0, 1, 101) ** 3  # cubic: most samples lie below the mean
    a, _ = prune_plan(scores, 0.5, gen(0))
    b, _ = prune_plan(scores, 0.5, gen(0))
    g = gen(0)
    c, _ = prune_plan(scores, 0.5, g)
    d, _ = prune_plan(scores, 0.5, g)
    assert torch.equal(a, b) and torch.equal(a, c)
    assert not torch.equal(c, d)
    assert int((~c).sum()) == int((~d).sum())


def test_prune_ratio_outside_the_range_is_named():
    for bad in (1.0, -0.1, 1.5):
        with pytest.raises(ValueError, match="prune_ratio"):
            prune_plan(torch.ones(3), bad)


@pytest.mark.parametrize("epochs, fraction, start", [(8, 0.125, 7), (100, 0.125, 88), (12, 0.125, 10),
                                                     (4, 0.125, 4), (200, 0.125, 175), (10, 0.0, 10), (10, 1.0, 0)])
def test_anneal_epochs(epochs, fraction, start):
    assert anneal_start(epochs, fraction) == start


def test_infobatch_anneals_the_last_epochs_and_small_loss_rescale_never_does():
    scores = torch.tensor([0.1, 0.2, 0.3, 0.4, 5.0])
    pruned = [int((~infobatch_plan(scores, e, 8, 0.5, 0.125, gen(e))[0]).sum()) for e in range(8)]
    assert pruned == [2] * 7 + [0]
    keep, weights = infobatch_plan(scores, 7, 8, 0.5, 0.125, gen(0))
    assert keep.all() and (weights == 1).all()
    g = gen(0)
    state = g.get_state()
    infobatch_plan(scores, 7, 8, 0.5, 0.125, g)
    assert torch.equal(g.get_state(), state)  # no draw in an anneal epoch
    assert [int((~infobatch_plan(scores, e, 8, 0.5, 0.0, gen(e))[0]).sum()) for e in range(8)] == [2] * 8


def test_scores_of_pruned_samples_stay_unchanged():
    scores = torch.full((5,), INF)
    update_scores(scores, torch.tensor([0, 1, 2, 3, 4]), torch.tensor([0.1, 0.2, 0.3, 0.4, 5.0]))
    keep, _ = prune_plan(scores, 0.5, gen(1))
    trained = torch.nonzero(keep).flatten()
    update_scores(scores, trained, torch.full((trained.numel(),), 9.0))
    assert torch.equal(scores[~keep], torch.tensor([0.1, 0.2, 0.3, 0.4, 5.0])[~keep])
    assert (scores[keep] == 9.0).all()
    update_scores(scores, torch.tensor([0]), torch.tensor([math.nan]))
    assert scores[0] == INF  # a NaN loss: kept until it has a finite one


# ---------------------------------------------------------------------- Selective Backprop
def test_loss_history_is_a_ring_and_its_percentile_is_the_empirical_cdf():
    h = LossHistory(4)
    assert h.percentile(torch.tensor([1.0])).tolist() == [0.0]  # empty
    h.push(torch.tensor([1.0, 2.0, 3.0]))
    assert h.count == 3
    assert h.percentile(torch.tensor([0.5, 1.0, 2.0, 2.5, 3.0, 9.0])).tolist() == pytest.approx(
        [0, 1 / 3, 2 / 3, 2 / 3, 1, 1])
    h.push(torch.tensor([4.0, 5.0]))  # 1.0 is overwritten
    assert h.count == 4 and sorted(h.values.tolist()) == [2.0, 3.0, 4.0, 5.0]
    assert h.percentile(torch.tensor([1.0, 3.5, INF, math.nan])).tolist() == [0.0, 0.5, 1.0, 1.0]
    h.push(torch.arange(10.0))  # a batch larger than the buffer: its last 4 remain
    assert sorted(h.values.tolist()) == [6.0, 7.0, 8.0, 9.0]


def test_selective_backprop_keep_probabilities_are_exact():
    h = LossHistory(5)
    losses = torch.tensor([0.3, 0.1, 0.5, 0.2, 0.4])
    keep, prob = selective_keep(h, losses, 2.0, gen(0))
    # the batch enters the history first: percentiles 3/5, 1/5, 5/5, 2/5, 4/5, squared
    assert prob.tolist() == pytest.approx([0.36, 0.04, 1.0, 0.16, 0.64], abs=1e-7)
    assert torch.equal(keep, torch.rand(5, generator=gen(0)) < prob)
    assert keep[2]  # the largest loss of the history is always kept
    # a later batch is compared with the last 5 losses, itself included
    _, prob = selective_keep(h, torch.tensor([0.25]), 1.0, gen(0))
    assert prob.tolist() == pytest.approx([3 / 5])  # history now 0.1, 0.5, 0.2, 0.4, 0.25: three <= 0.25
    assert keep_probability(torch.tensor([0.0, 0.5, 1.0]), 3.0).tolist() == [0.0, 0.125, 1.0]
    for bad in (0.0, -1.0):
        with pytest.raises(ValueError, match="beta"):
            keep_probability(torch.tensor([0.5]), bad)


@pytest.mark.parametrize("beta", [1.0, 2.0])
def test_selective_backprop_kept_share_matches_the_expected_share(beta):
    h, g, data = LossHistory(512), gen(7), gen(8)
    kept, expected, variance = 0, 0.0, 0.0
    for _ in range(300):
        keep, prob = selective_keep(h, torch.rand(128, generator=data), beta, g)
        kept += int(keep.sum())
        expected += float(prob.sum())
        variance += float((prob * (1 - prob)).sum())
    n = 300 * 128
    # the Bernoulli draws: within 4 standard deviations of their own expectation ...
    assert abs(kept - expected) < 4 * math.sqrt(variance)
    # ... which for iid losses is close to E[U ** beta] = 1 / (beta + 1) (the history fills in 4 batches)
    assert expected / n == pytest.approx(1 / (beta + 1), abs=0.01)


# ---------------------------------------------------------------------- conventional early stopping
def test_early_stopping_on_a_scripted_validation_curve():
    curve = [0.50, 0.60, 0.60, 0.65, 0.64, 0.66, 0.66, 0.66, 0.70]
    assert stop_epoch(curve, patience=2, min_delta=0.005) == 8  # best 0.66 at epoch 6, two flat epochs
    assert stop_epoch(curve, patience=2, min_delta=0.02) == 6  # 0.66 is not 0.02 above 0.65 (epoch 4)
    assert stop_epoch(curve, patience=3, min_delta=0.005) is None  # epoch 9 improves in time
    assert stop_epoch(curve, patience=1) == 3
    rule = EarlyStopping(patience=2, min_delta=0.005)
    decisions = [rule.update(v) for v in curve[:8]]
    assert decisions == [False] * 7 + [True]
    assert (rule.best, rule.best_epoch) == (0.66, 6)


def test_early_stopping_on_a_loss_curve_and_nonfinite_values():
    loss = [1.0, 0.8, math.nan, 0.81, 0.79, 0.9]
    assert stop_epoch(loss, patience=2, mode="min") == 4  # nan and 0.81 do not improve on 0.8
    assert stop_epoch(loss, patience=2, mode="min", min_delta=0.0) == 4
    assert stop_epoch([math.nan, math.nan, 1.0], patience=2) == 2  # nothing finite yet: no best
    rule = EarlyStopping(patience=3, mode="min")
    for v in loss[:3]:
        rule.update(v)
    restored = EarlyStopping(patience=3, mode="min")
    restored.load_state_dict(rule.state_dict())
    assert [restored.update(v) for v in loss[3:]] == [rule.update(v) for v in loss[3:]]
    with pytest.raises(ValueError, match="es_patience"):
        EarlyStopping(patience=0)
    with pytest.raises(ValueError, match="es_min_delta"):
        EarlyStopping(patience=1, min_delta=-1)


def test_validation_split_is_stratified_deterministic_and_a_partition():
    labels = torch.tensor([0] * 10 + [1] * 5 + [2] * 3)[torch.randperm(18, generator=gen(0))]
    train, val = validation_split(labels, 0.2, seed=0)
    # per class floor(0.2 n + 1/2): 10 -> 2, 5 -> 1, 3 -> 1
    assert torch.bincount(labels[val], minlength=3).tolist() == [2, 1, 1]
    assert torch.equal(torch.sort(torch.cat([train, val])).values, torch.arange(18))
    assert torch.equal(train, torch.sort(train).values) and train.dtype == torch.int64
    again = validation_split(labels, 0.2, seed=0)
    assert torch.equal(again[1], val) and torch.equal(again[0], train)
    other = [validation_split(labels, 0.2, seed=s)[1] for s in range(1, 6)]
    assert any(not torch.equal(v, val) for v in other)
    _, flat = validation_split(labels, 0.2, seed=0, stratified=False)
    assert flat.numel() == 4  # floor(0.2 * 18 + 1/2)
    for bad in (0.0, 1.0):
        with pytest.raises(ValueError, match="val_fraction"):
            validation_split(labels, bad, seed=0)
