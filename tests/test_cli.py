import json
import os
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest
import torch

from ies.cli import main

TINY = ["--dataset", "synthetic", "--model", "mlp", "--dataset-size", "1000", "--batch-size", "32", "--no-progress"]


@pytest.mark.parametrize(
    "args,message",
    [
        (["--dataset", "imagenet21k"], "dataset must be one of"),
        (["--threshold=-1e-3"], "threshold must be a finite number >= 0"),
        (["--order", "4"], r"order must be in 0\.\.3"),
        (["--window", "0"], "window must be >= 1"),
        (["--patience", "0"], "patience must be >= 1"),
        (["--epochs", "ten"], "epochs must be int"),
        (["--treshold", "1e-3"], r"unrecognized argument '--treshold' \(did you mean '--threshold'\?\)"),
        (["--resume"], "resume needs output"),
    ],
)
def test_bad_input_exits_2_naming_the_argument(args, message, capsys, tmp_path):
    with pytest.raises(SystemExit) as exit_info:
        main(["train", *args])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1
    import re

    assert re.search(message, err)


def _run(args, **kw):
    return subprocess.Popen([sys.executable, "-m", "ies", "train", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **kw)


def test_train_writes_history_and_metrics(tmp_path):
    p = _run([*TINY, "--epochs", "4", "--threshold", "0.05", "--output", str(tmp_path)])
    out, err = p.communicate(timeout=300)
    assert p.returncode == 0, err
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    for key in ("test_accuracy", "best_test_accuracy", "backprop_saving", "wall_time_s", "config"):
        assert key in metrics
    assert metrics["config"]["threshold"] == 0.05 and metrics["config"]["epochs"] == 4
    history = pd.read_csv(tmp_path / "history.csv")
    assert list(history["epoch"]) == [1, 2, 3, 4]
    assert metrics["test_accuracy"] == pytest.approx(history["test_accuracy"].iloc[-1])
    assert json.loads(out)["backprop_saving"] == metrics["backprop_saving"]


def test_killed_run_resumes_to_the_same_history_and_weights(tmp_path):
    args = [*TINY, "--epochs", "14", "--threshold", "0.05", "--seed", "3"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # bitwise reproducibility needs a fixed thread count
    ref, cut = tmp_path / "reference", tmp_path / "killed"
    p = _run([*args, "--output", str(ref)], env=env)
    assert p.wait(timeout=300) == 0, p.stderr.read()

    p = _run([*args, "--output", str(cut)], env=env)
    history = cut / "history.csv"
    deadline = time.time() + 300
    while time.time() < deadline and p.poll() is None:
        if history.exists() and history.read_text().count("\n") >= 5:  # header + 4 epochs
            p.send_signal(signal.SIGKILL)
            break
        time.sleep(0.005)
    assert p.wait(timeout=60) == -signal.SIGKILL, "the run ended before it could be killed"
    p.stdout.close(), p.stderr.close()
    done = len(pd.read_csv(history))
    assert 4 <= done < 14

    p = _run([*args, "--output", str(cut), "--resume"], env=env)
    assert p.wait(timeout=300) == 0, p.stderr.read()
    a, b = pd.read_csv(ref / "history.csv"), pd.read_csv(cut / "history.csv")
    cols = [c for c in a.columns if c != "epoch_seconds"]
    pd.testing.assert_frame_equal(a[cols], b[cols], check_exact=True)
    wa = torch.load(ref / "checkpoint.pt", weights_only=True)["model"]
    wb = torch.load(cut / "checkpoint.pt", weights_only=True)["model"]
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)


def test_resume_rejects_another_configuration(tmp_path):
    p = _run([*TINY, "--epochs", "2", "--output", str(tmp_path)])
    assert p.wait(timeout=300) == 0
    p = _run([*TINY, "--epochs", "2", "--lr", "0.05", "--output", str(tmp_path), "--resume"])
    _, err = p.communicate(timeout=300)
    assert p.returncode != 0 and "different configuration" in err


@pytest.mark.parametrize(
    "args,message",
    [
        (["--dataset", "{tmp}/missing.npz"], "dataset file .*missing.npz does not exist"),
        (["--output", "{tmp}/empty", "--resume"], "no checkpoint at .*nothing to resume"),
        (["--model", "resnet18"], "model 'resnet18' does not take 1-D signals"),
    ],
)
def test_problems_found_before_training_exit_2(args, message, capsys, tmp_path):
    import re

    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--no-progress", *[a.format(tmp=tmp_path) for a in args]])
    assert exit_info.value.code == 2
    assert re.search(message, capsys.readouterr().err)
    assert not (tmp_path / "empty" / "history.csv").exists()


def test_offline_dataset_and_bad_npz_exit_2_with_one_line(capsys, tmp_path, monkeypatch):
    import numpy as np
    import torchvision

    class Offline:
        url = "https://example.invalid/cifar-10-python.tar.gz"

        def __init__(self, *args, **kwargs):
            raise OSError("network is unreachable")

    monkeypatch.setattr(torchvision.datasets, "CIFAR10", Offline)
    pickled = tmp_path / "objects.npz"
    np.savez(pickled, x_train=np.array([{"a": 1}], dtype=object), y_train=np.zeros(1), x_test=np.zeros(1),
             y_test=np.zeros(1))
    text = tmp_path / "text.npz"
    text.write_text("not an archive")
    single = tmp_path / "single.npz"
    with open(single, "wb") as f:
        np.save(f, np.zeros(3))
    cases = [
        (["--dataset", "cifar10", "--data-dir", str(tmp_path)], "cifar10 is not in"),
        (["--dataset", str(pickled)], "objects.npz is not an .npz archive of the arrays x_train"),
        (["--dataset", str(text)], "text.npz is not an .npz archive"),
        (["--dataset", str(single)], "single.npz holds a single array"),
    ]
    for args, message in cases:
        with pytest.raises(SystemExit) as exit_info:
            main(["train", "--no-progress", *args])
        err = capsys.readouterr().err
        assert exit_info.value.code == 2, args
        assert err.startswith("error: ") and err.count("\n") == 1 and message in err, err
