"""ies.experiments.transfer: class splits, penultimate features, the linear probe against a Newton reference,
fine-tuning that repairs features a probe cannot use, the protocol's table and the verdict."""

import json
import math
from pathlib import Path

import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from ies import Config
from ies.data.datasets import ArrayDataset, DeviceLoader, synthetic
from ies.experiments import stats
from ies.experiments.transfer import (
    FineTuneConfig,
    ProbeConfig,
    claim_verdict,
    extract_features,
    final_linear,
    fine_tune,
    fit_logistic,
    fit_probe,
    linear_probe,
    logistic_objective,
    method_differences,
    method_table,
    replace_head,
    split_classes,
    transfer_experiment,
)
from ies.models.layers import Float32Linear
from ies.models.zoo import cifar_resnet, cnn1d, small_cnn

REPO = Path(__file__).resolve().parent.parent


def signals(x, y, x_test, y_test, k, name="toy"):
    return ArrayDataset(x.float(), y.long(), x_test.float(), y_test.long(), k, name)


# ------------------------------------------------------------------------------------------ data
def test_split_classes_keeps_order_and_relabels():
    x = torch.arange(10.0)[:, None].repeat(1, 3)
    y = torch.tensor([0, 1, 2, 3, 4, 0, 1, 2, 3, 4])
    data = signals(x, y, x[:5] + 100, y[:5], 5)
    part = split_classes(data, [3, 1])
    assert part.num_classes == 2 and part.name == "toy[3,1]"
    assert part.x_train[:, 0].tolist() == [1, 3, 6, 8]  # samples of class 1 or 3, in their order
    assert part.y_train.tolist() == [1, 0, 1, 0]  # class 3 -> 0, class 1 -> 1
    assert part.x_test[:, 0].tolist() == [101, 103] and part.y_test.tolist() == [1, 0]
    with pytest.raises(ValueError, match="not labels"):
        split_classes(data, [5])
    with pytest.raises(ValueError, match="distinct"):
        split_classes(data, [1, 1])
    with pytest.raises(ValueError, match="no test sample of classes"):
        split_classes(signals(x, y, x[:2], y[:2], 5), [4])


# ------------------------------------------------------------------------------------------ features
def test_features_of_a_sequential_net_are_the_input_of_its_last_layer():
    torch.manual_seed(0)
    model = cnn1d(40, 5)
    model.train()
    x, y = torch.randn(37, 40), torch.randint(0, 5, (37,))
    feats, labels = extract_features(model, DeviceLoader(x, y, "cpu"), batch_size=10)
    assert model.training  # the flag is restored
    model.eval()
    with torch.no_grad():
        expected = model[:-1](x)  # everything but the final Float32Linear, in eval mode
    assert feats.shape == (37, 32) and torch.equal(labels, y)
    torch.testing.assert_close(feats, expected)
    assert final_linear(model)[1] is model[-1]


def test_features_of_a_torchvision_resnet_are_its_pooled_output():
    torch.manual_seed(0)
    net = cifar_resnet(18, 10).eval()
    x = torch.randint(0, 256, (3, 32, 32, 3), dtype=torch.uint8)
    loader = DeviceLoader(x, torch.zeros(3, dtype=torch.long), "cpu", mean=(0.5, 0.4, 0.3), std=(0.2, 0.2, 0.2))
    feats, _ = extract_features(net, loader)
    assert final_linear(net)[0] == "fc"
    with torch.no_grad():
        h = loader.inputs(torch.arange(3), augment=False)
        h = net.relu(net.bn1(net.conv1(h)))
        h = net.layer4(net.layer3(net.layer2(net.layer1(net.maxpool(h)))))
        expected = torch.flatten(net.avgpool(h), 1)
    assert feats.shape == (3, 512)
    torch.testing.assert_close(feats, expected)


def test_features_refuse_a_last_linear_that_is_not_the_output_layer():
    model = nn.Sequential(nn.Linear(4, 3), nn.Tanh())
    loader = DeviceLoader(torch.randn(5, 4), torch.zeros(5, dtype=torch.long), "cpu")
    with pytest.raises(ValueError, match="not its output layer"):
        extract_features(model, loader)
    feats, _ = extract_features(model, loader, layer=model[0])  # explicit layer: its input, as asked
    assert torch.equal(feats, loader.x)


