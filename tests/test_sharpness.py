"""ies.experiments.sharpness against exact answers, and the gradient norms that ies.train records."""

from __future__ import annotations

import math

import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from ies import Config, train
from ies.data.datasets import DeviceLoader, synthetic
from ies.experiments import stats
from ies.experiments.sharpness import (
    SharpnessProbe,
    batch_grad_norms,
    claim_intervals,
    claim_sign_tests,
    compare_histories,
    fixed_batches,
    hessian_top_eigenvalue,
    hessian_trace,
    hessian_vector_product,
    measure_sharpness,
    sam_sharpness,
)
from ies.models.zoo import build_model
from ies.training.setup import make_optimizer, seed_everything

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


# ---------------------------------------------------------------------------- exact cases
def least_squares(n: int = 60, d: int = 7, seed: int = 0):
    """``nn.Linear(d, 1)`` with MSE on data split into batches of unequal sizes; the Hessian of the
    mean loss is ``2/n [X 1]^T [X 1]`` whatever the weights."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g) * torch.linspace(0.5, 3.0, d)
    x[:10] *= 4.0  # the first (small) batch is very different from the rest
    y = torch.randn(n, 1, generator=g)
    torch.manual_seed(seed)
    model = nn.Linear(d, 1)
    batches = [(x[:10], y[:10]), (x[10:40], y[10:40]), (x[40:], y[40:])]
    xt = torch.cat([x, torch.ones(n, 1)], 1).double()
    return model, batches, 2.0 / n * xt.T @ xt


def test_least_squares_top_eigenvalue_is_exact_and_weights_batches_by_size():
    model, batches, hess = least_squares()
    exact = torch.linalg.eigvalsh(hess)[-1].item()
    got = hessian_top_eigenvalue(model, F.mse_loss, batches)
    assert got == pytest.approx(exact, rel=1e-3)
    # an unweighted mean of the three batch means would be a different matrix: the test can tell
    per_batch = [2.0 / len(y) * torch.cat([x, torch.ones(len(y), 1)], 1).double().T
                 @ torch.cat([x, torch.ones(len(y), 1)], 1).double() for x, y in batches]
    unweighted = torch.linalg.eigvalsh(sum(per_batch) / 3)[-1].item()
    assert abs(unweighted - exact) > 0.05 * exact


def test_least_squares_trace_within_its_standard_error():
    model, batches, hess = least_squares()
    samples = 400
    est, se = hessian_trace(model, F.mse_loss, batches, samples=samples, seed=1)
    exact = torch.trace(hess).item()
    # Var(z^T H z) = 2 * sum_{i != j} H_ij^2 for Rademacher z
    off = hess - torch.diag(torch.diag(hess))
    se_theory = math.sqrt(2 * (off**2).sum().item() / samples)
    assert 0.7 * se_theory < se < 1.3 * se_theory
    assert abs(est - exact) < 4 * se
    assert hessian_trace(model, F.mse_loss, batches, samples=samples, seed=1) == (est, se)  # seeded


def test_trace_is_exact_for_a_diagonal_hessian():
    d = 5
    scale = torch.tensor([0.5, 1.0, 2.0, 3.0, 4.0])
    x, y = torch.diag(scale), torch.randn(d, 1)
    model = nn.Linear(d, 1, bias=False)
    est, se = hessian_trace(model, F.mse_loss, [(x, y)], samples=7, seed=3)
    assert est == pytest.approx(2.0 / d * (scale**2).sum().item(), rel=1e-6)
    assert se == pytest.approx(0.0, abs=1e-6)


def test_sam_sharpness_matches_the_quadratic_formula():
    model, batches, hess = least_squares()
    rho = 0.05
    x = torch.cat([b[0] for b in batches]).double()
    y = torch.cat([b[1] for b in batches]).double()
    w = torch.cat([model.weight.detach().flatten(), model.bias.detach()]).double()
    xt = torch.cat([x, torch.ones(len(y), 1, dtype=torch.float64)], 1)
    grad = 2.0 / len(y) * xt.T @ (xt @ w - y.flatten())
    u = grad / grad.norm()
    exact = rho * grad.norm().item() + 0.5 * rho**2 * (u @ hess @ u).item()  # L is exactly quadratic
    assert sam_sharpness(model, F.mse_loss, batches, rho=rho) == pytest.approx(exact, rel=1e-4)
    assert sam_sharpness(model, F.mse_loss, batches, rho=0.0) == 0.0


class Quadratic(nn.Module):
    """``outputs = Q w`` (``Q`` orthogonal); with ``loss = mean(t * outputs^2) / 2`` the Hessian is
    ``Q^T diag(t) Q / n``: indefinite when ``t`` has both signs."""

    def __init__(self, d: int) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.randn(d))

    def forward(self, q: torch.Tensor) -> torch.Tensor:
        return q @ self.w


def weighted_square(outputs: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    return 0.5 * (t * outputs**2).mean()


@pytest.mark.parametrize("t, top", [([-10.0, 1.0, 2.0, 3.0], 3.0), ([-10.0, -1.0, -2.0, -3.0], -1.0)])
def test_largest_eigenvalue_not_largest_magnitude(t, top):
    torch.manual_seed(0)
    d = len(t)
    q, _ = torch.linalg.qr(torch.randn(d, d))
    model = Quadratic(d)
    got = hessian_top_eigenvalue(model, weighted_square, [(q, torch.tensor(t))])
    assert got == pytest.approx(top / d, rel=1e-4)  # not -10 / d, the eigenvalue of largest magnitude


# ---------------------------------------------------------------------------- a tiny network
def tiny_net(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Linear(5, 6), nn.BatchNorm1d(6), nn.Tanh(), nn.Linear(6, 3))
    with torch.no_grad():  # running statistics far from (0, 1): eval mode must matter
        net[1].running_mean.copy_(torch.randn(6))
        net[1].running_var.copy_(torch.rand(6) + 0.5)
        net[1].num_batches_tracked.fill_(7)
    return net


def full_hessian(net: nn.Module, batches) -> torch.Tensor:
    """The Hessian of the size-weighted mean cross-entropy in float64 by torch.autograd.functional."""
    ref = tiny_net().double().eval()
    ref.load_state_dict(net.state_dict())
    names = [n for n, _ in ref.named_parameters()]
    shapes = [p.shape for _, p in ref.named_parameters()]
    flat0 = torch.cat([p.detach().flatten() for p in ref.parameters()])
    x = torch.cat([b[0] for b in batches]).double()
    y = torch.cat([b[1] for b in batches])

    def loss(flat):
        pieces = [t.view(s) for t, s in zip(flat.split([s.numel() for s in shapes]), shapes, strict=True)]
        params = dict(zip(names, pieces, strict=True))
        return F.cross_entropy(functional_call(ref, params, (x,)), y)

    return torch.autograd.functional.hessian(loss, flat0)


@pytest.fixture
def net_and_batches():
    net = tiny_net()
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(23, 5, generator=g) * 2, torch.randint(0, 3, (23,), generator=g)
    return net, [(x[:16], y[:16]), (x[16:], y[16:])]


def test_tiny_network_matches_the_full_hessian(net_and_batches):
    net, batches = net_and_batches
    hess = full_hessian(net, batches)
    evals = torch.linalg.eigvalsh(hess)
    assert evals[0] < 0 < evals[-1]  # a genuinely indefinite Hessian
    assert hessian_top_eigenvalue(net, F.cross_entropy, batches, tol=1e-5) == pytest.approx(evals[-1].item(), rel=1e-3)
    v = [torch.randn(p.shape, generator=torch.Generator().manual_seed(2)) for p in net.parameters()]
    hv = torch.cat([h.flatten() for h in hessian_vector_product(net, F.cross_entropy, batches, v)])
    expected = hess @ torch.cat([t.flatten() for t in v]).double()
    torch.testing.assert_close(hv.double(), expected, rtol=1e-4, atol=1e-5)
    est, se = hessian_trace(net, F.cross_entropy, batches, samples=200)
    assert abs(est - torch.trace(hess).item()) < 4 * se


def test_measurements_leave_no_trace(net_and_batches):
    net, batches = net_and_batches
    net.train()
    net[2].eval()  # a mix of modes must come back as it was
    net[0].weight.grad = torch.ones_like(net[0].weight)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    modes = [m.training for m in net.modules()]
    rng = torch.get_rng_state()
    probe = SharpnessProbe(batches, trace_samples=3)
    calls = {
        "top": lambda: hessian_top_eigenvalue(net, F.cross_entropy, batches),
        "trace": lambda: hessian_trace(net, F.cross_entropy, batches, samples=3),
        "sam": lambda: sam_sharpness(net, F.cross_entropy, batches, rho=0.5),
        "norms": lambda: batch_grad_norms(net, F.cross_entropy, batches),
        "probe": lambda: probe.measure(net),
    }
    for name, call in calls.items():
        call()
        after = net.state_dict()
        for k, v in before.items():
            assert torch.equal(after[k], v), f"{name} changed {k}"
        assert [m.training for m in net.modules()] == modes, name
        assert torch.equal(net[0].weight.grad, torch.ones_like(net[0].weight)) and net[3].weight.grad is None, name
        assert torch.equal(torch.get_rng_state(), rng), f"{name} used the global generator"


def test_unused_parameters_and_a_loss_linear_in_the_weights():
    torch.manual_seed(0)
    net = nn.ModuleDict({"used": nn.Linear(4, 1, bias=False), "unused": nn.Linear(4, 1)})
    net.forward = lambda x: net["used"](x)
    batches = [(torch.randn(8, 4), torch.zeros(8))]

    def linear_loss(out, _):
        return out.mean()  # linear in the weights: H = 0

    assert hessian_top_eigenvalue(net, linear_loss, batches) == 0.0
    assert hessian_trace(net, linear_loss, batches, samples=3) == (0.0, 0.0)
    hv = hessian_vector_product(net, F.mse_loss, [(x, torch.randn(8, 1)) for x, _ in batches],
                                [torch.ones_like(p) for p in net.parameters()])
    assert hv[0].abs().sum() > 0 and all((h == 0).all() for h in hv[1:])  # the unused layer has no curvature
    expected = batches[0][0].mean(0).norm().item()
    assert sam_sharpness(net, linear_loss, batches, rho=0.1) == pytest.approx(0.1 * expected, rel=1e-5)


def test_batches_may_be_a_generator(net_and_batches):
    net, batches = net_and_batches
    assert hessian_top_eigenvalue(net, F.cross_entropy, (b for b in batches)) == hessian_top_eigenvalue(
        net, F.cross_entropy, batches)
    assert sam_sharpness(net, F.cross_entropy, iter(batches)) == sam_sharpness(net, F.cross_entropy, batches)


def test_batch_grad_norms_are_per_batch_gradient_norms(net_and_batches):
    net, batches = net_and_batches
    net.eval()
    norms = batch_grad_norms(net, F.cross_entropy, batches)
    for (x, y), got in zip(batches, norms, strict=True):
        net.zero_grad()
        F.cross_entropy(net(x), y).backward()
        assert got == pytest.approx(math.sqrt(sum((p.grad**2).sum().item() for p in net.parameters())), rel=1e-5)


# ---------------------------------------------------------------------------- with ies.train
def small_config(**kw) -> Config:
    base = dict(dataset="synthetic", model="mlp", epochs=2, batch_size=150, lr=0.05, device="cpu", progress=False,
                checkpoint_every=0)
    return Config(**{**base, **kw})


def test_recorded_grad_norms_match_a_manual_loop():
    """Replays train()'s baseline loop by hand: the same seeds, shuffles and optimiser."""
    cfg = small_config(threshold=0.0)
    data = synthetic(500)  # 400 training samples: steps of 150, 150, 100
    hist = train(cfg, dataset=data).history
    seed_everything(cfg.seed)
    model = build_model(cfg.model, tuple(data.x_train.shape[1:]), data.num_classes)
    opt, sched = make_optimizer(cfg, model)
    gen = torch.Generator().manual_seed(cfg.seed)
    for epoch in range(cfg.epochs):
        norms = []
        order = torch.randperm(data.num_train, generator=gen)
        for idx in order.split(cfg.batch_size):
            opt.zero_grad()
            F.cross_entropy(model(data.x_train[idx]), data.y_train[idx]).backward()
            norms.append(math.sqrt(sum((p.grad.double() ** 2).sum().item() for p in model.parameters())))
            opt.step()
        sched.step()
        assert len(norms) == 3
        assert hist.grad_norm_mean[epoch] == pytest.approx(sum(norms) / len(norms), rel=1e-5)
        assert hist.grad_norm_max[epoch] == pytest.approx(max(norms), rel=1e-5)
    off = train(cfg.replace(track_grad_norm=False, epochs=1), dataset=data).history
    assert math.isnan(off.grad_norm_mean[0]) and math.isnan(off.grad_norm_max[0])


