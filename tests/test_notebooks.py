"""The course notebooks and their runner.

Every ``notebooks/NN_*.ipynb`` (whoever adds it) must be committed clean (no outputs, no execution counts,
kernel ``python3``, no absolute paths), have exactly one ``parameters`` cell of annotated literals starting
with PROFILE, SEED, DEVICE, DATA_DIR, OUTPUT_DIR, and run under papermill with ``PROFILE="smoke"`` into a
temporary folder, writing its ``metrics.json``. The runner is tested on tiny notebooks made here; the
analysis helpers of ``ies.course.notebook`` against a plain tracker and hand-computed values.
"""

from __future__ import annotations

import ast
import json
import re
import sys
from pathlib import Path

import nbformat
import numpy as np
import papermill
import pytest
import torch

from ies import MasteryTracker
from ies.course.notebook import coefficient_of_variation, predictions
from ies.course.runner import find_notebooks, key_metrics, main, run_notebook
from ies.experiments.budget import speedup_from_backprop_saving
from ies.method.replay import first_epoch, mastery_over_time, reentries

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
REQUIRED = ["PROFILE", "SEED", "DEVICE", "DATA_DIR", "OUTPUT_DIR"]
LITERAL_TYPES = {"str": str, "int": int, "float": float, "bool": bool}
ABSOLUTE_PATH = re.compile(r"(?<![\w.])(/work/|/tmp/|/home/|/Users/|/root/|[A-Za-z]:\\\\)")

by_name = pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])


def parameter_cells(nb) -> list:
    return [c for c in nb.cells if "parameters" in c.get("metadata", {}).get("tags", [])]


def declared_parameters(source: str) -> list[tuple[str, str, object]]:
    """``(name, annotation, value)`` of each statement; fails unless every one is ``NAME: type = literal``."""
    out = []
    for node in ast.parse(source).body:
        assert isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name), ast.unparse(node)
        assert isinstance(node.annotation, ast.Name) and node.annotation.id in LITERAL_TYPES, ast.unparse(node)
        value = ast.literal_eval(node.value)  # raises for anything but a literal
        kind = LITERAL_TYPES[node.annotation.id]
        ok = isinstance(value, kind) and not (kind is not bool and isinstance(value, bool))
        assert ok or (kind is float and type(value) is int), f"{node.target.id}: {value!r} is not {kind.__name__}"
        out.append((node.target.id, node.annotation.id, value))
    return out


def test_there_are_course_notebooks():
    assert [p.stem[:2] for p in NOTEBOOKS][:3] == ["01", "02", "03"]


@by_name
def test_committed_notebook_is_clean(path):
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    assert nb.metadata["kernelspec"]["name"] == "python3"
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "code":
            assert cell.outputs == [], f"cell {i} has outputs"
            assert cell.execution_count is None, f"cell {i} has an execution count"
    found = ABSOLUTE_PATH.findall(path.read_text())
    assert not found, f"absolute paths in {path.name}: {found}"


@by_name
def test_parameters_cell(path):
    nb = nbformat.read(path, as_version=4)
    cells = parameter_cells(nb)
    assert len(cells) == 1, f"{len(cells)} cells tagged parameters"
    params = declared_parameters(cells[0].source)
    names = [name for name, _, _ in params]
    assert names[:5] == REQUIRED
    assert len(set(names)) == len(names)
    assert params[0][1:] == ("str", "teaching") and params[3][1:] == ("str", "")
    assert [kind for _, kind, _ in params[:5]] == ["str", "int", "str", "str", "str"]
    assert not Path(params[4][2]).is_absolute()
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert "google.colab" in code[0].source and code[0] is not cells[0], "the first code cell is the Colab setup"
    after = code[code.index(cells[0]) + 1].source  # the profile's table, or the course pair's (ies.course.pair)
    assert "resolve_profile(PROFILE" in after or "pair_config(PROFILE" in after, "next cell resolves PROFILE"
    assert "write_metrics(" in code[-1].source, "the last code cell writes metrics.json"


