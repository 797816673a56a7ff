import math

import pytest
import torch

from ies.method.criteria import backward_difference, lookback, mastered_mask

NAN = math.nan
HALVING = [1.0, 0.5, 0.25, 0.125, 0.0625]  # D1 = -.5,-.25,-.125,-.0625; D2 = .25,.125,.0625; D3 = -.125,-.0625


def test_backward_differences_exact():
    h = torch.tensor([HALVING], dtype=torch.float64)
    assert backward_difference(h, 0).tolist() == [HALVING]
    assert backward_difference(h, 1).tolist() == [[-0.5, -0.25, -0.125, -0.0625]]
    assert backward_difference(h, 2).tolist() == [[0.25, 0.125, 0.0625]]
    assert backward_difference(h, 3).tolist() == [[-0.125, -0.0625]]


def test_second_difference_is_the_formula():
    h = torch.tensor([[3.0, 7.0, 2.0, 11.0]])
    d2 = backward_difference(h, 2)
    assert d2.tolist() == [[2.0 - 2 * 7.0 + 3.0, 11.0 - 2 * 2.0 + 7.0]]


def test_lookback():
    assert lookback("paper", 2, patience=1) == 3
    assert lookback("paper", 0, patience=4) == 4
    assert lookback("official", 2, window=3, patience=1) == 5
    assert lookback("official", 3, window=2, patience=3) == 7


# (losses, rule, order, window, patience, threshold, expected)
CASES = [
    # paper rule on the halving sequence
    (HALVING, "paper", 2, 3, 1, 0.1, True),  # |D2(4)| = 0.0625
    (HALVING, "paper", 2, 3, 1, 0.05, False),
    (HALVING, "paper", 2, 3, 2, 0.1, False),  # |D2(3)| = 0.125 >= 0.1
    (HALVING, "paper", 2, 3, 2, 0.2, True),
    (HALVING, "paper", 2, 3, 3, 0.2, False),  # |D2(2)| = 0.25
    (HALVING, "paper", 1, 3, 1, 0.07, True),  # |D1(4)| = 0.0625
    (HALVING, "paper", 1, 3, 1, 0.0625, False),  # strict inequality
    (HALVING, "paper", 3, 3, 2, 0.13, True),  # |D3| = 0.125, 0.0625
    (HALVING, "paper", 3, 3, 2, 0.1, False),
    (HALVING, "paper", 0, 3, 3, 0.3, True),  # raw losses 0.25, 0.125, 0.0625
    (HALVING, "paper", 0, 3, 3, 0.2, False),
    # official rule: a(4) = (0.25 + 0.125 + 0.0625) / 3 = 0.1458...
    (HALVING, "official", 2, 3, 1, 0.15, True),
    (HALVING, "official", 2, 3, 1, 0.14, False),
    # window 2, patience 2: a(3) = 0.1875, a(4) = 0.09375, sum 0.28125
    (HALVING, "official", 2, 2, 2, 0.3, True),
    (HALVING, "official", 2, 2, 2, 0.28, False),
    # window 1 = the paper rule's last value summed over patience: |D1(3)| + |D1(4)| = 0.1875
    (HALVING, "official", 1, 1, 2, 0.19, True),
    (HALVING, "official", 1, 1, 2, 0.18, False),
    # a plateau is mastered at any positive threshold for N >= 1, whatever its level
    ([0.3] * 5, "official", 2, 3, 1, 1e-6, True),
    ([0.3] * 5, "paper", 3, 3, 2, 1e-6, True),
    ([0.3] * 5, "paper", 0, 3, 1, 0.3, False),
    # oscillation is never mastered: |D2| = 2
    ([1.0, 0.0, 1.0, 0.0, 1.0], "paper", 2, 3, 1, 1.0, False),
    ([1.0, 0.0, 1.0, 0.0, 1.0], "official", 2, 3, 1, 1.9, False),
    # a gap inside the look-back blocks, outside it does not
    ([NAN, 0.5, 0.5, 0.5, 0.5], "official", 2, 3, 1, 1e-3, False),
    ([NAN, 0.5, 0.5, 0.5, 0.5], "paper", 2, 3, 1, 1e-3, True),
    ([0.5, math.inf, 0.5, 0.5, 0.5], "paper", 2, 3, 1, 10.0, True),
    ([0.5, math.inf, 0.5, 0.5, 0.5], "paper", 2, 3, 2, 10.0, False),
    ([0.5, 0.5, 0.5, 0.5, NAN], "paper", 0, 3, 1, 1.0, False),
]


@pytest.mark.parametrize("losses,rule,order,window,patience,threshold,expected", CASES)
def test_hand_computed_masks(losses, rule, order, window, patience, threshold, expected):
    h = torch.tensor([losses])
    got = mastered_mask(h, threshold, rule=rule, order=order, window=window, patience=patience)
    assert got.dtype == torch.bool and got.shape == (1,)
    assert bool(got[0]) is expected


def test_rows_are_independent_and_only_lookback_is_read():
    h = torch.tensor([HALVING, [0.3] * 5, [1.0, 0.0, 1.0, 0.0, 1.0]])
    assert mastered_mask(h, 0.1, rule="paper", order=2).tolist() == [True, True, False]
    longer = torch.cat([torch.full((3, 4), NAN), h], dim=1)  # older NaN columns are outside the look-back
    assert mastered_mask(longer, 0.1, rule="paper", order=2).tolist() == [True, True, False]


def test_threshold_zero_masters_nothing():
    h = torch.full((4, 5), 0.25)
    assert not mastered_mask(h, 0.0, rule="official").any()
    assert not mastered_mask(h, 0, rule="paper", order=0).any()


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"order": 4}, "order"),
        ({"order": -1}, "order"),
        ({"window": 0}, "window"),
        ({"patience": 0}, "patience"),
        ({"rule": "papers"}, "rule"),
        ({"threshold": -1e-3}, "threshold"),
        ({"threshold": math.nan}, "threshold"),
    ],
)
def test_bad_arguments_are_named(kwargs, match):
    args = {"threshold": 1e-3, "rule": "official", "order": 2, "window": 3, "patience": 1} | kwargs
    threshold = args.pop("threshold")
    with pytest.raises(ValueError, match=match):
        mastered_mask(torch.zeros(2, 8), threshold, **args)


def test_short_history_is_an_error():
    with pytest.raises(ValueError, match="needs 5 epochs"):
        mastered_mask(torch.zeros(2, 4), 1e-3, rule="official", order=2, window=3, patience=1)
