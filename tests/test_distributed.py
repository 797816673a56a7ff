"""Distributed IES: the sharded sampler, and two gloo processes on the CPU against one process."""

import math
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F

from ies import MasteryTracker
from ies.data.datasets import synthetic
from ies.method.distributed import DistributedActiveSampler, combine_losses
from ies.method.generic import ActiveSampler

# the run that both sides do
N_SAMPLES, LOCAL_BATCH, WORLD, EPOCHS, SEED = 400, 16, 2, 10, 5


def tracker_with_mastered(n, mastered):
    tracker = MasteryTracker(n, threshold=0.1, order=1, patience=1, rule="paper")
    for epoch in range(2):
        losses = torch.full((n,), 1.0) + epoch
        losses[list(mastered)] = 0.5
        tracker.record(torch.arange(n), losses)
        tracker.step()
    return tracker


@pytest.mark.parametrize("world", [1, 2, 3, 4])
@pytest.mark.parametrize("n_mastered", [0, 3, 7, 18, 20])
def test_shards_cover_the_active_set_with_equal_lengths(world, n_mastered):
    tracker = tracker_with_mastered(20, range(n_mastered))
    active = set(range(n_mastered, 20))
    shards = [list(DistributedActiveSampler(tracker, num_replicas=world, rank=r, seed=1)) for r in range(world)]
    lengths = {len(s) for s in shards}
    assert len(lengths) == 1  # every rank the same number of samples
    assert lengths.pop() == len(DistributedActiveSampler(tracker, num_replicas=world, rank=0)) == math.ceil(
        len(active) / world)
    served = [i for s in shards for i in s]
    assert set(served) == active
    assert len(served) - len(active) == (-len(active)) % world if active else not served  # padding only
    # rank r takes positions r, r + R, ... of one shared order: the single-process order when R = 1
    shared = DistributedActiveSampler(tracker, num_replicas=world, rank=0, seed=1).global_indices()
    assert shared[: len(active)].tolist() == list(ActiveSampler(tracker, seed=1))
    for r in range(world):
        assert shards[r] == shared[r::world].tolist()
    cut = [list(DistributedActiveSampler(tracker, num_replicas=world, rank=r, seed=1, drop_last=True))
           for r in range(world)]
    assert len({len(s) for s in cut}) == 1 and len({i for s in cut for i in s}) == len(active) - len(active) % world


def test_mastered_shards_and_bad_rank():
    tracker = tracker_with_mastered(10, [2, 3, 5])
    served = sorted(i for r in range(2) for i in DistributedActiveSampler(tracker, "mastered", num_replicas=2, rank=r))
    assert served in ([2, 3, 5, 5], [2, 3, 3, 5], [2, 2, 3, 5])
    with pytest.raises(ValueError, match="rank"):
        DistributedActiveSampler(tracker, num_replicas=2, rank=2)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_model():
    torch.manual_seed(SEED)
    return torch.nn.Sequential(torch.nn.Linear(20, 32), torch.nn.Tanh(), torch.nn.Linear(32, 4)).double()


def make_tracker():
    return MasteryTracker(N_SAMPLES, threshold=3e-3, order=2, window=3, patience=1, rule="official",
                          dtype=torch.float64)


def data():
    d = synthetic(N_SAMPLES * 5 // 4, num_classes=4, dim=20)
    return d.x_train.double(), d.y_train


def loss_fn(model, x, y):
    return F.cross_entropy(model(x), y, reduction="none")


def single_process_run():
    """One process, global batch WORLD * LOCAL_BATCH, the same order as the shared one (an odd active set
    is padded with its last sample, as the distributed sampler pads it)."""
    x, y = data()
    model, tracker = make_model(), make_tracker()
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    mastered_per_epoch = []
    for _ in range(EPOCHS):
        order = ActiveSampler(tracker, seed=SEED).indices()
        pad = (-order.numel()) % WORLD
        order = torch.cat([order, order[order.numel() - pad :]])
        for start in range(0, order.numel(), WORLD * LOCAL_BATCH):
            idx = order[start : start + WORLD * LOCAL_BATCH]
            losses = loss_fn(model, x[idx], y[idx])
            opt.zero_grad()
            losses.mean().backward()
            opt.step()
            tracker.record(idx, losses)
        with torch.no_grad():
            idx = tracker.mastered_indices()
            tracker.record(idx, loss_fn(model, x[idx], y[idx]))
        tracker.step()
        mastered_per_epoch.append(tracker.mastered.clone())
    return model, tracker, mastered_per_epoch


def worker(rank, port, out):
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=WORLD)
    try:
        # combine_losses: disjoint records, a sample recorded on both ranks (mean), one on none (NaN)
        t = MasteryTracker(6, 0.1)
        if rank == 0:
            t.record(torch.tensor([0, 2, 4, 5]), torch.tensor([0.0, 20.0, 40.0, 1.0]))
        else:
            t.record(torch.tensor([3, 5]), torch.tensor([30.0, 2.0]))
        combine_losses(t)
        combined = t.current.clone()

        x, y = data()
        model, tracker = make_model(), make_tracker()
        ddp = torch.nn.parallel.DistributedDataParallel(model)
        opt = torch.optim.SGD(ddp.parameters(), lr=0.05, momentum=0.9)
        train_sampler = DistributedActiveSampler(tracker, seed=SEED)
        track_sampler = DistributedActiveSampler(tracker, "mastered", shuffle=False)
        mastered_per_epoch = []
        for _ in range(EPOCHS):
            order = train_sampler.indices()
            for start in range(0, order.numel(), LOCAL_BATCH):
                idx = order[start : start + LOCAL_BATCH]
                losses = loss_fn(ddp, x[idx], y[idx])
                opt.zero_grad()
                losses.mean().backward()
                opt.step()
                tracker.record(idx, losses)
            with torch.no_grad():
                idx = track_sampler.indices()
                tracker.record(idx, loss_fn(model, x[idx], y[idx]))
            combine_losses(tracker)
            tracker.step()
            mastered_per_epoch.append(tracker.mastered.clone())
        torch.save({"combined": combined, "state": model.state_dict(), "history": tracker.history(),
                    "mastered": mastered_per_epoch}, f"{out}/rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def test_two_gloo_processes_equal_one_process(tmp_path):
    mp.spawn(worker, args=(free_port(), str(tmp_path)), nprocs=WORLD, join=True)
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in range(WORLD)]
    nan = float("nan")
    for r in ranks:
        torch.testing.assert_close(r["combined"], torch.tensor([0.0, nan, 20, 30, 40, 1.5]), equal_nan=True)
    # every rank holds the same tracker and the same model
    assert torch.equal(ranks[0]["history"].nan_to_num(-1), ranks[1]["history"].nan_to_num(-1))
    assert all(torch.equal(a, b) for a, b in zip(ranks[0]["mastered"], ranks[1]["mastered"], strict=True))
    for name, value in ranks[0]["state"].items():
        assert torch.equal(value, ranks[1]["state"][name])

    model, tracker, mastered = single_process_run()
    assert sum(int(m.sum()) for m in mastered) > 0  # IES excluded samples, odd counts included
    assert any(int((~m).sum()) % 2 for m in mastered)
    assert all(torch.equal(a, b) for a, b in zip(mastered, ranks[0]["mastered"], strict=True))
    torch.testing.assert_close(tracker.history(), ranks[0]["history"], rtol=1e-9, atol=1e-12, equal_nan=True)
    for name, value in model.state_dict().items():
        torch.testing.assert_close(value, ranks[0]["state"][name], rtol=1e-9, atol=1e-12)
