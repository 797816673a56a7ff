"""``ies.train`` with ``shard_tracker=True`` on two gloo processes: the history, decisions and group report
of the whole tracker, a resume, bad input on every rank, the bytes the tracker sends; one process: a no-op."""

import contextlib
import io
import json
import os
from pathlib import Path

import pandas as pd
import torch
import torch.distributed as dist

from ies import Config, train
from ies.experiments.group_report import GroupReport
from ies.method.sharded import ShardedTracker

from .resuming import interrupted
from .test_ddp import TINY, assert_same_history, run_two_ranks

CFG = dict(TINY, epochs=6, threshold=0.05, window=1, recheck="2")  # 0-based epochs 1, 3, 5: no re-check


def _one_line_error(argv: list[str]) -> str:
    from ies.cli import main

    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err):
            code = main(argv)
    except SystemExit as e:
        code = e.code
    return f"{code}:{err.getvalue()}"


def worker(rank: int, port: int, out: str) -> None:
    torch.set_num_threads(1)
    out = Path(out)
    os.environ.update(WORLD_SIZE="2", RANK=str(rank), LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))
    bad = _one_line_error(["train", "--dataset", "synthetic", "--shard-tracker", "--keep-loss-matrix",
                           "--no-progress"])
    (out / f"bad{rank}.txt").write_text(bad)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    cfg = Config(**CFG)
    comm = []
    sharded = train(cfg.replace(shard_tracker=True, output=str(out / "sharded")),
                    on_epoch_end=lambda e, m, tracker: comm.append(tracker.comm), observers=[GroupReport()])
    whole = train(cfg.replace(output=str(out / "whole")), observers=[GroupReport()])
    assert isinstance(sharded.tracker, ShardedTracker) and not isinstance(whole.tracker, ShardedTracker)
    assert torch.equal(sharded.tracker.mastered, whole.tracker.mastered)
    assert torch.equal(sharded.tracker.local.history().nan_to_num(-1), whole.tracker.history()[rank::2].nan_to_num(-1))
    interrupted(cfg.replace(shard_tracker=True, output=str(out / "cut")), 3)  # its checkpoint: epoch 2
    try:
        train(cfg.replace(output=str(out / "cut"), resume=True))
        mismatch = "no error"
    except ValueError as e:
        mismatch = str(e)
    resumed = train(cfg.replace(shard_tracker=True, output=str(out / "cut"), resume=True))
    assert torch.equal(resumed.tracker.mastered, whole.tracker.mastered)
    (out / f"rank{rank}.json").write_text(json.dumps({"comm": comm, "mismatch": mismatch}))
    dist.destroy_process_group()


def test_sharded_tracker_on_two_ranks_equals_the_whole_one(tmp_path, one_thread):
    run_two_ranks(worker, tmp_path)
    for rank in range(2):
        bad = (tmp_path / f"bad{rank}.txt").read_text()
        assert bad.startswith("2:error: shard_tracker=True on several processes does not support "
                              "keep_loss_matrix=True") and bad.count("\n") == 1
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    assert all("written with shard_tracker=True, this run has shard_tracker=False" in r["mismatch"] for r in ranks)

    sharded, whole, cut = (pd.read_csv(tmp_path / n / "history.csv") for n in ("sharded", "whole", "cut"))
    assert (whole["n_reentered"] > 0).any() and (whole["forward_only_samples"] > 0).any()  # a re-check
    assert (whole["forward_only_samples"] < whole["n_mastered"].shift()).sum() == 2  # epochs without one
    assert_same_history(whole, sharded)
    pd.testing.assert_frame_equal(sharded.drop(columns="epoch_seconds"), cut.drop(columns="epoch_seconds"))
    for name in ("groups.csv", "groups_summary.csv"):  # FITTED from the gathered fitted bits
        pd.testing.assert_frame_equal(*(pd.read_csv(tmp_path / n / name) for n in ("whole", "sharded")))
    ckpt = torch.load(tmp_path / "sharded" / "checkpoint.pt", weights_only=True)
    assert [t["rank"] for t in ckpt["tracker_ranks"]] == [0, 1]

    # bytes per epoch a rank sent: 8 for the counts, 8 a loss record sent to the other rank (of its 400 at most),
    # the decisions and the fitted bits (50 bytes each: 400 samples a rank), 24 for the statistics
    # (combine_losses instead: an all-reduce of 16 x 800 bytes)
    sent = [[c["sent_bytes"] for c in r["comm"]] for r in ranks]
    assert all(len(s) == 6 and min(s) >= 8 + 50 + 50 + 24 and max(s) <= 132 + 8 * 400 for s in sent), sent
    assert all((b - 132) % 8 == 0 for s in sent for b in s)

    one = train(Config(**CFG, shard_tracker=True))  # one process: the whole tracker
    assert not isinstance(one.tracker, ShardedTracker)
    assert_same_history(one.history, whole)
