import math

import pytest
import torch
from torch import nn

from ies import Config, train
from ies.data.datasets import load_dataset, synthetic

FAST = dict(dataset="mnist1d", dataset_size=1000, batch_size=64, progress=False, seed=0)


@pytest.fixture(scope="module")
def mnist_small():
    return load_dataset("mnist1d", size=1000)


def test_training_lowers_the_loss(mnist_small):
    r = train(Config(**FAST, epochs=8, threshold=0.0), dataset=mnist_small)
    h = r.history
    assert len(h) == 8 and list(h["epoch"]) == list(range(1, 9))
    assert h["tracked_loss"].iloc[-1] < 0.6 * h["tracked_loss"].iloc[0]
    assert h["test_loss"].iloc[-1] < h["test_loss"].iloc[0]
    assert h["test_accuracy"].iloc[-1] > 0.5  # 10 classes: chance is 0.1
    assert (h["forward_only_samples"] == 0).all() and (h["backprop_samples"] == 800).all()
    assert r.metrics["backprop_saving"] == 0.0


class CountingModel(nn.Module):
    """Counts the samples that pass through it in train mode with gradients on (= back-propagated)."""

    def __init__(self, inner: nn.Module):
        super().__init__()
        self.inner = inner
        self.backprop_seen = 0

    def forward(self, x):
        if self.training and torch.is_grad_enabled():
            self.backprop_seen += x.shape[0]
        return self.inner(x)


def test_mastered_samples_get_no_backprop_and_the_books_add_up(mnist_small):
    from ies.models.zoo import cnn1d

    torch.manual_seed(0)
    model = CountingModel(cnn1d(40, 10))
    seen_per_epoch = []

    def count(epoch, m, tracker):
        seen_per_epoch.append(m.backprop_seen)
        m.backprop_seen = 0
        return {"mastered_now": int(tracker.mastered.sum())}

    cfg = Config(**FAST, epochs=12, threshold=0.05)
    r = train(cfg, dataset=mnist_small, model=model, on_epoch_end=count)
    h = r.history
    assert list(h["backprop_samples"]) == seen_per_epoch
    assert (h["backprop_samples"] + h["forward_only_samples"] == 800).all()
    # the samples mastered at the end of epoch e are exactly the ones left out in epoch e + 1
    assert list(h["forward_only_samples"][1:]) == list(h["mastered_now"][:-1])
    assert list(h["n_mastered"]) == list(h["mastered_now"])
    assert h["forward_only_samples"].iloc[0] == 0
    assert h["forward_only_samples"].sum() > 0  # the threshold is large enough to master some
    assert r.metrics["backprop_saving"] == pytest.approx(h["forward_only_samples"].sum() / (800 * 12))
    assert r.metrics["backprop_samples"] == sum(seen_per_epoch)
    # nothing can be mastered before the look-back (2 + 3 + 1 - 1 = 5 epochs) is full
    assert (h["n_mastered"][:4] == 0).all()


def test_same_seed_same_history_and_weights(mnist_small):
    cfg = Config(**FAST, epochs=6, threshold=0.05)
    a, b = train(cfg, dataset=mnist_small), train(cfg, dataset=mnist_small)
    cols = [c for c in a.history.columns if c != "epoch_seconds"]
    assert a.history[cols].equals(b.history[cols])
    for (ka, va), (kb, vb) in zip(a.model.state_dict().items(), b.model.state_dict().items(), strict=True):
        assert ka == kb and torch.equal(va, vb)


def test_all_mastered_epoch_still_tracks_and_evaluates():
    data = synthetic(600)
    cfg = Config(dataset="synthetic", model="mlp", epochs=9, threshold=1e9, order=2, rule="paper",
                 batch_size=32, progress=False)
    r = train(cfg, dataset=data)
    h = r.history
    assert (h["n_mastered"][2:] == 480).all()  # paper rule, N = 2, patience 1: decided from epoch 3
    late = h.iloc[3:]
    assert (late["backprop_samples"] == 0).all() and (late["forward_only_samples"] == 480).all()
    assert late["train_loss"].isna().all()  # nothing trained
    assert late["tracked_loss"].map(math.isfinite).all()  # but every loss was tracked
    assert late["test_accuracy"].map(math.isfinite).all()
    assert r.metrics["backprop_saving"] == pytest.approx(6 / 9)


