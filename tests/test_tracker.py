import math
import zlib

import numpy as np
import pytest
import torch

from ies import MasteryTracker
from ies.method.criteria import lookback
from ies.method.plain import is_mastered

CONFIGS = [
    (rule, order, window, patience)
    for rule in ("paper", "official")
    for order in (0, 1, 2, 3)
    for window, patience in ((1, 1), (3, 1), (2, 3), (4, 2))  # the paper rule ignores window
]


def _random_histories(rng: np.random.Generator, n: int, epochs: int) -> np.ndarray:
    """Losses of ``n`` samples over ``epochs``: decaying curves with per-sample noise levels, so that
    some samples meet a small threshold and some do not; NaN = not recorded, plus a few inf/NaN losses."""
    t = np.arange(epochs)
    level = rng.uniform(0.05, 2.0, size=(n, 1))
    rate = rng.uniform(0.05, 1.0, size=(n, 1))
    noise = 10.0 ** rng.uniform(-6, -1, size=(n, 1))
    losses = level * np.exp(-rate * t) + noise * rng.standard_normal((n, epochs))
    losses = np.abs(losses).astype(np.float32)
    gaps = rng.random((n, epochs)) < 0.04
    losses[gaps] = np.nan
    losses[rng.random((n, epochs)) < 0.005] = np.inf
    return losses


@pytest.mark.parametrize("rule,order,window,patience", CONFIGS)
def test_tracker_equals_plain_reference(rule, order, window, patience):
    rng = np.random.default_rng(zlib.crc32(repr((rule, order, window, patience)).encode()))
    n, epochs, threshold = 300, 14, 10.0 ** rng.uniform(-3, -1)
    losses = _random_histories(rng, n, epochs)
    tracker = MasteryTracker(n, threshold, order=order, window=window, patience=patience, rule=rule)
    seen = [[] for _ in range(n)]
    total_mastered = 0
    for e in range(epochs):
        recorded = np.flatnonzero(~np.isnan(losses[:, e]))
        rng.shuffle(recorded)  # any order, any batch sizes
        for chunk in np.array_split(recorded, rng.integers(1, 6)):
            tracker.record(torch.as_tensor(chunk), torch.as_tensor(losses[chunk, e]))
        got = tracker.step()
        for i in range(n):
            seen[i].append(float(losses[i, e]))
        want = [is_mastered(seen[i], threshold, rule, order, window, patience) for i in range(n)]
        assert got.tolist() == want, f"epoch {e + 1}"
        total_mastered += sum(want)
    assert total_mastered > 0  # the data really exercise the rule


def test_first_decision_at_lookback_epoch():
    for rule, order, window, patience in CONFIGS:
        tracker = MasteryTracker(3, 1e-3, order=order, window=window, patience=patience, rule=rule)
        first = None
        for e in range(1, 12):
            tracker.record(torch.arange(3), torch.full((3,), 1e-4 if order == 0 else 0.7))
            if tracker.step().all() and first is None:
                first = e
        assert first == lookback(rule, order, window, patience)


def test_reentry_and_counts():
    tracker = MasteryTracker(2, 1e-3, order=2, rule="paper")
    flat = [0.5, 0.5, 0.5]
    for loss in flat:
        tracker.record(torch.tensor([0, 1]), torch.tensor([loss, loss]))
        tracker.step()
    assert tracker.mastered.tolist() == [True, True]
    assert tracker.stats() == {"n_mastered": 2, "n_newly_mastered": 2, "n_reentered": 0}
    # sample 1's loss jumps: D2 = 0.9 - 1.0 + 0.5 = 0.4, it comes back
    tracker.record(torch.tensor([0, 1]), torch.tensor([0.5, 0.9]))
    assert tracker.step().tolist() == [True, False]
    assert tracker.stats() == {"n_mastered": 1, "n_newly_mastered": 0, "n_reentered": 1}
    assert tracker.active_indices().tolist() == [1]
    assert tracker.mastered_indices().tolist() == [0]


