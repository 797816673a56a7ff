"""``MasteryTracker``: per-sample loss history on the device and the per-epoch mastery decision."""

from __future__ import annotations

import math

import torch

from .criteria import check_rule_args, decide, lookback

TRACKER_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
"""Storage dtypes by name (``Config.tracker_dtype``); differences are taken in float64 whatever the storage."""


class IndexRangeError(IndexError, ValueError):
    """Sample indices outside ``0 .. num_samples-1`` (an ``IndexError`` and a ``ValueError``)."""


class Decisions:
    """The reading side of a tracker, over its last decision ``_mastered`` (``(num_samples,)`` bool) and that
    step's counts ``_stats`` (0-dim tensors): shared by :class:`MasteryTracker` and
    :class:`ies.method.sharded.ShardedTracker`, so that samplers read either the same way."""

    _mastered: torch.Tensor
    _stats: dict[str, torch.Tensor]

    @property
    def mastered(self) -> torch.Tensor:
        """``(num_samples,)`` bool, the decision of the last :meth:`step` (all False before it)."""
        return self._mastered

    def active_indices(self) -> torch.Tensor:
        """``(n_active,)`` int64 (global) indices of the samples that are not mastered, ascending."""
        return torch.nonzero(~self._mastered, as_tuple=False).flatten()

    def mastered_indices(self) -> torch.Tensor:
        """``(n_mastered,)`` int64 (global) indices of the mastered samples, ascending."""
        return torch.nonzero(self._mastered, as_tuple=False).flatten()

    @property
    def counts(self) -> dict[str, torch.Tensor]:
        """The counts of :meth:`stats` as 0-dim device tensors (no host sync)."""
        return self._stats

    def stats(self) -> dict[str, int]:
        """Counts of the last step: ``n_mastered``, ``n_newly_mastered`` and ``n_reentered``
        (mastered the epoch before, not now). One host sync."""
        return {k: int(v) for k, v in self._stats.items()}


