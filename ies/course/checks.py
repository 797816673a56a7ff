"""The checks of the course's YOUR-CODE exercises: one function per exercise, named after it.

Each takes the student's function (or value), runs it on cases whose answer the package computes
(:func:`ies.mastered_mask`, :func:`ies.method.replay.mastery_over_time`, :func:`ies.experiments.stats.interval`,
:func:`ies.experiments.curvature.hessian_vector_product`, ...) and returns a :class:`Feedback`: *right*, or
what is wrong with a hint. A check never raises, whatever the student's code does, so that a notebook with an
unanswered exercise still runs to its end; each outcome is recorded in :data:`RESULTS`, which
:func:`ies.course.notebook.write_metrics` adds to the notebook's ``metrics.json`` as ``exercises``.

An unanswered exercise is the student copy's blank: ``...`` (what :func:`ies.course.colab.student_copy` puts
in place of the solution), ``None`` or a function whose body is ``...`` (it returns ``None``).

Why not otter-grader or nbgrader: measured on this project, ``pip install otter-grader`` adds 27
distributions to a Colab runtime (Sphinx, playwright, pydantic, ipylab, python-on-whales, ...), and its
``Notebook.check`` reads test files from a folder next to the notebook, which a student who opens the
notebook from a Colab badge does not have; nbgrader is a server-side grading system (a course database and a
Jupyter server extension), not a self-check. The checks here need nothing beyond the package, travel inside
it, and are tested against the solutions and the blanks (``tests/test_checks.py``).
"""

from __future__ import annotations

import math
import traceback
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from scipy import stats as sps

from ..experiments.budget import speedup_from_backprop_saving
from ..experiments.curvature import hessian_vector_product
from ..experiments.linear_probe import fit_probe
from ..experiments.stats import interval
from ..method.criteria import backward_difference, lookback, mastered_mask
from ..method.replay import mastery_over_time

#: ``{exercise: passed}`` of every check run in this process (the notebook's kernel), in order.
RESULTS: dict[str, bool] = {}


@dataclass(frozen=True)
class Feedback:
    """The answer of a check: ``ok`` and one message (with a hint when not ok)."""

    exercise: str
    ok: bool
    message: str

    def __str__(self) -> str:
        verdict = "✅ right" if self.ok else "❌ not yet"
        return f"Exercise {self.exercise}: {verdict}. {self.message}"

    __repr__ = __str__

    def __bool__(self) -> bool:
        return self.ok


def _record(exercise: str, ok: bool, message: str) -> Feedback:
    RESULTS[exercise] = ok
    return Feedback(exercise, ok, message)


def _blank(value) -> bool:
    return value is ... or value is None


def _call(exercise: str, fn: Callable, *args, **kwargs):
    """``(result, feedback)``: feedback is set (and the result None) when ``fn`` is unanswered or raises."""
    if _blank(fn):
        return None, _record(exercise, False, "Nothing answered yet: write your code in the cell above and run it.")
    if not callable(fn):
        return None, _record(exercise, False, f"Expected a function, got {type(fn).__name__}.")
    try:
        out = fn(*args, **kwargs)
    except NotImplementedError:
        return None, _record(exercise, False, "Nothing answered yet: replace the `...` by your code.")
    except Exception as e:  # the student's bug: report it, never raise
        where = traceback.extract_tb(e.__traceback__)[-1]
        return None, _record(exercise, False, f"Your code raised {type(e).__name__}: {e} (line {where.lineno}).")
    if out is None:
        return None, _record(exercise, False, "Your function returned None: fill in its body and `return` the answer.")
    return out, None


def _tensor(exercise: str, out, shape: tuple, hint: str = "",
            prefix: str = "") -> tuple[torch.Tensor | None, Feedback | None]:
    """``(tensor, feedback)``: feedback (with ``hint``, after ``prefix``) when ``out`` is not a tensor-like
    of ``shape``."""
    def wrong(message: str) -> tuple[None, Feedback]:
        return None, _record(exercise, False, f"{prefix}{message}" + (f" Hint: {hint}" if hint else ""))

    if not isinstance(out, torch.Tensor):
        try:
            out = torch.as_tensor(np.asarray(out))
        except Exception:
            return wrong(f"Expected a tensor, got {type(out).__name__}.")
    if tuple(out.shape) != tuple(shape):
        return wrong(f"Expected shape {tuple(shape)}, got {tuple(out.shape)}.")
    return out, None


