"""Budget matching: bisection of a knob on pilot runs to a target compute saving."""

import math

import pytest

from ies.experiments.budget import Calibration, calibrate, saving_for_speedup, speedup_for_saving


def test_speedup_and_saving_are_inverse():
    assert saving_for_speedup(2.0) == 0.5
    assert saving_for_speedup(1.5) == pytest.approx(1 / 3)
    assert saving_for_speedup(1.0) == 0.0
    assert speedup_for_saving(0.5) == 2.0
    assert speedup_for_saving(saving_for_speedup(3.0)) == pytest.approx(3.0)
    with pytest.raises(ValueError, match="speedup"):
        saving_for_speedup(0.5)


def test_bisection_steps_on_a_monotone_function_are_exact():
    c = calibrate(lambda k: k, 0.3, 0.0, 1.0, name="prune_ratio", tolerance=0.01)
    assert [p.knob for p in c.pilots] == [0.0, 1.0, 0.5, 0.25, 0.375, 0.3125, 0.28125, 0.296875]
    assert (c.knob, c.saving, c.matched, c.name) == (0.296875, 0.296875, True, "prune_ratio")
    assert "bisection on prune_ratio" in c.how and "8 pilots" in c.how
    d = c.to_dict()
    assert d["pilots"][2] == {"knob": 0.5, "saving": 0.5} and d["matched"] is True


def test_log_scale_and_an_end_that_already_matches():
    c = calibrate(lambda d: (math.log10(d) + 4) / 4, 0.5, 1e-4, 1.0, scale="log", tolerance=1e-9)
    assert [p.knob for p in c.pilots] == pytest.approx([1e-4, 1.0, 1e-2])
    assert c.matched and c.knob == pytest.approx(1e-2)
    c = calibrate(lambda k: k, 1.0 - 1e-3, 0.0, 1.0, tolerance=0.01)
    assert len(c.pilots) == 2 and c.knob == 1.0 and c.matched


def test_decreasing_integer_knob_stops_when_no_integer_is_left():
    calls = []

    def run(patience):
        calls.append(patience)
        return 1 - patience / 10

    c = calibrate(run, 0.55, 1, 10, name="es_patience", increasing=False, scale="int", tolerance=0.0)
    assert calls == [1, 10, 5, 3, 4]
    assert not c.matched and c.knob in (4, 5) and abs(c.saving - 0.55) == pytest.approx(0.05)
    assert "no integer left" in c.how
    c = calibrate(run, 0.6, 1, 10, increasing=False, scale="int", tolerance=1e-9)
    assert c.matched and c.knob == 4


def test_unreachable_target_raises_or_returns_the_closer_end():
    with pytest.raises(ValueError, match="sb_beta: target compute_saving 0.5000 is out of reach"):
        calibrate(lambda k: 0.4 * k, 0.5, 0.0, 1.0, name="sb_beta")
    c = calibrate(lambda k: 0.4 * k, 0.5, 0.0, 1.0, name="sb_beta", strict=False)
    assert isinstance(c, Calibration) and not c.matched
    assert c.knob == 1.0 and len(c.pilots) == 2 and "out of reach" in c.how


def test_non_monotone_pilots_are_reported_and_the_closest_pilot_wins():
    def bumpy(k):
        return 1.5 if k == 0.5 else k

    c = calibrate(bumpy, 0.3, 0.0, 1.0, tolerance=0.01)
    assert "not monotone" in c.how
    assert c.matched and abs(c.saving - 0.3) <= 0.01
    c = calibrate(bumpy, 0.3, 0.0, 1.0, tolerance=0.0, max_pilots=4)
    assert len(c.pilots) == 4 and not c.matched and c.knob == 0.25


def test_bad_brackets_are_named():
    with pytest.raises(ValueError, match="threshold: the bracket"):
        calibrate(lambda k: k, 0.5, 1.0, 0.0, name="threshold")
    with pytest.raises(ValueError, match="log-scale"):
        calibrate(lambda k: k, 0.5, 0.0, 1.0, scale="log")
    with pytest.raises(ValueError, match="scale"):
        calibrate(lambda k: k, 0.5, 0.0, 1.0, scale="cubic")


def test_pilot_trains_a_short_run_and_returns_its_compute_saving():
    from ies import Config, train
    from ies.data.datasets import synthetic
    from ies.experiments.budget import pilot

    data = synthetic(300)
    cfg = Config(dataset="synthetic", dataset_size=300, model="mlp", epochs=40, progress=False, threshold=1e-3)
    run = pilot(cfg, "threshold", epochs=8, dataset=data)
    assert run(0.0) == 0.0
    want = train(cfg.replace(epochs=8, threshold=10.0, progress=False), dataset=data).metrics["compute_saving"]
    assert want > 0, "a threshold of 10 must exclude something in 8 epochs for the test to mean anything"
    assert run(10.0) == want


