"""``ies.train`` on two gloo processes (:mod:`ies.training.ddp`): the shards, ``torchrun -m ies train`` against one
process at the same global batch, resume under two processes, bad input on every rank, rank 0 writes."""

import contextlib
import io
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from ies import Config, train
from ies.data.datasets import ArrayDataset, DeviceLoader
from ies.training.ddp import GradientShare, ShardedLoader, shard

from .resuming import interrupted

ROOT = Path(__file__).resolve().parents[1]
TINY = dict(dataset="synthetic", dataset_size=1000, model="mlp", epochs=5, batch_size=32, device="cpu", lr=0.05,
            progress=False)
EXACT = ["epoch", "lr", "n_active", "n_mastered", "n_newly_mastered", "n_reentered", "n_nonfinite",
         "backprop_samples", "forward_only_samples", "forward_samples"]
FLOATS = ["train_loss", "tracked_loss", "test_loss", "test_accuracy", "grad_norm_mean", "grad_norm_max"]


@pytest.mark.parametrize("field,value", [("batch_size", 33), ("min_last_batch", 16), ("compile", True),
                                         ("selector", "infobatch")])
def test_check_names_what_cannot_run_on_several_processes(field, value):
    from ies.training.ddp import check

    with pytest.raises(ValueError, match=f"^{field}=") as e:
        check(Config(**{**TINY, field: value}), 2)
    assert "\n" not in str(e.value)
    check(Config(**TINY), 2)  # the same config otherwise runs


def test_shard_takes_one_block_of_each_global_batch():
    idx = torch.arange(100, 111)  # 11 samples, global batch 4 on 2 ranks: [100..103] [104..107] [108..110]
    assert shard(idx, 4, 0, 2)[0].tolist() == [100, 101, 104, 105, 108, 109]
    assert shard(idx, 4, 1, 2)[0].tolist() == [102, 103, 106, 107, 110]
    assert shard(idx, 4, 1, 2)[1] == [4, 4, 3]
    assert shard(idx[:1], 4, 1, 2)[0].tolist() == [] and shard(idx[:0], 4, 0, 2)[1] == []
    # a remainder of 4 at local batch 3 would leave rank 1 one sample (BatchNorm rejects it): 2 and 2
    ten = torch.arange(10)
    assert shard(ten, 6, 0, 2)[0].tolist() == [0, 1, 2, 6, 7] and shard(ten, 6, 1, 2)[0].tolist() == [3, 4, 5, 8, 9]
    assert shard(ten[:7], 6, 1, 2)[0].tolist() == [3, 4, 5]  # a remainder of one: rank 0's, as in one process
    # no-grad passes may use a batch the world size does not divide: every sample on exactly one rank
    parts = [shard(idx, 5, r, 3)[0] for r in range(3)]
    assert sorted(torch.cat(parts).tolist()) == idx.tolist()


def test_sharded_loader_serves_every_global_batch_with_its_weight():
    x, y = torch.randn(5, 3), torch.arange(5)
    order = torch.arange(5)[torch.randperm(5, generator=torch.Generator().manual_seed(0))]
    served = {}
    for rank in range(2):
        share = GradientShare()
        loader = ShardedLoader(DeviceLoader(x, y, "cpu"), rank, 2, torch.Generator().manual_seed(0), share)
        served[rank] = [(b[2].tolist(), share.weight) for b in loader.batches(None, 4, shuffle=True)]
    assert served[0] == [(order[0:2].tolist(), 0.5), (order[4:5].tolist(), 1.0)]
    assert served[1] == [(order[2:4].tolist(), 0.5), ([], 0.0)]  # an empty share of the remainder: a step


def _budget(tmp_path) -> str:
    """Exclusions making the active set 769, 787, 800, 3 and 1 of 800: remainders of 1, 19, 0, 3 and 1
    at global batch 32, so rank 1 gets an empty share (epochs 1 and 5, epoch 5 with no full batch)."""
    path = tmp_path / "budget.csv"
    pd.DataFrame({"forward_only_samples": [31, 13, 0, 797, 799]}).to_csv(path, index=False)
    return str(path)