def _close(a: torch.Tensor, b: torch.Tensor, rtol: float = 1e-6, atol: float = 1e-9) -> bool:
    return torch.allclose(a.double(), b.double(), rtol=rtol, atol=atol, equal_nan=True)


def _histories(seed: int = 0, n: int = 40, epochs: int = 12) -> torch.Tensor:
    """``(n, epochs)`` float64 loss curves of every kind: plateaus, decays, lines, noise."""
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(epochs, dtype=torch.float64)
    level = torch.rand(n, 1, generator=g, dtype=torch.float64)
    tau = 0.5 + 4 * torch.rand(n, 1, generator=g, dtype=torch.float64)
    noise = 10 ** (-1 - 3 * torch.rand(n, 1, generator=g, dtype=torch.float64))
    return level + torch.exp(-t / tau) + noise * torch.randn(n, epochs, generator=g, dtype=torch.float64)


# ---------------------------------------------------------------------- 01 finite differences
def check_backward_difference(fn: Callable) -> Feedback:
    """01.1: ``fn(history, order)`` is the order-``order`` backward difference along the last axis, like
    :func:`ies.backward_difference`: shape ``(..., T - order)``, entry ``j`` is ``D_order`` at epoch ``j + order``."""
    ex = "01.1"
    history = _histories(1, 6, 9)
    for order in range(4):
        out, bad = _call(ex, fn, history.clone(), order)
        if bad is not None:
            return bad
        want = backward_difference(history, order)
        if order and isinstance(out, torch.Tensor) and out.shape[-1] == history.shape[-1]:
            return _record(ex, False, f"Order {order}: D_N of T epochs has T - N entries; keep only the epochs that "
                                      "have N earlier ones (slice, do not pad).")
        out, bad = _tensor(ex, out, want.shape, "D_N of T epochs has T - N entries.", f"Order {order}: ")
        if bad is not None:
            return bad
        if _close(out, -want):
            return _record(ex, False, f"Order {order}: your sign is flipped; D_1(t) = L(t) - L(t-1), the newer "
                                      "loss minus the older.")
        if not _close(out, want):
            hint = ("order 0 is the loss itself" if order == 0 else
                    "D_N is D_1 applied N times; D_2(t) = L(t) - 2 L(t-1) + L(t-2)")
            return _record(ex, False, f"Order {order}: wrong values. Hint: {hint}.")
    return _record(ex, True, "Orders 0 to 3 equal ies.backward_difference on every sample.")


def check_official_rule(fn: Callable) -> Feedback:
    """01.2: ``fn(history, delta, window)`` is the authors' rule with order 2 and patience 1 (the mean of
    ``|D_2|`` over the last ``window`` epochs is below ``delta``), as :func:`ies.mastered_mask` decides it."""
    ex = "01.2"
    history = _histories(2, 200, 10)
    for delta, window in ((1e-3, 3), (1e-2, 2), (1e-4, 4)):
        out, bad = _call(ex, fn, history.clone(), delta, window)
        if bad is not None:
            return bad
        want = mastered_mask(history, delta, rule="official", order=2, window=window)
        out, bad = _tensor(ex, out, want.shape, "one decision (True/False) per sample (row).")
        if bad is not None:
            return bad
        out = out.bool()
        if torch.equal(out, want):
            continue
        d = backward_difference(history, 2).abs()
        if torch.equal(out, d[:, -window:].sum(1) < delta):
            return _record(ex, False, "You compare the *sum* of the last |D_2| with delta; the rule takes their mean.")
        if torch.equal(out, d[:, -1] < delta):
            return _record(ex, False, "You compare only the last |D_2|; average the last `window` of them.")
        if torch.equal(out, backward_difference(history, 2)[:, -window:].mean(1) < delta):
            return _record(ex, False, "Take the absolute value before averaging: |D_2| of a falling curve is positive.")
        wrong = int((out != want).sum())
        return _record(ex, False, f"delta={delta}, window={window}: {wrong} of {len(want)} decisions differ from "
                                  "ies.mastered_mask(history, delta, rule='official', order=2, window=window).")
    return _record(ex, True, "Your rule takes the same decision as ies.mastered_mask on 200 curves, 3 settings.")


