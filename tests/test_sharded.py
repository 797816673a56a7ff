"""``ies.method.sharded``: the sharded tracker equals the whole tracker on random histories (NaN gaps, epochs
without a re-check), in a simulated world in one process and with two gloo processes against
``combine_losses`` on a whole tracker; bit packing; state dict; bad arguments."""

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from ies import MasteryTracker
from ies.method.distributed import DistributedActiveSampler, combine_losses
from ies.method.sharded import ShardedTracker, pack_bits, step_all, unpack_bits

from .test_distributed import free_port
from .test_tracker import _random_histories

RULE = {"order": 2, "window": 2, "patience": 2, "rule": "official"}


def _epoch_records(rng, losses, e, mastered, recheck):
    """The indices recorded in epoch ``e`` (a selector's: without a re-check, the mastered ones mostly
    not) and their losses."""
    recorded = ~np.isnan(losses[:, e])
    if not recheck:
        recorded &= ~mastered | (rng.random(len(mastered)) < 0.1)
    idx = rng.permutation(np.flatnonzero(recorded))
    return idx, losses[idx, e]


def test_pack_bits_round_trip():
    mask = torch.tensor([True, False, True, True, False, False, False, True, True, False, True])
    packed = pack_bits(mask)
    assert packed.tolist() == [1 + 4 + 8 + 128, 1 + 4]
    assert torch.equal(unpack_bits(packed, 11), mask)
    assert torch.equal(unpack_bits(torch.stack([packed, packed]), 11), torch.stack([mask, mask]))


@pytest.mark.parametrize("world", [1, 3])
def test_simulated_world_equals_the_whole_tracker(world):
    rng = np.random.default_rng(world)
    n, epochs, threshold = 301, 20, 3e-2
    losses = _random_histories(rng, n, epochs)
    whole = MasteryTracker(n, threshold, **RULE)
    ranks = [ShardedTracker(n, threshold, **RULE, rank=r, world_size=world) for r in range(world)]
    rechecks = [True] * 7 + [bool(b) for b in rng.random(epochs - 7) < 0.5]
    resumed = None
    for e, recheck in enumerate(rechecks):
        idx, values = _epoch_records(rng, losses, e, whole.mastered.numpy(), recheck)
        whole.record(torch.as_tensor(idx), torch.as_tensor(values))
        owner = rng.integers(0, world, size=len(idx))  # who trained which sample: anyone
        for r, tracker in enumerate(ranks + (resumed or [])):
            mine, vals = idx[owner == r % world], values[owner == r % world]
            tracker.record(torch.as_tensor(mine), torch.full((len(mine),), 7.0))  # overwritten below
            for part in np.array_split(np.arange(len(mine)), 2):
                tracker.record(torch.as_tensor(mine[part]), torch.as_tensor(vals[part]))
        if e == 12:  # resume mid-run from the state dicts, records of the epoch in progress included
            resumed = [ShardedTracker(n, threshold, **RULE, rank=r, world_size=world) for r in range(world)]
            for old, new in zip(ranks, resumed, strict=True):
                new.load_state_dict(old.state_dict())
        want = whole.step(recheck=recheck)
        for group in (ranks, resumed) if resumed is not None else (ranks,):
            got = step_all(group, recheck=recheck) if world > 1 else group[0].step(recheck=recheck)
            assert torch.equal(got, want), f"epoch {e + 1}"
            for r, tracker in enumerate(group):
                assert torch.equal(tracker.mastered, want) and tracker.stats() == whole.stats()
                own = whole.history()[r::world]
                assert torch.equal(tracker.local.history().nan_to_num(-1), own.nan_to_num(-1))
    assert whole.mastered.any() and not all(rechecks)


def test_bad_arguments_and_state_of_another_rank():
    with pytest.raises(ValueError, match="num_samples"):
        ShardedTracker(2, 0.1, rank=0, world_size=3)
    with pytest.raises(ValueError, match="rank"):
        ShardedTracker(10, 0.1, rank=3, world_size=3)
    tracker = ShardedTracker(10, 0.1, rank=1, world_size=3)
    assert tracker.owned.tolist() == [1, 4, 7] and tracker.local.num_samples == 3
    with pytest.raises(IndexError, match="indices"):
        tracker.record(torch.tensor([10]), torch.tensor([0.5]))
    with pytest.raises(ValueError, match="state"):
        ShardedTracker(10, 0.1, rank=0, world_size=3).load_state_dict(tracker.state_dict())


WORLD, N, EPOCHS = 2, 203, 16


def worker(rank, port, out):
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=WORLD)
    try:
        saved = {}
        for dtype in (torch.float32, torch.float16):  # float16 losses travel as their 16 raw bits
            saved[str(dtype)] = _gloo_run(rank, dtype)
        torch.save(saved, f"{out}/rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def _gloo_run(rank, dtype):
    rng = np.random.default_rng(11)  # the same draws on both ranks
    losses = _random_histories(rng, N, EPOCHS)
    whole = MasteryTracker(N, 3e-2, **RULE, dtype=dtype)
    sharded = ShardedTracker(N, 3e-2, **RULE, dtype=dtype)
    rows = []
    for e in range(EPOCHS):
        recheck = e < 6 or e % 3 != 0
        idx, values = _epoch_records(rng, losses, e, whole.mastered.numpy(), recheck)
        owner = rng.integers(0, WORLD, size=len(idx))
        both = rng.random(len(idx)) < 0.1  # recorded on both ranks, with slightly different values
        mine = (owner == rank) | both
        vals = torch.as_tensor(values[mine]) * (1 + 1e-2 * rank * torch.as_tensor(both[mine]))
        for tracker in (whole, sharded):
            tracker.record(torch.as_tensor(idx[mine][:5]), torch.full((min(5, int(mine.sum())),), 9.0))
            tracker.record(torch.as_tensor(idx[mine]), vals)  # the last value of a rank counts
        combine_losses(whole)
        want, got = whole.step(recheck=recheck), sharded.step(recheck=recheck)
        foreign = int((np.unique(idx[mine]) % WORLD != rank).sum())  # pairs sent: counts, pairs, packed bits
        expect = 8 + (4 + whole.current.element_size()) * foreign + 13  # 13 = ceil(ceil(203 / 2) / 8)
        rows.append((want.clone(), got.clone(), whole.stats(), sharded.stats(), sharded.comm["sent_bytes"], expect))
    samplers = [DistributedActiveSampler(t, seed=3).indices() for t in (whole, sharded)]
    return {"rows": rows, "whole": whole.history()[rank::WORLD], "local": sharded.local.history(),
            "samplers": samplers}


def test_two_gloo_processes_equal_combine_losses_on_a_whole_tracker(tmp_path):
    mp.spawn(worker, args=(free_port(), str(tmp_path)), nprocs=WORLD, join=True)
    for r in range(WORLD):
        runs = torch.load(tmp_path / f"rank{r}.pt")
        assert sorted(runs) == ["torch.float16", "torch.float32"]
        for name, saved in runs.items():
            assert str(saved["local"].dtype) == name
            for want, got, want_stats, got_stats, sent, expect in saved["rows"]:
                assert torch.equal(want, got) and want_stats == got_stats and sent == expect
            assert sum(int(row[0].sum()) for row in saved["rows"]) > 0
            torch.testing.assert_close(saved["local"], saved["whole"], rtol=0, atol=0, equal_nan=True)
            assert torch.equal(*saved["samplers"])
