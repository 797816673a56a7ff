import math

import pandas as pd
import pytest

from ies.experiments import stats


def test_paired_differences_pairs_by_seed_and_drops_unpaired():
    table = pd.DataFrame({
        "setting": ["a", "a", "a", "b", "b"],
        "seed": [0, 1, 2, 0, 1],
        "acc": [0.9, 0.8, 0.7, 0.85, 0.9],
    })
    d = stats.paired_differences(table, "acc", "a", "b")
    assert list(d.index) == [0, 1]
    assert d.tolist() == pytest.approx([0.05, -0.1])
    assert stats.paired_differences(table, "acc", "a", "missing").empty


def test_interval_matches_hand_computed_t_interval():
    iv = stats.interval([1.0, 2.0, 3.0])
    half = 4.302652729911275 / math.sqrt(3)  # t(0.975, 2) * std / sqrt(n), std = 1
    assert (iv.mean, iv.std, iv.n) == (2.0, 1.0, 3)
    assert iv.low == pytest.approx(2 - half) and iv.high == pytest.approx(2 + half)
    assert stats.interval([float("nan"), 1.0]).n == 1
    with pytest.raises(ValueError, match="confidence"):
        stats.interval([1.0, 2.0], confidence=1.5)


def test_verdict_rule():
    assert stats.verdict(stats.interval([])) == stats.NOT_RUN
    assert stats.verdict(stats.interval([0.1])) == stats.FEW_SEEDS
    assert stats.verdict(stats.interval([0.10, 0.11, 0.12])) == stats.SUPPORTED
    assert stats.verdict(stats.interval([-0.10, -0.11, -0.12])) == stats.NOT_SUPPORTED
    assert stats.verdict(stats.interval([-0.1, 0.1, 0.0])) == stats.WITHIN_NOISE
    # non-inferiority: -0.1 pt is within a 0.5 pt tolerance
    assert stats.verdict(stats.interval([-0.001, -0.0011, -0.0012]), bound=-0.005) == stats.SUPPORTED


def test_sign_test_exact_values():
    assert stats.sign_test(9, 10) == pytest.approx(22 / 1024)
    assert stats.sign_test(5, 10) == pytest.approx(1.0)
    assert stats.sign_test(0, 0) == 1.0
    assert stats.sign_verdict(10, 10) == stats.SUPPORTED
    assert stats.sign_verdict(0, 10) == stats.NOT_SUPPORTED
    assert stats.sign_verdict(6, 10) == stats.WITHIN_NOISE
    with pytest.raises(ValueError, match="wins"):
        stats.sign_test(11, 10)


def test_no_verdict_below_three_seeds():
    assert stats.verdict(stats.interval([0.1])) == stats.FEW_SEEDS
    assert stats.verdict(stats.interval([0.10, 0.10])) == stats.FEW_SEEDS  # two agreeing seeds: no verdict
    assert stats.verdict(stats.interval([0.10, 0.11, 0.12])) == stats.SUPPORTED
    assert stats.decided(stats.SUPPORTED) and stats.decided(stats.NOT_SUPPORTED)
    assert not stats.decided(stats.WITHIN_NOISE) and not stats.decided(stats.FEW_SEEDS)


def test_binomial_floor_widens_an_interval_of_identical_seeds():
    assert stats.binomial_floor(0.9, 1000) == pytest.approx(math.sqrt(0.09 / 1000))
    assert stats.binomial_floor(0.9, 0) == 0.0
    with pytest.raises(ValueError, match="n_test"):
        stats.binomial_floor(0.9, -1)
    same = [0.01, 0.01, 0.01]  # three seeds, identical differences: std 0
    assert stats.interval(same).half == 0.0
    iv = stats.interval(same, floor=0.03)
    assert iv.floored and iv.std == 0.03
    assert iv.half == pytest.approx(4.302652729911275 * 0.03 / math.sqrt(3))
    assert stats.verdict(iv, 0.0) == stats.WITHIN_NOISE  # +1 pt over a 3 pt floor is inside the noise
    wide = stats.interval([0.0, 0.1, 0.2], floor=0.03)  # the sample spread (0.1) is larger: kept
    assert not wide.floored and wide.std == pytest.approx(0.1)


def test_paired_interval_floors_accuracy_at_the_test_sets_noise():
    table = pd.DataFrame({"setting": ["a"] * 3 + ["b"] * 3, "seed": [0, 1, 2] * 2,
                          "best_test_accuracy": [0.91, 0.91, 0.91, 0.90, 0.90, 0.90], "num_test": 1000})
    iv = stats.paired_interval(table, "best_test_accuracy", "a", "b")
    assert iv.mean == pytest.approx(0.01) and iv.floored
    assert iv.std == pytest.approx(math.sqrt(0.905 * 0.095 / 1000))
    assert stats.paired_interval(table, "best_test_accuracy", "a", "b", n_test=0).std == pytest.approx(0.0, abs=1e-12)
    as_loss = table.rename(columns={"best_test_accuracy": "loss"})  # not an accuracy: no floor
    assert not stats.paired_interval(as_loss, "loss", "a", "b").floored


def test_pm_shows_the_interval_and_explain_the_detectable_effect():
    iv = stats.interval([1.0, 2.0, 3.0], 0.95)
    half = 4.302652729911275 / math.sqrt(3)
    assert iv.pm(1.0, "x") == f"+2.00 x [{2 - half:+.2f}, {2 + half:+.2f}] (3 seeds)"
    assert stats.interval([0.5]).pm(1.0, "x") == "+0.50 x (1 seed)"
    text = stats.explain(stats.interval([-1.0, 0.0, 1.0]), 0.0, 1.0, "x")
    assert "contains the bound" in text and f"{4.302652729911275 / math.sqrt(3):.2f} x" in text
    assert "illustration" in stats.explain(stats.interval([1.0, 2.0]))
    assert "above the bound" in stats.explain(stats.interval([1.0, 1.1, 1.2]))


def test_half_width_is_the_error_bar_of_a_mean():
    assert stats.half_width([1.0, 2.0, 3.0]) == pytest.approx(4.302652729911275 / math.sqrt(3))
    assert stats.half_width([5.0]) == 0.0
    assert stats.half_width([1.0, 1.0, 1.0], floor=0.5) == pytest.approx(4.302652729911275 * 0.5 / math.sqrt(3))