@by_name
def test_papermill_lists_the_parameters(path):
    nb = nbformat.read(path, as_version=4)
    declared = [name for name, _, _ in declared_parameters(parameter_cells(nb)[0].source)]
    assert list(papermill.inspect_notebook(str(path))) == declared


@by_name
def test_smoke_run_writes_metrics(path, tmp_path):
    result = run_notebook(path, tmp_path, {"PROFILE": "smoke"}, cwd=ROOT, progress=False)
    assert result.status == "ok", f"{path.name}: {result.error}"
    metrics = json.loads((tmp_path / path.stem / "metrics.json").read_text())
    assert isinstance(metrics, dict) and metrics
    assert (tmp_path / f"{path.stem}.ipynb").exists()
    # every YOUR-CODE check ran on the solution, on this run's data where it takes some, and passed
    assert metrics.get("exercises") and all(metrics["exercises"].values()), metrics.get("exercises")


def test_training_notebook_resumes_from_its_checkpoints(tmp_path):
    """03_training run again: the course's pair is read from the run folder (not trained again) and the
    re-check run continues from its checkpoint (RESUME=True); the results are the same."""
    path = ROOT / "notebooks" / "03_training.ipynb"
    first = run_notebook(path, tmp_path, {"PROFILE": "smoke"}, cwd=ROOT, progress=False)
    assert first.status == "ok", first.error
    assert (tmp_path / "03_training" / "ies_recheck_lr" / "checkpoint.pt").exists()
    assert len(list((tmp_path / "runs").glob("pair-mnist1d-*/seed0/ies/pair.pt"))) == 1
    again = run_notebook(path, tmp_path, {"PROFILE": "smoke", "RESUME": True}, cwd=ROOT, progress=False)
    assert again.status == "ok", again.error
    assert "the pair read from the run folder" in (tmp_path / "03_training.ipynb").read_text()
    for key in ("test_accuracy_baseline", "test_accuracy_ies", "backprop_saving"):
        assert again.metrics[key] == first.metrics[key]


def test_training_notebook_takes_a_preset_on_real_image_files(tmp_path):
    """03_training's real-image profile: PRESET="cifar-cpu" with DATASET a CIFAR-layout .npz (generated
    here); the preset's values reach IES's run, the parameters given win over them, and the baseline
    tracks from its training pass (a clean pass would change none of its training)."""
    rng = np.random.default_rng(0)
    npz = tmp_path / "tiny_cifar.npz"
    np.savez(npz, x_train=rng.integers(0, 256, (96, 32, 32, 3), dtype=np.uint8), y_train=np.arange(96) % 10,
             x_test=rng.integers(0, 256, (40, 32, 32, 3), dtype=np.uint8), y_test=np.arange(40) % 10)
    path = ROOT / "notebooks" / "03_training.ipynb"
    result = run_notebook(path, tmp_path, {"PROFILE": "smoke", "PRESET": "cifar-cpu", "DATASET": str(npz),
                                           "EPOCHS": 3}, cwd=ROOT, progress=False)
    assert result.status == "ok", result.error
    ies_cfg = json.loads((tmp_path / "03_training" / "ies" / "metrics.json").read_text())["config"]
    base_cfg = json.loads((tmp_path / "03_training" / "baseline" / "metrics.json").read_text())["config"]
    assert (ies_cfg["model"], ies_cfg["loss_source"], ies_cfg["min_last_batch"], ies_cfg["epochs"]) == \
        ("small_cnn", "clean", 16, 3)
    assert base_cfg["loss_source"] == "training" and base_cfg["threshold"] == 0.0
    missing = run_notebook(path, tmp_path / "again", {"PROFILE": "smoke", "PRESET": "cifar-cpu"}, cwd=ROOT,
                           progress=False)
    assert missing.status != "ok" and "PRESET='cifar-cpu' needs DATASET" in missing.error


# ---------------------------------------------------------------------- the runner on tiny notebooks
def tiny_notebook(folder: Path, name: str, body: str) -> None:
    nb = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell(
        'PROFILE: str = "teaching"\nSEED: int = 0\nDEVICE: str = "auto"\nDATA_DIR: str = ""\nOUTPUT_DIR: str = "out"'
    )
    params.metadata["tags"] = ["parameters"]
    nb.cells = [params, nbformat.v4.new_code_cell(body)]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    folder.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, folder / f"{name}.ipynb")