def test_anneal_trains_everything_at_the_end():
    cfg = Config(dataset="synthetic", model="mlp", epochs=8, threshold=1e9, rule="paper", anneal_fraction=0.25,
                 batch_size=32, progress=False)
    h = train(cfg, dataset=synthetic(600)).history
    assert (h["backprop_samples"].iloc[-2:] == 480).all()
    assert (h["backprop_samples"].iloc[3:6] == 0).all()


class PoisonInEval(nn.Module):
    """NaN logits for sample(s) whose first feature is exactly 0.3125, in eval mode only: training stays finite."""

    def __init__(self, inner):
        super().__init__()
        self.inner = inner

    def forward(self, x):
        out = self.inner(x)
        if not self.training:
            out = torch.where((x[:, :1] == 0.3125), torch.nan, out)
        return out


def test_nonfinite_tracked_loss_is_never_mastered_and_is_counted():
    from ies.models.zoo import mlp

    data = synthetic(600)
    data.x_train[7, 0] = 0.3125
    torch.manual_seed(0)
    cfg = Config(dataset="synthetic", model="mlp", epochs=6, threshold=1e9, rule="paper", order=1,
                 loss_source="clean", batch_size=32, progress=False)
    r = train(cfg, dataset=data, model=PoisonInEval(mlp(40, 4)))
    h = r.history
    assert (h["n_nonfinite"] == 1).all()
    assert not bool(r.tracker.mastered[7])
    assert (h["n_mastered"][1:] == 479).all()


def test_nonfinite_training_loss_stops_the_run_unless_allowed(tmp_path):
    data = synthetic(600)
    data.x_train[3] = torch.nan
    cfg = Config(dataset="synthetic", model="mlp", epochs=3, threshold=0.0, progress=False, output=str(tmp_path))
    with pytest.raises(FloatingPointError, match="epoch 1: the mean training loss is nan"):
        train(cfg, dataset=data)
    assert (tmp_path / "history.csv").read_text().count("\n") == 2  # header + the epoch that failed
    r = train(cfg.replace(allow_nonfinite=True, output=""), dataset=data)
    assert len(r.history) == 3 and r.history["train_loss"].isna().all()


def test_clean_loss_source_tracks_every_sample_each_epoch(mnist_small):
    r = train(Config(**FAST, epochs=5, threshold=0.05, loss_source="clean", keep_loss_matrix=True),
              dataset=mnist_small)
    assert r.loss_matrix.shape == (800, 5) and torch.isfinite(r.loss_matrix).all()
    assert r.mastered_matrix.shape == (800, 5) and r.mastered_matrix.dtype == torch.bool
    assert torch.equal(r.mastered_matrix[:, -1], r.tracker.mastered)


def test_loss_matrix_matches_the_tracker(mnist_small):
    r = train(Config(**FAST, epochs=6, threshold=0.05, keep_loss_matrix=True), dataset=mnist_small)
    assert torch.equal(r.loss_matrix[:, -r.tracker.lookback:], r.tracker.history()[:, -6:])


def test_random_control_shares_the_data_order_of_its_reference(tmp_path):
    """A matched-budget control whose reference excluded nothing is the reference run itself: the
    selector's random stream is separate from the loader's."""
    data = synthetic(600)
    base = Config(dataset="synthetic", model="mlp", epochs=4, threshold=0.0, batch_size=32, progress=False)
    ref = train(base.replace(output=str(tmp_path / "ref")), dataset=data)
    ctl = train(base.replace(selector="random", random_budget=str(tmp_path / "ref" / "history.csv")), dataset=data)
    cols = [c for c in ref.history.columns if c != "epoch_seconds"]
    assert ref.history[cols].equals(ctl.history[cols])
