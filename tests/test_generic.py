"""The generic API: a dataset returning indices, a sampler over the tracker's active samples, and the
README's loop with a plain torch DataLoader."""

import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

from ies import MasteryTracker
from ies.data.datasets import synthetic
from ies.method.generic import ActiveSampler, IndexedDataset


def tracker_with_mastered(n, mastered):
    """A paper-rule tracker (order 1, lookback 2) whose samples ``mastered`` are mastered after 2 epochs."""
    tracker = MasteryTracker(n, threshold=0.1, order=1, patience=1, rule="paper")
    for epoch in range(2):
        losses = torch.full((n,), 1.0) + epoch  # the loss jumps by 1: not mastered
        losses[list(mastered)] = 0.5  # constant: mastered
        tracker.record(torch.arange(n), losses)
        tracker.step()
    assert set(tracker.mastered_indices().tolist()) == set(mastered)
    return tracker


def test_indexed_dataset_appends_the_index():
    base = TensorDataset(torch.arange(5.0) * 10, torch.arange(5))
    data = IndexedDataset(base)
    assert len(data) == 5
    assert data[3] == (torch.tensor(30.0), torch.tensor(3), 3)
    x, y, idx = next(iter(DataLoader(data, batch_size=5)))
    assert torch.equal(idx, torch.arange(5)) and torch.equal(x, torch.arange(5.0) * 10)
    assert IndexedDataset([7, 8])[1] == (8, 1)


def test_sampler_serves_the_active_set_once_and_rereads_the_tracker_each_epoch():
    tracker = MasteryTracker(20, threshold=0.1, order=1, patience=1, rule="paper")
    sampler = ActiveSampler(tracker, seed=3)
    assert sorted(sampler) == list(range(20)) and len(sampler) == 20
    mastered = {1, 4, 5, 11, 19}
    for epoch in range(2):  # the same sampler object follows the tracker
        losses = torch.full((20,), 1.0) + epoch
        losses[list(mastered)] = 0.5
        tracker.record(torch.arange(20), losses)
        tracker.step()
    order = list(sampler)
    assert sorted(order) == sorted(set(range(20)) - mastered) and len(sampler) == 15
    assert order != sorted(order)  # shuffled
    assert sorted(ActiveSampler(tracker, "mastered")) == sorted(mastered)
    assert len(ActiveSampler(tracker, "mastered")) == 5
    assert list(ActiveSampler(tracker, "all", shuffle=False)) == list(range(20))
    assert list(ActiveSampler(tracker, "mastered", shuffle=False)) == sorted(mastered)


def test_sampler_order_depends_on_seed_and_epoch_only():
    tracker = tracker_with_mastered(50, range(0, 50, 3))
    a, b = ActiveSampler(tracker, seed=1), ActiveSampler(tracker, seed=1)
    assert list(a) == list(b) == list(a)  # same seed and epoch: same order, whatever came before
    assert list(a) != list(ActiveSampler(tracker, seed=2))
    b.set_epoch(tracker.epoch + 1)
    assert list(a) != list(b) and sorted(a) == sorted(b)
    expected = torch.nonzero(~tracker.mastered).flatten()
    expected = expected[torch.randperm(expected.numel(), generator=torch.Generator().manual_seed(1 + tracker.epoch))]
    assert list(a) == expected.tolist()


def test_sampler_rejects_an_unknown_subset():
    with pytest.raises(ValueError, match="subset"):
        ActiveSampler(MasteryTracker(3, 0.1), "inactive")


@pytest.mark.parametrize("num_workers", [0, 2])
def test_the_readme_loop_with_a_plain_dataloader(num_workers):
    torch.manual_seed(0)
    data = synthetic(600, num_classes=4, dim=20)
    train_set = TensorDataset(data.x_train, data.y_train)
    n = len(train_set)
    model = torch.nn.Sequential(torch.nn.Linear(20, 32), torch.nn.ReLU(), torch.nn.Linear(32, 4))
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)

    # -- the loop of README.md, section "Your own training loop with a DataLoader"
    dataset = IndexedDataset(train_set)
    tracker = MasteryTracker(n, threshold=2e-3, order=2, window=3, patience=1, rule="official")
    persistent = num_workers > 0
    train_loader = DataLoader(dataset, batch_size=32, sampler=ActiveSampler(tracker, seed=0),
                              num_workers=num_workers, persistent_workers=persistent)
    track_loader = DataLoader(dataset, batch_size=128, sampler=ActiveSampler(tracker, "mastered"),
                              num_workers=num_workers, persistent_workers=persistent)
    seen_active, seen_mastered, tracked = [], [], []
    for _epoch in range(12):
        active_before = set(tracker.active_indices().tolist())
        model.train()
        trained = []
        for x, y, idx in train_loader:
            losses = F.cross_entropy(model(x), y, reduction="none")
            opt.zero_grad()
            losses.mean().backward()
            opt.step()
            tracker.record(idx, losses)
            trained += idx.tolist()
        model.eval()
        forwarded = []
        with torch.no_grad():
            for x, y, idx in track_loader:
                tracker.record(idx, F.cross_entropy(model(x), y, reduction="none"))
                forwarded += idx.tolist()
        # every active sample exactly once, every mastered one forwarded once, nothing unrecorded
        assert sorted(trained) == sorted(active_before)
        assert sorted(forwarded) == sorted(set(range(n)) - active_before)
        assert not torch.isnan(tracker.current).any()
        tracker.step()
        seen_active.append(len(trained))
        seen_mastered.append(len(forwarded))
        tracked.append(float(tracker.last_losses.mean()))  # every sample's loss of this epoch

    assert seen_active[0] == n and max(seen_mastered) > 0  # IES did skip samples
    assert tracked[-1] < 0.1 * tracked[0]
    with torch.no_grad():
        accuracy = (model(data.x_test).argmax(1) == data.y_test).float().mean()
    assert accuracy > 0.8