# ------------------------------------------------------------------------------------------ linear probe
def newton_reference(x, y, k, l2, steps=50):
    """Newton's method on the flattened (W, b) with the full Hessian (pseudo-inverse: the bias has one
    flat direction, a common shift), in float64: an independent way to reach the optimum."""
    d = x.shape[1]

    def objective(theta):
        return logistic_objective(x, y, theta[: k * d].view(k, d), theta[k * d :], l2)

    theta = torch.zeros(k * d + k, dtype=torch.float64)
    for _ in range(steps):
        g = torch.func.grad(objective)(theta)
        h = torch.func.hessian(objective)(theta)
        theta = theta - torch.linalg.pinv(h, hermitian=True) @ g
    return theta[: k * d].view(k, d), theta[k * d :]


def test_logistic_fit_reaches_the_newton_optimum():
    g = torch.Generator().manual_seed(0)
    k, d, n, l2 = 3, 4, 90, 0.03
    y = torch.arange(n) % k
    x = (torch.randn(k, d, generator=g) * 1.5)[y] + torch.randn(n, d, generator=g, dtype=torch.float32)
    x = x.double()
    w, b = fit_logistic(x, y, k, l2, tol=1e-10, max_iter=1000)
    w_ref, b_ref = newton_reference(x, y, k, l2)
    f, f_ref = logistic_objective(x, y, w, b, l2), logistic_objective(x, y, w_ref, b_ref, l2)
    assert abs(float(f - f_ref)) < 1e-12
    torch.testing.assert_close(w, w_ref, atol=1e-6, rtol=0)
    torch.testing.assert_close(b - b.mean(), b_ref - b_ref.mean(), atol=1e-6, rtol=0)  # defined up to a shift
    # first-order optimality, checked by hand: dF/dW = (P - Y)^T X / n + l2 W = 0, rows of W sum to 0
    p = torch.softmax(x @ w.T + b, 1)
    grad_w = (p - F.one_hot(y, k).double()).T @ x / n + l2 * w
    assert grad_w.abs().max() < 1e-7 and w.sum(0).abs().max() < 1e-7


def separable_blobs(n, k, d, seed, margin=3.0):
    """Points uniform in unit balls around centres at least 2 + 2*margin apart: linearly separable with margin."""
    g = torch.Generator().manual_seed(seed)
    centres = torch.eye(k, d) * (1 + margin) * math.sqrt(2)  # pairwise distance 2 (1 + margin)
    y = torch.arange(n) % k
    u = torch.randn(n, d, generator=g)
    u = u / u.norm(dim=1, keepdim=True) * torch.rand(n, 1, generator=g)
    return centres[y] + u, y


def test_probe_separates_separable_data_and_picks_the_weakest_l2():
    x, y = separable_blobs(300, 3, 5, seed=1)
    xt, yt = separable_blobs(150, 3, 5, seed=2)
    grid = (1.0, 1e-2, 1e-4)
    r = fit_probe(x, y, xt, yt, 3, l2_grid=grid, seed=0)
    assert r.test_accuracy == 1.0 and r.train_accuracy == 1.0
    assert r.validation["val_accuracy"].eq(1.0).all()
    # separable: the weaker the penalty, the more confident and the lower the validation loss
    assert r.validation["l2"].tolist() == sorted(grid, reverse=True)
    assert r.validation["val_loss"].is_monotonic_decreasing and r.l2 == 1e-4


def test_probe_picks_a_strong_l2_when_most_features_are_noise():
    # 2 classes told apart by feature 0 only, 150 noise features, 96 samples to fit: a weak penalty
    # separates the training noise and is overconfident on validation; the selection must see it
    g = torch.Generator().manual_seed(0)

    def make(n):
        y = torch.arange(n) % 2
        x = torch.randn(n, 151, generator=g)
        x[:, 0] += 2.0 * (2 * y - 1)
        return x, y

    (x, y), (xt, yt) = make(120), make(500)
    r = fit_probe(x, y, xt, yt, 2, l2_grid=(1.0, 1e-1, 1e-2, 1e-3, 1e-4), seed=0)
    val = r.validation.set_index("l2")
    assert r.train_accuracy == 1.0 and r.l2 >= 1e-1
    assert val.loc[1e-4, "val_loss"] > 1.5 * val.loc[r.l2, "val_loss"]
    assert val.loc[r.l2, "val_accuracy"] == val["val_accuracy"].max()