WRITE_METRICS = (
    "import json, pathlib, sys\n"
    "out = pathlib.Path(OUTPUT_DIR); out.mkdir(parents=True, exist_ok=True)\n"
    "metrics = {'answer': 42, 'ratio': 0.123456, 'profile': PROFILE, 'seed': SEED,\n"
    "           'python': sys.executable, 'cwd': str(pathlib.Path.cwd())}\n"
    "(out / 'metrics.json').write_text(json.dumps(metrics))"
)


@pytest.fixture
def tiny(tmp_path):
    folder = tmp_path / "course" / "notebooks"
    tiny_notebook(folder, "01_first", WRITE_METRICS)
    tiny_notebook(folder, "02_boom", "raise ValueError('boom in the second notebook')")
    tiny_notebook(folder, "03_third", WRITE_METRICS)
    (folder / "notes.ipynb").write_text("not a course notebook: no NN_ prefix")
    return folder


def test_find_notebooks(tiny):
    assert [p.stem for p in find_notebooks(tiny)] == ["01_first", "02_boom", "03_third"]
    assert [p.stem for p in find_notebooks(tiny, "03,1")] == ["01_first", "03_third"]
    assert [p.stem for p in find_notebooks(tiny, "02_boom.ipynb")] == ["02_boom"]
    with pytest.raises(ValueError, match="'07'.*01_first"):
        find_notebooks(tiny, "01,07")


def test_runner_only_selected_with_this_python(tiny, tmp_path, capsys):
    run_dir = tmp_path / "run"
    code = main(["--notebooks", str(tiny), "--output", str(run_dir), "--only", "01,03", "--profile", "smoke",
                 "--seed", "7", "--no-progress"])
    assert code == 0
    for name in ("01_first", "03_third"):
        metrics = json.loads((run_dir / name / "metrics.json").read_text())
        assert metrics["profile"] == "smoke" and metrics["seed"] == 7
        assert Path(metrics["python"]).resolve() == Path(sys.executable).resolve()
        assert Path(metrics["cwd"]).resolve() == tiny.parent.resolve()
        assert (run_dir / f"{name}.ipynb").exists()
    assert not (run_dir / "02_boom.ipynb").exists()
    out = capsys.readouterr().out
    table = (run_dir / "summary.txt").read_text()
    assert table in out
    assert re.search(r"01_first\s+ok\s+\d+\.\d\s+answer=42\s+ratio=0\.1235\s+seed=7", table)


def test_runner_uses_this_python_whatever_kernelspec_jupyter_finds(tiny, tmp_path, monkeypatch):
    # a user-level "python3" kernelspec pointing at another interpreter comes first on JUPYTER_PATH
    spec = tmp_path / "jupyter" / "kernels" / "python3"
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [str(tmp_path / "no-such-python"), "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "another Python", "language": "python",
    }))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    from jupyter_client.kernelspec import KernelSpecManager

    assert KernelSpecManager().get_kernel_spec("python3").argv[0] == str(tmp_path / "no-such-python")
    result = run_notebook(tiny / "01_first.ipynb", tmp_path / "run", {"PROFILE": "smoke"}, cwd=tiny.parent,
                          progress=False)
    assert result.status == "ok", result.error
    assert Path(result.metrics["python"]).resolve() == Path(sys.executable).resolve()


def test_runner_stops_at_the_failing_notebook(tiny, tmp_path, capsys):
    run_dir = tmp_path / "run"
    code = main(["--notebooks", str(tiny), "--output", str(run_dir), "--no-progress"])
    assert code == 1
    captured = capsys.readouterr()
    assert "notebook 02_boom failed" in captured.err
    assert "ValueError: boom in the second notebook" in captured.err
    assert (run_dir / "02_boom.ipynb").exists(), "the failed notebook is kept, with its traceback"
    assert not (run_dir / "03_third.ipynb").exists(), "nothing runs after a failure"
    assert re.search(r"03_third\s+not run", captured.out)
    assert re.search(r"02_boom\s+failed", captured.out)


