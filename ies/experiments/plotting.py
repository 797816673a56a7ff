"""One figure style for the whole course: one colour per method, seaborn theme, figures saved for slides."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import seaborn as sns

from . import stats

#: One colour per method, the same in every notebook: the baseline is always blue, IES always orange. The
#: variants of a method that a figure draws beside it ("IES + cap", 03's recheck) are methods of their own here.
METHOD_COLORS = {
    "baseline": "#4c72b0",
    "ies": "#dd8452",
    "ies_cap": "#9e3d00",
    "ies_recheck_lr": "#f0b000",
    "random": "#55a868",
    "loss": "#c44e52",
    "scratch": "#8c8c8c",
    "infobatch": "#591e71",
    "small_loss_rescale": "#a23582",
    "selective_backprop": "#006374",
    "early_stop": "#592f0d",
    "seta": "#7b4173",
    "orderdp": "#637939",
    "pfb": "#d6616b",
}

#: Colours for the settings of one method (04's ablations: "δ=1e-2", "N=0", ...) and for any label the registry
#: does not know: never a colour of :data:`METHOD_COLORS` or :data:`GROUP_COLORS`, so a colour in any figure of
#: the course names one method, one group, one setting or nothing.
OTHER_COLORS = ("#8172b3", "#937860", "#64b5cd", "#da8bc3", "#ccb974", "#b8850a", "#17becf", "#7f7f00",
                "#393b79", "#e7969c", "#8c6d31", "#9c9ede")

#: Colours of the groups of samples a figure compares (08: clean/noisy samples, majority/minority subgroup,
#: head/tail class): the typical group in a grey, the atypical one in a colour; outside the other palettes.
GROUP_COLORS = {
    "clean": "#252525", "noisy": "#e7298a",
    "majority": "#525252", "minority": "#1b9e77",
    "head class": "#737373", "tail class": "#e6ab02",
}

#: Every label the course draws, by the name a notebook gives it, to its colour (see :func:`color`).
COLORS: dict[str, str] = {
    **METHOD_COLORS,
    # the methods by the names the notebooks print
    "IES": METHOD_COLORS["ies"], "IES (paper)": METHOD_COLORS["ies"], "IES + cap": METHOD_COLORS["ies_cap"],
    "loss < δ": METHOD_COLORS["loss"], "N=2": METHOD_COLORS["ies"],  # N = 2 is IES's order (08's section 1b)
    # a random control copies a run's budget: random's green, a darker green for a second one in the same panel
    "random @ IES (paper)": METHOD_COLORS["random"], "random @ cap": METHOD_COLORS["random"],
    "random @ δ=1e-2": "#1e5631",
    # 04's settings of IES: one colour each, the same in every panel
    **dict(zip(("δ=1e-4", "δ=1e-2", "δ=1e-1", "N=0", "N=1", "N=3", "paper rule", "window 5", "patience 2",
                "paper rule, patience 3", "anneal 10%", "clean loss"), OTHER_COLORS, strict=True)),
    **GROUP_COLORS,
    # what is not a method, a setting or a group: the events and references several figures draw
    "re-entered": "#e31a1c", "newly mastered": METHOD_COLORS["ies"], "loss of a sample": "#000000",
    "never mastered": "#000000", "FLOP-ideal": "#000000",
    # 01's orders D_0..D_3 (viridis) and its ways of storing losses
    **{f"D{n}": c for n, c in enumerate(("#414487", "#2a788e", "#22a884", "#7ad151"))},
    "float32 storage, float64 differences": "#000000", "float32 throughout": "#a6a6a6",
    "bfloat16 storage": "#6a3d9a",
}

#: Three samples drawn in one panel (02's most re-entries): greys, told apart by line style too.
SAMPLE_COLORS = ("#000000", "#5f5f5f", "#a6a6a6")

#: The line style of each method (a variant dashed or dotted against the method it varies, so that two lines on
#: the same values stay visible) and of the contexts of a ``"context · method"`` label (08: data set, model).
LINESTYLES = {"ies_cap": "--", "IES + cap": "--", "ies_recheck_lr": "--", "random": ":", "loss": "-.",
              "scratch": ":", "small_loss_rescale": "--", "selective_backprop": "-.", "early_stop": ":"}
CONTEXT_LINESTYLES = {"clean": "-", "noisy": "--", "CNN": "-", "transformer": "--"}

#: One marker per method; a setting gets the marker of its place in :data:`OTHER_COLORS`.
MARKERS = {"baseline": "o", "ies": "s", "ies_cap": "d", "ies_recheck_lr": "h", "random": "^", "loss": "v",
           "scratch": "p", "infobatch": "D", "small_loss_rescale": "P", "selective_backprop": "X", "early_stop": "*",
           "seta": "<", "orderdp": ">", "pfb": "8"}
_SETTING_MARKERS = "oDs^vP*Xdph<"
_METHOD_OF = {"IES": "ies", "IES (paper)": "ies", "IES + cap": "ies_cap", "loss < δ": "loss"}


def _split(label: str) -> tuple[str, str]:
    """``"noisy · IES"`` -> ``("noisy", "IES")``; a plain label has no context."""
    context, sep, rest = str(label).partition(" · ")
    return (context, rest) if sep else ("", str(label))


def color(label: str, *, strict: bool = False) -> str:
    """The colour of ``label`` in every figure of the course: a method (``"ies"``, ``"IES (paper)"``), a setting
    (``"δ=1e-2"``), a random control (``"random @ δ=1e-2"``), a group (``"minority"``); a ``"context · method"``
    label (08's ``"transformer · IES"``) takes its method's colour (the context sets the line style,
    :func:`style`). A label the registry does not know gets a stable colour of :data:`OTHER_COLORS` (``strict``:
    a ``KeyError`` instead)."""
    label = str(label)
    if label in COLORS:
        return COLORS[label]
    context, rest = _split(label)
    if context and rest in COLORS:
        return COLORS[rest]
    if label.startswith("random @ "):
        return METHOD_COLORS["random"]
    if strict:
        raise KeyError(f"no colour for {label!r} in ies.experiments.plotting.COLORS")
    return OTHER_COLORS[sum(map(ord, label)) % len(OTHER_COLORS)]


def style(label: str) -> dict[str, str]:
    """``color``, ``ls`` and ``marker`` of ``label`` (:func:`color`, :data:`LINESTYLES`, :data:`MARKERS`), to pass
    to ``ax.plot(..., **style(label))``: a method's variant is dashed or dotted, so that it stays visible on top of
    the method it varies; the context of ``"noisy · IES"`` (``noisy``: dashed) sets the line style."""
    context, rest = _split(label)
    name = _METHOD_OF.get(rest, rest)
    if rest.startswith("random @ "):
        name = "random"
    ls = CONTEXT_LINESTYLES.get(context) or LINESTYLES.get(rest) or LINESTYLES.get(name, "-")
    if name in MARKERS:
        marker = MARKERS[name]
    else:
        c = color(rest)
        marker = _SETTING_MARKERS[OTHER_COLORS.index(c) % len(_SETTING_MARKERS)] if c in OTHER_COLORS else "o"
    return {"color": color(label), "ls": ls, "marker": marker}


def layered(i: int, n: int) -> dict[str, float]:
    """Line width and z-order of the ``i``-th of ``n`` lines that may lie on the same values (07's forward
    counts, 03's accuracies): the first drawn widest and lowest, each next one thinner and above it, so that a
    line under another still shows at both its edges."""
    n = max(1, int(n))
    return {"lw": 1.2 + 2.0 * (n - 1 - int(i)) / max(1, n - 1), "zorder": 2 + int(i)}


#: The formats :func:`save_figure` writes: PNG for the notebook, SVG for slides.
FIGURE_FORMATS = ("png", "svg")


def use_style() -> None:
    """The course's figure style (seaborn ``whitegrid``, readable fonts, tight layout)."""
    sns.set_theme(context="notebook", style="whitegrid", palette="deep")
    plt.rcParams.update({"figure.dpi": 100, "savefig.dpi": 150, "figure.autolayout": True,
                         "axes.titleweight": "bold", "svg.fonttype": "none"})


def other_color(i: int) -> str:
    """The ``i``-th colour of :data:`OTHER_COLORS` (cycled): for lines that are not methods."""
    return OTHER_COLORS[int(i) % len(OTHER_COLORS)]


def save_figure(fig: plt.Figure, out: str | Path, name: str, formats: Sequence[str] = FIGURE_FORMATS) -> Path:
    """Save ``fig`` as ``out/name.<format>`` for each of ``formats`` (default PNG and SVG, the SVG for
    slides); return the path of the first (the PNG)."""
    if not formats:
        raise ValueError("formats must name at least one file format, e.g. ('png', 'svg')")
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / f"{name}.{fmt.lstrip('.')}" for fmt in formats]
    for path in paths:
        fig.savefig(path, bbox_inches="tight")
    return paths[0]


#: The name the notebooks used before :func:`save_figure` wrote SVG too; the same function.
save = save_figure


def plot_history(ax: plt.Axes, histories: dict, column: str, *, label: str | None = None, marker: str | None = None,
                 **kwargs) -> plt.Axes:
    """Plot ``column`` against ``epoch`` for each ``{method: history DataFrame}``, in the method's
    colour, skipping epochs where the column is NaN (e.g. measured only every few epochs)."""
    for name, hist in histories.items():
        rows = hist[["epoch", column]].dropna()
        kwargs = {"color": color(name), **kwargs}
        ax.plot(rows["epoch"], rows[column], marker=marker, label=f"{name} {label}" if label else name, **kwargs)
    ax.set_xlabel("epoch")
    return ax


def order_color(order: int) -> str:
    """The colour of the order-``order`` difference D_N (N = 0..3; ``COLORS["D2"]``), the same in every notebook."""
    return COLORS[f"D{int(order) % 4}"]


def plot_examples(axes, x, titles=None, color: str | None = None) -> None:
    """Draw one training example per axis: 1-D signals (``(K, L)``) as lines, images
    (``(K, H, W, C)`` uint8 or float in [0, 1]) with ``imshow``; ``titles`` one string each."""
    axes = list(getattr(axes, "flat", axes))
    for i, ax in enumerate(axes):
        if i >= len(x):
            ax.set_axis_off()
            continue
        sample = x[i].detach().cpu().numpy() if hasattr(x[i], "detach") else x[i]
        if sample.ndim == 1:
            ax.plot(sample, color=color or COLORS["baseline"], lw=1.2)
            ax.set_xticks([])
            ax.set_yticks([])
        else:
            ax.imshow(sample.squeeze(), cmap="gray" if sample.shape[-1] == 1 else None)
            ax.set_axis_off()
        if titles is not None:
            ax.set_title(titles[i], fontsize=9, fontweight="normal")


def shade(ax: plt.Axes, mask, *, start: int = 1, color: str | None = None, alpha: float = 0.2,
          label: str | None = None) -> None:
    """Shade the x-ranges where the boolean sequence ``mask`` is True (entry ``j`` at x =
    ``start + j``, e.g. epochs), labelling the first span only."""
    values = [bool(v) for v in mask]
    j = 0
    while j < len(values):
        if values[j]:
            k = j
            while k + 1 < len(values) and values[k + 1]:
                k += 1
            ax.axvspan(start + j - 0.5, start + k + 0.5, color=color or COLORS["ies"], alpha=alpha,
                       lw=0, label=label)
            label = None
            j = k + 1
        else:
            j += 1


def plot_paired(ax: plt.Axes, runs, metric: str, *, methods: list[str] | None = None, percent: bool = True,
                label: str | None = None, xlabel: str = "method") -> plt.Axes:
    """A paired comparison over seeds from a long table ``runs`` (columns ``method``, ``seed``,
    ``metric``): one dot per (method, seed) in the method's colour, a grey line joining the values of
    the same seed, and the mean with its 95 % interval (:func:`ies.experiments.stats.half_width`) beside
    each method's dots.
    ``percent`` scales the values by 100; ``label`` and ``xlabel`` name the axes."""
    scale = 100.0 if percent else 1.0
    wide = runs.pivot_table(index="seed", columns="method", values=metric) * scale
    if methods is None:
        methods = [m for m in dict.fromkeys(runs["method"]) if m in wide and wide[m].notna().any()]
    x = range(len(methods))
    for _, row in wide[methods].iterrows():
        ax.plot(x, row.to_numpy(), color="0.75", lw=1, zorder=1)
    for i, m in enumerate(methods):
        values = wide[m].dropna()
        ax.scatter([i] * len(values), values, color=color(m), s=28, zorder=2)
        ax.errorbar(i + 0.18, values.mean(), yerr=stats.half_width(values) if len(values) > 1 else None, fmt="D",
                    color=color(m), capsize=4, ms=6, zorder=3)
    ax.set_xticks(list(x), methods)
    ax.set_xlim(-0.5, len(methods) - 0.5)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(label or (metric.replace("_", " ") + (" (%)" if percent else "")))
    return ax


def setting_colors(names: Sequence[str], fixed: Mapping[str, str] | None = None) -> dict[str, str]:
    """A colour per name: ``fixed`` ones as given, the labels of the registry their :func:`color` (the same in
    every panel), the others the colours of :data:`OTHER_COLORS` no other name here has, in order (cycled), so
    that no variant takes a method's colour."""
    fixed = dict(fixed or {})
    names = list(dict.fromkeys(names))
    colors = {n: fixed[n] if n in fixed else color(n, strict=True) for n in names if n in fixed or _known(n)}
    free = [c for c in OTHER_COLORS if c not in colors.values()] or list(OTHER_COLORS)
    k = 0
    for name in names:
        if name not in colors:
            colors[name] = free[k % len(free)]
            k += 1
    return {n: colors[n] for n in names}


def _known(label: str) -> bool:
    try:
        color(label, strict=True)
    except KeyError:
        return False
    return True


def ablation_panels(table, panels: Mapping[str, Sequence[str]], *, baseline: str | None = None,
                    colors: Mapping[str, str] | None = None, x: str = "saved_mean", y: str = "best_acc_mean",
                    xerr: str | None = "saved_ci", yerr: str | None = "best_acc_ci", label: str = "label",
                    ylabel: str = "best test accuracy (%)", ncols: int = 4) -> plt.Figure:
    """Small multiples of accuracy against backprop saved, one panel per ablation family.

    ``table`` has one row per setting (e.g. :func:`ies.experiments.sweep.aggregate` plus a ``label`` column);
    ``panels`` maps a panel title to the labels drawn in it (labels absent from ``table`` are skipped,
    panels left empty are not drawn). Every panel shows the ``baseline`` row (a setting index of
    ``table``) as a dotted line with its 95 % interval as a band, in the baseline's colour, and
    each of its settings as a point with the 95 % intervals of its means as error bars (``xerr``/``yerr`` columns,
    skipped where absent), coloured by ``colors`` (label -> colour; the others: :func:`setting_colors`)
    and named in the panel's legend. All panels share both axes, in percent."""
    t = table.copy()
    drawn = {title: [v for v in labels if v in set(t[label])] for title, labels in panels.items()}
    drawn = {title: labels for title, labels in drawn.items() if labels}
    if not drawn:
        raise ValueError("panels: none of the labels is in the table")
    ncols = max(1, min(ncols, len(drawn)))
    nrows = -(-len(drawn) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.6 * ncols, 3.3 * nrows), sharex=True, sharey=True,
                             squeeze=False)
    by_label = t.set_index(label)

    def column(row, name):
        return 100 * float(np.nan_to_num(row[name])) if name and name in row.index else None

    for ax, (title, labels) in zip(axes.flat, drawn.items(), strict=False):
        if baseline is not None and baseline in t.index:
            row = t.loc[baseline]
            mean, spread = 100 * row[y], column(row, yerr) or 0.0
            ax.axhspan(mean - spread, mean + spread, color=METHOD_COLORS["baseline"], alpha=0.12, lw=0)
            ax.axhline(mean, color=METHOD_COLORS["baseline"], lw=1.2, ls=":", label="baseline")
        palette = setting_colors(labels, colors)
        for i, name in enumerate(labels):
            row = by_label.loc[name]
            hollow = name.startswith("random @ ")  # a random control sits at its twin's x: hollow, above it
            ax.errorbar(100 * row[x], 100 * row[y], xerr=column(row, xerr), yerr=column(row, yerr),
                        fmt=style(name)["marker"], ms=7, capsize=3, color=palette[name], label=name,
                        mfc="white" if hollow else palette[name], zorder=3 + i)
        ax.set_title(title)
        ax.set_xlabel("backprop saved (%)")
        ax.set_ylabel(ylabel)
        ax.legend(fontsize=7, loc="best")
    for ax in list(axes.flat)[len(drawn):]:
        ax.set_axis_off()
    return fig