# ---------------------------------------------------------------------- 02 replaying the rule
def check_replay(fn: Callable, losses: torch.Tensor | None = None, delta: float = 1e-3) -> Feedback:
    """02.1: ``fn(losses, delta)`` is the ``(N, T)`` decision of the official rule (order 2, window 3) at the
    end of every epoch, as :func:`ies.method.replay.mastery_over_time` replays it; ``losses``: a real run's loss
    matrix to check on too."""
    ex = "02.1"
    cases = [(_histories(3, 50, 11), 1e-3)] + ([] if losses is None else [(losses.detach().cpu(), delta)])
    for matrix, d in cases:
        out, bad = _call(ex, fn, matrix.clone(), d)
        if bad is not None:
            return bad
        want = mastery_over_time(matrix, d)
        out, bad = _tensor(ex, out, want.shape, "one column per epoch, False before the look-back.")
        if bad is not None:
            return bad
        out = out.bool()
        if torch.equal(out, want):
            continue
        need = lookback("official", 2)
        if torch.equal(out[:, :-1], want[:, 1:]) or torch.equal(out[:, 1:], want[:, :-1]):
            return _record(ex, False, "Off by one epoch: column t (0-based) holds the decision after epoch t + 1, "
                                      f"from losses[:, :t + 1]; the first possible one is column {need - 1}.")
        if out[:, : need - 1].any():
            return _record(ex, False, f"Decisions before epoch {need}: the rule needs {need} epochs of losses "
                                      "(ies.lookback('official', 2)); before that it is False.")
        wrong = int((out != want).sum())
        return _record(ex, False, f"{wrong} of {want.numel()} decisions differ from mastery_over_time. Hint: at every "
                                  "epoch call ies.mastered_mask on the losses recorded so far.")
    real = " and on the run's loss matrix" if losses is not None else ""
    return _record(ex, True, f"Your replay equals ies.method.replay.mastery_over_time on synthetic curves{real}.")


# ---------------------------------------------------------------------- 03 the FLOP-ideal speedup
def check_speedup_from_counts(fn: Callable, backprop_samples=None, num_train: int | None = None) -> Feedback:
    """03.1: ``fn(backprop_samples, num_train)``: the FLOP-ideal speedup of a run from its per-epoch counts of
    back-propagated samples (every sample forwards once an epoch; a backward costs two forwards), as
    :func:`ies.experiments.budget.speedup_from_backprop_saving` of its backprop saving."""
    ex = "03.1"
    cases = [([100, 100, 80, 50, 20, 10], 100), ([10, 0, 0], 10)]
    if backprop_samples is not None and num_train:
        cases.append(([float(v) for v in backprop_samples], int(num_train)))
    for counts, n in cases:
        out, bad = _call(ex, fn, list(counts), n)
        if bad is not None:
            return bad
        saving = 1 - sum(counts) / (n * len(counts))
        want = speedup_from_backprop_saving(saving)
        try:
            got = float(out)
        except (TypeError, ValueError):
            return _record(ex, False, f"Expected a number, got {type(out).__name__}.")
        if math.isclose(got, want, rel_tol=1e-6):
            continue
        if math.isclose(got, 1 / (1 - saving) if saving < 1 else math.inf, rel_tol=1e-6):
            return _record(ex, False, "That is 1 / (1 - saving): it forgets that a mastered sample still costs its "
                                      "forward pass (1 of the 3 units).")
        if math.isclose(got, saving, rel_tol=1e-6):
            return _record(ex, False, "That is the backprop saving; the speedup is the baseline's cost over IES's.")
        return _record(ex, False, f"counts={counts}, N={n}: expected {want:.4f}, got {got:.4f}. Hint: cost of an "
                                  "epoch = N forwards + 2 x (samples back-propagated); baseline: 3 N.")
    return _record(ex, True, "Your speedup equals speedup_from_backprop_saving(backprop saving)"
                   + (" on this run too." if len(cases) > 2 else "."))