def test_runner_rejects_unknown_notebook(tiny, tmp_path, capsys):
    assert main(["--notebooks", str(tiny), "--output", str(tmp_path / "run"), "--only", "09"]) == 2
    assert "no notebook '09'" in capsys.readouterr().err


def test_key_metrics_takes_the_first_numbers():
    metrics = {"name": "x", "saved": 0.36512, "flag": True, "count": 3, "nested": {"a": 1}, "nan": float("nan"),
               "more": 1.0, "extra": 2.0}
    assert key_metrics(metrics) == "saved=0.3651  count=3  nan=nan  more=1"


# ---------------------------------------------------------------------- analysis helpers of ies.course.notebook
@pytest.mark.parametrize("rule", ["official", "paper"])
@pytest.mark.parametrize("order", [0, 1, 2, 3])
def test_mastery_over_time_replays_the_tracker(rule, order):
    g = torch.Generator().manual_seed(order)
    n, epochs = 300, 14
    # plateaus at random levels with small noise, some still decaying: decisions of both kinds
    level = torch.rand(n, 1, generator=g) * 2
    decay = torch.rand(n, 1, generator=g) * torch.exp(-torch.arange(epochs) / (1 + 4 * torch.rand(n, 1, generator=g)))
    losses = (level + decay + 3e-4 * torch.randn(n, epochs, generator=g)).float()
    losses[:5] = 1e-4 * torch.rand(5, epochs, generator=g)  # tiny losses: D0 masters these
    tracker = MasteryTracker(n, 1e-3, order=order, window=2, patience=2, rule=rule)
    expected = []
    for t in range(epochs):
        tracker.record(torch.arange(n), losses[:, t])
        expected.append(tracker.step().clone())
    expected = torch.stack(expected, dim=1)
    assert expected.any() and not expected.all()
    assert torch.equal(mastery_over_time(losses, 1e-3, rule=rule, order=order, window=2, patience=2), expected)


def test_first_epoch_and_reentries():
    mask = torch.tensor([[0, 1, 1, 0, 1, 0], [0, 0, 0, 0, 0, 0], [1, 1, 1, 1, 1, 1], [0, 0, 0, 0, 0, 1]]).bool()
    assert first_epoch(mask).tolist() == [2, 0, 1, 6]
    assert reentries(mask).tolist() == [2, 0, 0, 0]


def test_coefficient_of_variation():
    values = torch.tensor([[1.0, 0.0], [2.0, 0.0], [3.0, float("nan")], [6.0, 0.0]])
    # column 0: mean 3, sample std sqrt((4 + 1 + 0 + 9) / 3); column 1: mean 0 -> NaN
    cv = coefficient_of_variation(values, dim=0)
    assert cv[0].item() == pytest.approx((14 / 3) ** 0.5 / 3)
    assert torch.isnan(cv[1])


def test_flop_ideal_speedup():
    assert speedup_from_backprop_saving(0.0) == 1.0
    assert speedup_from_backprop_saving(0.75) == pytest.approx(2.0)  # cost 3 * 0.25 + 0.75 = 1.5 of 3
    assert speedup_from_backprop_saving(1.0) == pytest.approx(3.0)
    assert speedup_from_backprop_saving(0.5, backward_cost=1.0) == pytest.approx(4 / 3)
    with pytest.raises(ValueError):
        speedup_from_backprop_saving(1.5)


def test_predictions_restore_mode_and_match_the_model():
    from ies.data.datasets import synthetic
    from ies.models.zoo import build_model

    data = synthetic(200)
    torch.manual_seed(0)
    model = build_model("mlp", tuple(data.x_train.shape[1:]), data.num_classes).train()
    got = predictions(model, data, "test", batch_size=7)
    assert model.training
    with torch.no_grad():
        assert torch.equal(got, model.eval()(data.x_test).argmax(dim=1))
    with pytest.raises(ValueError):
        predictions(model, data, "validation")