def test_grad_norms_are_nan_in_an_epoch_without_steps():
    data = synthetic(500)
    hist = train(small_config(epochs=7, threshold=1e9), dataset=data).history  # everything gets mastered
    idle = hist.n_active == 0
    assert idle.any() and (~idle).any()
    assert hist.loc[idle, ["grad_norm_mean", "grad_norm_max"]].isna().all().all()
    assert (hist.loc[~idle, ["grad_norm_mean", "grad_norm_max"]] > 0).all().all()


def test_probe_columns_and_no_effect_on_training():
    data = synthetic(500)
    cfg = small_config(epochs=4, threshold=1e-3)
    plain = train(cfg, dataset=data).history
    loader = DeviceLoader(data.x_train, data.y_train, torch.device("cpu"))
    probe = SharpnessProbe(fixed_batches(data, 100, batch_size=64), every=2, iters=30, trace_samples=2,
                           train_data=loader, grad_batches=2)
    result = train(cfg, dataset=data, on_epoch_end=probe)
    probed = result.history
    with torch.no_grad():
        final_loss = F.cross_entropy(result.model.eval()(data.x_train), data.y_train).item()
    assert probed.train_loss_all.iloc[-1] == pytest.approx(final_loss, rel=1e-5)
    shared = [c for c in plain.columns if c != "epoch_seconds"]
    assert probed[shared].equals(plain[shared])
    measured = probed.epoch.isin([1, 2, 4])
    assert probed.loc[measured, probe.keys].notna().all().all()
    assert probed.loc[~measured, probe.keys].isna().all().all()
    early = probed[probed.epoch <= 2]  # order 2: nothing can be mastered before epoch 3
    assert (early.n_mastered == 0).all()
    assert (early.grad_norm_all.dropna() == early.grad_norm_active.dropna()).all()