# ---------------------------------------------------------------------- 04 the paired interval
def check_paired_interval(fn: Callable) -> Feedback:
    """04.1: ``fn(a, b, confidence)`` is ``(low, high)``, the two-sided t interval of the mean of the paired
    differences ``a - b`` (one per seed), as :func:`ies.experiments.stats.interval` computes it."""
    ex = "04.1"
    rng = np.random.default_rng(4)
    for n, confidence in ((5, 0.95), (3, 0.9), (8, 0.99)):
        a = 0.9 + 0.02 * rng.standard_normal(n)
        b = a - 0.003 + 0.004 * rng.standard_normal(n)
        out, bad = _call(ex, fn, a.copy(), b.copy(), confidence)
        if bad is not None:
            return bad
        try:
            low, high = (float(v) for v in out)
        except (TypeError, ValueError):
            return _record(ex, False, f"Expected a pair (low, high), got {out!r}.")
        want = interval(a - b, confidence)
        if math.isclose(low, want.low, rel_tol=1e-6, abs_tol=1e-12) and \
                math.isclose(high, want.high, rel_tol=1e-6, abs_tol=1e-12):
            continue
        d = a - b
        half = high - low
        z = float(sps.norm.ppf(0.5 + confidence / 2)) * d.std(ddof=1) / math.sqrt(n)
        if math.isclose(half, 2 * z, rel_tol=1e-6):
            return _record(ex, False, f"With {n} seeds use Student's t quantile with n - 1 = {n - 1} degrees of "
                                      "freedom (scipy.stats.t.ppf), not the normal one.")
        if math.isclose(half, 2 * want.std * math.sqrt((n - 1) / n) / math.sqrt(n) *
                        float(sps.t.ppf(0.5 + confidence / 2, n - 1)), rel_tol=1e-6):
            return _record(ex, False, "Use the sample standard deviation (ddof=1).")
        if not math.isclose((low + high) / 2, want.mean, rel_tol=1e-6, abs_tol=1e-12):
            return _record(ex, False, "The interval is centred on the mean of the differences a - b, seed by seed.")
        return _record(ex, False, f"n={n}, confidence={confidence}: expected ({want.low:.5f}, {want.high:.5f}), got "
                                  f"({low:.5f}, {high:.5f}). Hint: the differences are paired by seed; the width "
                                  "is t * std / sqrt(n) on each side.")
    return _record(ex, True, "Your interval equals ies.experiments.stats.interval(a - b) for 3 seed counts.")


# ---------------------------------------------------------------------- 05 a Hessian-vector product
def _hvp_case(seed: int):
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(4, 5), torch.nn.Tanh(), torch.nn.Linear(5, 3)).double()
    x = torch.randn(16, 4, generator=g, dtype=torch.float64)
    y = torch.randint(0, 3, (16,), generator=g)
    vectors = [torch.randn(p.shape, generator=g, dtype=torch.float64) for p in model.parameters()]
    return model, x, y, vectors


def check_hvp(fn: Callable) -> Feedback:
    """05.1: ``fn(model, loss_fn, x, y, vectors)`` is the Hessian-vector product ``H v`` of
    ``loss_fn(model(x), y)`` in the model's parameters (a list, one tensor per parameter), as
    :func:`ies.experiments.curvature.hessian_vector_product` computes it."""
    ex = "05.1"
    loss_fn = torch.nn.functional.cross_entropy
    for seed in (0, 1):
        model, x, y, vectors = _hvp_case(seed)
        out, bad = _call(ex, fn, model, loss_fn, x, y, [v.clone() for v in vectors])
        if bad is not None:
            if "does not require grad" in bad.message or "backward through the graph" in bad.message:
                return _record(ex, False, bad.message + " Hint: the first torch.autograd.grad needs "
                                          "create_graph=True, so that the gradient can be differentiated again.")
            return bad
        want = hessian_vector_product(model, loss_fn, [(x, y)], vectors)
        out = list(out) if isinstance(out, (list, tuple)) else [out]
        if len(out) != len(want) or any(tuple(o.shape) != tuple(w.shape) for o, w in zip(out, want, strict=False)):
            return _record(ex, False, f"Expected {len(want)} tensors shaped like the parameters "
                                      f"({[tuple(w.shape) for w in want]}).")
        if all(_close(o.detach(), w, rtol=1e-5, atol=1e-8) for o, w in zip(out, want, strict=True)):
            continue
        grads = torch.autograd.grad(loss_fn(model(x), y), list(model.parameters()))
        if all(_close(o.detach(), g, rtol=1e-5, atol=1e-8) for o, g in zip(out, grads, strict=True)):
            return _record(ex, False, "That is the gradient. Take the dot product of the gradient with v, then "
                                      "differentiate that scalar once more.")
        return _record(ex, False, "Wrong values. Hint: g = grad(L, params, create_graph=True); "
                                  "H v = grad(sum((g_i * v_i).sum()), params).")
    return _record(ex, True, "Your H v equals ies.experiments.curvature.hessian_vector_product on two networks.")


