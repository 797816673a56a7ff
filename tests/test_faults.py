"""Fault injection against ``python -m ies train``: every bad input and fault of issue 22 as a test.

Each case runs the command (in this process through :func:`ies.cli.main`, or as a real process where the
case is about what a user sees), and checks the exit code, that stderr is exactly one ``error:`` line
without a traceback, and the state of the output folder before and after (a finished run's folder is
byte-identical after a failed second run into it). The last tests kill runs at random moments while they
write their files and check that ``--resume`` then gives the uninterrupted run.

Run it alone with ``OMP_NUM_THREADS=1 python -m pytest tests/test_faults.py``.
"""

from __future__ import annotations

import fractions
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

import ies
from ies import Config, MasteryTracker
from ies.cli import main
from ies.course.params import ParameterError, cast_value
from ies.data.datasets import synthetic
from ies.training import faults

REPO = Path(__file__).resolve().parents[1]
SMALL = ["--dataset", "synthetic", "--model", "mlp", "--dataset-size", "200", "--batch-size", "32", "--epochs", "2",
         "--device", "cpu", "--no-progress"]


# ---------------------------------------------------------------------------------------------- helpers
def snapshot(folder: Path) -> dict[str, bytes] | None:
    """Every file under ``folder`` (hidden ones too) with its bytes; ``None`` when there is no folder."""
    if not folder.exists():
        return None
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def cli(capsys, *args: str) -> tuple[int, str]:
    """``python -m ies train ARGS`` in this process: the exit code and stderr (an exception escaping
    ``main`` fails the test, as a traceback would)."""
    capsys.readouterr()
    try:
        code = main(["train", *args])
    except SystemExit as e:
        code = e.code
    return code, capsys.readouterr().err


