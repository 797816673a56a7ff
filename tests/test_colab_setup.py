"""The Colab path, end to end: a wheel of this checkout, the setup cell in a clean virtual environment with
``google.colab`` stubbed and ``IES_SOURCE`` pointing at the wheel, then notebook 01 in the smoke profile.

The clean environment has no ``ies`` and nothing of this checkout on its path. So that torch is not
downloaded again, the heavy dependencies come from the environment running the tests: a folder of symbolic
links to its site-packages entries, *without* this package's own (its ``.dist-info`` and the editable
finder), is named by a ``.pth`` file of the new environment. pip therefore sees torch, numpy, ... as
installed and installs the wheel alone; ``PIP_NO_INDEX=1`` makes any missing dependency a failure instead of a
download. Skips (with the reason) only if no wheel can be built here.
"""

from __future__ import annotations

import json
import os
import shutil
import site
import subprocess
import sys
import sysconfig
import textwrap
import venv
from pathlib import Path

import nbformat
import pytest

from ies.course import colab

ROOT = Path(__file__).resolve().parent.parent
OWN = ("instance_early_stopping", "__editable__", "ies")


def dependency_farm(folder: Path) -> Path:
    """Symbolic links to every entry of this interpreter's site-packages except this package's own and the
    ``.pth`` files (which would re-install the editable finder)."""
    folder.mkdir()
    sources = [Path(p) for p in site.getsitepackages() if Path(p).is_dir()]
    for source in sources:
        for entry in source.iterdir():
            if entry.name.startswith(OWN) or entry.suffix == ".pth" or (folder / entry.name).exists():
                continue
            (folder / entry.name).symlink_to(entry)
    return folder


def build_wheel(tmp: Path) -> Path:
    """A wheel of this checkout, built in a copy of it (nothing is written into the checkout)."""
    src = tmp / "src"
    shutil.copytree(ROOT / "ies", src / "ies", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    out = tmp / "dist"
    done = subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
                           "--no-index", "-w", str(out), str(src)], capture_output=True, text=True, timeout=120)
    wheels = sorted(out.glob("instance_early_stopping-*.whl"))
    if done.returncode or not wheels:
        pytest.skip(f"no wheel could be built here: {done.stderr.strip().splitlines()[-1:]}")
    return wheels[0]


def clean_env() -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV", "PIP_", "JUPYTER"))}
    return {**env, "PYTHONNOUSERSITE": "1", "PIP_NO_INDEX": "1", "PIP_DISABLE_PIP_VERSION_CHECK": "1",
            "OMP_NUM_THREADS": "1"}


def test_setup_cell_installs_the_wheel_in_a_clean_environment_and_notebook_01_runs(tmp_path):
    wheel = build_wheel(tmp_path)
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=False).create(env_dir)
    python = env_dir / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    purelib = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                                  capture_output=True, text=True, check=True).stdout.strip())
    (purelib / "dependencies.pth").write_text(str(dependency_farm(tmp_path / "deps")) + "\n")
    assert sysconfig.get_paths()["purelib"] != str(purelib)
    env = clean_env()
    work = tmp_path / "work"
    work.mkdir()
    before = subprocess.run([str(python), "-c", "import importlib.util; print(importlib.util.find_spec('ies'))"],
                            capture_output=True, text=True, cwd=work, env=env, check=True)
    assert before.stdout.strip() == "None", "the clean environment must not see ies before the setup cell"

    notebook = ROOT / "notebooks" / "01_finite_differences.ipynb"
    cell = colab.setup_cell(nbformat.read(notebook, as_version=4)).source
    assert cell == colab.SETUP_CELL
    (work / "cell.py").write_text(cell)
    script = textwrap.dedent("""\
        import sys, types
        sys.modules["google.colab"] = types.ModuleType("google.colab")  # what Colab's kernel has imported
        exec(compile(open("cell.py").read(), "setup-cell", "exec"), {})
        import ies
        print(ies.__file__)
    """)
    # without IES_SOURCE and no release pinned: one line naming IES_SOURCE, nothing installed
    if not colab.default_source():
        stop = subprocess.run([str(python), "-c", script], capture_output=True, text=True, cwd=work, env=env,
                              timeout=60)
        assert stop.returncode == 1 and stop.stderr.strip() == colab.NO_SOURCE, stop.stderr
    done = subprocess.run([str(python), "-c", script], capture_output=True, text=True, cwd=work,
                          env={**env, "IES_SOURCE": str(wheel)}, timeout=180)
    assert done.returncode == 0, done.stderr[-3000:]
    installed = Path(done.stdout.strip().splitlines()[-1])
    assert installed.is_relative_to(purelib), f"ies imported from {installed}, not the wheel's install"

    run_dir = tmp_path / "run"
    shutil.copytree(ROOT / "notebooks", work / "notebooks", ignore=shutil.ignore_patterns("[!0]*", "0[!1]*"))
    ran = subprocess.run([str(python), "-m", "ies", "notebooks", "--notebooks", str(work / "notebooks"), "--only",
                          "01", "--profile", "smoke", "--output", str(run_dir), "--no-html", "--no-progress"],
                         capture_output=True, text=True, cwd=work, env=env, timeout=300)
    assert ran.returncode == 0, (ran.stdout + ran.stderr)[-3000:]
    metrics = json.loads((run_dir / "01_finite_differences" / "metrics.json").read_text())
    assert metrics.get("exercises") and all(metrics["exercises"].values()), metrics