# ---------------------------------------------------------------------- 06 the probe's accuracy
def check_probe_accuracy(fn: Callable, probe=None, test_x: torch.Tensor | None = None,
                         test_y: torch.Tensor | None = None) -> Feedback:
    """06.1: ``fn(probe, test_x, test_y)`` is the test accuracy of a fitted linear probe
    (:class:`ies.experiments.linear_probe.ProbeResult`: ``weight``, ``bias`` on features standardised with the
    *training* ``mean`` and ``std``); ``probe, test_x, test_y``: the notebook's, checked against
    ``probe.test_accuracy``."""
    ex = "06.1"
    g = torch.Generator().manual_seed(6)
    centres = 3 * torch.randn(3, 8, generator=g, dtype=torch.float64)
    yt, ys = torch.arange(120) % 3, torch.arange(60) % 3
    xt = 5 + 2 * (centres[yt] + 1.5 * torch.randn(120, 8, generator=g, dtype=torch.float64))
    xs = 5 + 2 * (centres[ys] + 1.5 * torch.randn(60, 8, generator=g, dtype=torch.float64))
    cases = [(fit_probe(xt, yt, xs, ys, 3, l2_grid=(1e-2,)), xs, ys)]
    if probe is not None and test_x is not None and test_y is not None:
        cases.append((probe, test_x, test_y))
    for p, x, y in cases:
        out, bad = _call(ex, fn, p, x.clone(), y.clone())
        if bad is not None:
            return bad
        try:
            got = float(out)
        except (TypeError, ValueError):
            return _record(ex, False, f"Expected a number (an accuracy in [0, 1]), got {type(out).__name__}.")
        x64 = x.to(p.weight.device, p.weight.dtype)
        if math.isclose(got, p.test_accuracy, abs_tol=1e-9):
            continue
        if math.isclose(got, 100 * p.test_accuracy, abs_tol=1e-7):
            return _record(ex, False, "An accuracy in [0, 1] here, not a percentage.")
        own = (x64 - x64.mean(0)) / x64.std(0)
        if math.isclose(got, float(((own @ p.weight.T + p.bias).argmax(1) == y.to(own.device)).double().mean()),
                        abs_tol=1e-9):
            return _record(ex, False, "You standardised the test features with their own mean and std; use the "
                                      "probe's (the training split's) probe.mean and probe.std.")
        return _record(ex, False, f"Expected {p.test_accuracy:.4f}, got {got:.4f}. Hint: logits = "
                                  "((x - mean) / std) @ weight.T + bias; accuracy = share of argmax == label.")
    return _record(ex, True, "Your accuracy equals the probe's test_accuracy" +
                   (" on the notebook's probe too." if len(cases) > 1 else "."))