class Recorder(nn.Module):
    """A linear model that keeps every input batch it sees."""

    def __init__(self, d: int, k: int) -> None:
        super().__init__()
        self.lin, self.seen = nn.Linear(d, k), []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen.append(x.detach().clone())
        return self.lin(x)


def test_active_grad_norms_draw_only_unmastered_samples():
    data = synthetic(500)
    loader = DeviceLoader(data.x_train, data.y_train, torch.device("cpu"))
    mastered = torch.zeros(data.num_train, dtype=torch.bool)
    mastered[::3] = True
    model = Recorder(data.x_train.shape[1], data.num_classes)
    probe = SharpnessProbe([], train_data=loader, grad_batches=4, grad_batch_size=16)
    row = probe.active_grad_norms(model, mastered, epoch=3)
    assert len(model.seen) == 8
    def rows_of(batch):
        return (batch[:, None, :] == data.x_train[None]).all(-1).float().argmax(1)
    drawn_all = torch.cat([rows_of(b) for b in model.seen[:4]])
    drawn_active = torch.cat([rows_of(b) for b in model.seen[4:]])
    assert mastered[drawn_all].any() and not mastered[drawn_active].any()
    assert len(set(drawn_active.tolist())) == 64  # no sample twice
    assert set(drawn_all[~mastered[drawn_all]].tolist()) <= set(drawn_active.tolist())  # paired draws
    expected = batch_grad_norms(model, F.cross_entropy, [(data.x_train[i], data.y_train[i])
                                                         for i in drawn_active.split(16)])
    assert row["grad_norm_active"] == pytest.approx(sum(expected) / 4, rel=1e-6)
    none = probe.active_grad_norms(model, torch.zeros_like(mastered), epoch=3)
    assert none["grad_norm_all"] == none["grad_norm_active"] == row["grad_norm_all"]
    assert math.isnan(probe.active_grad_norms(model, torch.ones_like(mastered))["grad_norm_active"])