def test_probe_argument_checks():
    x, y = torch.randn(10, 2), torch.arange(10) % 2
    with pytest.raises(ValueError, match="val_fraction"):
        fit_probe(x, y, x, y, 2, val_fraction=1.0)
    with pytest.raises(ValueError, match="l2_grid"):
        fit_probe(x, y, x, y, 2, l2_grid=(0.0,))


# ------------------------------------------------------------------------------------------ fine-tuning
def blind_net_task(seed=0):
    """Label = sign of input 0; a random ReLU net whose first layer ignores input 0: its features carry
    no information on the label (a probe is at chance), but fine-tuning can train that layer."""
    g = torch.Generator().manual_seed(seed)
    x, xt = torch.randn(1000, 8, generator=g), torch.randn(1000, 8, generator=g)
    data = signals(x, (x[:, 0] > 0).long(), xt, (xt[:, 0] > 0).long(), 2, "sign")
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, 16), nn.ReLU(), Float32Linear(16, 2))
    with torch.no_grad():
        model[0].weight[:, 0] = 0
    return model, data


def test_fine_tuning_repairs_features_that_a_probe_cannot_use():
    model, data = blind_net_task()
    before = [p.clone() for p in model.parameters()]
    probe = linear_probe(model, data)
    ft = fine_tune(model, data, FineTuneConfig(epochs=8, lr=0.05, augment=False), seed=0)
    assert probe.test_accuracy < 0.6  # features independent of the label
    assert ft.test_accuracy > 0.9 and ft.test_accuracy > probe.test_accuracy + 0.3
    assert ft.history["train_loss"].iloc[-1] < ft.history["train_loss"].iloc[0]
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))  # input untouched
    assert ft.model[0].weight[:, 0].abs().sum() > 0  # the blind layer was trained
    # the schedule: warm-up for one epoch, cosine to 0 at the end
    assert ft.history["lr"].iloc[-1] == pytest.approx(0.0, abs=1e-12)


def test_probe_and_fine_tuning_take_images():
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (48, 32, 32, 3), generator=g, dtype=torch.uint8)
    y = torch.arange(48) % 3
    data = ArrayDataset(x[:36], y[:36], x[36:], y[36:], 3, "img", (0.5, 0.5, 0.5), (0.25, 0.25, 0.25))
    torch.manual_seed(0)
    model = small_cnn(10, width=8)
    probe = linear_probe(model, data, l2_grid=(1e-2,))
    ft = fine_tune(model, data, FineTuneConfig(epochs=1, batch_size=12), seed=0)
    assert probe.weight.shape == (3, 32) and 0 <= probe.test_accuracy <= 1
    assert ft.model[-1].out_features == 3 and len(ft.history) == 1 and 0 <= ft.test_accuracy <= 1
    assert model[-1].out_features == 10


def test_replace_head_is_new_and_seeded():
    a = replace_head(cnn1d(40, 10), 3, torch.Generator().manual_seed(5))
    b = replace_head(cnn1d(40, 10), 3, torch.Generator().manual_seed(5))
    assert isinstance(a[-1], Float32Linear) and a[-1].out_features == 3 and a(torch.randn(2, 40)).shape == (2, 3)
    assert torch.equal(a[-1].weight, b[-1].weight) and a[-1].weight.abs().max() <= 1 / math.sqrt(32)
    net = replace_head(cifar_resnet(18, 100), 10)
    assert net.fc.out_features == 10 and net.fc.in_features == 512


