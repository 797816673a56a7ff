"""``MasteryTracker``: per-sample loss history on the device and the per-epoch mastery decision."""

from __future__ import annotations

import math

import torch

from .criteria import check_rule_args, decide, lookback


class MasteryTracker:
    """Tracks every training sample's loss and decides, once per epoch, which samples are mastered.

    Usage, once per epoch::

        for inputs, targets, indices in batches:          # any batch size, any order
            losses = F.cross_entropy(model(inputs), targets, reduction="none")
            tracker.record(indices, losses)
        mastered = tracker.step()                         # (num_samples,) bool, True = skip backprop

    Storage is one ``(lookback + 1, num_samples)`` ring buffer on ``device``, one row per epoch (the
    epoch in progress and the ``lookback`` closed ones), so each epoch is a contiguous vector;
    ``record`` is one ``index_put_`` into the current row and never synchronises with the host
    (indices are range-checked on the host only for CPU tensors, where that is free).

    Args:
        num_samples: size N of the training set; indices are ``0 .. N-1``.
        threshold: delta >= 0. ``0`` is the baseline: nothing is ever mastered.
        order: order of the backward difference, 0..3 (2 = the paper's second-order difference).
        window: ``official`` rule only: epochs averaged in the moving average of ``|D|``.
        patience: ``paper``: consecutive epochs with ``|D| < delta``; ``official``: how many of the
            last moving averages are summed (the authors' ``k``).
        rule: ``"official"`` (the authors' code) or ``"paper"`` (Eq. 3 of the paper); see
            :mod:`ies.criteria`.
        device: where the history lives; defaults to the CPU.
        dtype: storage dtype of the losses (differences are always taken in float64).

    Timing of the first decision: a sample can be mastered at the end of epoch
    ``lookback(rule, order, window, patience)`` (1-based), the first epoch at which its whole
    look-back exists. The authors' code waits one epoch more for the ``official`` rule (it asks for
    ``window + k`` differences where ``window + k - 1`` suffice); we follow the specification.

    A sample with a missing epoch (not recorded) or a non-finite loss in its look-back is not
    mastered until the gap has left the look-back.
    """

    def __init__(
        self,
        num_samples: int,
        threshold: float,
        order: int = 2,
        window: int = 3,
        patience: int = 1,
        rule: str = "official",
        device: torch.device | str | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        if isinstance(num_samples, bool) or not isinstance(num_samples, int) or num_samples < 1:
            raise ValueError(f"num_samples must be a positive int, got {num_samples!r}")
        if isinstance(threshold, bool) or not isinstance(threshold, (int, float)):
            raise TypeError(f"threshold must be a number, got {type(threshold).__name__}")
        if not math.isfinite(threshold) or threshold < 0:
            raise ValueError(f"threshold must be a finite number >= 0, got {threshold}")
        check_rule_args(rule, order, window, patience)
        self.num_samples = num_samples
        self.threshold = float(threshold)
        self.order, self.window, self.patience, self.rule = order, window, patience, rule
        self.device = torch.device(device) if device is not None else torch.device("cpu")
        self.dtype = dtype
        self.lookback = lookback(rule, order, window, patience)
        self._ring = torch.full((self.lookback + 1, num_samples), float("nan"), dtype=dtype, device=self.device)
        self._mastered = torch.zeros(num_samples, dtype=torch.bool, device=self.device)
        self._pos = 0  # ring row of the epoch in progress
        self.epoch = 0  # epochs closed so far
        self._stats = self._zero_stats()

    # ------------------------------------------------------------------ recording
    def record(self, indices: torch.Tensor, losses: torch.Tensor) -> None:
        """Store this epoch's loss of the samples ``indices``.

        Args:
            indices: ``(B,)`` integer tensor of sample indices in ``0 .. num_samples-1``.
            losses: ``(B,)`` per-sample losses (detached here). A later call with the same index in
                the same epoch overwrites the earlier value; duplicates inside one call keep one of
                their values (which one is unspecified on CUDA).
        """
        if not isinstance(indices, torch.Tensor) or not isinstance(losses, torch.Tensor):
            raise TypeError("indices and losses must be torch tensors")
        if indices.dim() != 1:
            raise ValueError(f"indices must be 1-D, got shape {tuple(indices.shape)}")
        if indices.dtype.is_floating_point or indices.dtype == torch.bool or indices.is_complex():
            raise TypeError(f"indices must be an integer tensor, got {indices.dtype}")
        if losses.shape != indices.shape:
            raise ValueError(
                f"losses must have the shape of indices {tuple(indices.shape)}, got {tuple(losses.shape)}"
            )
        indices = indices.to(self.device, non_blocking=True)
        if indices.numel() and indices.device.type == "cpu":
            lo, hi = torch.stack(torch.aminmax(indices)).tolist()
            if lo < 0 or hi >= self.num_samples:
                raise IndexError(f"indices must lie in 0..{self.num_samples - 1}, got values in {lo}..{hi}")
        self._ring[self._pos].index_put_((indices,), losses.detach().to(self.device, self.dtype, non_blocking=True))

    # ------------------------------------------------------------------ deciding
    def step(self) -> torch.Tensor:
        """Close the epoch: push its losses into the history and re-decide mastery for all samples.

        Returns:
            ``(num_samples,)`` bool tensor, True = mastered (no backprop next epoch). The same
            tensor as :attr:`mastered`.
        """
        self.epoch += 1
        previous = self._mastered
        if self.threshold == 0 or self.epoch < self.lookback:
            mastered = torch.zeros_like(previous)
        else:
            recent = torch.empty((self.lookback, self.num_samples), dtype=torch.float64, device=self.device)
            for row, src in enumerate(self._rows_oldest_first()):
                recent[row].copy_(self._ring[src])
            mastered = decide(recent, self.threshold, self.rule, self.order, self.window, self.patience)
        self._pos = (self._pos + 1) % (self.lookback + 1)
        self._ring[self._pos].fill_(float("nan"))  # the oldest epoch's row becomes the next epoch's
        self._stats = {
            "n_mastered": mastered.sum(),
            "n_newly_mastered": (mastered & ~previous).sum(),
            "n_reentered": (previous & ~mastered).sum(),
        }
        self._mastered = mastered
        return mastered

    def _rows_oldest_first(self) -> list[int]:
        """Ring rows of the last ``lookback`` closed epochs, oldest first (between steps, the row at
        ``_pos`` is the epoch in progress; inside :meth:`step`, before ``_pos`` moves, it is the newest)."""
        size = self.lookback + 1
        return [(self._pos - self.lookback + 1 + j) % size for j in range(self.lookback)]

    def history(self) -> torch.Tensor:
        """``(num_samples, lookback)`` the losses of the last ``lookback`` closed epochs, oldest
        first (NaN where nothing was recorded or before the first epoch). A copy."""
        size = self.lookback + 1
        rows = [(self._pos - self.lookback + j) % size for j in range(self.lookback)]
        return self._ring[rows].T.contiguous()

    @property
    def last_losses(self) -> torch.Tensor:
        """``(num_samples,)`` losses of the most recently closed epoch (NaN where not recorded)."""
        return self._ring[(self._pos - 1) % (self.lookback + 1)]

    @property
    def current(self) -> torch.Tensor:
        """``(num_samples,)`` the losses recorded so far in the epoch in progress (NaN = none yet).
        A view: writable in place, e.g. to combine ranks in distributed training before :meth:`step`."""
        return self._ring[self._pos]

    @property
    def mastered(self) -> torch.Tensor:
        """``(num_samples,)`` bool, the decision of the last :meth:`step` (all False before it)."""
        return self._mastered

    def active_indices(self) -> torch.Tensor:
        """``(n_active,)`` int64 indices of the samples that are not mastered, ascending."""
        return torch.nonzero(~self._mastered, as_tuple=False).flatten()

    def mastered_indices(self) -> torch.Tensor:
        """``(n_mastered,)`` int64 indices of the mastered samples, ascending."""
        return torch.nonzero(self._mastered, as_tuple=False).flatten()

    @property
    def counts(self) -> dict[str, torch.Tensor]:
        """The counts of :meth:`stats` as 0-dim device tensors (no host sync)."""
        return self._stats

    def stats(self) -> dict[str, int]:
        """Counts of the last step: ``n_mastered``, ``n_newly_mastered`` and ``n_reentered``
        (mastered the epoch before, not now). One host sync."""
        return {k: int(v) for k, v in self._stats.items()}

    def _zero_stats(self) -> dict[str, torch.Tensor]:
        zero = torch.zeros((), dtype=torch.int64, device=self.device)
        return {"n_mastered": zero, "n_newly_mastered": zero, "n_reentered": zero}

    # ------------------------------------------------------------------ persistence
    def _config(self) -> dict:
        return {
            "num_samples": self.num_samples,
            "threshold": self.threshold,
            "order": self.order,
            "window": self.window,
            "patience": self.patience,
            "rule": self.rule,
        }

    def state_dict(self) -> dict:
        """Everything needed to continue exactly: configuration, history, decision, counters."""
        return {
            "config": self._config(),
            "ring": self._ring.clone(),
            "mastered": self._mastered.clone(),
            "pos": self._pos,
            "epoch": self.epoch,
            "stats": {k: v.clone() for k, v in self._stats.items()},
        }

    def load_state_dict(self, state: dict) -> None:
        """Restore a :meth:`state_dict`; the configuration must match this tracker's."""
        if state["config"] != self._config():
            raise ValueError(f"tracker configuration differs: saved {state['config']}, here {self._config()}")
        self._ring = state["ring"].to(self.device, self.dtype).clone()
        self._mastered = state["mastered"].to(self.device).clone()
        self._pos = int(state["pos"])
        self.epoch = int(state["epoch"])
        self._stats = {k: v.to(self.device).clone() for k, v in state["stats"].items()}

    def __repr__(self) -> str:
        cfg = ", ".join(f"{k}={v!r}" for k, v in self._config().items())
        return f"MasteryTracker({cfg}, device={str(self.device)!r})"
