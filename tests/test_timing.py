"""Wall-clock ratios only after their calibration (ies.experiments.timing), and `python -m ies compare`."""

import json
import math

import pandas as pd
import pytest

from ies.cli import main
from ies.experiments import timing


def history(seconds, excluded):
    n = 100
    return pd.DataFrame({"epoch": range(1, len(seconds) + 1), "epoch_seconds": seconds,
                         "backprop_samples": [n - e for e in excluded], "forward_only_samples": excluded})


BASE = history([1.0, 1.0, 1.0, 1.0, 1.0, 1.0], [0] * 6)


def test_calibration_over_the_epochs_of_identical_work():
    ies = history([1.05, 0.95, 1.0, 1.0, 0.5, 0.5], [0, 0, 0, 0, 50, 50])
    clock = timing.wall_clock(BASE, ies)
    assert clock.calibration_epochs == 4 and clock.calibration == pytest.approx(1.0)  # median of 1.05 .95 1 1
    assert clock.ratio == pytest.approx(5.0 / 6.0) and clock.reliable
    assert clock.speedup == pytest.approx(1.2)
    assert "a speedup of 1.20x" in clock.sentence() and "within 1.00 ± 0.10" in clock.sentence()
    same = timing.identical_work(BASE, ies)
    assert same["epoch"].tolist() == [1, 2, 3, 4]


def test_a_machine_whose_load_changed_gets_no_speedup():
    # the first five epochs do the same work, yet IES's run 1.5x faster: that is the machine, not the method
    ies = history([0.66, 0.66, 0.66, 0.66, 0.5, 0.5], [0, 0, 0, 0, 50, 50])
    clock = timing.wall_clock(BASE, ies)
    assert clock.calibration == pytest.approx(0.66) and not clock.reliable
    assert math.isnan(clock.speedup) and clock.verdict == timing.UNRELIABLE
    assert clock.sentence().startswith("No speedup is quoted") and "unreliable" in clock.sentence()
    early = timing.wall_clock(BASE, history([1.0, 1.0, 0.5, 0.5, 0.5, 0.5], [0, 0, 50, 50, 50, 50]))
    assert early.calibration_epochs == 2 and not early.reliable  # too few epochs to check
    assert "too few to check" in early.sentence()
    with pytest.raises(ValueError, match="forward_only_samples"):
        timing.wall_clock(BASE.drop(columns="forward_only_samples"), ies)


def test_compare_prints_the_calibration_and_writes_it(tmp_path, capsys):
    code = main(["compare", "--dataset", "synthetic", "--model", "mlp", "--dataset-size", "300", "--batch-size", "32",
                 "--epochs", "8", "--threshold", "0.05", "--output", str(tmp_path)])
    assert code == 0
    out = capsys.readouterr().out
    saved = json.loads((tmp_path / "timing.json").read_text())
    assert set(saved) >= {"ratio", "calibration", "calibration_epochs", "reliable", "speedup"}
    base = pd.read_csv(tmp_path / "baseline" / "history.csv")
    ies = pd.read_csv(tmp_path / "ies" / "history.csv")
    again = timing.wall_clock(base, ies)
    assert saved["calibration_epochs"] == again.calibration_epochs and saved["ratio"] == pytest.approx(again.ratio)
    assert again.sentence() in out
