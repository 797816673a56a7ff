"""Per-class and per-group accounting of a run: who is mastered when, and whom the model gets right.

Pure functions of tensors (no training): the ``(N, T)`` mastered matrix of a run
(:attr:`ies.training.RunResult.mastered_matrix`, recorded with ``keep_loss_matrix=True``), the ``(N,)``
labels or group labels of the training samples, and predictions (:func:`ies.course.notebook.predictions`).
A "group" is any integer partition of the samples: the classes, the subgroup of
:func:`ies.data.transforms.minority_subgroup`, or noisy (1) against clean (0) from :func:`ies.data.transforms`.
Every count is a sum over disjoint groups, so the per-group counts add up to the run's totals.

:func:`cap_mastered` is the class-balanced removal the paper suggests for the over-removal of a class's
representative samples: at most a share ``cap`` of each group is left out.
"""

from __future__ import annotations

import pandas as pd
import torch

from ..method.replay import first_epoch, reentries


def _num_groups(groups: torch.Tensor, num_groups: int | None) -> int:
    if groups.dim() != 1 or groups.dtype not in (torch.int64, torch.int32, torch.int16, torch.int8, torch.uint8):
        raise ValueError(f"groups must be a (N,) integer tensor, got {tuple(groups.shape)} {groups.dtype}")
    if groups.numel() and int(groups.min()) < 0:
        raise ValueError("groups must be >= 0")
    top = int(groups.max()) + 1 if groups.numel() else 0
    if num_groups is None:
        return top
    if num_groups < top:
        raise ValueError(f"num_groups is {num_groups} but groups holds label {top - 1}")
    return num_groups


def _one_hot(groups: torch.Tensor, num_groups: int) -> torch.Tensor:
    """(N, G) float64 membership."""
    return torch.nn.functional.one_hot(groups.long(), num_groups).double()


def mastered_counts(mastered: torch.Tensor, groups: torch.Tensor, num_groups: int | None = None) -> torch.Tensor:
    """``(G, T)`` int64: how many samples of each group are mastered at the end of each epoch.

    Args:
        mastered: ``(N, T)`` bool, a run's ``mastered_matrix``.
        groups: ``(N,)`` integer group of each sample.
        num_groups: ``G`` (default: the largest label + 1).
    """
    if mastered.dim() != 2 or mastered.shape[0] != groups.shape[0]:
        raise ValueError(f"mastered must be (N, T) with N = {groups.shape[0]}, got {tuple(mastered.shape)}")
    g = _num_groups(groups, num_groups)
    return (_one_hot(groups, g).T @ mastered.double()).round().long()


def mastered_share_table(mastered: torch.Tensor, groups: torch.Tensor, names: list[str] | None = None,
                         num_groups: int | None = None) -> pd.DataFrame:
    """Long table, one row per (epoch, group): ``epoch`` (1-based), ``group`` (name), ``n`` (group size),
    ``n_mastered`` and ``share_mastered`` (= n_mastered / n; NaN for an empty group) at the end of that
    epoch. ``names``: the group names (default ``"0"``, ``"1"``, ...)."""
    counts = mastered_counts(mastered, groups, num_groups)
    g, t = counts.shape
    names = _names(names, g)
    sizes = torch.bincount(groups.long(), minlength=g)
    share = counts.double() / sizes.double().unsqueeze(1)
    return pd.DataFrame({
        "epoch": torch.arange(1, t + 1).repeat(g).numpy(),
        "group": [names[i] for i in range(g) for _ in range(t)],
        "n": sizes.repeat_interleave(t).numpy(),
        "n_mastered": counts.flatten().numpy(),
        "share_mastered": share.flatten().numpy(),
    })


def _names(names: list[str] | None, g: int) -> list[str]:
    if names is None:
        return [str(i) for i in range(g)]
    if len(names) != g:
        raise ValueError(f"names has {len(names)} entries for {g} groups")
    return [str(n) for n in names]