def process(*args: str, env: dict | None = None, timeout: float = 300) -> tuple[int, str]:
    """``python -m ies train ARGS`` as its own process: the exit code and stderr."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO), **(env or {})}
    p = subprocess.run([sys.executable, "-m", "ies", "train", *args], capture_output=True, text=True, env=env,
                       timeout=timeout)
    return p.returncode, p.stderr


def assert_one_line(err: str, message: str) -> None:
    assert "Traceback" not in err, err
    assert err.startswith("error: ") and err.count("\n") == 1 and err.endswith("\n"), err
    assert re.search(message, err), err


def image_arrays(side: int, n: int = 24, m: int = 8, classes: int = 3) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {"x_train": rng.integers(0, 256, (n, side, side, 3), dtype=np.uint8), "y_train": np.arange(n) % classes,
            "x_test": rng.integers(0, 256, (m, side, side, 3), dtype=np.uint8), "y_test": np.arange(m) % classes}


def npz_file(folder: Path, name: str, **changes) -> Path:
    arrays = {**image_arrays(8), **changes}
    np.savez(folder / name, **arrays)
    return folder / name


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    """A finished run (synthetic data, 2 epochs), made once; tests copy it."""
    folder = tmp_path_factory.mktemp("finished") / "run"
    assert main(["train", *SMALL, "--output", str(folder)]) == 0
    return folder


@pytest.fixture
def run_a(finished, tmp_path) -> Path:
    folder = tmp_path / "a"
    shutil.copytree(finished, folder)
    return folder


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    """The bad data files and checkpoints of the cases."""
    d = tmp_path_factory.mktemp("files")
    good = npz_file(d, "good.npz")
    out = {"good": good, "tiny2x2": npz_file(d, "tiny2x2.npz", **{k: v for k, v in image_arrays(2).items()}),
           "huge_label": npz_file(d, "huge_label.npz", y_train=np.r_[np.arange(23) % 3, 2**48 - 1]),
           "test_outside": npz_file(d, "test_outside.npz", y_test=np.r_[np.arange(7) % 3, 7]),
           "no_train": npz_file(d, "no_train.npz", x_train=np.zeros((0, 8, 8, 3), np.uint8), y_train=np.zeros(0, int)),
           "no_test": npz_file(d, "no_test.npz", x_test=np.zeros((0, 8, 8, 3), np.uint8), y_test=np.zeros(0, int))}
    out["truncated_npz"] = d / "truncated.npz"
    out["truncated_npz"].write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    ckpt = d / "ckpt"
    for name, data in (("truncated", None), ("empty", b""), ("garbage", random.Random(0).randbytes(4096))):
        (ckpt / name).mkdir(parents=True)
        (ckpt / name / "checkpoint.pt").write_bytes(data if data is not None else b"")
    (ckpt / "foreign").mkdir()
    torch.save({"weights": torch.zeros(3)}, ckpt / "foreign" / "checkpoint.pt")
    (ckpt / "objects").mkdir()
    torch.save({"config": fractions.Fraction(1, 3)}, ckpt / "objects" / "checkpoint.pt")
    out["ckpt"] = ckpt
    out["file"] = d / "a_file"
    out["file"].write_text("not a folder\n")
    return out


@pytest.fixture(scope="module")
def truncated_checkpoint(finished, files) -> Path:
    folder = files["ckpt"] / "truncated"
    data = (finished / "checkpoint.pt").read_bytes()
    (folder / "checkpoint.pt").write_bytes(data[: len(data) // 2])
    return folder


def image_root(root: Path, bad: dict[str, bytes]) -> Path:
    """An ImageFolder root (``train/`` and ``val/``, 2 classes of 16x16 images) with the files ``bad``
    (relative path -> bytes) added."""
    rng = np.random.default_rng(0)
    for split, n in (("train", 6), ("val", 2)):
        for c in ("a", "b"):
            (root / split / c).mkdir(parents=True, exist_ok=True)
            for i in range(n):
                Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(root / split / c / f"{i}.png")
    for rel, data in bad.items():
        (root / rel).write_bytes(data)
    return root


def jpeg_bytes() -> bytes:
    import io

    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(1).integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(buf, "JPEG")
    return buf.getvalue()


# ------------------------------------------------------------------------ a finished run is never lost
def test_a_new_run_into_a_finished_run_is_refused_and_the_folder_is_byte_identical(run_a, capsys):
    before = snapshot(run_a)
    code, err = cli(capsys, *SMALL, "--output", str(run_a), "--lr", "1e6")
    assert code == 2
    assert_one_line(err, r"output \S+ already holds a run \(history.csv, metrics.json, checkpoint.pt.*--resume.*"
                         r"--overwrite")
    assert snapshot(run_a) == before


def test_a_new_run_that_fails_at_start_leaves_the_finished_run_byte_identical(run_a, files, capsys):
    before = snapshot(run_a)
    for extra in ([], ["--overwrite"]):  # refused at once; with --overwrite, refused by the data check
        code, err = cli(capsys, "--dataset", str(files["tiny2x2"]), "--model", "small_cnn", "--device", "cpu",
                        "--no-progress", "--output", str(run_a), *extra)
        assert code == 2
        assert_one_line(err, "already holds a run" if not extra else
                        r"tiny2x2.npz: model 'small_cnn' takes images of at least 8x8, got 2x2")
        assert snapshot(run_a) == before


def test_the_issue_commands_as_processes(tmp_path):
    """The commands of the issue, verbatim but for the data folder: the second run is refused and the
    first run's folder stays byte for byte."""
    env = {"IES_DATA_DIR": str(tmp_path / "data")}
    a = tmp_path / "runs" / "a"
    code, err = process("--dataset-size", "500", "--epochs", "4", "--output", str(a), "--no-progress", env=env)
    assert code == 0, err
    before = snapshot(a)
    code, err = process("--dataset-size", "500", "--epochs", "4", "--output", str(a), "--lr", "1e6", env=env)
    assert code == 2
    assert_one_line(err, "already holds a run")
    assert snapshot(a) == before
    code, err = process("--epochs", "99999999999999999999999", "--output", str(tmp_path / "b"), env=env)
    assert code == 2
    assert_one_line(err, "epochs must be <= 100000, got 99999999999999999999999")
    assert not (tmp_path / "b").exists()