class MasteryTracker(Decisions):
    """Tracks every training sample's loss and decides, once per epoch, which samples are mastered.

    Usage, once per epoch::

        for inputs, targets, indices in batches:          # any batch size, any order
            losses = F.cross_entropy(model(inputs), targets, reduction="none")
            tracker.record(indices, losses)
        mastered = tracker.step()                         # (num_samples,) bool, True = skip backprop

    Storage, all on ``device`` (see "Storage" below): the epoch in progress is one contiguous
    ``(num_samples,)`` vector, and ``record`` is one ``index_put_`` into it that never synchronises
    with the host (CPU indices are range-checked on the host at once, where that is free; device indices
    at :meth:`step`, one host read per epoch: :attr:`check_indices`).
    What the rule reads is each sample's last ``lookback`` *recorded* values, kept in a
    ``(lookback, num_samples)`` ring with a per-sample write count.

    Re-checking less often: ``step(recheck=False)`` closes an epoch in which mastered samples were
    deliberately not forwarded (see :mod:`ies.method.recheck`). A mastered sample with nothing recorded in
    such an epoch stays mastered and its history does not move: the epoch is not one of its epochs.
    At the next re-check its difference is taken over its last recorded losses, as the authors'
    per-sample lists of losses do. With ``recheck=True`` in every epoch (the default) every sample
    advances every epoch and the tracker is exactly the per-epoch history of earlier versions.

    Args:
        num_samples: size N of the training set; indices are ``0 .. N-1``.
        threshold: delta >= 0. ``0`` is the baseline: nothing is ever mastered.
        order: order of the backward difference, 0..3 (2 = the paper's second-order difference).
        window: ``official`` rule only: epochs averaged in the moving average of ``|D|``.
        patience: ``paper``: consecutive epochs with ``|D| < delta``; ``official``: how many of the
            last moving averages are summed (the authors' ``k``).
        rule: ``"official"`` (the authors' code) or ``"paper"`` (Eq. 3 of the paper); see
            :mod:`ies.method.criteria`.
        device: where the history lives; defaults to the CPU.
        dtype: storage dtype of the losses (differences are always taken in float64).

    Timing of the first decision: a sample can be mastered at the end of epoch
    ``lookback(rule, order, window, patience)`` (1-based), the first epoch at which its whole
    look-back exists. The authors' code waits one epoch more for the ``official`` rule (it asks for
    ``window + k`` differences where ``window + k - 1`` suffice); we follow the specification.

    A sample with a missing epoch (not recorded; not held, see above) or a non-finite loss in its
    look-back is not mastered until the gap has left the look-back. "Not recorded" is NaN in
    :attr:`current` at the step (so a recorded NaN loss counts as not recorded).

    Storage: ``_count[i]`` is how many epochs sample ``i`` has advanced (closed epochs, less the
    ones it was held). Its ``k``-th value (0-based) lives in ring row ``k % lookback``, so its last
    ``lookback`` values are rows ``(_count[i] + j) % lookback``, ``j = 0 .. lookback - 1``, oldest
    first (the oldest is the one the next advance overwrites). When every sample advances every
    epoch all counts equal :attr:`epoch` and each ring row holds one epoch, as before. Memory:
    ``(lookback + 2) * itemsize + 9`` bytes per sample (37 with float32 and the default rule, whose
    look-back is 5), plus the bounded temporaries of :meth:`step` (see :attr:`chunk`);
    ``benchmarks/tracker_scale.py`` measures it up to 100 M samples.
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
        nan = float("nan")
        self._ring = torch.full((self.lookback, num_samples), nan, dtype=dtype, device=self.device)
        self._count = torch.zeros(num_samples, dtype=torch.int64, device=self.device)  # see "Storage"
        self._current = torch.full((num_samples,), nan, dtype=dtype, device=self.device)  # epoch in progress
        self._last = torch.full((num_samples,), nan, dtype=dtype, device=self.device)  # last closed epoch
        self._mastered = torch.zeros(num_samples, dtype=torch.bool, device=self.device)
        self._offsets = torch.arange(self.lookback, device=self.device).unsqueeze(1)  # (lookback, 1)
        self.epoch = 0  # epochs closed so far
        self.chunk = 1 << 16 if self.device.type == "cpu" else 1 << 22
        """Samples per slice of :meth:`step`, which works through the samples in slices so that its
        temporaries (about 150 bytes per sample of a slice, with the float64 differences) stay bounded
        however large ``num_samples`` is. Every sample's arithmetic is the same for any slice size. On
        the CPU the small default keeps them in the allocator's cache (at 10 M samples about 6 times
        faster than one pass over all samples); on an accelerator a large one saves kernel launches."""
        self._stats = self._zero_stats()

    # ------------------------------------------------------------------ recording
    def record(self, indices: torch.Tensor, losses: torch.Tensor) -> None:
        """Store this epoch's loss of the samples ``indices``.

        Args:
            indices: ``(B,)`` integer tensor of sample indices in ``0 .. num_samples-1``, on the CPU or the
                tracker's device (:class:`~ies.method.tracker.IndexRangeError`, an ``IndexError`` and a
                ``ValueError``, for others: at once for CPU indices, at :meth:`step` for device ones).
            losses: ``(B,)`` floating-point per-sample losses (detached here), on the CPU or the
                tracker's device (``ValueError`` otherwise: a silent copy between devices every batch).
                A later call with the same index in the same epoch overwrites the earlier value;
                duplicates inside one call keep one of their values (which one is unspecified on CUDA).
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
        if not losses.dtype.is_floating_point:
            raise ValueError(f"losses must be a floating-point tensor, got {losses.dtype}")
        for name, t in (("indices", indices), ("losses", losses)):
            if t.device.type != "cpu" and not _on(t.device, self.device):
                raise ValueError(f"{name} must be on the tracker's device ({self.device}) or the CPU, got {t.device}")
        if indices.numel() and indices.device.type == "cpu":  # on the host the range check is free: at once
            lo, hi = torch.stack(torch.aminmax(indices)).tolist()
            if lo < 0 or hi >= self.num_samples:
                raise IndexRangeError(f"indices must lie in 0..{self.num_samples - 1}, got values in {lo}..{hi}")
        elif indices.numel() and self.check_indices:  # on the device: no sync here, the range is read at step()
            lo, hi = torch.aminmax(indices)
            if self._bounds is None:
                self._bounds = (lo.clone(), hi.clone())
            else:
                torch.minimum(self._bounds[0], lo, out=self._bounds[0])
                torch.maximum(self._bounds[1], hi, out=self._bounds[1])
        indices = indices.to(self.device, non_blocking=True)
        self._current.index_put_((indices,), losses.detach().to(self.device, self.dtype, non_blocking=True))

    check_indices = True
    """Check the range of indices recorded from an accelerator at :meth:`step` (one host read of their
    smallest and largest value per epoch, two small reductions per :meth:`record`); CPU indices are
    checked at once either way. On an accelerator an index ``>= num_samples`` or ``< -num_samples``
    stops torch's indexing kernel with its own device assertion; one in ``-num_samples .. -1``, which
    indexing would wrap silently, is what this finds. Set ``False`` to skip it."""
    _bounds: tuple[torch.Tensor, torch.Tensor] | None = None

    def _check_bounds(self) -> None:
        """:class:`IndexRangeError` if an index recorded from the device this epoch was out of range."""
        if self._bounds is None:
            return
        lo, hi = torch.stack(self._bounds).tolist()
        self._bounds = None
        if lo < 0 or hi >= self.num_samples:
            raise IndexRangeError(f"indices must lie in 0..{self.num_samples - 1}, got values in {lo}..{hi} "
                                  "(recorded on the device this epoch)")

    # ------------------------------------------------------------------ deciding
    def step(self, recheck: bool = True) -> torch.Tensor:
        """Close the epoch: push its losses into the history and re-decide mastery for all samples.

        Args:
            recheck: ``False`` for an epoch in which the mastered samples were not re-checked: a
                sample that was mastered and has nothing recorded in this epoch is *held* (its
                history does not advance, it stays mastered). Every other sample advances; one
                with nothing recorded advances with a gap (NaN), as in a re-check epoch.

        Returns:
            ``(num_samples,)`` bool tensor, True = mastered (no backprop next epoch). The same
            tensor as :attr:`mastered`.
        """
        self._check_bounds()
        self.epoch += 1
        previous = self._mastered
        full = self.threshold > 0 and self.epoch >= self.lookback  # else nothing has a full look-back yet
        mastered = torch.zeros_like(previous)
        for start in range(0, self.num_samples, self.chunk):  # bounded temporaries; per-sample arithmetic
            part = slice(start, min(start + self.chunk, self.num_samples))
            self._advance(part, recheck, previous[part])
            if full:
                mastered[part] = self._decide(part, recheck, previous[part])
        self._last, self._current = self._current, self._last  # swap buffers: no copy
        self._current.fill_(float("nan"))
        self._stats = {
            "n_mastered": mastered.sum(),
            "n_newly_mastered": (mastered & ~previous).sum(),
            "n_reentered": (previous & ~mastered).sum(),
        }
        self._mastered = mastered
        return mastered

    def _advance(self, part: slice, recheck: bool, previous: torch.Tensor) -> None:
        """Push the losses of samples ``part`` into their ring rows (a held one rewrites its own oldest
        value: a no-op that keeps the scatter unmasked) and advance their counts."""
        ring, count, current = self._ring[:, part], self._count[part], self._current[part]
        slot = (count % self.lookback).unsqueeze(0)  # (1, n) the ring row each sample writes (its oldest value)
        if recheck:  # everybody advances: the common case, without the mask arithmetic
            ring.scatter_(0, slot, current.unsqueeze(0))
            count += 1
            return
        advance = ~(previous & torch.isnan(current))
        ring.scatter_(0, slot, torch.where(advance, current, ring.gather(0, slot).squeeze(0)).unsqueeze(0))
        count += advance

    def _decide(self, part: slice, recheck: bool, previous: torch.Tensor) -> torch.Tensor:
        """``(n,)`` bool the rule's decision for samples ``part`` (after :meth:`_advance`)."""
        mastered = decide(self._recent(part=part), self.threshold, self.rule, self.order, self.window, self.patience)
        if not recheck:  # a held sample's unchanged history gives the same decision; this makes it explicit
            mastered |= previous & torch.isnan(self._current[part])
        return mastered

    def _recent(self, dtype: torch.dtype = torch.float64, part: slice = slice(None)) -> torch.Tensor:
        """``(lookback, num_samples)`` each sample's last ``lookback`` values, oldest first, epoch-major.

        Row ``j`` of sample ``i`` is ring row ``(_count[i] + j) % lookback``: ``_count[i] % lookback``
        is where its next value would go, i.e. its oldest value, and the rows after it (cyclically)
        are ever newer; the last, ``(_count[i] - 1) % lookback``, is its newest value."""
        count, ring = self._count[part], self._ring[:, part]
        if self.device.type == "cpu" and count.numel() and bool((count == count[0]).all()):
            return ring[(count[0] + self._offsets.squeeze(1)) % self.lookback].to(dtype)  # one row order for all
        rows = (count.unsqueeze(0) + self._offsets) % self.lookback  # (lookback, N)
        return ring.gather(0, rows).to(dtype)

    def history(self) -> torch.Tensor:
        """``(num_samples, lookback)`` the values the rule reads: each sample's last ``lookback``
        values, oldest first (NaN for an epoch it was not recorded, or before its first). When every
        epoch re-checks, these are the losses of the last ``lookback`` closed epochs. A copy."""
        return self._recent(self.dtype).T.contiguous()

    @property
    def last_recorded(self) -> torch.Tensor:
        """``(num_samples,)`` each sample's newest value in its history: the loss of the last epoch it
        advanced in (NaN if not recorded then). Differs from :attr:`last_losses` for held samples."""
        newest = ((self._count - 1) % self.lookback).unsqueeze(0)
        return self._ring.gather(0, newest).squeeze(0)

    @property
    def last_losses(self) -> torch.Tensor:
        """``(num_samples,)`` losses of the most recently closed epoch (NaN where not recorded). A
        buffer reused two steps later: copy it to keep it."""
        return self._last

    @property
    def current(self) -> torch.Tensor:
        """``(num_samples,)`` the losses recorded so far in the epoch in progress (NaN = none yet).
        A view: writable in place, e.g. to combine ranks in distributed training before :meth:`step`."""
        return self._current

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
            "count": self._count.clone(),
            "current": self._current.clone(),
            "last": self._last.clone(),
            "mastered": self._mastered.clone(),
            "epoch": self.epoch,
            "stats": {k: v.clone() for k, v in self._stats.items()},
        }

    def load_state_dict(self, state: dict) -> None:
        """Restore a :meth:`state_dict`; the configuration must match this tracker's."""
        if state["config"] != self._config():
            raise ValueError(f"tracker configuration differs: saved {state['config']}, here {self._config()}")
        self.epoch = int(state["epoch"])
        self._ring = state["ring"].to(self.device, self.dtype).clone()
        self._count = state["count"].to(self.device, torch.int64).clone()
        self._current = state["current"].to(self.device, self.dtype).clone()
        self._last = state["last"].to(self.device, self.dtype).clone()
        self._mastered = state["mastered"].to(self.device).clone()
        self._stats = {k: v.to(self.device).clone() for k, v in state["stats"].items()}

    def __repr__(self) -> str:
        cfg = ", ".join(f"{k}={v!r}" for k, v in self._config().items())
        return f"MasteryTracker({cfg}, device={str(self.device)!r})"


def _on(device: torch.device, target: torch.device) -> bool:
    """Whether ``device`` is ``target`` (``cuda`` without an index stands for any CUDA device)."""
    return device.type == target.type and (target.index is None or device.index in (None, target.index))
