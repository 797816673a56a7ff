"""Per-group accounting on hand-made cases: mastered shares, first-mastered epochs, re-entries, recall,
the demographic-parity difference, and the per-group cap on the mastered share."""

import math

import numpy as np
import pytest
import torch

from ies.experiments import groups as G
from ies.method.cap import cap_mastered

# 5 samples x 4 epochs; groups: 0 0 1 1 2
MASTERED = torch.tensor([
    [0, 1, 1, 0],  # group 0: first 2, one re-entry
    [0, 0, 1, 1],  # group 0: first 3
    [1, 0, 1, 0],  # group 1: first 1, two re-entries
    [0, 0, 0, 0],  # group 1: never
    [0, 0, 0, 1],  # group 2: first 4
], dtype=torch.bool)
GROUPS = torch.tensor([0, 0, 1, 1, 2])


def test_mastered_counts_and_shares_by_hand():
    counts = G.mastered_counts(MASTERED, GROUPS)
    assert counts.tolist() == [[0, 1, 2, 1], [1, 0, 1, 0], [0, 0, 0, 1]]
    table = G.mastered_share_table(MASTERED, GROUPS, ["a", "b", "c"])
    assert table.shape == (12, 5)
    a = table[table.group == "a"]
    assert a.epoch.tolist() == [1, 2, 3, 4] and a.n.tolist() == [2] * 4
    assert a.share_mastered.tolist() == [0.0, 0.5, 1.0, 0.5]
    assert table[table.group == "c"].share_mastered.tolist() == [0, 0, 0, 1]


def test_mastery_summary_by_hand():
    s = G.mastery_summary(MASTERED, GROUPS).set_index("group")
    assert s.n.tolist() == [2, 2, 1]
    assert s.ever_mastered.tolist() == [2, 1, 1]
    assert s.share_ever_mastered.tolist() == [1.0, 0.5, 1.0]
    assert s.share_final.tolist() == [0.5, 0.0, 1.0]
    assert s.first_mastered_epoch.tolist() == [2.5, 1.0, 4.0]
    assert s.earliest_epoch.tolist() == [2, 1, 4]
    assert s.reentries.tolist() == [1, 2, 0]
    assert s.reentries_per_mastered.tolist() == [0.5, 2.0, 0.0]
    assert s.mastered_sample_epochs.tolist() == [4, 2, 1]


def test_a_group_never_mastered_has_nan_first_epoch_and_zero_earliest():
    s = G.mastery_summary(MASTERED[:, :1], GROUPS, num_groups=4)
    assert s.ever_mastered.tolist() == [0, 1, 0, 0]
    assert math.isnan(s.first_mastered_epoch[0]) and s.earliest_epoch.tolist() == [0, 1, 0, 0]
    assert s.n[3] == 0  # an empty group is a row of zeros and NaN shares
    assert math.isnan(s.share_ever_mastered[3])


def test_per_group_counts_sum_to_the_totals_on_random_runs():
    g = torch.Generator().manual_seed(0)
    for _ in range(5):
        n, t, k = 200, 7, 6
        mastered = torch.rand(n, t, generator=g) < 0.4
        groups = torch.randint(0, k, (n,), generator=g)
        counts = G.mastered_counts(mastered, groups)
        assert torch.equal(counts.sum(0), mastered.sum(0))
        s = G.mastery_summary(mastered, groups)
        assert s.n.sum() == n
        assert s.ever_mastered.sum() == int(mastered.any(1).sum())
        assert s.reentries.sum() == int((mastered[:, :-1] & ~mastered[:, 1:]).sum())
        assert s.mastered_sample_epochs.sum() == int(mastered.sum())
        table = G.mastered_share_table(mastered, groups)
        assert table.groupby("epoch").n_mastered.sum().tolist() == mastered.sum(0).tolist()
        pred, y = torch.randint(0, 3, (n,), generator=g), torch.randint(0, 3, (n,), generator=g)
        r = G.recall_table(pred, y, groups, 3)
        assert r.n.sum() == n and r.correct.sum() == int((pred == y).sum())
        correct, count = G.recall_matrix(pred, y, groups, 3)
        assert torch.equal(count.sum(0), torch.bincount(y, minlength=3))
        assert torch.equal(correct.sum(0), torch.bincount(y[pred == y], minlength=3))