def test_overwrite_replaces_the_run_once_its_first_epoch_is_done(run_a, capsys):
    code, err = cli(capsys, *SMALL, "--output", str(run_a), "--overwrite", "--lr", "1e6")
    assert code == faults.EXIT_DIVERGED
    assert_one_line(err, r"epoch 1: the mean training loss is nan; lower lr")
    assert sorted(p.name for p in run_a.iterdir()) == ["checkpoint.pt", "history.csv", "metrics.json"]  # no old groups
    assert len(pd.read_csv(run_a / "history.csv")) == 1
    metrics = json.loads((run_a / "metrics.json").read_text())
    assert metrics["config"]["lr"] == 1e6 and metrics["epochs_completed"] == 1 and "loss is nan" in metrics["error"]
    assert torch.load(run_a / "checkpoint.pt", weights_only=True)["config"]["lr"] == 1e6
    code, err = cli(capsys, *SMALL, "--output", str(run_a), "--overwrite", "--seed", "4")
    assert code == 0 and err == ""
    assert json.loads((run_a / "metrics.json").read_text())["config"]["seed"] == 4
    assert "error" not in json.loads((run_a / "metrics.json").read_text())


def test_a_resume_with_another_configuration_leaves_the_run_byte_identical(run_a, capsys):
    before = snapshot(run_a)
    code, err = cli(capsys, *SMALL, "--output", str(run_a), "--resume", "--lr", "0.05")
    assert code == 2
    assert_one_line(err, "resume: the checkpoint was written by a different configuration")
    assert snapshot(run_a) == before