def mastery_summary(mastered: torch.Tensor, groups: torch.Tensor, names: list[str] | None = None,
                    num_groups: int | None = None) -> pd.DataFrame:
    """One row per group over the whole run:

    - ``n``: group size; ``ever_mastered``: samples mastered in at least one epoch, and their share
      ``share_ever_mastered``; ``share_final``: share mastered at the end of the last epoch;
    - ``first_mastered_epoch``: the mean, over the group's ever-mastered samples, of the 1-based epoch at
      which each was first mastered (NaN if none was); ``earliest_epoch``: the group's first such epoch
      (0 if none);
    - ``reentries``: the group's total count of mastered -> not mastered transitions between consecutive
      epochs (a sample re-entering training); ``reentries_per_mastered``: that total / ``ever_mastered``;
    - ``mastered_sample_epochs``: the sum over epochs of the mastered count (the group's share of the
      saving: these sample-epochs were not back-propagated in the following epoch).
    """
    g = _num_groups(groups, num_groups)
    if mastered.dim() != 2 or mastered.shape[0] != groups.shape[0]:
        raise ValueError(f"mastered must be (N, T) with N = {groups.shape[0]}, got {tuple(mastered.shape)}")
    onehot = _one_hot(groups, g)  # (N, G)
    first = first_epoch(mastered).double()  # (N,), 0 = never
    ever = (first > 0).double()
    re = reentries(mastered).double()
    sizes = onehot.sum(0)
    n_ever = onehot.T @ ever
    first_sum = onehot.T @ first
    big = float(mastered.shape[1] + 1)
    earliest = torch.where(onehot.bool() & (first > 0).unsqueeze(1), first.unsqueeze(1), big).amin(0) \
        if groups.numel() else torch.full((g,), big)
    return pd.DataFrame({
        "group": _names(names, g),
        "n": sizes.long().numpy(),
        "ever_mastered": n_ever.long().numpy(),
        "share_ever_mastered": (n_ever / sizes).numpy(),
        "share_final": ((onehot.T @ mastered[:, -1].double()) / sizes).numpy() if mastered.shape[1] else float("nan"),
        "first_mastered_epoch": (first_sum / n_ever).numpy(),
        "earliest_epoch": torch.where(earliest == big, 0.0, earliest).long().numpy(),
        "reentries": (onehot.T @ re).long().numpy(),
        "reentries_per_mastered": ((onehot.T @ re) / n_ever).numpy(),
        "mastered_sample_epochs": (onehot.T @ mastered.double().sum(1)).long().numpy(),
    })


def noisy_vs_clean(mastered: torch.Tensor, noisy: torch.Tensor) -> pd.DataFrame:
    """:func:`mastered_share_table` with the groups ``clean`` (``noisy`` False) and ``noisy`` (True)."""
    return mastered_share_table(mastered, noisy.long(), ["clean", "noisy"], num_groups=2)


