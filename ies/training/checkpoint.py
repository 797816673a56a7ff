"""Atomic checkpoints and the random-number state that makes a resumed run identical to an unbroken one."""

from __future__ import annotations

import json
import math
import os
import random
import re
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

CHECKPOINT_NAME = "checkpoint.pt"


def atomic_write_bytes(path: Path, write: Any) -> None:
    """Call ``write(file_object)`` on a temporary file beside ``path``, then rename it onto ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json(path: Path, data: Any) -> None:
    """Write ``data`` as indented, strict JSON (NaN and infinities become ``null``), atomically."""
    text = json.dumps(_finite(data), indent=2, default=_json_default, allow_nan=False) + "\n"
    atomic_write_bytes(path, lambda f: f.write(text.encode()))


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def _json_default(value: Any) -> Any:
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        return float(value)
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def rng_state(generators: dict[str, torch.Generator] | None = None) -> dict[str, Any]:
    """Every random state a run reads: python, numpy, torch CPU, CUDA (if any) and the named ``generators``."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    state = {
        "python": random.getstate(),
        "numpy": {"keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "gauss": float(gauss)},
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }
    state["generators"] = {name: g.get_state() for name, g in (generators or {}).items()}
    return state


def set_rng_state(state: dict[str, Any], generators: dict[str, torch.Generator] | None = None) -> None:
    """Restore what :func:`rng_state` returned (into ``generators``, by name)."""
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    n = state["numpy"]
    np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    for name, g in (generators or {}).items():
        g.set_state(state["generators"][name])


def save(path: Path, state: dict[str, Any]) -> None:
    """``torch.save`` ``state`` to ``path`` atomically (a crash leaves the previous checkpoint intact)."""
    atomic_write_bytes(path, lambda f: torch.save(state, f))


REQUIRED_KEYS = ("config", "model", "optimizer", "scheduler", "selector", "rng", "history")
"""What every checkpoint of :func:`ies.train` holds; a file without them was not written by ``ies``."""


def load(path: Path, map_location: torch.device | str = "cpu") -> dict[str, Any]:
    """Load a checkpoint written by :func:`save` with ``weights_only=True`` (no arbitrary code).
    ``FileNotFoundError`` when there is none; ``ValueError`` (one line, naming the file) when it cannot
    be read (truncated, empty, not a torch file, objects a weights-only load refuses) or was not written
    by ``ies`` (not a dict holding :data:`REQUIRED_KEYS`)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no checkpoint at {path}: nothing to resume")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # noqa: BLE001 - torch raises many kinds (RuntimeError, EOFError, OSError, pickle's)
        raise ValueError(f"resume: checkpoint {path} cannot be read ({type(e).__name__}: {_unreadable(path, e)}); "
                         "expected a checkpoint.pt written by ies") from None
    missing = [k for k in REQUIRED_KEYS if not isinstance(state, dict) or k not in state]
    if missing:
        raise ValueError(f"resume: checkpoint {path} was not written by ies (it lacks {', '.join(missing)}); "
                         "expected a checkpoint.pt of an ies run")
    return state


def _unreadable(path: Path, error: Exception) -> str:
    """Why torch could not load ``path``, in a few words (torch's own messages run over many lines)."""
    text = str(error)
    found = re.search(r"Unsupported global: GLOBAL (\S+)", text)
    if found:
        return f"it holds Python objects ({found.group(1)}) that a weights-only load refuses"
    if "Weights only load failed" in text:
        return "its bytes are not a torch checkpoint"
    if path.stat().st_size == 0:
        return "the file is empty"
    first = text.strip().splitlines()[0] if text.strip() else type(error).__name__
    return first.split(". ")[0][:160]
