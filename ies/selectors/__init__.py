"""Selectors: who trains each epoch. :data:`SELECTORS` maps a ``Config.selector`` name to its class;
each selector is one file of this package, imported here to register it."""

# registers ies, loss, random, infobatch, small_loss_rescale, selective_backprop, early_stop, seta, orderdp, pfb
from . import early_stop, ies, infobatch, orderdp, pfb, random, selective_backprop, seta  # noqa: F401
from .base import SELECTORS, Plan, Selector, register

SELECTOR_SEED_OFFSET = 1_000_003
"""A selector's generator is seeded with ``seed + SELECTOR_SEED_OFFSET``: its draws come from its own
stream, so a matched-budget control sees the same data order as its reference run (same seed)."""

__all__ = ["SELECTORS", "SELECTOR_SEED_OFFSET", "Plan", "Selector", "register"]