def recall_matrix(pred: torch.Tensor, y: torch.Tensor, groups: torch.Tensor, num_classes: int,
                  num_groups: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """``(correct, count)``, both ``(G, C)`` int64: within group ``g``, how many samples of true class ``c``
    there are and how many of them were predicted ``c``. Their ratio is the recall of class ``c`` within
    group ``g`` (the paper's "male recall" on CelebA is ``correct[male, 1] / count[male, 1]``, the
    positive class "attractive")."""
    if not pred.shape == y.shape == groups.shape or pred.dim() != 1:
        raise ValueError(f"pred, y and groups must be (N,) of one size, got {pred.shape}, {y.shape}, {groups.shape}")
    g = _num_groups(groups, num_groups)
    cell = groups.long() * num_classes + y.long()
    count = torch.bincount(cell, minlength=g * num_classes).view(g, num_classes)
    correct = torch.bincount(cell, weights=(pred == y).double(), minlength=g * num_classes)
    return correct.round().long().view(g, num_classes), count


def recall_table(pred: torch.Tensor, y: torch.Tensor, groups: torch.Tensor, num_classes: int,
                 names: list[str] | None = None, num_groups: int | None = None) -> pd.DataFrame:
    """One row per group: ``n``, ``correct``, ``accuracy`` (= correct / n), and ``balanced_recall``, the
    mean over the classes present in the group of the within-group recall (with ``groups = y`` each row
    is one class and ``accuracy`` is that class's recall)."""
    correct, count = recall_matrix(pred, y, groups, num_classes, num_groups)
    present = count > 0
    per_class = torch.where(present, correct.double() / count.clamp(min=1).double(), 0.0)
    n = count.sum(1)
    return pd.DataFrame({
        "group": _names(names, count.shape[0]),
        "n": n.numpy(),
        "correct": correct.sum(1).numpy(),
        "accuracy": (correct.sum(1).double() / n.double()).numpy(),
        "balanced_recall": (per_class.sum(1) / present.sum(1).double()).numpy(),
    })


def positive_rates(pred: torch.Tensor, groups: torch.Tensor, num_classes: int,
                   num_groups: int | None = None) -> torch.Tensor:
    """``(G, C)`` float64: ``P(prediction = c | group = g)``, the share of group ``g`` predicted as ``c``."""
    g = _num_groups(groups, num_groups)
    cell = groups.long() * num_classes + pred.long()
    counts = torch.bincount(cell, minlength=g * num_classes).view(g, num_classes).double()
    return counts / counts.sum(1, keepdim=True)


def demographic_parity_difference(pred: torch.Tensor, groups: torch.Tensor, num_classes: int,
                                  positive: int | None = None) -> float:
    """The demographic-parity difference of predictions ``pred`` (``(N,)`` int) across ``groups``.

    Binary case (the paper's CelebA setting: target "attractive" = class 1, group "male"): the absolute
    difference between the groups' rates of positive predictions, ``|P(y_hat = 1 | male) - P(y_hat = 1 |
    female)|``; 0 means every group is predicted positive equally often, whatever its true labels.

    With more than two groups, the largest rate minus the smallest. With ``positive=c``, the gap of the
    rates of predicting class ``c``. For several classes and ``positive=None`` we generalise to the
    largest gap over classes: ``max_c (max_g P(y_hat = c | g) - min_g P(y_hat = c | g))``, which for two
    classes equals the binary definition (the gaps of class 0 and class 1 are the same). Groups with no
    sample are ignored; with fewer than two non-empty groups the difference is 0.
    """
    rates = positive_rates(pred, groups, num_classes)
    rates = rates[~rates.isnan().any(1)]
    if rates.shape[0] < 2:
        return 0.0
    gaps = rates.amax(0) - rates.amin(0)
    if positive is not None:
        if not 0 <= positive < num_classes:
            raise ValueError(f"positive must be a class in 0..{num_classes - 1}, got {positive}")
        return float(gaps[positive])
    return float(gaps.max())


def fit_shares(pred: torch.Tensor, y: torch.Tensor, clean_y: torch.Tensor, noisy: torch.Tensor) -> dict[str, float]:
    """How the training set is fitted under label noise, from ``(N,)`` predictions on the training
    samples, their given labels ``y`` (noisy where flipped), the clean labels and the ``noisy`` mask:

    - ``clean_fit``: share of clean samples predicted as their label;
    - ``noisy_memorised``: share of noisy samples predicted as their *noisy* label (memorisation);
    - ``noisy_true``: share of noisy samples predicted as their *clean* label (the model sees through
      the noise). NaN where a part is empty."""
    def share(mask: torch.Tensor) -> float:
        return float(mask.double().mean()) if mask.numel() else float("nan")

    return {"clean_fit": share((pred == y)[~noisy]), "noisy_memorised": share((pred == y)[noisy]),
            "noisy_true": share((pred == clean_y)[noisy])}


Partition = tuple[torch.Tensor, "torch.Tensor | None", list[str]]
"""(train groups (N,), test groups (M,) or None, group names)."""


def partitions(class_train: torch.Tensor, group_train: torch.Tensor, noisy: torch.Tensor, num_classes: int,
               class_test: torch.Tensor | None = None,
               group_test: torch.Tensor | None = None) -> dict[str, Partition]:
    """The partitions a run is accounted by: ``partition -> (train groups (N,), test groups (M,) or None,
    names)``. Always ``class`` (by the clean label: the class a sample really is); with a subgroup
    (any ``group_train`` 1) also ``subgroup`` (majority/minority) and ``class/subgroup`` (``"3/minority"``);
    with label noise (any ``noisy``) also ``noise`` (clean/noisy; no test counterpart)."""
    out = {"class": (class_train, class_test, [str(c) for c in range(num_classes)])}
    if bool(group_train.any()):
        out["subgroup"] = (group_train, group_test, ["majority", "minority"])
        cross_test = None if class_test is None or group_test is None else class_test * 2 + group_test
        names = [f"{c}/{g}" for c in range(num_classes) for g in ("majority", "minority")]
        out["class/subgroup"] = (class_train * 2 + group_train, cross_test, names)
    if bool(noisy.any()):
        out["noise"] = (noisy.long(), None, ["clean", "noisy"])
    return out


def group_tables(mastered: torch.Tensor, parts: dict[str, Partition], pred_test: torch.Tensor | None = None,
                 y_test: torch.Tensor | None = None, num_classes: int | None = None,
                 fitted: torch.Tensor | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The two companion tables of a run, for every partition of :func:`partitions`:

    - per epoch (``groups.csv``): ``partition, group, epoch, n, n_mastered, share_mastered``, and with
      ``fitted`` (``(N, T)`` bool, e.g. tracked loss < ln 2: the model gives the sample's label more than
      half its probability, so it predicts that label) also ``n_fitted, share_fitted``;
    - per group (``groups_summary.csv``): ``partition`` + the columns of :func:`mastery_summary` +
      ``test_n, test_correct, test_accuracy`` (the recall of the class for ``class``; accuracy within
      the group otherwise; NaN where the partition has no test side or no predictions were given).
    """
    per_epoch, summary = [], []
    for name, (train_groups, test_groups, names) in parts.items():
        g = len(names)
        table = mastered_share_table(mastered, train_groups, names, g).assign(partition=name)
        if fitted is not None:
            table["n_fitted"] = mastered_counts(fitted, train_groups, g).flatten().numpy()
            table["share_fitted"] = table["n_fitted"] / table["n"]
        per_epoch.append(table)
        s = mastery_summary(mastered, train_groups, names, g).assign(partition=name)
        s["test_n"], s["test_correct"], s["test_accuracy"] = float("nan"), float("nan"), float("nan")
        if test_groups is not None and pred_test is not None and y_test is not None:
            r = recall_table(pred_test, y_test, test_groups, num_classes, names, g)
            s["test_n"], s["test_correct"], s["test_accuracy"] = r.n.values, r.correct.values, r.accuracy.values
        summary.append(s)
    first = ["partition", "group"]
    per_epoch = pd.concat(per_epoch, ignore_index=True)
    summary = pd.concat(summary, ignore_index=True)
    return (per_epoch[first + [c for c in per_epoch if c not in first]],
            summary[first + [c for c in summary if c not in first]])
