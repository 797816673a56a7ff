"""The knobs of the pruning peers SeTa, OrderDP and PFB, checked when a ``Config`` is created (whatever
its selector, so a sweep fails before training): a bad value raises a one-line ``ValueError`` naming
the field. Read by attribute, so this module imports nothing of the configuration."""

from __future__ import annotations

import math

RANGES = {
    "seta_prune_ratio": (0.0, 0.9, "[0, 0.9]"),
    "seta_window": (0.0, 1.0, "(0, 1]"),
    "seta_anneal": (0.0, 1.0, "[0, 1]"),
    "orderdp_pool": (0.0, 1.0, "(0, 1]"),
    "orderdp_top_q": (0.0, 1.0, "(0, 1]"),
    "pfb_prune_ratio": (0.0, 1.0, "[0, 1)"),
}
"""``field: (low, high, interval)``; the interval's brackets say which ends are allowed."""


def in_range(value: float, low: float, high: float, text: str) -> bool:
    """Whether ``value`` lies in the interval ``text`` (``"(0, 1]"``: ``low`` excluded, ``high`` allowed)."""
    ok = math.isfinite(value) and low <= value <= high
    return ok and not (text.startswith("(") and value == low) and not (text.endswith(")") and value == high)


def check_pruning_knobs(cfg) -> None:
    """Raise ``ValueError`` naming the first bad knob of ``cfg`` (any object with the fields)."""
    for name, (low, high, text) in RANGES.items():
        value = getattr(cfg, name)
        if not in_range(value, low, high, text):
            raise ValueError(f"{name} must be in {text}, got {value}")
    for name in ("seta_groups", "pfb_centres"):
        if getattr(cfg, name) < 1:
            raise ValueError(f"{name} must be >= 1, got {getattr(cfg, name)}")
    if round(cfg.seta_groups * cfg.seta_window) < 1:
        raise ValueError(f"seta_window must give a window of >= 1 group: round({cfg.seta_groups} x "
                         f"{cfg.seta_window}) = 0")