def test_fixed_batches_is_a_seeded_subset_of_the_training_split():
    data = synthetic(500)
    batches = fixed_batches(data, 90, batch_size=40, seed=5)
    assert [len(y) for _, y in batches] == [40, 40, 10]
    x = torch.cat([b[0] for b in batches])
    rows = (x[:, None, :] == data.x_train[None]).all(-1)
    assert (rows.sum(1) == 1).all() and len(set(rows.float().argmax(1).tolist())) == 90
    again = fixed_batches(data, 90, batch_size=40, seed=5)
    assert all(torch.equal(a[0], b[0]) for a, b in zip(batches, again, strict=True))
    assert sum(len(y) for _, y in fixed_batches(data, 0)) == data.num_train


def test_compare_histories_on_hand_made_histories():
    nan = float("nan")
    base = pd.DataFrame({
        "epoch": [0, 1, 2, 3, 4], "forward_only_samples": [nan, 0, 0, 0, 0], "n_mastered": [nan, 0, 0, 0, 0],
        "grad_norm_mean": [nan, 1.0, 1.0, 2.0, 1.0], "tracked_loss": [nan, 1.0, 0.5, 0.4, 0.2],
        "top_eigenvalue": [5.0, 8.0, nan, 4.0, 4.0], "sam_sharpness": [0.1, 0.2, nan, 0.1, 0.1],
        "grad_norm_all": [nan, 1.0, nan, 1.0, 1.0], "grad_norm_active": [nan, 1.0, nan, 1.0, 1.0]})
    ies = base.assign(
        forward_only_samples=[nan, 0, 3, 5, 6], n_mastered=[nan, 3, 5, 6, 6],
        grad_norm_mean=[nan, 1.0, 2.0, 1.0, 3.0], tracked_loss=[nan, 1.0, 1.0, 0.2, 0.1],
        top_eigenvalue=[5.0, 8.0, nan, 2.0, 8.0], sam_sharpness=[0.1, 0.2, nan, 0.05, 0.05],
        grad_norm_all=[nan, 2.0, nan, 1.0, 2.0], grad_norm_active=[nan, 3.0, nan, 0.5, 3.0])
    got = compare_histories(base, ies)
    # epochs 2, 3, 4 trained with exclusions: step ratios 2, 0.5, 3; loss ratios 2, 0.5, 0.5
    assert got["step_epochs"] == 3 and got["step_ratio_median"] == 2.0
    assert got["step_ies_larger"] == pytest.approx(2 / 3)
    assert got["loss_count"] == 3 and got["loss_ratio_median"] == 0.5 and got["loss_ratio_final"] == 0.5
    assert got["loss_ies_lower"] == pytest.approx(2 / 3)
    # probes with samples mastered: epochs 1, 3, 4 -> 1.5, 0.5, 1.5
    assert got["same_probes"] == 3 and got["same_ratio_median"] == 1.5 and got["same_above_1"] == pytest.approx(2 / 3)
    # first mastery at the end of epoch 1: probes at 3 and 4 -> eigenvalue ratios 0.5, 2; SAM 0.5, 0.5
    assert got["top_eigenvalue_probes"] == 2 and got["top_eigenvalue_ies_lower"] == 0.5
    assert got["top_eigenvalue_ratio_median"] == 1.25 and got["top_eigenvalue_ratio_final"] == 2.0
    assert got["sam_sharpness_ies_lower"] == 1.0 and got["sam_sharpness_ratio_final"] == 0.5
    assert "hessian_trace_probes" not in got
    # with the probe's clean loss over all samples, the loss comparison uses it, at probes after epoch 1
    clean = compare_histories(base.assign(train_loss_all=[nan, 1.0, nan, 1.0, 1.0]),
                              ies.assign(train_loss_all=[nan, 9.0, nan, 0.5, 2.0]))
    assert clean["loss_count"] == 2 and clean["loss_ies_lower"] == 0.5 and clean["loss_ratio_final"] == 2.0


