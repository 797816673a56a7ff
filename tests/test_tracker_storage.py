"""The tracker's storage at scale: ``step`` in slices (:attr:`MasteryTracker.chunk`) is bit-for-bit the
whole-vector ``step``, and a float16 / bfloat16 tracker is exactly a float32 tracker fed the rounded
losses; ``Config.tracker_dtype`` reaches the selectors' tracker."""

import numpy as np
import pytest
import torch

from ies import Config, MasteryTracker
from ies.selectors import SELECTORS

from .test_tracker import _random_histories


def _run(trackers, losses, rng, rechecks, cast=None):
    """Feed the same epochs to every tracker; return each one's masks and stats per epoch."""
    out = [[] for _ in trackers]
    for e, recheck in enumerate(rechecks):
        mastered = trackers[0].mastered.numpy()
        recorded = ~np.isnan(losses[:, e]) & (recheck | ~mastered | (rng.random(len(mastered)) < 0.1))
        idx = rng.permutation(np.flatnonzero(recorded))
        for t, tracker in enumerate(trackers):
            values = torch.as_tensor(losses[idx, e])
            if cast is not None and t == 1:
                values = values.to(cast).float()
            for chunk in np.array_split(np.arange(len(idx)), 3):
                tracker.record(torch.as_tensor(idx[chunk]), values[chunk])
            out[t].append((tracker.step(recheck=recheck).clone(), tracker.stats(), tracker.history().float()))
    return out


RULES = [("official", 2, 3, 1), ("paper", 1, 1, 3), ("official", 3, 2, 2)]


@pytest.mark.parametrize("rule,order,window,patience", RULES)
def test_sliced_step_is_bit_for_bit_the_whole_step(rule, order, window, patience):
    rng = np.random.default_rng(order)
    n, epochs = 301, 18
    losses = _random_histories(rng, n, epochs)
    whole = MasteryTracker(n, 3e-2, order, window, patience, rule)
    sliced = MasteryTracker(n, 3e-2, order, window, patience, rule)
    sliced.chunk = 7  # 43 slices, the last one of 0 < 7 samples
    rechecks = [True] * 6 + [bool(b) for b in rng.random(epochs - 6) < 0.5]
    a, b = _run([whole, sliced], losses, rng, rechecks)
    assert sum(int(m.sum()) for m, _, _ in a) > 0 and not all(rechecks)
    for (ma, sa, ha), (mb, sb, hb) in zip(a, b, strict=True):
        assert torch.equal(ma, mb) and sa == sb
        assert torch.equal(ha.nan_to_num(-1.0), hb.nan_to_num(-1.0))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_low_precision_tracker_is_a_float32_tracker_of_rounded_losses(dtype):
    rng = np.random.default_rng(5)
    n, epochs = 400, 14
    losses = _random_histories(rng, n, epochs)
    low = MasteryTracker(n, 2e-2, dtype=dtype)
    ref = MasteryTracker(n, 2e-2)
    rechecks = [True] * 8 + [False, True] * 3
    a, b = _run([low, ref], losses, rng, rechecks, cast=dtype)
    assert low.history().dtype == dtype and sum(int(m.sum()) for m, _, _ in a) > 0
    for (ma, sa, ha), (mb, sb, hb) in zip(a, b, strict=True):
        assert torch.equal(ma, mb) and sa == sb
        assert torch.equal(ha.nan_to_num(-1.0), hb.nan_to_num(-1.0))


def test_config_tracker_dtype_reaches_the_selectors_tracker():
    assert Config().tracker_dtype == "float32"
    for name, dtype in (("float16", torch.float16), ("bfloat16", torch.bfloat16), ("float32", torch.float32)):
        cfg = Config(tracker_dtype=name)
        for selector in ("ies", "loss"):
            sel = SELECTORS[selector](cfg, 10, torch.device("cpu"), torch.Generator())
            assert sel.tracker.dtype == dtype and sel.tracker.history().dtype == dtype
    with pytest.raises(ValueError, match="tracker_dtype"):
        Config(tracker_dtype="float64x")
