"""The re-check schedule: periods from a scripted learning-rate sequence and the exact re-check epochs."""

import pytest

from ies.method.recheck import LR_BINS, RecheckSchedule, parse_bins, parse_mode, recheck_epochs, recheck_period


def test_period_bins_edges_included_below():
    assert LR_BINS == (0.05, 0.01, 0.005, 0.001)
    lrs = [0.1, 0.05, 0.0499, 0.01, 0.0099, 0.005, 0.0049, 0.001, 0.00099, 1e-6]
    assert [recheck_period(lr) for lr in lrs] == [1, 1, 2, 2, 3, 3, 4, 4, 5, 5]
    assert [recheck_period(lr, (0.5, 0.2)) for lr in (1.0, 0.3, 0.1)] == [1, 2, 3]


def test_lr_mode_periods_follow_the_scripted_decay():
    # lr 0.1 halved every 2 epochs: 0.1 0.1 0.05 0.05 0.025 0.025 0.0125 0.0125 0.00625 ... (0-based)
    lrs = [0.1 * 0.5 ** (e // 2) for e in range(24)]
    periods = [recheck_period(lr) for lr in lrs]
    assert periods == [1] * 4 + [2] * 4 + [3] * 2 + [4] * 4 + [5] * 10
    got = recheck_epochs("lr", lrs)
    # every epoch up to 3; period 2: 5, 7; period 3: from 7, the next at 10 (10 - 7 = 3, lr then
    # 0.003125 -> period 4 but 3 < 4, so not yet); period 4: 11; period 5 from 14: 16, 21
    want = [0, 1, 2, 3, 5, 7, 11, 16, 21]
    assert [e for e, r in enumerate(got) if r] == want


def test_sgd_e_schedule_of_the_authors():
    lrs = [0.1 * 0.96 ** e for e in range(200)]
    periods = [recheck_period(lr) for lr in lrs]
    firsts = {p: periods.index(p) for p in range(1, 6)}
    assert firsts == {1: 0, 2: 17, 3: 57, 4: 74, 5: 113}
    epochs = [e for e, r in enumerate(recheck_epochs("lr", lrs)) if r]
    # by hand: 0..16 every epoch; 17 is 1 after 16 (< 2), so 18, 20, .., 56; 57 and 58 are < 3 after
    # 56, so 59, 62, .., 71; 74 is 3 after 71 (< 4), so 75, 79, .., 111; then 116, 121, .., 196
    want = [*range(17), *range(18, 57, 2), *range(59, 72, 3), *range(75, 112, 4), *range(116, 200, 5)]
    assert epochs == want and len(want) == 69


def test_every_and_fixed_period():
    lrs = [0.1] * 12
    assert recheck_epochs("every", lrs) == [True] * 12
    assert recheck_epochs(1, lrs) == [True] * 12
    assert [e for e, r in enumerate(recheck_epochs(5, lrs)) if r] == [0, 5, 10]
    assert [e for e, r in enumerate(recheck_epochs("3", [1e-9] * 10)) if r] == [0, 3, 6, 9]


def test_repeated_call_and_state_round_trip():
    a = RecheckSchedule("lr")
    lrs = [0.02] * 10  # period 2
    assert [a.is_recheck(e, lr) for e, lr in enumerate(lrs[:5])] == [True, False, True, False, True]
    assert a.is_recheck(4, 0.02)  # asked again for the same epoch
    b = RecheckSchedule("lr")
    b.load_state_dict(a.state_dict())
    assert [a.is_recheck(e, 0.02) for e in range(5, 10)] == [b.is_recheck(e, 0.02) for e in range(5, 10)]
    with pytest.raises(ValueError, match="recheck schedule differs"):
        RecheckSchedule(5).load_state_dict(a.state_dict())


@pytest.mark.parametrize("mode", ["sometimes", 0, "0", -2, 2.5, True, ""])
def test_bad_mode_names_the_parameter(mode):
    with pytest.raises(ValueError, match="^recheck must be"):
        parse_mode(mode)


@pytest.mark.parametrize("bins", ["", "0.01,0.05", "0.05,0.05", "0.05,-1", "0.05,x", "inf"])
def test_bad_bins_name_the_parameter(bins):
    with pytest.raises(ValueError, match="^recheck_bins must be"):
        parse_bins(bins)
    assert parse_bins("0.05, 0.01,0.005,0.001") == LR_BINS
