"""Data transforms: exact noise counts and pairings, the long-tailed class counts, test labels untouched,
group labels aligned, composition, determinism, and one clear error per bad parameter."""

import math

import pytest
import torch

from ies.data import transforms as T
from ies.data.datasets import ArrayDataset, synthetic


def signals(n_per_class=(30, 30, 30, 30, 30), n_test=10, dim=6, name="toy"):
    """Class-sorted 1-D data: class c has n_per_class[c] training samples (x = c + sample index / 1000)."""
    y = torch.cat([torch.full((k,), c) for c, k in enumerate(n_per_class)])
    x = y.double().unsqueeze(1).repeat(1, dim).float() + torch.arange(y.numel()).unsqueeze(1) / 1000
    c = len(n_per_class)
    yt = torch.arange(c).repeat_interleave(n_test)
    xt = yt.float().unsqueeze(1).repeat(1, dim)
    return ArrayDataset(x, y, xt, yt, c, name)


def images(n=40, n_test=20, classes=10, name="cifar10"):
    g = torch.Generator().manual_seed(1)
    return ArrayDataset(torch.randint(0, 256, (n, 8, 8, 3), generator=g, dtype=torch.uint8),
                        torch.arange(n) % classes, torch.randint(0, 256, (n_test, 8, 8, 3), generator=g,
                                                                  dtype=torch.uint8),
                        torch.arange(n_test) % classes, classes, name, (0.5,) * 3, (0.25,) * 3)


@pytest.mark.parametrize("rate", [0.0, 0.2, 0.37, 0.9])
def test_symmetric_noise_flips_exactly_round_rate_n_to_other_classes(rate):
    data = synthetic(1000, num_classes=4)
    out, truth = T.symmetric_noise(data, rate, seed=3)
    n = data.num_train
    flipped = out.y_train != data.y_train
    assert int(flipped.sum()) == round(rate * n)  # every chosen label really changed
    assert torch.equal(truth.noisy, flipped)
    assert torch.equal(truth.clean_y_train, data.y_train)
    assert torch.equal(out.y_test, data.y_test) and torch.equal(out.x_test, data.x_test)
    assert torch.equal(out.x_train, data.x_train)
    assert int(out.y_train.min()) >= 0 and int(out.y_train.max()) < 4


def test_symmetric_noise_is_uniform_over_the_other_classes_and_deterministic():
    data = signals((2000, 2000, 2000))
    out, truth = T.symmetric_noise(data, 0.6, seed=0)
    again, _ = T.symmetric_noise(data, 0.6, seed=0)
    other, _ = T.symmetric_noise(data, 0.6, seed=1)
    assert torch.equal(out.y_train, again.y_train) and not torch.equal(out.y_train, other.y_train)
    src, dst = data.y_train[truth.noisy], out.y_train[truth.noisy]
    for c in range(3):  # each source class goes to each of the 2 others about half of the time
        to = dst[src == c]
        assert to.numel() > 1000 and not (to == c).any()
        share = (to == (c + 1) % 3).double().mean()
        assert abs(float(share) - 0.5) < 0.05


def test_the_input_data_set_is_not_modified():
    data = signals()
    before = (data.x_train.clone(), data.y_train.clone(), data.x_test.clone())
    T.symmetric_noise(data, 0.5)
    T.asymmetric_noise(data, 0.5, pairs={0: 1})
    T.minority_subgroup(data, 0.5)
    assert torch.equal(before[0], data.x_train) and torch.equal(before[1], data.y_train)
    assert torch.equal(before[2], data.x_test)


def test_cifar10_asymmetric_pairs_and_exact_counts():
    data = images(n=1000)  # 100 per class
    out, truth = T.asymmetric_noise(data, 0.3, seed=0)
    moved = {}
    for src in range(10):
        dst = out.y_train[data.y_train == src]
        changed = dst[dst != src]
        moved[src] = sorted(set(changed.tolist()))
        assert changed.numel() == (30 if src in (9, 2, 4, 3, 5) else 0)
    assert moved == {0: [], 1: [], 2: [0], 3: [5], 4: [7], 5: [3], 6: [], 7: [], 8: [], 9: [1]}
    assert torch.equal(truth.noisy, out.y_train != data.y_train)
    assert torch.equal(out.y_test, data.y_test)
    # an .npz subset named cifar10_* gets the same pairing; other names need explicit pairs
    assert T.pairs_for(images(name="cifar10_subset_10k")) == T.CIFAR10_PAIRS
    with pytest.raises(ValueError, match="pairs"):
        T.asymmetric_noise(images(name="cifar100"), 0.2)


def test_mnist1d_pairing_is_the_documented_one():
    assert T.MNIST1D_PAIRS == {2: 7, 3: 8, 5: 6, 6: 5, 7: 1}
    data = signals((40,) * 10, name="mnist1d")
    out, truth = T.asymmetric_noise(data, 0.25, seed=5)
    assert int(truth.noisy.sum()) == 5 * 10
    for src, dst in T.MNIST1D_PAIRS.items():
        assert int(((data.y_train == src) & (out.y_train == dst)).sum()) == 10


@pytest.mark.parametrize("imbalance", [1, 10, 100, 3.7])
def test_long_tailed_class_counts_follow_the_profile(imbalance):
    data = signals((500, 520, 510, 600, 505))  # smallest class: 500
    out, truth = T.long_tailed(data, imbalance, seed=0)
    counts = torch.bincount(out.y_train, minlength=5).tolist()
    assert counts == [math.floor(500 * imbalance ** (-c / 4)) for c in range(5)]
    assert counts[0] == 500 and counts[-1] == math.floor(500 / imbalance)
    assert torch.equal(out.y_test, data.y_test) and torch.equal(out.x_test, data.x_test)  # balanced test set
    # the kept samples are real training samples, in their original order, with their own labels
    assert torch.equal(out.x_train, data.x_train[truth.source_index])
    assert torch.equal(out.y_train, data.y_train[truth.source_index])
    assert bool((truth.source_index.diff() > 0).all())


