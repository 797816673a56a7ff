"""Small helpers shared by the course notebooks: profiles, output folders, results."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from .checkpoint import write_json

PROFILES = ("smoke", "teaching", "full")


def resolve_profile(profile: str, table: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The settings of ``profile`` from ``table`` (``{"smoke": {...}, "teaching": {...}, "full": {...}}``).

    Raises ``ValueError`` naming ``PROFILE`` for anything else.
    """
    profile = str(profile).strip().lower()
    if profile not in PROFILES:
        raise ValueError(f"PROFILE must be one of {PROFILES}, got {profile!r}")
    missing = [p for p in PROFILES if p not in table]
    if missing:
        raise ValueError(f"the profile table lacks {missing}")
    return dict(table[profile])


def output_dir(path: str | os.PathLike) -> Path:
    """Create and return the notebook's output folder."""
    out = Path(path).expanduser()
    out.mkdir(parents=True, exist_ok=True)
    return out


def write_metrics(out: str | os.PathLike, metrics: dict[str, Any]) -> Path:
    """Write ``metrics.json`` into ``out`` atomically and return its path."""
    path = Path(out) / "metrics.json"
    write_json(path, metrics)
    return path


def in_colab() -> bool:
    """True inside Google Colab."""
    try:
        import google.colab  # noqa: F401
    except ImportError:
        return False
    return True
