"""The rules of SeTa, OrderDP and PFB (ies.selectors.rules_pruning) on hand-computed cases and against
plain-Python references that redo them sample by sample."""

import math

import pytest
import torch

from ies import Config
from ies.selectors.rules_pruning import (
    Centres,
    block_dense,
    density,
    equal_groups,
    kmeans_1d,
    orderdp_plan,
    orderdp_sizes,
    pooled,
    seta_anneal_start,
    seta_keep_count,
    seta_plan,
    seta_window,
)


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


# ---------------------------------------------------------------------- plain references
def kmeans_reference(values, k, iters=50):
    """Lloyd's k-means in plain python: quantile start, nearest centre (ties to the upper one)."""
    m = len(values)
    xs = sorted(values)
    centres = [xs[min(int((j + 0.5) * m / k), m - 1)] for j in range(k)]
    for _ in range(iters):
        bounds = [(a + b) / 2 for a, b in zip(centres, centres[1:], strict=False)]
        labels = [sum(v >= b for b in bounds) for v in values]
        new = []
        for j in range(k):
            members = [v for v, g in zip(values, labels, strict=True) if g == j]
            new.append(sum(members) / len(members) if members else centres[j])
        centres = sorted(new)
    bounds = [(a + b) / 2 for a, b in zip(centres, centres[1:], strict=False)]
    return [sum(v >= b for b in bounds) for v in values]