def test_long_tailed_counts_exact_values():
    assert T.long_tailed_counts(400, 10, 10) == [400, 309, 239, 185, 143, 111, 86, 66, 51, 40]
    assert T.long_tailed_counts(1000, 3, 100) == [1000, 100, 10]
    assert T.long_tailed_counts(7, 1, 100) == [7]


def test_minority_subgroup_marks_the_attribute_in_train_and_test():
    data = signals((40, 40, 40), n_test=20)
    out, truth = T.minority_subgroup(data, 0.25, classes=(0, 2), attribute="invert", seed=0)
    g, gt = truth.group_train, truth.group_test
    assert [int(((data.y_train == c) & (g == 1)).sum()) for c in range(3)] == [10, 0, 10]
    assert [int(((data.y_test == c) & (gt == 1)).sum()) for c in range(3)] == [5, 0, 5]
    assert torch.equal(out.x_train[g == 1], -data.x_train[g == 1])  # the attribute is on exactly the group
    assert torch.equal(out.x_train[g == 0], data.x_train[g == 0])
    assert torch.equal(out.x_test[gt == 1], -data.x_test[gt == 1])
    assert torch.equal(out.y_train, data.y_train) and torch.equal(out.y_test, data.y_test)


def test_image_subgroups_invert_colours_or_add_noise():
    data = images(n=100, n_test=50)
    out, truth = T.minority_subgroup(data, 0.2, attribute="invert")
    g = truth.group_train
    assert int(g.sum()) == 20 and int(truth.group_test.sum()) == 10
    assert torch.equal(out.x_train[g == 1], 255 - data.x_train[g == 1])
    noisy, truth2 = T.minority_subgroup(data, 0.2, attribute="noise", noise_std=0.1, seed=1)
    g2 = truth2.group_train
    assert noisy.x_train.dtype == torch.uint8
    assert torch.equal(noisy.x_train[g2 == 0], data.x_train[g2 == 0])
    diff = noisy.x_train[g2 == 1].float() - data.x_train[g2 == 1].float()
    assert 15 < float(diff.std()) < 30  # 0.1 x 255, a little less where clipped


def test_transforms_compose_with_aligned_truth():
    data = signals((100, 100, 100, 100))
    step1, t1 = T.long_tailed(data, 10, seed=0)
    step2, t2 = T.minority_subgroup(step1, 0.2, seed=0, truth=t1)
    step3, t3 = T.symmetric_noise(step2, 0.3, seed=0, truth=t2)
    n = step3.num_train
    assert n == sum(T.long_tailed_counts(100, 4, 10))
    for field in (t3.clean_y_train, t3.noisy, t3.group_train, t3.source_index):
        assert field.shape == (n,)
    assert torch.equal(t3.clean_y_train, data.y_train[t3.source_index])
    assert torch.equal(t3.noisy, step3.y_train != t3.clean_y_train)
    assert int(t3.noisy.sum()) == round(0.3 * n)
    assert torch.equal(t3.group_train, t2.group_train)  # noise does not move the group labels
    assert len(t3.steps) == 3
    with pytest.raises(ValueError, match="truth"):
        T.symmetric_noise(data, 0.1, truth=t1)  # a truth of another (smaller) training set


@pytest.mark.parametrize(("call", "name"), [
    (lambda d: T.symmetric_noise(d, 1.0), "rate"),
    (lambda d: T.symmetric_noise(d, -0.1), "rate"),
    (lambda d: T.asymmetric_noise(d, float("nan"), pairs={0: 1}), "rate"),
    (lambda d: T.long_tailed(d, 0.5), "imbalance"),
    (lambda d: T.long_tailed(d, float("inf")), "imbalance"),
    (lambda d: T.long_tailed(d, 10, n_max=31), "n_max"),
    (lambda d: T.minority_subgroup(d, 0.0), "share"),
    (lambda d: T.minority_subgroup(d, 0.6), "share"),
    (lambda d: T.minority_subgroup(d, 0.1, classes=(7,)), "classes"),
    (lambda d: T.minority_subgroup(d, 0.1, attribute="tint"), "attribute"),
    (lambda d: T.asymmetric_noise(d, 0.1, pairs={0: 0}), "pairs"),
])
def test_bad_input_is_one_error_naming_the_parameter(call, name):
    with pytest.raises(ValueError, match=rf"^{name}\b") as err:
        call(signals())
    assert "\n" not in str(err.value)


def test_apply_transforms_in_order_and_identity():
    data = signals((100, 100, 100, 100))
    same, truth = T.apply_transforms(data)
    assert same is data and truth.steps == () and not truth.noisy.any()
    out, truth = T.apply_transforms(data, label_noise=0.2, imbalance=4, subgroup_share=0.1, seed=3)
    assert [s.split("(")[0] for s in truth.steps] == ["long_tailed", "minority_subgroup", "symmetric_noise"]
    assert torch.bincount(truth.clean_y_train).tolist() == T.long_tailed_counts(100, 4, 4)
    assert int(truth.noisy.sum()) == round(0.2 * out.num_train)
    again, truth2 = T.apply_transforms(data, label_noise=0.2, imbalance=4, subgroup_share=0.1, seed=3)
    assert torch.equal(again.y_train, out.y_train) and torch.equal(truth2.group_test, truth.group_test)
    with pytest.raises(ValueError, match="^noise_type"):
        T.apply_transforms(data, noise_type="pairwise")