# ------------------------------------------------------------------------------------------ protocol
def test_transfer_experiment_table_and_summary():
    data = synthetic(800, num_classes=4, dim=20, seed=0)
    source, target = split_classes(data, [0, 1]), split_classes(data, [2, 3])
    cfg = Config(dataset="synthetic", model="mlp", epochs=6, threshold=0.05, order=1, window=1, rule="paper",
                 device="cpu", progress=False, lr=0.05)
    rows = []
    df = transfer_experiment(cfg, source, target, seeds=[0, 1], scratch=True, progress=False,
                             probe=ProbeConfig(l2_grid=(1e-1, 1e-3)), finetune=FineTuneConfig(epochs=2),
                             on_run=rows.append)
    assert df["method"].tolist() == ["baseline", "ies", "scratch"] * 2 and df["seed"].tolist() == [0] * 3 + [1] * 3
    pd.testing.assert_frame_equal(pd.DataFrame([r.row for r in rows]), df)
    assert rows[0].pretrain.history["forward_only_samples"].sum() == 0 and rows[2].pretrain is None
    assert rows[1].probe.test_accuracy == df["probe_accuracy"][1] and len(rows[1].finetune.history) == 2
    base, ies_ = df[df.method == "baseline"], df[df.method == "ies"]
    assert (base["backprop_saved"] == 0).all() and (ies_["backprop_saved"] > 0).all()
    assert df[df.method == "scratch"]["source_accuracy"].isna().all()
    assert df[["probe_accuracy", "finetune_accuracy"]].stack().between(0.4, 1.0).all()
    assert set(df["probe_l2"]) <= {1e-1, 1e-3}
    table = method_table(df)
    assert list(table.index) == ["baseline", "ies", "scratch"] and (table["n_seeds"] == 2).all()
    assert table.loc["ies", ("probe_accuracy", "mean")] == pytest.approx(ies_["probe_accuracy"].mean())
    assert table.loc["ies", ("probe_accuracy", "std")] == pytest.approx(ies_["probe_accuracy"].std())
    # same seed, same baseline: the pretraining of the baseline does not depend on the other methods
    again = transfer_experiment(cfg, source, target, seeds=[1], progress=False,
                                probe=ProbeConfig(l2_grid=(1e-1, 1e-3)), finetune=FineTuneConfig(epochs=2))
    pd.testing.assert_frame_equal(
        again.drop(columns=["pretrain_seconds", "finetune_seconds"]).reset_index(drop=True),
        df[(df.seed == 1) & (df.method != "scratch")].drop(columns=["pretrain_seconds", "finetune_seconds"])
        .reset_index(drop=True))
    with pytest.raises(ValueError, match="threshold > 0"):
        transfer_experiment(cfg.replace(threshold=0), source, target)


def test_claim_verdict_on_hand_made_numbers():
    def table(diffs):
        rows = []
        for s, d in enumerate(diffs):
            rows += [{"method": "baseline", "seed": s, "probe_accuracy": 0.5},
                     {"method": "ies", "seed": s, "probe_accuracy": 0.5 + d}]
        return pd.DataFrame(rows)

    up = claim_verdict(table([0.02, 0.025, 0.015]))  # mean 0.02, std 0.005, t(0.975, 2) = 4.302653
    half = 4.302653 * 0.005 / math.sqrt(3)
    assert up.mean == pytest.approx(0.02) and up.std == pytest.approx(0.005) and up.wins == 3 and up.n == 3
    assert (up.ci_low, up.ci_high) == pytest.approx((0.02 - half, 0.02 + half), rel=1e-6)
    assert up.supports is True and "support the claim" in up.text and "+2.00" in up.text
    assert "+1.5 is inside the interval" in up.text
    assert claim_verdict(table([-0.02, -0.025, -0.015])).supports is False
    assert claim_verdict(table([0.02, 0.03, 0.01])).supports is None  # std 0.01: the interval reaches below 0
    flat = claim_verdict(table([0.02, -0.02, 0.01]))
    assert flat.supports is None and flat.wins == 2 and "neither" in flat.text
    assert claim_verdict(table([0.05])).supports is None
    # two seeds: an illustration, never a verdict
    assert claim_verdict(table([0.01, 0.02])).verdict == stats.FEW_SEEDS
    # on 100 target test samples at a mean accuracy of 0.51 the spread is floored at sqrt(0.51 * 0.49 / 100)
    floored = claim_verdict(table([0.02, 0.025, 0.015]), n_test=100)
    assert floored.std == pytest.approx(math.sqrt(0.51 * 0.49 / 100)) and floored.verdict == stats.WITHIN_NOISE
    assert "floored at the test set's binomial noise" in floored.why
    assert "all of it above the bound +0.00 pt" in up.why
    assert method_differences(table([0.1, 0.2]), "probe_accuracy").round(12).tolist() == [0.1, 0.2]