# ---------------------------------------------------------------------- 07 compute saved
def check_compute_saving(fn: Callable, history=None, num_train: int | None = None,
                         expected: float | None = None) -> Feedback:
    """07.1: ``fn(forward_samples, backprop_samples, num_train)`` is the compute saved by a run against the
    baseline (``N`` forwards and ``N`` backwards an epoch, a backward costing two forwards) from its per-epoch
    count columns; ``history, num_train, expected``: a real run's history and its ``compute_saving``."""
    ex = "07.1"
    cases = [([120, 120, 150, 130], [100, 80, 40, 20], 100, None), ([200, 30], [100, 0], 100, None)]
    if history is not None and num_train and expected is not None:
        cases.append((list(history["forward_samples"]), list(history["backprop_samples"]), int(num_train), expected))
    for forward, backprop, n, known in cases:
        out, bad = _call(ex, fn, list(forward), list(backprop), n)
        if bad is not None:
            return bad
        try:
            got = float(out)
        except (TypeError, ValueError):
            return _record(ex, False, f"Expected a number, got {type(out).__name__}.")
        total = n * len(forward)
        want = 1 - (sum(forward) + 2 * sum(backprop)) / (3 * total) if known is None else known
        if math.isclose(got, want, rel_tol=1e-6, abs_tol=1e-9):
            continue
        if math.isclose(got, 1 - sum(backprop) / total, rel_tol=1e-6, abs_tol=1e-9):
            return _record(ex, False, "That is the backprop saving: the forward passes count too (the selection's "
                                      "forwards of excluded samples are not free).")
        if math.isclose(got, 1 - (sum(forward) + sum(backprop)) / (2 * total), rel_tol=1e-6, abs_tol=1e-9):
            return _record(ex, False, "A backward costs two forwards: weigh backprop_samples by 2 and the baseline "
                                      "epoch by 3 N.")
        return _record(ex, False, f"Expected {want:.4f}, got {got:.4f}. Hint: 1 - (forwards + 2 x backwards) / "
                                  "(3 x N x epochs).")
    return _record(ex, True, "Your compute saved equals the runs' compute_saving"
                   + (" on the notebook's run too." if len(cases) > 2 else "."))


# ---------------------------------------------------------------------- 08 who gets excluded
def check_class_exclusion_share(fn: Callable, mastered: torch.Tensor | None = None,
                                labels: torch.Tensor | None = None, num_classes: int | None = None) -> Feedback:
    """08.1: ``fn(mastered, labels, num_classes)`` is, per class, the share of *that class's* samples that
    are excluded (``mastered`` ``(N,)`` bool), a ``(num_classes,)`` tensor (NaN for a class with no sample)."""
    ex = "08.1"
    g = torch.Generator().manual_seed(8)
    y = torch.tensor([0] * 50 + [1] * 30 + [2] * 5 + [3] * 15)
    m = torch.rand(100, generator=g) < torch.tensor([0.8, 0.5, 0.1, 0.3])[y]
    cases = [(m, y, 5)]  # class 4 is empty
    if mastered is not None and labels is not None and num_classes:
        cases.append((mastered.cpu().bool(), labels.cpu(), int(num_classes)))
    for mask, lab, c in cases:
        out, bad = _call(ex, fn, mask.clone(), lab.clone(), c)
        if bad is not None:
            return bad
        size = torch.bincount(lab, minlength=c).double()
        hit = torch.bincount(lab[mask], minlength=c).double()
        want = torch.where(size > 0, hit / size.clamp(min=1), torch.full_like(size, math.nan))
        out, bad = _tensor(ex, out, want.shape, "one share per class, torch.bincount(..., minlength=C).")
        if bad is not None:
            return bad
        if _close(out, want):
            continue
        if _close(torch.nan_to_num(out.double()), hit / len(lab)):
            return _record(ex, False, "You divide by all N samples; divide by the size of each class, so that a "
                                      "small class's share is comparable.")
        if _close(torch.nan_to_num(out.double(), nan=0.0), torch.nan_to_num(want, nan=0.0)):
            return _record(ex, False, "A class with no sample has no share: NaN, not 0 (0/0).")
        return _record(ex, False, "Wrong shares. Hint: excluded per class = bincount(labels[mastered]), "
                                  "class size = bincount(labels), both with minlength=num_classes.")
    return _record(ex, True, "Your shares equal the per-class counts' ratio"
                   + (" on the notebook's run too." if len(cases) > 1 else "."))


#: ``{exercise: check}``, in course order.
CHECKS = {"01.1": check_backward_difference, "01.2": check_official_rule, "02.1": check_replay,
          "03.1": check_speedup_from_counts, "04.1": check_paired_interval, "05.1": check_hvp,
          "06.1": check_probe_accuracy, "07.1": check_compute_saving, "08.1": check_class_exclusion_share}