def test_ctrl_c_is_one_line_exit_130(monkeypatch, tmp_path, capsys):
    def interrupted(cfg, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("ies.cli.train", interrupted)
    code, err = cli(capsys, *SMALL, "--output", str(tmp_path / "out"))
    assert code == faults.EXIT_INTERRUPTED
    assert_one_line(err, "interrupted; continue the run with --resume")


def test_resume_and_overwrite_exclude_each_other(run_a, capsys):
    code, err = cli(capsys, *SMALL, "--output", str(run_a), "--overwrite", "--resume")
    assert code == 2
    assert_one_line(err, "resume and overwrite exclude each other")


# --------------------------------------------------------------------------------- a diverging run
def test_a_diverging_run_exits_3_with_one_line_and_keeps_every_epoch(tmp_path, capsys):
    out = tmp_path / "diverged"
    args = [*SMALL, "--epochs", "15", "--lr", "1", "--output", str(out)]  # finite for two epochs, then nan
    code, err = cli(capsys, *args)
    assert code == 3
    assert_one_line(err, r"^error: epoch \d+: the mean training loss is (nan|inf); lower lr, or set allow_nonfinite")
    failed = int(re.search(r"epoch (\d+)", err).group(1))
    assert failed > 1
    history = pd.read_csv(out / "history.csv")
    assert list(history["epoch"]) == list(range(1, failed + 1))  # every epoch up to the failure
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["epochs_completed"] == failed and metrics["error"] == err[len("error: "):].strip()
    assert len(torch.load(out / "checkpoint.pt", weights_only=True)["history"]) == failed


# ------------------------------------------------------------------------ inputs checked before training
INT_CASES = [
    (["--epochs", "99999999999999999999999"], "epochs must be <= 100000, got 99999999999999999999999"),
    (["--batch-size", "1e30"], "batch_size must be <= 16777216"),
    (["--window", "1000000000"], "window must be <= 1000"),
    (["--patience", "5000"], "patience must be <= 1000"),
    (["--seed", "4294967296"], "seed must be <= 4294967295"),
    (["--dataset", "mnist1d", "--dataset-size", "1000000000"], "dataset_size must be <= 1000000 for the generated"),
    (["--image-size", "1000000"], "image_size must be <= 8192"),
    (["--num-workers", "100000"], "num_workers must be <= 512"),
    (["--checkpoint-every", "1e9"], "checkpoint_every must be <= 100000"),
]


@pytest.mark.parametrize("args,message", INT_CASES, ids=[a[0] for a, _ in INT_CASES])
def test_integer_fields_out_of_range_exit_2(args, message, tmp_path, capsys):
    code, err = cli(capsys, "--no-progress", "--output", str(tmp_path / "out"), *args)
    assert code == 2
    assert_one_line(err, message)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("case", ["file", "dev_null", "sys", "through_file"])
def test_output_paths_that_cannot_hold_a_run_exit_2(case, files, capsys):
    output = {"file": str(files["file"]), "dev_null": "/dev/null", "sys": "/sys/ies-run/a",
              "through_file": str(files["file"] / "run")}[case]
    message = {"file": "exists and is not a folder", "dev_null": "exists and is not a folder",
               "sys": "cannot be written", "through_file": "lies under .*a_file, which is not a folder"}[case]
    before = files["file"].read_bytes()
    code, err = cli(capsys, *SMALL, "--output", output)
    assert code == 2
    assert_one_line(err, rf"^error: output {re.escape(output)} {message}")
    assert files["file"].read_bytes() == before and not Path("/sys/ies-run").exists()


@pytest.mark.parametrize("case,message", [
    ("truncated", r"checkpoint \S+ cannot be read \(RuntimeError: PytorchStreamReader failed reading zip archive"),
    ("empty", r"checkpoint \S+ cannot be read \(EOFError: the file is empty\)"),
    ("garbage", r"checkpoint \S+ cannot be read \(UnpicklingError: its bytes are not a torch checkpoint\)"),
    ("objects", r"checkpoint \S+ cannot be read \(UnpicklingError: it holds Python objects \(fractions.Fraction\) "
                r"that a weights-only load refuses\)"),
    ("foreign", r"checkpoint \S+ was not written by ies \(it lacks config, model, optimizer"),
])
def test_resume_from_a_bad_checkpoint_exits_2_and_changes_nothing(case, message, files, truncated_checkpoint,
                                                                    tmp_path, capsys):
    folder = tmp_path / case
    shutil.copytree(files["ckpt"] / case, folder)
    before = snapshot(folder)
    code, err = cli(capsys, *SMALL, "--output", str(folder), "--resume")
    assert code == 2
    assert_one_line(err, "^error: resume: " + message)
    assert snapshot(folder) == before


@pytest.mark.parametrize("case,message", [
    ("huge_label", r"huge_label.npz: y_train's largest label is 281474976710655, which makes 281474976710656 "
                   r"classes for 24 training samples"),
    ("test_outside", r"test_outside.npz: y_test holds labels 0..7 \(outside the training classes\); expected 0..2"),
    ("no_train", r"no_train.npz: y_train holds no samples"),
    ("no_test", r"no_test.npz: y_test holds no samples"),
    ("tiny2x2", r"tiny2x2.npz: model 'small_cnn' takes images of at least 8x8, got 2x2; use larger inputs"),
    ("truncated_npz", r"truncated.npz is not an .npz archive of the arrays x_train, y_train, x_test, y_test"),
])
def test_bad_data_files_exit_2_before_training(case, message, files, tmp_path, capsys):
    out = tmp_path / "out"
    code, err = cli(capsys, "--dataset", str(files[case]), "--model", "small_cnn", "--device", "cpu", "--no-progress",
                    "--output", str(out))
    assert code == 2
    assert_one_line(err, message)
    assert not out.exists()


def test_a_huge_label_is_refused_by_the_loader_without_allocating(files):
    with pytest.raises(ValueError, match="largest label is 281474976710655"):
        ies.data.datasets.npz(files["huge_label"])


@pytest.mark.parametrize("workers", [0, 2])
@pytest.mark.parametrize("case", ["corrupt", "truncated", "corrupt_first"])
def test_an_image_that_cannot_be_decoded_is_one_line_naming_it(case, workers, tmp_path, capsys):
    rel = {"corrupt": "train/b/9_bad.png", "truncated": "train/b/9_cut.jpg", "corrupt_first": "train/a/0.png"}[case]
    data = jpeg_bytes()[:600] if case == "truncated" else b"this is not an image" * 10
    root = image_root(tmp_path / "images", {rel: data})
    out = tmp_path / "out"
    code, err = cli(capsys, "--dataset", str(root), "--model", "small_cnn", "--image-size", "0", "--epochs", "2",
                    "--batch-size", "4", "--num-workers", str(workers), "--device", "cpu", "--no-progress",
                    "--output", str(out))
    assert code == 2
    assert_one_line(err, rf"^error: image {re.escape(str(root / rel))} cannot be decoded \(\w+: .*\); expected an "
                         "image file PIL can read")
    assert not out.exists()  # the failure came before the first epoch was written


def test_a_corrupt_image_with_two_workers_as_a_process(tmp_path):
    root = image_root(tmp_path / "images", {"train/b/9_bad.png": b"garbage" * 20})
    code, err = process("--dataset", str(root), "--model", "small_cnn", "--image-size", "0", "--epochs", "1",
                        "--batch-size", "4", "--num-workers", "2", "--device", "cpu", "--no-progress")
    assert code == 2
    assert_one_line(err, r"9_bad.png cannot be decoded")


@pytest.mark.parametrize("case", ["output_file", "garbage_checkpoint", "huge_label"])
def test_one_line_also_as_a_process(case, files, tmp_path):
    """No warning or traceback reaches a real stderr either."""
    args = {"output_file": [*SMALL, "--output", str(files["file"])],
            "garbage_checkpoint": [*SMALL, "--output", str(files["ckpt"] / "garbage"), "--resume"],
            "huge_label": ["--dataset", str(files["huge_label"]), "--no-progress", "--device", "cpu"]}[case]
    code, err = process(*args)
    assert code == 2
    assert_one_line(err, "")


# ------------------------------------------------------------------------------------ the Python API
def test_train_names_an_argument_of_the_wrong_kind():
    with pytest.raises(ValueError, match=r"train: cfg must be an ies.Config .*got dict"):
        ies.train({"epochs": 2})
    with pytest.raises(ValueError, match=r"train: dataset must be None, an ies.data.datasets.ArrayDataset .*ndarray"):
        ies.train(Config(epochs=1, progress=False), dataset=np.zeros(3))
    with pytest.raises(ValueError, match=r"train: model must be None or a torch.nn.Module, got str"):
        ies.train(Config(epochs=1, progress=False), model="mlp")
    with pytest.raises(ValueError, match="on_epoch_end must be None or a callable, got int"):
        ies.train(Config(epochs=1, progress=False), on_epoch_end=3)


def test_train_checks_a_given_dataset_and_the_hook(one_thread):
    data = synthetic(200)
    bad = ies.data.datasets.ArrayDataset(data.x_train, data.y_train, data.x_test, data.y_test + 4, 4, "blobs")
    cfg = Config(dataset="synthetic", model="mlp", epochs=2, batch_size=32, progress=False, device="cpu")
    with pytest.raises(ValueError, match=r"dataset \(given to train\): y_test holds labels 4..7 \(outside the "):
        ies.train(cfg, dataset=bad)
    with pytest.raises(ValueError, match="on_epoch_end must return None or a dict of numbers, got list"):
        ies.train(cfg, dataset=data, on_epoch_end=lambda epoch, model, tracker: [1])


def test_train_refuses_a_folder_holding_a_run(run_a):
    with pytest.raises(ValueError, match=r"already holds a run .*resume=True.*overwrite=True"):
        ies.train(Config(dataset="synthetic", model="mlp", epochs=1, progress=False, output=str(run_a)))


def test_tracker_record_names_the_argument():
    tracker = MasteryTracker(10, threshold=0.1)
    with pytest.raises(ValueError, match=r"indices must lie in 0..9, got values in 3..10"):
        tracker.record(torch.tensor([3, 10]), torch.ones(2))
    with pytest.raises(IndexError):  # also an IndexError, as before
        tracker.record(torch.tensor([-1]), torch.ones(1))
    with pytest.raises(ValueError, match=r"losses must have the shape of indices \(2,\), got \(2, 1\)"):
        tracker.record(torch.arange(2), torch.ones(2, 1))
    with pytest.raises(ValueError, match="losses must be a floating-point tensor, got torch.int64"):
        tracker.record(torch.arange(2), torch.ones(2, dtype=torch.int64))
    with pytest.raises(ValueError, match=r"losses must be on the tracker's device \(cpu\) or the CPU, got meta"):
        tracker.record(torch.arange(2), torch.ones(2, device="meta"))
    with pytest.raises(ValueError, match=r"indices must be on the tracker's device \(cpu\) or the CPU, got meta"):
        tracker.record(torch.arange(2, device="meta"), torch.ones(2))
    assert torch.isnan(tracker.current).all()  # nothing was recorded by the refused calls


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA: device indices are checked at step()")
def test_tracker_checks_device_indices_at_step():
    tracker = MasteryTracker(10, threshold=0.1, device="cuda")
    tracker.record(torch.tensor([0, -1], device="cuda"), torch.ones(2, device="cuda"))  # -1 would wrap silently
    with pytest.raises(ValueError, match=r"indices must lie in 0..9, got values in -1..0 \(recorded on the device"):
        tracker.step()
    tracker.record(torch.arange(10, device="cuda"), torch.ones(10, device="cuda"))
    tracker.step()  # the next epoch is checked afresh


@pytest.mark.parametrize("value,kind,message", [
    ("nan", float, "parameter P must be a finite float, got 'nan'"),
    ("inf", float, "parameter P must be a finite float, got 'inf'"),
    ("1e400", float, "parameter P must be a finite float, got '1e400'"),
    ("abc", int, "parameter P must be an int, got 'abc'"),
])
def test_papermill_parameters_name_the_parameter(value, kind, message):
    with pytest.raises(ParameterError, match=re.escape(message)):
        cast_value("P", value, kind)
    assert issubclass(ParameterError, ValueError)


# ---------------------------------------------------------------- kills during writes, then --resume
KILLER = textwrap.dedent("""
    import os, signal, sys
    import ies.training.checkpoint as ck

    target, phase, fraction, args = sys.argv[1], sys.argv[2], float(sys.argv[3]), sys.argv[4:]
    number, size = target.rsplit(":", 1)[0], int(target.rsplit(":", 1)[1])
    name, nth = number.split("#")
    seen = {"n": 0}
    write_bytes, replace = ck.atomic_write_bytes, os.replace

    def die(*_):
        os.kill(os.getpid(), signal.SIGKILL)

    class Cut:  # a file whose process is killed once `limit` bytes have gone to it
        def __init__(self, f, limit):
            self.f, self.limit, self.done = f, limit, 0
        def write(self, data):
            if self.done + len(data) >= self.limit:
                self.f.write(bytes(data)[: self.limit - self.done]); self.f.flush(); os.fsync(self.f.fileno()); die()
            self.done += len(data)
            return self.f.write(data)
        def __getattr__(self, attr):
            return getattr(self.f, attr)

    def patched(path, write):
        if os.path.basename(path) != name:
            return write_bytes(path, write)
        seen["n"] += 1
        if seen["n"] != int(nth):
            return write_bytes(path, write)
        if phase == "mid":
            return write_bytes(path, lambda f: write(Cut(f, max(1, int(fraction * size)))))
        if phase == "before_rename":
            os.replace = die
            return write_bytes(path, write)
        write_bytes(path, write)  # after_rename: the new file in place, nothing after it
        die()

    ck.atomic_write_bytes = patched
    from ies.cli import main
    sys.exit(main(["train", *args]))
""")
KILL_ARGS = ["--dataset", "synthetic", "--model", "mlp", "--dataset-size", "300", "--batch-size", "32", "--epochs", "5",
             "--threshold", "0.05", "--seed", "3", "--device", "cpu", "--no-progress"]


def kill_points(seed: int = 22) -> list[tuple[str, int, str, float]]:
    """Random moments: (file, which write of it, phase, fraction of the file written before the kill).
    Every phase once at least: ``mid`` (the temporary file half written), ``before_rename`` (written and
    synced, not in place), ``after_rename`` (in place, nothing after it); the first is the first
    checkpoint's write, when there is nothing to resume yet."""
    rng = random.Random(seed)
    points = [("checkpoint.pt", 1, "mid", rng.random())]
    for phase in ("mid", "before_rename", "after_rename", "mid", "after_rename"):
        name = rng.choice(["checkpoint.pt", "checkpoint.pt", "history.csv", "metrics.json"])
        points.append((name, rng.randint(2, 5), phase, rng.random()))
    return points


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("reference") / "run"
    code, err = process(*KILL_ARGS, "--output", str(folder))
    assert code == 0, err
    return folder


def comparable(folder: Path) -> tuple:
    history = pd.read_csv(folder / "history.csv").drop(columns="epoch_seconds")
    weights = torch.load(folder / "checkpoint.pt", weights_only=True)["model"]
    metrics = json.loads((folder / "metrics.json").read_text())
    timing = ("wall_time_s", "epoch_seconds_total")
    return history, weights, {k: v for k, v in metrics.items() if k not in timing}, sorted(os.listdir(folder))


@pytest.mark.parametrize("point", kill_points(), ids=lambda p: f"{p[0]}#{p[1]}-{p[2]}-{p[3]:.2f}")
def test_a_run_killed_while_writing_resumes_to_the_uninterrupted_run(point, reference, tmp_path):
    name, nth, phase, fraction = point
    size = (reference / name).stat().st_size
    out = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    p = subprocess.run([sys.executable, "-c", KILLER, f"{name}#{nth}:{size}", phase, str(fraction), *KILL_ARGS,
                        "--output", str(out)], capture_output=True, text=True, env=env, timeout=300)
    assert p.returncode == -signal.SIGKILL, p.stderr
    before = snapshot(out)
    code, err = process(*KILL_ARGS, "--output", str(out), "--resume")
    if not (out / "checkpoint.pt").exists() or (code == 2 and "no checkpoint" in err):
        assert code == 2 and snapshot(out) == before
        assert_one_line(err, r"no checkpoint at .*nothing to resume \(the folder holds .*--overwrite\)")
        code, err = process(*KILL_ARGS, "--output", str(out))  # a new run there is refused ...
        assert code == 2 and snapshot(out) == before
        assert_one_line(err, "already holds a run")
        code, err = process(*KILL_ARGS, "--output", str(out), "--overwrite")  # ... unless on purpose
    assert code == 0, err
    got, want = comparable(out), comparable(reference)
    pd.testing.assert_frame_equal(got[0], want[0], check_exact=True)
    assert got[1].keys() == want[1].keys() and all(torch.equal(got[1][k], want[1][k]) for k in got[1])
    assert {k: v for k, v in got[2].items() if k != "config"} == {k: v for k, v in want[2].items() if k != "config"}
    assert got[3] == want[3]  # the same files, no temporary one left