def test_unrecorded_epoch_blocks_until_it_leaves_the_lookback():
    tracker = MasteryTracker(1, 1e-3, order=1, rule="paper", patience=1)  # look-back 2
    decisions = []
    for e in range(6):
        if e != 2:
            tracker.record(torch.tensor([0]), torch.tensor([0.25]))
        decisions.append(bool(tracker.step()[0]))
    assert decisions == [False, True, False, False, True, True]


def test_later_record_overwrites():
    tracker = MasteryTracker(1, 1e-3, order=1, rule="paper")
    tracker.record(torch.tensor([0]), torch.tensor([0.3]))
    tracker.step()
    tracker.record(torch.tensor([0]), torch.tensor([5.0]))
    tracker.record(torch.tensor([0]), torch.tensor([0.3]))  # overwrites 5.0
    assert tracker.step().tolist() == [True]
    assert tracker.last_losses.tolist() == [pytest.approx(0.3)]


def test_threshold_zero_is_the_baseline():
    tracker = MasteryTracker(4, 0.0, order=2)
    for _ in range(8):
        tracker.record(torch.arange(4), torch.full((4,), 0.1))
        assert not tracker.step().any()
    assert tracker.active_indices().tolist() == [0, 1, 2, 3]


def test_state_dict_round_trip_continues_identically():
    rng = np.random.default_rng(0)
    losses = _random_histories(rng, 50, 12)
    a = MasteryTracker(50, 5e-2, order=2, window=3, patience=2, rule="official")
    for e in range(6):
        ok = np.flatnonzero(~np.isnan(losses[:, e]))
        a.record(torch.as_tensor(ok), torch.as_tensor(losses[ok, e]))
        a.step()
    ok = np.flatnonzero(~np.isnan(losses[:, 6]))
    a.record(torch.as_tensor(ok[:10]), torch.as_tensor(losses[ok[:10], 6]))  # mid-epoch
    b = MasteryTracker(50, 5e-2, order=2, window=3, patience=2, rule="official")
    b.load_state_dict(a.state_dict())
    assert b.epoch == a.epoch and torch.equal(b.mastered, a.mastered)
    for tr in (a, b):
        tr.record(torch.as_tensor(ok[10:]), torch.as_tensor(losses[ok[10:], 6]))
    for e in range(6, 12):
        if e > 6:
            ok = np.flatnonzero(~np.isnan(losses[:, e]))
            for tr in (a, b):
                tr.record(torch.as_tensor(ok), torch.as_tensor(losses[ok, e]))
        assert torch.equal(a.step(), b.step())
        assert a.stats() == b.stats()
    with pytest.raises(ValueError, match="configuration differs"):
        MasteryTracker(50, 1e-3).load_state_dict(a.state_dict())


@pytest.mark.parametrize(
    "kwargs,exc,match",
    [
        ({"num_samples": 0}, ValueError, "num_samples"),
        ({"threshold": -1.0}, ValueError, "threshold"),
        ({"threshold": math.inf}, ValueError, "threshold"),
        ({"order": 4}, ValueError, "order"),
        ({"window": 0}, ValueError, "window"),
        ({"patience": 0}, ValueError, "patience"),
        ({"rule": "authors"}, ValueError, "rule"),
        ({"order": 2.0}, TypeError, "order"),
    ],
)
def test_bad_construction(kwargs, exc, match):
    args = {"num_samples": 10, "threshold": 1e-3} | kwargs
    with pytest.raises(exc, match=match):
        MasteryTracker(**args)


def test_bad_records():
    tracker = MasteryTracker(10, 1e-3)
    with pytest.raises(IndexError, match="0..9"):
        tracker.record(torch.tensor([3, 10]), torch.zeros(2))
    with pytest.raises(IndexError, match="0..9"):
        tracker.record(torch.tensor([-1]), torch.zeros(1))
    with pytest.raises(ValueError, match="losses must have the shape"):
        tracker.record(torch.tensor([1, 2]), torch.zeros(3))
    with pytest.raises(ValueError, match="indices must be 1-D"):
        tracker.record(torch.tensor([[1, 2]]), torch.zeros(1, 2))
    with pytest.raises(TypeError, match="integer"):
        tracker.record(torch.tensor([1.0]), torch.zeros(1))
    tracker.record(torch.tensor([], dtype=torch.long), torch.zeros(0))  # an empty batch is fine