def test_next_knob_starts_at_the_model_or_the_midpoint():
    from ies.experiments.budget import next_knob

    assert next_knob([], 0.3, 0.0, 1.0, model=lambda r: 0.5 * r) == 0.6  # 0.5 x 0.6 = 0.3
    assert next_knob([], 0.3, 0.0, 1.0) == 0.5
    assert next_knob([], 0.3, 1e-4, 1.0, scale="log") == pytest.approx(1e-2)
    assert next_knob([], 0.3, 0.0, 1.0, model=lambda r: 0.5 * r + 0.4) == 0.0  # the model never goes that low
    assert next_knob([], 0.3, 1, 10, scale="int", increasing=False, model=lambda p: 1 - p / 10) == 7


def test_next_knob_interpolates_between_the_closest_pilots_and_stops_when_matched():
    from ies.experiments.budget import Pilot, next_knob

    pilots = [Pilot(0.0, 0.0), Pilot(0.2, 0.2), Pilot(0.6, 0.6), Pilot(1.0, 1.0)]
    assert next_knob(pilots, 0.3, 0.0, 1.0, tolerance=0.01) == 0.3  # between 0.2 and 0.6, a quarter of the way
    assert next_knob(pilots, 0.21, 0.0, 1.0, tolerance=0.01) is None  # 0.2 is within 0.01
    # kept in the inner 70 % of the bracket: 0.05 of [0, 1] would be t = 0.05, clamped to 0.15
    assert next_knob([Pilot(0.0, 0.0), Pilot(1.0, 1.0)], 0.05, 0.0, 1.0, tolerance=0.01) == 0.15
    # log scale: half-way between 1e-3 and 1e-1 in log10 is 1e-2
    assert next_knob([Pilot(1e-3, 0.1), Pilot(1e-1, 0.3)], 0.2, 1e-5, 10.0, scale="log") == pytest.approx(1e-2)
    # decreasing: the saving falls from 0.6 at 0.2 to 0.2 at 0.6, so 0.5 is a quarter of the way, at 0.3
    assert next_knob([Pilot(0.2, 0.6), Pilot(0.6, 0.2)], 0.5, 0.0, 1.0, increasing=False) == 0.3
    # an integer bracket with nothing between: stop
    assert next_knob([Pilot(2, 0.25), Pilot(1, 0.5)], 0.3, 1, 30, scale="int", increasing=False) is None


def test_next_knob_on_one_side_follows_the_model_then_the_end_then_stops():
    from ies.experiments.budget import Pilot, next_knob

    # the model r / 2 says 0.5 saves 0.25; the pilot saved 0.2: shifted by 0.05, 0.3 needs the model's 0.35 -> 0.7
    assert next_knob([Pilot(0.5, 0.2)], 0.3, 0.0, 1.0, model=lambda r: r / 2) == 0.7
    assert next_knob([Pilot(0.5, 0.2)], 0.3, 0.0, 1.0) == 1.0  # no model: the end
    assert next_knob([Pilot(0.5, 0.2), Pilot(1.0, 0.25)], 0.3, 0.0, 1.0, tolerance=0.01) is None  # the end ran
    # too much saved already: towards the low end
    assert next_knob([Pilot(0.0, 0.32)], 0.2, 0.0, 0.9, model=lambda r: 0.3 + r) is None  # 0 is the low end


def test_calibration_from_every_pilot_says_how_and_why_not():
    from ies.experiments.budget import Pilot, calibration_from

    pilots = [Pilot(0.5, 0.2), Pilot(0.7, 0.31)]
    c = calibration_from(pilots, 0.3, 0.02, name="prune_ratio", low=0.0, high=1.0, scale="linear",
                         increasing=True, asked=1)
    assert (c.knob, c.saving, c.matched) == (0.7, 0.31, True)
    assert "1 pilot(s) asked for this target, 1 run for another budget or found in the cache" in c.how
    c = calibration_from([Pilot(0.0, 0.32)], 0.2, 0.03, name="seta_prune_ratio", low=0.0, high=0.9,
                         scale="linear", increasing=True, asked=1)
    assert not c.matched and c.knob == 0.0
    assert "out of reach: the pilots save 0.3200..0.3200, the end 0 included" in c.how