def _seeds():
    seed0 = {"same_above_1": 0.75, "same_probes": 8.0, "step_ies_larger": 1.0, "step_epochs": 6.0,
             "loss_ies_lower": 0.0, "loss_count": 5.0, "top_eigenvalue_ies_lower": 0.5, "top_eigenvalue_probes": 2.0,
             "sam_sharpness_ies_lower": float("nan"), "sam_sharpness_probes": 0.0}
    seed1 = {**seed0, "same_above_1": 1.0, "same_probes": 4.0, "loss_ies_lower": 0.1}
    seed2 = {**seed0, "same_above_1": 0.875, "loss_ies_lower": 0.2, "top_eigenvalue_ies_lower": 1.0}
    return seed0, seed1, seed2


def test_claim_intervals_judge_one_summary_per_seed():
    seed0, seed1, seed2 = _seeds()
    got = claim_intervals([seed0, seed1, seed2])
    assert list(got.index) == ["same_weights", "steps", "loss", "top_eigenvalue", "sam_sharpness"]  # no trace
    # same weights: shares 0.75, 1.0, 0.875 -> summaries 0.25, 0.5, 0.375: mean 0.375, std 0.125
    half = 4.302652729911275 * 0.125 / math.sqrt(3)
    row = got.loc["same_weights"]
    assert row["seeds"] == 3 and row["share"] == pytest.approx(0.875)
    assert (row["low"], row["high"]) == (pytest.approx(0.875 - half), pytest.approx(0.875 + half))
    assert row["verdict"] == stats.SUPPORTED  # 0.875 - 0.31 > 0.5
    assert got.loc["steps", "verdict"] == stats.SUPPORTED  # every seed 1.0: the zero spread decides, no floor here
    assert got.loc["loss", "verdict"] == stats.NOT_SUPPORTED  # 0, 0.1, 0.2: -0.4 ± 0.25, all of it below 0
    assert got.loc["top_eigenvalue", "verdict"] == stats.WITHIN_NOISE  # 0.5, 0.5, 1.0
    assert got.loc["sam_sharpness", "verdict"] == stats.NOT_RUN  # no comparisons in any seed
    two = claim_intervals([seed0, seed1])  # two seeds: an illustration, never a verdict
    assert set(two["verdict"]) - {stats.NOT_RUN} == {stats.FEW_SEEDS}
    as_frame = claim_intervals(pd.DataFrame({0: seed0, 1: seed1, 2: seed2}))  # the notebook's layout
    pd.testing.assert_frame_equal(as_frame, got)