def test_claim_verdict_is_the_stats_verdict_and_names_the_papers_setting():
    runs = pd.DataFrame({
        "method": ["baseline", "ies", "scratch"] * 4, "seed": [0] * 3 + [1] * 3 + [2] * 3 + [3] * 3,
        "probe_accuracy": [0.60, 0.63, 0.40, 0.70, 0.71, 0.41, 0.65, 0.68, 0.39, 0.62, 0.62, 0.45],
        "finetune_accuracy": [0.80, 0.70, 0.5, 0.81, 0.74, 0.5, 0.79, 0.70, 0.5, 0.80, 0.72, 0.5]})
    diffs = {"probe_accuracy": [0.03, 0.01, 0.03, 0.0], "finetune_accuracy": [-0.10, -0.07, -0.09, -0.08]}
    for metric, d in diffs.items():
        v = claim_verdict(runs, metric)
        iv = stats.interval(d)  # the same numbers through ies.experiments.stats, by hand
        assert v.verdict == stats.verdict(iv, 0.0)
        assert (v.mean, v.std, v.ci_low, v.ci_high, v.n) == pytest.approx((iv.mean, iv.std, iv.low, iv.high, 4))
        assert v.supports is {stats.SUPPORTED: True, stats.NOT_SUPPORTED: False}.get(v.verdict)
        assert f"[{v.verdict}]" in v.text and "linear probe" in v.text and "1 epoch" in v.text
    # probe: mean 0.0175, std 0.015, t(0.975, 3) = 3.182446 -> low = 0.0175 - 0.02387 < 0: inconclusive
    assert claim_verdict(runs).verdict == stats.WITHIN_NOISE and claim_verdict(runs).metric == "probe_accuracy"
    fine = claim_verdict(runs, "finetune_accuracy")
    assert fine.verdict == stats.NOT_SUPPORTED and fine.supports is False and "not a like-for-like" in fine.text
    assert claim_verdict(runs[runs.seed == 0]).verdict == stats.FEW_SEEDS
    assert claim_verdict(runs[runs.method != "ies"]).verdict == stats.NOT_RUN


def test_plot_paired_draws_each_seed_and_the_mean():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ies.experiments.plotting import plot_paired

    runs = pd.DataFrame({"method": ["baseline", "ies"] * 3, "seed": [0, 0, 1, 1, 2, 2],
                         "probe_accuracy": [0.5, 0.6, 0.7, 0.7, 0.6, 0.8]})
    fig, ax = plt.subplots()
    plot_paired(ax, runs, "probe_accuracy")
    assert len(ax.lines) >= 3  # one grey line per seed (and the error-bar markers)
    dots = [c.get_offsets()[:, 1].tolist() for c in ax.collections if c.get_offsets().shape[0] == 3]
    assert sorted(dots[0]) == pytest.approx([50, 60, 70]) and sorted(dots[1]) == pytest.approx([60, 70, 80])
    assert [t.get_text() for t in ax.get_xticklabels()] == ["baseline", "ies"]
    plt.close(fig)


# ------------------------------------------------------------------------------------------ notebook
def test_notebook_runs_in_the_smoke_profile(tmp_path):
    papermill = pytest.importorskip("papermill")
    out = tmp_path / "out"
    papermill.execute_notebook(
        str(REPO / "notebooks" / "06_transfer.ipynb"), str(tmp_path / "run.ipynb"),
        parameters={"PROFILE": "smoke", "OUTPUT_DIR": str(out)}, cwd=str(REPO), progress_bar=False,
        kernel_name="python3",
    )
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["profile"] == "smoke"
    runs = pd.read_csv(out / "transfer_runs.csv")
    assert set(runs["method"]) >= {"baseline", "ies"}
    for key in ("probe_accuracy", "finetune_accuracy"):
        diff = method_differences(runs, key)
        assert metrics["verdict"][key]["mean_difference"] == pytest.approx(diff.mean())
    # the rows of the module's closing table: two seeds give illustrations, with the effect in points
    rows = metrics["claims_table"]
    assert [r["verdict"] for r in rows] == ["illustration (fewer than 3 seeds)"] * 2
    probe = 100 * method_differences(runs, "probe_accuracy").mean()
    assert rows[0]["seeds"] == 2 and rows[0]["effect"] == pytest.approx(probe)
    assert "linear probe" in rows[0]["claim"] and "needs at least 3 seeds" in rows[0]["why"]
    assert (out / "transfer.png").exists()
