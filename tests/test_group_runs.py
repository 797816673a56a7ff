"""The open-question options of a run: the data transforms as Config fields, the per-class cap inside IES,
the transformer in the model registry, and the per-group companion files of a run folder."""

import math

import pandas as pd
import pytest
import torch

from ies import Config, train
from ies.data import transforms as T
from ies.data.datasets import synthetic
from ies.experiments.group_report import GroupReport
from ies.models.transformer import PatchTransformer1d, TinyViT
from ies.models.zoo import build_model
from ies.training.setup import build_run

TINY = dict(dataset="synthetic", dataset_size=1000, model="mlp", batch_size=32, progress=False, device="cpu")


@pytest.mark.parametrize(("changes", "message"), [
    ({"label_noise": 1.0}, r"^label_noise must be in \[0, 1\)"),
    ({"label_noise": -0.1}, r"^label_noise must be in \[0, 1\)"),
    ({"noise_type": "pair"}, r"^noise_type must be one of"),
    ({"imbalance": 0.5}, r"^imbalance must be a finite number >= 1"),
    ({"subgroup_share": 0.7}, r"^subgroup_share must be in \[0, 0.5\]"),
    ({"subgroup_classes": "1,x"}, r"^subgroup_classes must be comma-separated"),
    ({"subgroup_attribute": "tint"}, r"^subgroup_attribute must be one of"),
    ({"class_cap": 0.0}, r"^class_cap must be in \(0, 1\]"),
    ({"class_cap": 1.5}, r"^class_cap must be in \(0, 1\]"),
    ({"cap_by": "colour"}, r"^cap_by must be"),
    ({"class_cap": 0.5, "cap_by": "subgroup"}, r"^cap_by='subgroup' needs a subgroup"),
    ({"class_cap": 0.5, "selector": "random", "random_budget": "x.csv"}, r"^class_cap applies to"),
])
def test_bad_transform_fields_are_one_error_naming_the_field(changes, message):
    with pytest.raises(ValueError, match=message) as err:
        Config.from_dict({**TINY, **changes})
    assert "\n" not in str(err.value)


def test_the_run_trains_on_the_transformed_data_and_keeps_the_test_labels():
    data = synthetic(1000)
    cfg = Config(**TINY, label_noise=0.25, imbalance=2.0, seed=4)
    run = build_run(cfg, dataset=data)
    expected, truth = T.apply_transforms(data, label_noise=0.25, imbalance=2.0, seed=4)
    assert torch.equal(run.data.y_train.cpu(), expected.y_train) and torch.equal(run.truth.noisy, truth.noisy)
    assert int(run.truth.noisy.sum()) == round(0.25 * run.data.num_train)
    assert torch.equal(run.data.y_test, data.y_test)
    assert run.selector.num_samples == run.data.num_train == sum(T.long_tailed_counts(
        int(torch.bincount(data.y_train).min()), 4, 2.0))
    plain = build_run(Config(**TINY), dataset=data)
    assert plain.data is data and not plain.truth.noisy.any()


def test_transformer_is_in_the_model_registry():
    assert isinstance(build_model("transformer", (40,), 10), PatchTransformer1d)
    assert isinstance(build_model("transformer", (32, 32, 3), 10), TinyViT)
    assert Config(model="transformer").model == "transformer"
    with pytest.raises(ValueError, match="square"):
        build_model("transformer", (32, 16, 3), 10)


def mastering_run(tmp_path, **changes):
    """IES on the synthetic blobs with a loose threshold: many samples are mastered within a few epochs."""
    cfg = Config(**{**TINY, "epochs": 8, "threshold": 0.05, "lr": 0.05, "output": str(tmp_path), **changes})
    return train(cfg, observers=[GroupReport()])


def test_groups_csv_sums_to_the_history_and_recall_to_the_accuracy(tmp_path):
    r = mastering_run(tmp_path / "run", label_noise=0.2, subgroup_share=0.2)
    per_epoch = pd.read_csv(tmp_path / "run" / "groups.csv")
    summary = pd.read_csv(tmp_path / "run" / "groups_summary.csv")
    assert set(per_epoch.partition) == {"class", "subgroup", "class/subgroup", "noise"}
    assert r.history.n_mastered.sum() > 0
    for name, rows in per_epoch.groupby("partition"):
        by_epoch = rows.groupby("epoch").n_mastered.sum()
        assert by_epoch.tolist() == r.history.n_mastered.tolist(), name
        assert rows.groupby("epoch").n.sum().eq(r.metrics["num_train"]).all()
    n_test = 200
    for name in ("class", "subgroup", "class/subgroup"):
        part = summary[summary.partition == name]
        assert part.test_n.sum() == n_test
        assert part.test_correct.sum() == round(r.metrics["test_accuracy"] * n_test)
    noise = summary[summary.partition == "noise"].set_index("group")
    assert noise.loc["noisy", "n"] == int(r.truth.noisy.sum()) == round(0.2 * 800)
    groups = r.metrics["groups"]
    assert groups["noisy_share_ever_mastered"] == noise.loc["noisy", "share_ever_mastered"]
    assert 0 <= groups["demographic_parity_difference"] <= 1
    # fitted = tracked loss < ln 2 (the label gets more than half the probability)
    assert per_epoch.share_fitted.between(0, 1).all()


def test_the_class_cap_is_never_exceeded_in_a_run(tmp_path):
    free = mastering_run(tmp_path / "free")
    capped = mastering_run(tmp_path / "capped", class_cap=0.3)
    per_epoch = pd.read_csv(tmp_path / "capped" / "groups.csv")
    classes = per_epoch[per_epoch.partition == "class"]
    limit = (0.3 * classes.n).apply(math.floor)
    assert (classes.n_mastered <= limit).all()
    assert (classes.n_mastered == limit).any()  # the cap binds
    assert free.history.n_mastered.max() > capped.history.n_mastered.max()
    assert capped.metrics["backprop_saving"] < free.metrics["backprop_saving"]


def test_cap_by_subgroup_caps_each_group(tmp_path):
    mastering_run(tmp_path / "run", subgroup_share=0.3, class_cap=0.2, cap_by="subgroup")
    rows = pd.read_csv(tmp_path / "run" / "groups.csv")
    rows = rows[rows.partition == "subgroup"]
    assert (rows.n_mastered <= (0.2 * rows.n).apply(math.floor)).all()
    assert rows.n_mastered.max() > 0


def test_an_interrupted_run_resumes_to_the_same_group_files(tmp_path):
    mastering_run(tmp_path / "ref", label_noise=0.1)

    def stop_at_5(epoch, model, tracker):
        if epoch == 5:
            raise KeyboardInterrupt

    cfg = Config(**{**TINY, "epochs": 8, "threshold": 0.05, "lr": 0.05, "output": str(tmp_path / "cut"),
                    "label_noise": 0.1})
    with pytest.raises(KeyboardInterrupt):
        train(cfg, on_epoch_end=stop_at_5, observers=[GroupReport()])
    train(cfg.replace(resume=True), observers=[GroupReport()])
    for name in ("groups.csv", "groups_summary.csv"):
        pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "ref" / name), pd.read_csv(tmp_path / "cut" / name))
