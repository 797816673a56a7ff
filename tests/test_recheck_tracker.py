"""The tracker under a re-check schedule: equality with the per-sample lists of
:class:`tests.reference.RecordedLists` on random histories with gaps, and, when every epoch re-checks,
bit-for-bit the per-epoch history of earlier versions (one row per epoch)."""

import zlib

import numpy as np
import pytest
import torch

from ies import MasteryTracker
from ies.method.criteria import mastered_mask

from .reference import RecordedLists
from .test_tracker import CONFIGS, _random_histories


def _feed(tracker, rng, idx, values):
    """Record ``values`` of samples ``idx`` in a random order and random batch sizes."""
    order = rng.permutation(len(idx))
    for chunk in np.array_split(order, rng.integers(1, 5)):
        tracker.record(torch.as_tensor(idx[chunk]), torch.as_tensor(values[chunk]))


@pytest.mark.parametrize("rule,order,window,patience", CONFIGS)
def test_held_samples_follow_the_per_sample_lists(rule, order, window, patience):
    rng = np.random.default_rng(zlib.crc32(repr(("recheck", rule, order, window, patience)).encode()))
    n, epochs, threshold = 100, 20, 10.0 ** rng.uniform(-3, -1)
    losses = _random_histories(rng, n, epochs)
    tracker = MasteryTracker(n, threshold, order=order, window=window, patience=patience, rule=rule)
    ref = RecordedLists(n, threshold, rule, order, window, patience)
    held_total = 0
    for e in range(epochs):
        recheck = bool(rng.random() < 0.4)
        mastered = tracker.mastered.numpy()
        # like a selector: without a re-check the mastered samples are not forwarded; a few of them
        # are recorded anyway (they advance), and NaN/inf gaps come from the random histories
        recorded = ~np.isnan(losses[:, e])
        if not recheck:
            recorded &= ~mastered | (rng.random(n) < 0.1)
        held_total += int((mastered & ~recorded).sum()) if not recheck else 0
        idx = np.flatnonzero(recorded)
        _feed(tracker, rng, idx, losses[idx, e])
        got = tracker.step(recheck=recheck)
        want = ref.close([float(losses[i, e]) if recorded[i] else None for i in range(n)], recheck)
        assert got.tolist() == want, f"epoch {e + 1}"
        hist = tracker.history().numpy()
        for i in range(n):
            expect = np.array([np.nan if v is None else v for v in ref.last(i, tracker.lookback)], dtype=np.float32)
            np.testing.assert_array_equal(hist[i], expect)
        last = tracker.last_recorded.numpy()
        np.testing.assert_array_equal(last, hist[:, -1])
    assert held_total > 0 and sum(ref.mastered) > 0  # the data exercise holding and mastery


@pytest.mark.parametrize("rule,order,window,patience", CONFIGS[::3])
def test_every_epoch_rechecked_is_the_per_epoch_history(rule, order, window, patience):
    """``step()`` (= ``step(recheck=True)``) every epoch: masks, history and last losses bit-for-bit
    those of a plain list of per-epoch rows (the storage of earlier versions), gaps included."""
    rng = np.random.default_rng(zlib.crc32(repr(("every", rule, order, window, patience)).encode()))
    n, epochs, threshold = 300, 16, 10.0 ** rng.uniform(-3, -1)
    losses = _random_histories(rng, n, epochs)
    tracker = MasteryTracker(n, threshold, order=order, window=window, patience=patience, rule=rule)
    rows = [np.full(n, np.nan, dtype=np.float32)] * tracker.lookback  # "before the first epoch"
    for e in range(epochs):
        idx = np.flatnonzero(~np.isnan(losses[:, e]))
        _feed(tracker, rng, idx, losses[idx, e])
        rows.append(losses[:, e])
        got = tracker.step() if e % 2 else tracker.step(recheck=True)
        recent = torch.as_tensor(np.stack(rows[-tracker.lookback:], axis=1))
        want = mastered_mask(recent, threshold, rule=rule, order=order, window=window, patience=patience)
        assert torch.equal(got, want)
        assert torch.equal(tracker.history().nan_to_num(-1.0), recent.nan_to_num(-1.0))
        assert torch.equal(tracker.last_losses.nan_to_num(-1.0), recent[:, -1].nan_to_num(-1.0))


def test_hand_computed_hold_then_recheck():
    # paper rule, order 1, look-back 2: mastered iff |L(t) - L(t-1)| < 1e-2 over the last two values
    tracker = MasteryTracker(2, 1e-2, order=1, rule="paper")
    for loss in (0.50, 0.50):
        tracker.record(torch.arange(2), torch.tensor([loss, loss]))
        tracker.step()
    assert tracker.mastered.tolist() == [True, True]
    # two epochs without re-check: sample 0 is not forwarded (held), sample 1 is recorded (advances)
    for loss in (0.52, 0.60):
        tracker.record(torch.tensor([1]), torch.tensor([loss]))
        assert tracker.step(recheck=False).tolist() == [True, False]
    assert tracker.history()[0].tolist() == [0.5, 0.5]  # sample 0's history did not move
    assert tracker.last_losses[0].isnan() and tracker.last_recorded[0] == 0.5
    # the re-check: sample 0's difference is 0.505 - 0.50 over its last recorded losses
    tracker.record(torch.arange(2), torch.tensor([0.505, 0.601]))
    assert tracker.step(recheck=False).tolist() == [True, True]  # both recorded: both advance
    tracker.record(torch.tensor([1]), torch.tensor([0.7]))
    assert tracker.step(recheck=True).tolist() == [False, False]  # a re-check: sample 0 has a gap
    assert tracker.stats() == {"n_mastered": 0, "n_newly_mastered": 0, "n_reentered": 2}


def test_state_dict_round_trip_with_holds():
    rng = np.random.default_rng(3)
    n, epochs = 60, 14
    losses = _random_histories(rng, n, epochs)
    a = MasteryTracker(n, 5e-2, order=2, window=2, patience=1, rule="official")
    b = None
    for e in range(epochs):
        recheck = e % 3 == 0
        idx = np.flatnonzero(~np.isnan(losses[:, e]) & (recheck | ~a.mastered.numpy()))
        if e == 7:  # restore mid-epoch, after half the records
            a.record(torch.as_tensor(idx[::2]), torch.as_tensor(losses[idx[::2], e]))
            b = MasteryTracker(n, 5e-2, order=2, window=2, patience=1, rule="official")
            b.load_state_dict(a.state_dict())
            for tr in (a, b):
                tr.record(torch.as_tensor(idx[1::2]), torch.as_tensor(losses[idx[1::2], e]))
        else:
            for tr in (a, b) if b is not None else (a,):
                tr.record(torch.as_tensor(idx), torch.as_tensor(losses[idx, e]))
        got = a.step(recheck=recheck)
        if b is not None:
            assert torch.equal(b.step(recheck=recheck), got) and a.stats() == b.stats()
            assert torch.equal(a.history().nan_to_num(-1.0), b.history().nan_to_num(-1.0))
    assert a.mastered.any()