def _cli_args(cfg: Config) -> list[str]:
    args = []
    for k, v in cfg.to_dict().items():
        if v != Config.__dataclass_fields__[k].default:
            flag = "--" + k.replace("_", "-")
            args += [flag] if v is True else [f"--no-{k.replace('_', '-')}"] if v is False else [flag, str(v)]
    return args


def assert_same_history(a: pd.DataFrame, b: pd.DataFrame, rtol: float = 1e-4) -> None:
    """Counts equal; floats within ``rtol``: every gradient and loss sum is summed in another order."""
    pd.testing.assert_frame_equal(a[EXACT], b[EXACT], check_dtype=False)
    pd.testing.assert_frame_equal(a[FLOATS], b[FLOATS], check_exact=False, rtol=rtol, atol=1e-7, check_dtype=False)


def test_torchrun_two_processes_equal_one_process(tmp_path, one_thread):
    cfg = Config(**TINY, selector="random", random_budget=_budget(tmp_path), output=str(tmp_path / "two"))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get(
        "PYTHONPATH", "")])}
    p = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                        "-m", "ies", "train", *_cli_args(cfg)], capture_output=True, text=True, env=env, timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    assert p.stdout.count("test_accuracy") == 2  # rank 0 alone printed the summary (two keys name it)
    two = pd.read_csv(tmp_path / "two" / "history.csv")
    metrics = json.loads((tmp_path / "two" / "metrics.json").read_text())
    assert metrics["world_size"] == 2 and metrics["epochs_completed"] == 5 and len(two) == 5
    assert json.loads(p.stdout)["backprop_saving"] == metrics["backprop_saving"]
    one = train(cfg.replace(output=str(tmp_path / "one")))
    assert one.metrics["world_size"] == 1
    assert list(two["n_active"]) == [769, 787, 800, 3, 1]
    assert_same_history(one.history, two)
    with pytest.raises(ValueError, match="world_size=1"):  # a two-process checkpoint resumed in one process
        train(cfg.replace(resume=True, epochs=5))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def images(n: int = 320) -> ArrayDataset:
    """Tiny 8x8 RGB images, the class in the brightness of one channel: augmentation draws matter."""
    g = torch.Generator().manual_seed(0)
    y = torch.randint(0, 3, (n,), generator=g)
    x = torch.randint(0, 120, (n, 8, 8, 3), generator=g, dtype=torch.uint8)
    x[torch.arange(n), :, :, y] += 100
    return ArrayDataset(x[:256], y[:256], x[256:], y[256:], 3, "tiny-images")


def worker(rank: int, port: int, out: str) -> None:
    torch.set_num_threads(1)
    out = Path(out)
    # bad input under torchrun's environment: the error before any collective, on every rank
    os.environ.update(WORLD_SIZE="2", RANK=str(rank), LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))
    from ies.cli import main

    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err):
            code = main(["train", "--dataset", "synthetic", "--batch-size", "33", "--no-progress"])
    except SystemExit as e:
        code = e.code
    (out / f"bad{rank}.txt").write_text(f"{code}:{err.getvalue()}")
    (out / "empty" / "train" / "a").mkdir(parents=True, exist_ok=True)  # an ImageFolder root without images
    (out / "empty" / "val" / "a").mkdir(parents=True, exist_ok=True)
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err):
            code = main(["train", "--dataset", str(out / "empty"), "--device", "cpu", "--no-progress"])
    except SystemExit as e:
        code = e.code
    (out / f"empty{rank}.txt").write_text(f"{code}:{err.getvalue()}")
    if not dist.is_initialized():
        dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)

    writes = []  # every file write of this process (rank 0 alone should write)
    import ies.training.checkpoint as ckpt

    atomic, to_csv = ckpt.atomic_write_bytes, pd.DataFrame.to_csv
    ckpt.atomic_write_bytes = lambda path, *a: (writes.append(str(path)), atomic(path, *a))[1]
    pd.DataFrame.to_csv = lambda self, path=None, *a, **k: (writes.append(str(path)), to_csv(self, path, *a, **k))[1]
    ies_run = train(Config(**{**TINY, "epochs": 6}, threshold=0.05, output=str(out / "ies")))
    ckpt.atomic_write_bytes, pd.DataFrame.to_csv = atomic, to_csv
    (out / f"writes{rank}.json").write_text(json.dumps(writes))
    ies_run.history.to_pickle(out / f"ies{rank}.pkl")

    # resume: an augmented run stopped after epoch 3 (its checkpoint: epoch 2), resumed, against an unbroken one
    cfg = Config(dataset="synthetic", model="mlp", epochs=5, batch_size=16, device="cpu", lr=0.05, threshold=0.05,
                 progress=False)
    train(cfg.replace(output=str(out / "whole")), dataset=images())
    interrupted(cfg.replace(output=str(out / "cut")), 3, dataset=images())
    train(cfg.replace(output=str(out / "cut"), resume=True), dataset=images())
    dist.destroy_process_group()


