"""Re-check schedules in training: who is forwarded in which epoch, "every" as the paper's IES, resume."""

import pytest
import torch
from torch import nn

from ies import Config, train
from ies.data.datasets import load_dataset
from ies.method.recheck import recheck_epochs
from ies.method.replay import mastery_over_time
from ies.models.zoo import cnn1d

from .resuming import interrupted

FAST = dict(dataset="mnist1d", dataset_size=1000, batch_size=64, progress=False, seed=0, threshold=0.05)
N_TRAIN, N_TEST = 800, 200


@pytest.fixture(scope="module")
def mnist_small():
    return load_dataset("mnist1d", size=1000)


class ForwardCounter(nn.Module):
    """Counts the samples forwarded with grad in train mode (trained) and in eval mode (tracked or tested)."""

    def __init__(self, inner: nn.Module):
        super().__init__()
        self.inner = inner
        self.trained = self.evaluated = 0

    def forward(self, x):
        if self.training and torch.is_grad_enabled():
            self.trained += x.shape[0]
        elif not self.training:
            self.evaluated += x.shape[0]
        return self.inner(x)


def _counted_run(cfg, data):
    torch.manual_seed(0)
    model = ForwardCounter(cnn1d(40, 10))
    tracked = []

    def count(epoch, m, tracker):
        tracked.append(m.evaluated - N_TEST)  # every epoch evaluates the N_TEST test samples once
        m.evaluated = m.trained = 0
        return {"mastered_now": int(tracker.mastered.sum())}

    return train(cfg, dataset=data, model=model, on_epoch_end=count), tracked


def test_fixed_period_forwards_mastered_samples_exactly_on_recheck_epochs(mnist_small):
    r, tracked = _counted_run(Config(**FAST, epochs=14, recheck=3, keep_loss_matrix=True), mnist_small)
    h = r.history
    excluded = [0, *h["mastered_now"][:-1]]  # excluded in epoch e = mastered at the end of e - 1
    recheck = [e % 3 == 0 for e in range(14)]  # 0-based epochs 0, 3, 6, 9, 12
    assert tracked == [n if re else 0 for n, re in zip(excluded, recheck, strict=True)]
    assert list(h["forward_only_samples"]) == tracked
    assert list(h["backprop_samples"]) == [N_TRAIN - n for n in excluded]
    assert list(h["forward_samples"]) == [N_TRAIN - n + t for n, t in zip(excluded, tracked, strict=True)]
    skipped = [n for n, re in zip(excluded, recheck, strict=True) if not re]
    assert sum(skipped) > 0  # some excluded samples really were left out entirely
    # held samples stay excluded: in an epoch without a re-check the excluded set can only grow
    decided = r.mastered_matrix  # (N, epochs): excluded after each epoch
    for e in range(1, 14):
        if not recheck[e]:
            assert not (decided[:, e - 1] & ~decided[:, e]).any()
    assert r.metrics["compute_saving"] > r.metrics["backprop_saving"] * 2 / 3


def test_clean_pass_leaves_held_samples_out_between_rechecks(mnist_small):
    """``loss_source="clean"`` with ``recheck=3``: the clean pass forwards every sample on a re-check epoch
    and only the trained ones otherwise."""
    cfg = Config(**FAST, epochs=14, recheck=3, loss_source="clean", keep_loss_matrix=True)
    r, tracked = _counted_run(cfg, mnist_small)
    h = r.history
    excluded = [0, *h["mastered_now"][:-1]]
    recheck = [e % 3 == 0 for e in range(14)]
    assert tracked == [N_TRAIN if re else N_TRAIN - n for n, re in zip(excluded, recheck, strict=True)]
    assert sum(n for n, re in zip(excluded, recheck, strict=True) if not re) > 0
    assert list(h["forward_samples"]) == [N_TRAIN - n + t for n, t in zip(excluded, tracked, strict=True)]


def test_lr_mode_rechecks_on_the_schedule_of_the_run(mnist_small):
    cfg = Config(**FAST, epochs=12, lr=0.1, gamma=0.7, recheck="lr")
    r, tracked = _counted_run(cfg, mnist_small)
    h = r.history
    want = recheck_epochs("lr", list(h["lr"]))
    assert want != [True] * 12  # the schedule thins out within the run
    excluded = [0, *h["mastered_now"][:-1]]
    assert tracked == [n if re else 0 for n, re in zip(excluded, want, strict=True)]


def test_every_is_the_per_epoch_rule_of_the_paper(mnist_small):
    """``recheck="every"``: each decision equals the rule replayed on the per-epoch loss matrix (no sample
    is ever held), and the run is the default one, bit for bit."""
    cfg = Config(**FAST, epochs=10, keep_loss_matrix=True)
    a = train(cfg.replace(recheck="every"), dataset=mnist_small)
    b = train(cfg, dataset=mnist_small)
    replay = mastery_over_time(a.loss_matrix, cfg.threshold, rule=cfg.rule, order=cfg.order, window=cfg.window,
                               patience=cfg.patience)
    assert torch.equal(replay, a.mastered_matrix) and a.mastered_matrix.any()
    cols = [c for c in a.history.columns if c != "epoch_seconds"]
    assert a.history[cols].equals(b.history[cols])


def test_resume_is_bit_identical_with_a_schedule(mnist_small, tmp_path):
    cfg = Config(**FAST, epochs=12, lr=0.1, gamma=0.7, recheck="lr", output=str(tmp_path / "full"))
    full = train(cfg, dataset=mnist_small)
    cut = cfg.replace(output=str(tmp_path / "cut"))
    interrupted(cut, 7, dataset=mnist_small)  # the checkpoint holds epochs 1..6
    resumed = train(cut.replace(resume=True), dataset=mnist_small)
    cols = [c for c in full.history.columns if c != "epoch_seconds"]
    assert full.history[cols].equals(resumed.history[cols])
    h = full.history  # some epoch after the cut left its excluded samples out (no re-check)
    assert ((h["n_mastered"].shift(1) > 0) & (h["forward_only_samples"] == 0)).iloc[6:].any()
    for (ka, va), (kb, vb) in zip(full.model.state_dict().items(), resumed.model.state_dict().items(), strict=True):
        assert ka == kb and torch.equal(va, vb)


@pytest.mark.parametrize("field,value,match", [("recheck", "often", "^recheck must be"),
                                               ("recheck", 0, "^recheck must be"),
                                               ("recheck_bins", "0.01,0.05", "^recheck_bins must be")])
def test_bad_recheck_values(field, value, match):
    with pytest.raises(ValueError, match=match):
        Config(**{field: value})
    assert Config(recheck=5).recheck == "5" and Config(recheck="1").recheck == "every"