def mastered_curves(histories, facets: dict[str, list[str]], *, label: str = "label",
                    y: str = "excluded_fraction", ncols: int = 3, colors: dict[str, str] | None = None) -> plt.Figure:
    """``y`` (default: the fraction of samples left out of backprop) against epoch, one panel per facet
    (``{title: [labels]}``) and one line per label inside it, mean over the runs of that label with
    the 95 % interval of that mean as a band. ``histories`` is a long table (``ies.experiments.sweep.load_histories``
    plus a ``label`` column). Every label has its colour and line style of the registry (:func:`style`; a random
    control dashed, so that it shows on top of the run whose budget it copies, which it matches epoch by epoch);
    ``colors`` overrides some. Both axes are labelled, the y axis in percent."""
    nrows = -(-len(facets) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.2 * ncols, 3.2 * nrows), sharex=True, sharey=True,
                             squeeze=False)
    for ax, (title, labels) in zip(axes.flat, facets.items(), strict=False):
        rows = histories[histories[label].isin(labels)].assign(_pct=lambda d: 100 * d[y])
        if len(rows):
            order = [v for v in labels if v in set(rows[label])]
            palette = setting_colors(order, colors)
            for i, name in enumerate(order):
                curve = rows[rows[label] == name].groupby("epoch")["_pct"].agg(["mean", stats.half_width])
                ax.fill_between(curve.index, curve["mean"] - curve["half_width"], curve["mean"] + curve["half_width"],
                                color=palette[name], alpha=0.15, lw=0)
                ax.plot(curve.index, curve["mean"], ls=style(name)["ls"], color=palette[name], label=name,
                        **layered(i, len(order)))
            ax.legend(fontsize=7, title=None)
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.set_ylabel(f"{y.replace('_', ' ')} (%)")
    for ax in list(axes.flat)[len(facets):]:
        ax.set_axis_off()
    return fig