def test_claim_sign_tests_count_seeds_not_pooled_probes():
    seed0, seed1, seed2 = _seeds()
    got = claim_sign_tests([seed0, seed1, seed2])
    assert (got.loc["same_weights", "wins"], got.loc["same_weights", "n"]) == (3, 3)
    assert got.loc["same_weights", "p_value"] == pytest.approx(0.25)  # 3 of 3 seeds: 2 / 8
    assert got.loc["same_weights", "verdict"] == stats.WITHIN_NOISE  # 3 seeds can never pass a 5 % sign test
    assert (got.loc["top_eigenvalue", "wins"], got.loc["loss", "wins"]) == (1, 0)  # ties (0.5) are not wins
    assert got.loc["same_weights", "text"] == "inconclusive (within seed noise): 3 of 3 seeds (sign test p = 0.25)"


def test_measure_sharpness_is_the_single_measurements_together(net_and_batches):
    net, batches = net_and_batches
    got = measure_sharpness(net, F.cross_entropy, batches, rho=0.1, iters=40, tol=1e-6)
    assert got["top_eigenvalue"] == hessian_top_eigenvalue(net, F.cross_entropy, batches, iters=40, tol=1e-6)
    assert got["sam_sharpness"] == sam_sharpness(net, F.cross_entropy, batches, rho=0.1)
    x, y = torch.cat([b[0] for b in batches]), torch.cat([b[1] for b in batches])
    net.eval()
    net.zero_grad()
    loss = F.cross_entropy(net(x), y)
    loss.backward()
    assert got["loss"] == pytest.approx(loss.item(), rel=1e-6)
    grad_norm = math.sqrt(sum((p.grad.double() ** 2).sum().item() for p in net.parameters()))
    assert got["grad_norm"] == pytest.approx(grad_norm, rel=1e-5) and 1 <= got["lanczos_steps"] <= 40