def test_noisy_vs_clean_shares():
    noisy = torch.tensor([False, True, True, False, False])
    table = G.noisy_vs_clean(MASTERED, noisy)
    clean, dirty = table[table.group == "clean"], table[table.group == "noisy"]
    assert clean.share_mastered.tolist() == pytest.approx([0.0, 1 / 3, 1 / 3, 1 / 3])
    assert dirty.share_mastered.tolist() == [0.5, 0.0, 1.0, 0.5]


def test_recall_per_class_and_group_by_hand():
    y = torch.tensor([0, 0, 1, 1, 1, 0, 1, 1])
    pred = torch.tensor([0, 1, 1, 1, 0, 0, 0, 0])
    grp = torch.tensor([0, 0, 0, 0, 0, 1, 1, 1])
    correct, count = G.recall_matrix(pred, y, grp, 2)
    assert count.tolist() == [[2, 3], [1, 2]] and correct.tolist() == [[1, 2], [1, 0]]
    by_class = G.recall_table(pred, y, y, 2, ["class 0", "class 1"])
    assert by_class.accuracy.tolist() == [2 / 3, 2 / 5]  # = recall of each class
    by_group = G.recall_table(pred, y, grp, 2)
    assert by_group.accuracy.tolist() == [3 / 5, 1 / 3]
    assert by_group.balanced_recall.tolist() == pytest.approx([(1 / 2 + 2 / 3) / 2, (1 + 0) / 2])


def test_demographic_parity_difference_binary_and_multiclass():
    pred = torch.tensor([1, 1, 1, 0, 1, 0, 0, 0])
    grp = torch.tensor([0, 0, 0, 0, 1, 1, 1, 1])
    assert G.demographic_parity_difference(pred, grp, 2) == pytest.approx(0.75 - 0.25)
    assert G.demographic_parity_difference(pred, grp, 2, positive=1) == pytest.approx(0.5)
    assert G.demographic_parity_difference(pred, torch.zeros(8, dtype=torch.long), 2) == 0.0
    # three classes, three groups: rates of class 2 are 0, 0.5, 1 -> the largest gap is 1
    pred3 = torch.tensor([0, 1, 2, 0, 2, 2])
    grp3 = torch.tensor([0, 0, 1, 1, 2, 2])
    rates = G.positive_rates(pred3, grp3, 3)
    assert rates.tolist() == [[0.5, 0.5, 0.0], [0.5, 0.0, 0.5], [0.0, 0.0, 1.0]]
    assert G.demographic_parity_difference(pred3, grp3, 3) == 1.0
    assert G.demographic_parity_difference(pred3, grp3, 3, positive=0) == 0.5


def test_cap_keeps_the_lowest_scores_per_group_exactly():
    mastered = torch.tensor([1, 1, 1, 0, 1, 1, 1, 1, 0, 1], dtype=torch.bool)
    groups = torch.tensor([0, 0, 0, 0, 0, 1, 1, 1, 1, 1])
    score = torch.tensor([0.5, 0.1, 0.3, 0.0, 0.2, 0.9, 0.9, 0.1, 0.0, float("nan")])
    # group 0: 5 samples, cap 0.5 -> 2 kept: scores 0.1 (index 1) and 0.2 (index 4)
    # group 1: 5 samples -> 2 kept: 0.1 (index 7), then the 0.9 tie goes to the lower index 5; NaN last
    out = cap_mastered(mastered, groups, 0.5, score)
    assert torch.nonzero(out).flatten().tolist() == [1, 4, 5, 7]
    assert torch.equal(cap_mastered(mastered, groups, 1.0, score), mastered)
    # 0.29 x 100 allows 29 (not 28 from float rounding)
    many = cap_mastered(torch.ones(100, dtype=torch.bool), torch.zeros(100, dtype=torch.long), 0.29,
                          torch.arange(100.0).flip(0))
    assert torch.nonzero(many).flatten().tolist() == list(range(71, 100))