def _hero_sample(losses, excluded, reentry) -> int:
    """The sample to show: among those with exactly one re-entry, the one whose three phases (excluded,
    trained again, excluded again or the run's end) are longest at their shortest, losses never 0 breaking
    ties; else the most re-entries; else the longest exclusion. ``excluded``, ``reentry``: ``(N, T)`` and
    ``(N, T - 1)`` bool; one pass over the samples with one re-entry (a figure, not a hot loop)."""
    count, length = reentry.sum(1), excluded.sum(1)
    one = (count == 1).nonzero().flatten().tolist()
    if not one:
        return int(count.argmax()) if count.max() > 0 else int(length.argmax())
    positive = losses.min(1).values > 1e-12

    def phases(i: int) -> tuple[int, bool, int]:
        out = excluded[i].tolist()
        r = reentry[i].nonzero().flatten().item() + 1  # the first epoch index trained again
        before = r - out.index(True)
        again = next((k for k, v in enumerate(out[r:]) if v), len(out) - r)
        after = sum(out[r + again:])
        return min(before, again, max(after, 1)), bool(positive[i]), int(length[i])

    return max(one, key=phases)


def method_on_one_page(loss_matrix, mastered_matrix, threshold: float, *, order: int = 2, window: int = 3,
                       rule: str = "official", sample: int | None = None, title: str | None = None):
    """The hero figure of the course, from a real IES run: one sample's loss (top) and, below, its
    ``|D_order|`` and the rule's statistic (the mean of the last ``window`` values for the authors' rule)
    against ``delta``, the epochs it was excluded from back-propagation shaded, its re-entries marked.

    ``loss_matrix`` ``(N, T)``: the per-sample losses of the run (``keep_loss_matrix=True``);
    ``mastered_matrix`` ``(N, T)`` bool: the tracker's decision at the end of every epoch (a sample decided
    mastered after epoch ``t`` is excluded from epoch ``t + 1``). ``sample``: which one (default:
    :func:`_hero_sample`, a sample that reads at a glance). Losses and differences below ``1e-12`` (float
    underflow to 0) are drawn at ``1e-12``.

    Returns ``(fig, info)``: ``info`` has ``sample``, ``excluded_epochs`` (1-based), ``reentry_epochs`` (the
    epochs it trains again after an exclusion) and ``threshold``.
    """
    import numpy as np
    import torch

    from ..method.criteria import backward_difference

    losses = torch.as_tensor(loss_matrix).double().cpu()
    mask = torch.as_tensor(mastered_matrix).bool().cpu()
    n, epochs = losses.shape
    excluded = torch.zeros_like(mask)
    excluded[:, 1:] = mask[:, :-1]  # decided after epoch t: out of epoch t + 1's backprop
    reentry = excluded[:, :-1] & ~excluded[:, 1:]  # out in epoch t, back in t + 1
    if sample is None:
        sample = _hero_sample(losses, excluded, reentry)
    x = np.arange(1, epochs + 1)
    loss = losses[sample]
    d = backward_difference(loss, order).abs() if epochs > order else loss[:0]
    stat = d.unfold(0, window, 1).mean(1) if rule == "official" and len(d) >= window else d
    out_epochs = (excluded[sample].nonzero().flatten() + 1).tolist()
    back = (reentry[sample].nonzero().flatten() + 2).tolist()

    fig, (top, bottom) = plt.subplots(2, 1, figsize=(8, 5.2), sharex=True, height_ratios=(1, 1.2))
    for ax in (top, bottom):
        shade(ax, excluded[sample].tolist(), start=1, color=color("ies"), alpha=0.18,
              label="excluded from backprop" if ax is top else None)
    top.plot(x, loss.clamp(min=1e-12).numpy(), color=color("loss of a sample"), marker="o", ms=3, lw=1.5,
             label="loss of this sample")
    top.set(ylabel="loss", yscale="log")
    bottom.plot(x[order:], d.clamp(min=1e-12).numpy(), color=order_color(order), lw=1, ls=":", marker=".", ms=4,
                label=f"$|D_{order}|$")
    if rule == "official" and len(d) >= window:
        bottom.plot(x[order + window - 1:], stat.clamp(min=1e-12).numpy(), color=order_color(order), lw=2.2,
                    label=f"mean of the last {window} $|D_{order}|$ (the rule)")
    bottom.axhline(threshold, color="black", ls="--", lw=1.2, label=r"$\delta$")
    bottom.set(xlabel="epoch", ylabel=f"$|D_{order}|$", yscale="log")
    for t in back:
        for ax in (top, bottom):
            ax.axvline(t, color=color("re-entered"), lw=1.5, ls=":")
        top.annotate("re-entry", (t, max(float(loss[t - 1]), 1e-12)), xytext=(6, 10), textcoords="offset points",
                     color=color("re-entered"), fontsize=9)
    top.legend(loc="upper right", fontsize=8)
    bottom.legend(loc="lower left", fontsize=8)
    top.set_title(title or f"sample {sample}: excluded in {len(out_epochs)} of {epochs} epochs, "
                  f"{len(back)} re-entr{'y' if len(back) == 1 else 'ies'}")
    fig.tight_layout()
    return fig, {"sample": sample, "excluded_epochs": out_epochs, "reentry_epochs": back, "threshold": threshold}
