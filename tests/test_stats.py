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
    assert stats.verdict(stats.interval([0.1])) == stats.ONE_SEED
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
