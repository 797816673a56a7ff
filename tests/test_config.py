import dataclasses

import pytest

from ies import Config
from ies.training.config import field_docs


def test_defaults_are_the_authors_settings():
    cfg = Config()
    assert (cfg.threshold, cfg.order, cfg.window, cfg.patience, cfg.rule) == (1e-3, 2, 3, 1, "official")
    assert (cfg.optimizer, cfg.lr, cfg.momentum, cfg.weight_decay, cfg.gamma) == ("sgd", 0.1, 0.9, 5e-4, 0.96)
    assert cfg.batch_size == 64 and cfg.dataset == "mnist1d"


def test_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        Config().epochs = 3


def test_every_field_has_a_docstring():
    docs = field_docs()
    assert set(docs) == {f.name for f in dataclasses.fields(Config)}
    assert all(len(d) > 10 for d in docs.values())


def test_from_dict_casts_strings_as_papermill_and_the_cli_give_them():
    cfg = Config.from_dict({"threshold": "1e-2", "epochs": "30", "amp": "false", "lr": 1, "order": 1.0})
    assert cfg.threshold == 0.01 and cfg.epochs == 30 and cfg.amp is False and cfg.lr == 1.0 and cfg.order == 1
    assert isinstance(cfg.lr, float) and isinstance(cfg.order, int)


def test_replace():
    cfg = Config().replace(threshold=0, seed="3")
    assert cfg.threshold == 0 and cfg.seed == 3 and cfg.is_baseline


@pytest.mark.parametrize(
    "values,match",
    [
        ({"treshold": 1e-3}, r"unknown config field 'treshold' \(did you mean 'threshold'\?\)"),
        ({"threshold": -1e-3}, "threshold must be a finite number >= 0"),
        ({"threshold": "abc"}, "threshold must be float"),
        ({"order": 4}, r"order must be in 0\.\.3"),
        ({"order": "2.5"}, "order must be int"),
        ({"window": 0}, "window must be >= 1"),
        ({"patience": 0}, "patience must be >= 1"),
        ({"epochs": 0}, "epochs must be >= 1"),
        ({"rule": "offical"}, r"rule must be one of .* \(did you mean 'official'\?\)"),
        ({"dataset": "mnist"}, r"dataset must be one of .*did you mean 'mnist1d'"),
        ({"model": "resnet50"}, "model must be one of"),
        ({"amp": "maybe"}, "amp must be bool"),
        ({"momentum": 1.0}, "momentum must be < 1"),
        ({"anneal_fraction": 1.5}, "anneal_fraction must be in"),
        ({"selector": "random"}, "random_budget"),
        ({"resume": True}, "resume needs output"),
        ({"device": "gpu"}, "device must be"),
    ],
)
def test_bad_values_name_the_field(values, match):
    with pytest.raises(ValueError, match=match):
        Config.from_dict(values)


def test_direct_construction_rejects_strings():
    with pytest.raises(ValueError, match="epochs must be int"):
        Config(epochs="3")
    with pytest.raises(ValueError, match="augment must be bool"):
        Config(augment=1)