def test_cap_is_never_exceeded_and_matches_a_plain_reference():
    g = torch.Generator().manual_seed(1)
    for cap in (0.05, 0.3, 0.5, 0.77, 1.0):
        n = 500
        mastered = torch.rand(n, generator=g) < 0.6
        groups = torch.randint(0, 7, (n,), generator=g)
        score = torch.rand(n, generator=g).round(decimals=2)  # with ties
        out = cap_mastered(mastered, groups, cap, score)
        assert not (out & ~mastered).any()
        ref = np.zeros(n, dtype=bool)
        for k in range(7):  # plain reference: sort each group's mastered by (score, index)
            members = [i for i in range(n) if groups[i] == k and mastered[i]]
            members.sort(key=lambda i: (float(score[i]), i))
            limit = math.floor(cap * int((groups == k).sum()) + 1e-9)
            ref[members[:limit]] = True
            assert int(out[groups == k].sum()) <= limit
        assert out.numpy().tolist() == ref.tolist()


@pytest.mark.parametrize("cap", [0.0, -0.1, 1.01, float("nan")])
def test_cap_outside_range_is_an_error_naming_it(cap):
    with pytest.raises(ValueError, match=r"^cap must be in \(0, 1\]"):
        cap_mastered(MASTERED[:, 0], GROUPS, cap, torch.zeros(5))


def test_fit_shares_by_hand():
    y = torch.tensor([0, 1, 2, 2, 0])
    clean = torch.tensor([0, 1, 1, 0, 0])
    noisy = y != clean
    pred = torch.tensor([0, 0, 2, 0, 0])
    assert G.fit_shares(pred, y, clean, noisy) == {"clean_fit": 2 / 3, "noisy_memorised": 0.5, "noisy_true": 0.5}


def test_group_tables_cover_every_partition_and_sum_to_totals():
    class_train = torch.tensor([0, 0, 1, 1, 1])
    group_train = torch.tensor([0, 1, 0, 0, 1])
    noisy = torch.tensor([False, False, True, False, False])
    class_test, group_test = torch.tensor([0, 1, 1, 0]), torch.tensor([1, 0, 1, 0])
    parts = G.partitions(class_train, group_train, noisy, 2, class_test, group_test)
    assert list(parts) == ["class", "subgroup", "class/subgroup", "noise"]
    pred = torch.tensor([0, 1, 0, 1])
    per_epoch, summary = G.group_tables(MASTERED, parts, pred, class_test, 2)
    for name in parts:
        rows = per_epoch[per_epoch.partition == name]
        assert rows.groupby("epoch").n_mastered.sum().tolist() == MASTERED.sum(0).tolist()
        assert summary[summary.partition == name].n.sum() == 5
    cls = summary[summary.partition == "class"].set_index("group")
    assert cls.test_accuracy.tolist() == [0.5, 0.5] and cls.test_n.tolist() == [2, 2]
    sub = summary[summary.partition == "subgroup"].set_index("group")
    assert sub.test_accuracy.tolist() == [0.5, 0.5]
    cross = summary[summary.partition == "class/subgroup"].set_index("group")
    assert cross.loc["1/minority", "test_n"] == 1 and cross.loc["1/minority", "test_correct"] == 0
    assert cross.loc["0/minority", "ever_mastered"] == 1  # sample 1: class 0, minority, first mastered at 3
    assert math.isnan(summary[summary.partition == "noise"].test_accuracy.iloc[0])
    assert list(G.partitions(class_train, torch.zeros(5, dtype=torch.long), torch.zeros(5, dtype=torch.bool), 2)) == [
        "class"]
