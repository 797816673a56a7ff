"""Named presets: registered Config overrides, applied before the explicit options."""

import json

import pytest

from ies import Config
from ies.cli import _config_from, build_parser, main
from ies.training.presets import PRESETS, config_with_preset, preset


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


def test_imagenet_preset_is_the_papers_recipe_and_runs_on_an_image_folder(tmp_path, capsys):
    values = preset("imagenet")  # /work/shared/paper-facts.md: ImageNet-1k, Table 2's ResNet-101 / SGD(E)
    assert {k: values[k] for k in ("epochs", "batch_size", "threshold", "anneal_fraction")} == {
        "epochs": 150, "batch_size": 128, "threshold": 1.0, "anneal_fraction": 0.1}
    assert (values["model"], values["optimizer"], values["lr"], values["schedule"], values["gamma"]) == (
        "imagenet_resnet101", "sgd", 0.1, "exponential", 0.96)
    assert (values["momentum"], values["weight_decay"]) == (0.9, 5e-4)
    from PIL import Image

    root = tmp_path / "imagenet"
    for split in ("train", "val"):
        for c in ("n01", "n02"):
            (root / split / c).mkdir(parents=True)
            for i in range(3):
                Image.new("RGB", (40, 48), (80 * i, 100 if c == "n01" else 0, 50)).save(root / split / c / f"{i}.jpg")
    args = ["train", "--preset", "imagenet", "--dataset", str(root), "--model", "small_cnn", "--epochs", "1",
            "--image-size", "32", "--num-workers", "0", "--device", "cpu", "--no-progress", "--output",
            str(tmp_path / "out")]
    assert _config_from(build_parser().parse_args(args)).epochs == 1
    assert main(args) == 0
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert metrics["config"]["threshold"] == 1.0 and metrics["config"]["batch_size"] == 128
    assert metrics["config"]["dataset"] == str(root) and json.loads(capsys.readouterr().out)["backprop_saving"] == 0
