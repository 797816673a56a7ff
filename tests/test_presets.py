"""Named presets: registered Config overrides, applied before the explicit options."""

import pytest

from ies import Config
from ies.cli import _config_from, build_parser, main
from ies.presets import PRESETS, config_with_preset, preset


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_every_preset_is_a_valid_config_and_explicit_values_win(name):
    values = preset(name)
    assert values, f"preset {name!r} is empty"
    cfg = config_with_preset(name, dataset="x.npz", seed=7)
    for key, value in values.items():
        if key != "dataset":
            assert getattr(cfg, key) == getattr(Config.from_dict({key: value}), key)
    assert cfg.seed == 7 and cfg.dataset == "x.npz"
    other = next(k for k in ("epochs", "lr") if k in values)
    assert getattr(config_with_preset(name, **{other: 3}), other) == 3


def test_cli_applies_the_preset_then_the_options():
    parser = build_parser()
    args = parser.parse_args(["train", "--preset", "cifar-cpu", "--epochs", "7", "--dataset", "d.npz"])
    cfg = _config_from(args)
    want = config_with_preset("cifar-cpu", epochs=7, dataset="d.npz")
    assert cfg == want and cfg.epochs == 7
    assert _config_from(parser.parse_args(["train"])) == Config()


def test_unknown_preset_is_one_clear_error(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--preset", "cifar-gpu"])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and err.count("\n") == 1
    assert err.startswith("error: preset must be one of") and "did you mean 'cifar-cpu'" in err