def seta_reference(scores, iteration, prune_ratio, k, window_scale, anneal, seed):
    """SeTa's epoch sample by sample: the same random draw, then groups and the window in python."""
    n = len(scores)
    m = int(n * min(1.0, max(0.1, 1 - prune_ratio)))
    draw = torch.randperm(n, generator=gen(seed))[:m].tolist()
    if anneal:
        return set(draw)
    s = [scores[i] for i in draw]
    if max(s) == min(s):
        size = math.ceil(m / k)
        labels, count = [p // size for p in range(m)], math.ceil(m / size)
    else:
        labels, count = kmeans_reference(s, k), k
    if iteration == 0:
        chosen = range(count)
    else:
        w = round(count * window_scale)
        start = iteration % (count - w + 1)
        chosen = range(start, start + w)
    return {i for i, g in zip(draw, labels, strict=True) if g in chosen}


# ---------------------------------------------------------------------- SeTa
def test_kmeans_1d_groups_a_hand_made_case_easy_to_hard():
    x = torch.tensor([5.0, 0.1, 1.0, 0.2, 1.1, 0.3])
    assert kmeans_1d(x, 3).tolist() == [2, 0, 1, 0, 1, 0]  # {0.1, 0.2, 0.3}, {1.0, 1.1}, {5.0}
    assert kmeans_1d(x, 1).tolist() == [0] * 6


@pytest.mark.parametrize("seed, k", [(0, 5), (1, 3), (2, 10), (3, 2)])
def test_kmeans_1d_equals_the_plain_reference(seed, k):
    x = torch.rand(200, generator=gen(seed)) ** 3 * 4  # skewed, like losses
    assert kmeans_1d(x, k).tolist() == kmeans_reference(x.double().tolist(), k)


def test_equal_groups_are_torch_chunk():
    for m, k in [(10, 4), (9, 4), (360, 5), (3, 5)]:
        groups, count = equal_groups(m, k)
        chunks = torch.chunk(torch.arange(m), k)
        assert count == len(chunks)
        assert groups.tolist() == [g for g, c in enumerate(chunks) for _ in c]
    assert equal_groups(9, 4)[1] == 3  # 3, 3, 3: three groups


def test_seta_window_slides_from_easy_to_hard_and_wraps():
    assert seta_window(5, 0, 0.9) == (0, 5)  # the first epoch: every group
    assert [seta_window(5, t, 0.9) for t in range(1, 5)] == [(1, 5), (0, 4), (1, 5), (0, 4)]  # round(4.5) = 4
    assert [seta_window(5, t, 0.5)[0] for t in range(1, 6)] == [1, 2, 3, 0, 1]  # round(2.5) = 2, 4 places
    assert seta_window(10, 3, 0.3) == (3, 6)
    with pytest.raises(ValueError, match="seta_window"):
        seta_window(2, 1, 0.2)


def test_seta_anneal_start_is_the_authors_delta_rule():
    # the authors prune in epoch e (1-based) while e <= epochs x 0.875
    for epochs in (1, 4, 6, 8, 12, 20, 200):
        assert seta_anneal_start(epochs, 0.125) == sum(e <= epochs * 0.875 for e in range(1, epochs + 1))
    assert seta_anneal_start(10, 0.0) == 10 and seta_anneal_start(10, 1.0) == 0
    assert seta_keep_count(400, 0.1) == 360 and seta_keep_count(400, 0.95) == 40  # at least 0.1 kept


@pytest.mark.parametrize("iteration, ratio, k, scale, anneal", [
    (0, 0.1, 5, 0.9, False), (1, 0.1, 5, 0.9, False), (2, 0.1, 5, 0.9, False), (3, 0.3, 4, 0.5, False),
    (7, 0.0, 10, 0.3, False), (2, 0.1, 5, 0.9, True)])
def test_seta_plan_equals_the_plain_reference(iteration, ratio, k, scale, anneal):
    scores = (torch.rand(300, generator=gen(5)) ** 2 * 3).tolist()
    keep = seta_plan(torch.tensor(scores), iteration, ratio, k, scale, anneal, gen(11))
    want = seta_reference(torch.tensor(scores).double().tolist(), iteration, ratio, k, scale, anneal, 11)
    assert {i for i in range(300) if keep[i]} == want


def test_seta_plan_with_equal_scores_chunks_the_draw_and_never_trains_nothing():
    scores = torch.full((40,), 3.0)
    keep = seta_plan(scores, 1, 0.1, 5, 0.5, False, gen(0))  # 36 drawn, chunks of 8: 8, 8, 8, 8, 4
    draw = torch.randperm(40, generator=gen(0))[:36]
    assert {i for i in range(40) if keep[i]} == set(draw[8:24].tolist())  # groups 1 and 2
    one = seta_plan(torch.tensor([0.0, 0.0, 0.0, 9.0]), 2, 0.0, 2, 0.5, False, gen(0))  # window (0, 1): 3 zeros
    assert int(one.sum()) == 3 and not one[3]
    nonfinite = seta_plan(torch.tensor([0.1, math.inf, 0.2, math.nan, 5.0]), 1, 0.0, 2, 0.5, False, gen(0))
    assert nonfinite.tolist() == [False, True, False, True, True]  # non-finite = the largest: the hard group


# ---------------------------------------------------------------------- OrderDP
def test_orderdp_sizes_are_the_authors_int_arithmetic():
    assert orderdp_sizes(500, 0.8, 0.375) == (400, 150)
    assert orderdp_sizes(50000, 0.75, 0.85) == (37500, 31875)
    assert orderdp_sizes(100, 1.0, 0.29) == (100, 28)  # int(0.29 x 100) = int(28.999...) = 28, as theirs


def test_orderdp_plan_keeps_the_top_q_of_the_pool_by_stale_loss():
    scores = torch.tensor([0.5, 2.0, 0.1, 3.0, 1.0, 0.7, math.inf, 0.2])
    keep = orderdp_plan(scores, 5, 2, gen(4))
    pool = torch.randperm(8, generator=gen(4))[:5].tolist()
    want = sorted(pool, key=lambda i: -float(scores[i]))[:2]  # plain: the 2 largest of the pool
    assert {i for i in range(8) if keep[i]} == set(want)
    assert int(keep.sum()) == 2
    ties = orderdp_plan(torch.full((10,), 3.0), 6, 3, gen(1))  # equal scores: the pool's first three
    assert {i for i in range(10) if ties[i]} == set(torch.randperm(10, generator=gen(1))[:3].tolist())
    assert orderdp_plan(scores, 8, 8, gen(0)).all()


# ---------------------------------------------------------------------- PFB
def test_pooled_features_and_density_on_a_hand_computed_case():
    assert pooled(torch.arange(12.0).reshape(1, 2, 2, 3)).tolist() == [[2.5, 8.5]]
    assert pooled(torch.ones(2, 3)).shape == (2, 3)
    centres = torch.tensor([[0.0, 0.0], [2.0, 0.0]])
    z = torch.tensor([[0.0, 0.0], [0.0, 1.0]])
    # squared distances (0, 4) and (1, 5); nearest 0 and 1: h^2 = 0.5; weights 3 : 1
    d = density(z, centres, torch.tensor([3.0, 1.0]))
    want = [(3 * math.exp(0) + math.exp(-4)) / 4, (3 * math.exp(-1) + math.exp(-5)) / 4]
    assert d.tolist() == pytest.approx(want, rel=1e-6)


def test_block_dense_lets_the_rarest_continue_with_an_exact_count():
    dens = torch.tensor([0.9, 0.1, 0.5, 0.3, 0.7])
    assert block_dense(dens, 0.4).tolist() == [False, True, True, True, False]  # the 2 densest of 5 blocked
    assert block_dense(dens, 0.0).all()
    assert block_dense(torch.ones(4), 0.5).tolist() == [True, True, False, False]  # ties by position
    for b in (1, 7, 64, 100):
        assert int(block_dense(torch.rand(b, generator=gen(b)), 0.4).sum()) == b - math.floor(0.4 * b)


def test_centres_fill_then_move_by_their_momentum():
    c = Centres(2, momentum=0.5)
    c.update(torch.tensor([[0.0], [4.0], [1.0]]))  # fills (0) and (4); then 1.0 goes to centre 0
    assert c.full and c.filled == 2
    assert c.centres.flatten().tolist() == [0.5, 4.0] and c.weights.tolist() == [0.75, 0.25]
    c.update(torch.tensor([[4.0], [6.0]]))  # both to centre 1 (mean 5)
    assert c.centres.flatten().tolist() == [0.5, 4.5] and c.weights.tolist() == [0.375, 0.625]
    again = Centres(2, momentum=0.5)
    again.load_state_dict(c.state_dict())
    assert torch.equal(again.centres, c.centres) and again.filled == 2


@pytest.mark.parametrize("field, value, message", [
    ("seta_prune_ratio", 0.95, r"seta_prune_ratio must be in \[0, 0.9\]"), ("seta_groups", 0, "seta_groups"),
    ("seta_window", 0.0, r"seta_window must be in \(0, 1\]"), ("seta_anneal", 1.5, "seta_anneal"),
    ("orderdp_pool", 0.0, "orderdp_pool"), ("orderdp_top_q", 1.2, "orderdp_top_q"),
    ("pfb_prune_ratio", 1.0, r"pfb_prune_ratio must be in \[0, 1\)"), ("pfb_centres", 0, "pfb_centres must be")])
def test_bad_pruning_knobs_are_refused_by_name(field, value, message):
    with pytest.raises(ValueError, match=message):
        Config(**{field: value})
    with pytest.raises(ValueError, match="seta_window must give a window"):
        Config(seta_groups=2, seta_window=0.2)
