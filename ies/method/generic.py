"""IES in your own training loop with a plain ``torch.utils.data.DataLoader``; nothing is patched.

Two pieces:

- :class:`IndexedDataset` wraps any map-style dataset so that each item also carries its index:
  ``(x, y)`` becomes ``(x, y, index)``, and the default collate gives a batch of indices to pass to
  :meth:`MasteryTracker.record <ies.method.tracker.MasteryTracker.record>`.
- :class:`ActiveSampler` yields the indices of the samples the tracker has *not* mastered (or the
  mastered ones, for the forward-only tracking pass), read from the tracker anew at the start of
  every epoch, shuffled with a seed that depends on the epoch.

Use them in a loop of your own, for data :func:`ies.train` does not take (text, your own datasets; it
does take an ImageFolder root or any map-style dataset of ``(x, y)``, see :mod:`ies.data.streaming`), or with
:func:`ies.data.datasets.image_folder`::

    data = IndexedDataset(train_set)
    train_loader = DataLoader(data, batch_size=64, sampler=ActiveSampler(tracker, seed=0), num_workers=4)
    track_loader = DataLoader(data, batch_size=512, sampler=ActiveSampler(tracker, subset="mastered"))
    for epoch in range(epochs):
        for x, y, idx in train_loader:          # the active samples of this epoch, each once
            losses = F.cross_entropy(model(x), y, reduction="none")
            ...; tracker.record(idx, losses)
        with torch.no_grad():                   # forward only: keep tracking the mastered ones
            for x, y, idx in track_loader:
                tracker.record(idx, F.cross_entropy(model(x), y, reduction="none"))
        tracker.step()

The sampler runs in the main process (DataLoader workers only fetch items), so it sees the tracker's
latest decision even with ``persistent_workers=True``. ``len(train_loader)`` shrinks with the active
set: a learning-rate schedule stepped per batch should be written as a function of the epoch
progress ``epoch + i / len(train_loader)`` (or stepped per epoch), not of a step count fixed in
advance, otherwise it no longer ends where it should.

For several processes see :mod:`ies.method.distributed`.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch.utils.data import Dataset, Sampler

SUBSETS = ("active", "mastered", "all")


class IndexedDataset(Dataset):
    """``dataset[i]`` plus its index: ``(x, y)`` -> ``(x, y, i)`` (a non-tuple item ``x`` -> ``(x, i)``).

    Args:
        dataset: any map-style dataset (``__getitem__`` and ``__len__``), e.g. a torchvision dataset
            or a ``TensorDataset``.
    """

    def __init__(self, dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int):
        item = self.dataset[index]
        if isinstance(item, (tuple, list)):
            return (*item, index)
        return item, index


class ActiveSampler(Sampler[int]):
    """The indices of one subset of the tracker's samples, re-read from the tracker at every ``iter()``.

    Args:
        tracker: a :class:`~ies.method.tracker.MasteryTracker` (anything with a ``(N,)`` bool ``mastered``
            tensor and an ``epoch`` counter).
        subset: ``"active"`` (not mastered: the samples to train on), ``"mastered"`` (the samples to
            forward without gradient) or ``"all"``.
        shuffle: random order, from ``torch.randperm`` seeded with ``seed + epoch``; otherwise ascending.
        seed: base seed of the shuffling.

    ``epoch`` is ``tracker.epoch`` (epochs closed so far) unless :meth:`set_epoch` fixed it, so the
    order is reproducible and survives a resume from the tracker's state. ``len()`` is the current
    size of the subset (one host sync when the tracker lives on a GPU).
    """

    def __init__(self, tracker, subset: str = "active", *, shuffle: bool = True, seed: int = 0) -> None:
        if subset not in SUBSETS:
            raise ValueError(f"subset must be one of {SUBSETS}, got {subset!r}")
        self.tracker = tracker
        self.subset = subset
        self.shuffle = shuffle
        self.seed = seed
        self._epoch: int | None = None

    def set_epoch(self, epoch: int) -> None:
        """Fix the epoch that seeds the shuffling (default: ``tracker.epoch``)."""
        self._epoch = epoch

    @property
    def epoch(self) -> int:
        return self.tracker.epoch if self._epoch is None else self._epoch

    def indices(self) -> torch.Tensor:
        """``(n,)`` int64 CPU tensor: this epoch's indices of the subset, in the order they are served."""
        mastered = self.tracker.mastered.detach().cpu()
        if self.subset == "all":
            chosen = torch.arange(mastered.numel())
        else:
            chosen = torch.nonzero(mastered if self.subset == "mastered" else ~mastered).flatten()
        if self.shuffle:
            g = torch.Generator().manual_seed(self.seed + self.epoch)
            chosen = chosen[torch.randperm(chosen.numel(), generator=g)]
        return chosen

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices().tolist())

    def __len__(self) -> int:
        mastered = self.tracker.mastered
        if self.subset == "all":
            return int(mastered.numel())
        n_mastered = int(mastered.sum())
        return n_mastered if self.subset == "mastered" else int(mastered.numel()) - n_mastered