def run_two_ranks(worker, out: Path, seconds: float = 400) -> None:
    """``worker(rank, port, out)`` on two spawned processes; a rank left hanging fails the test instead of
    blocking it."""
    ctx = mp.spawn(worker, args=(free_port(), str(out)), nprocs=2, join=False)
    deadline = time.time() + seconds
    while not ctx.join(timeout=5):
        if time.time() > deadline:
            for p in ctx.processes:
                p.kill()
            pytest.fail("a rank hung")


def test_two_ranks_resume_bad_input_and_rank_zero_writes(tmp_path, one_thread):
    run_two_ranks(worker, tmp_path)
    for rank in range(2):  # both ranks refused the batch size, with one line naming it
        bad = (tmp_path / f"bad{rank}.txt").read_text()
        assert bad.startswith("2:error: batch_size=33 must be divisible by the world size 2") and bad.count("\n") == 1
        empty = (tmp_path / f"empty{rank}.txt").read_text()  # and an ImageFolder root without images
        assert empty.startswith("2:error: dataset ") and "no images" in empty and empty.count("\n") == 1
    writes = [json.loads((tmp_path / f"writes{r}.json").read_text()) for r in range(2)]
    assert writes[1] == [] and {Path(w).name for w in writes[0]} >= {"history.csv", "metrics.json", "checkpoint.pt"}
    assert json.loads((tmp_path / "ies" / "metrics.json").read_text())["world_size"] == 2

    ranks = [pd.read_pickle(tmp_path / f"ies{r}.pkl") for r in range(2)]
    pd.testing.assert_frame_equal(ranks[0].drop(columns="epoch_seconds"), ranks[1].drop(columns="epoch_seconds"))
    one = train(Config(**{**TINY, "epochs": 6}, threshold=0.05))
    assert one.history["n_mastered"].sum() > 0  # IES excluded samples, and the shrunk active set
    assert (one.history["n_active"] % 32 > 0).any()  # left remainder batches split over the ranks
    assert_same_history(one.history, pd.read_csv(tmp_path / "ies" / "history.csv"))

    whole, cut = (pd.read_csv(tmp_path / n / "history.csv").drop(columns="epoch_seconds") for n in ("whole", "cut"))
    assert whole["n_mastered"].sum() > 0 and len(cut) == 5
    pd.testing.assert_frame_equal(whole, cut, check_exact=True)
    wa, wb = (torch.load(tmp_path / n / "checkpoint.pt", weights_only=True) for n in ("whole", "cut"))
    assert all(torch.equal(wa["model"][k], wb["model"][k]) for k in wa["model"])
    assert wb["world_size"] == 2 and len(wb["rng_ranks"]) == 2
    # the ranks augment from their own streams
    aug = [s["generators"]["augment"] for s in wb["rng_ranks"]]
    assert not torch.equal(aug[0], aug[1])
