"""One figure style for the whole course: one colour per method, seaborn theme, figures saved for slides."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import seaborn as sns

#: One colour per method, the same in every notebook: the baseline is always blue, IES always orange.
METHOD_COLORS = {
    "baseline": "#4c72b0",
    "ies": "#dd8452",
    "random": "#55a868",
    "loss": "#c44e52",
    "scratch": "#8c8c8c",
    "infobatch": "#591e71",
    "small_loss_rescale": "#a23582",
    "selective_backprop": "#006374",
    "early_stop": "#592f0d",
}

#: Colours for what is not a method (variants of one setting, kinds of events, data sets): never a
#: colour of :data:`METHOD_COLORS`, so a colour in any figure of the course names one method or none.
OTHER_COLORS = ("#8172b3", "#937860", "#da8bc3", "#ccb974", "#64b5cd", "#b8850a")

#: The formats :func:`save_figure` writes: PNG for the notebook, SVG for slides.
FIGURE_FORMATS = ("png", "svg")


def use_style() -> None:
    """The course's figure style (seaborn ``whitegrid``, readable fonts, tight layout)."""
    sns.set_theme(context="notebook", style="whitegrid", palette="deep")
    plt.rcParams.update({"figure.dpi": 100, "savefig.dpi": 150, "figure.autolayout": True,
                         "axes.titleweight": "bold", "svg.fonttype": "none"})


def method_color(name: str) -> str:
    """The colour of method ``name`` (:data:`METHOD_COLORS`); anything else gets a stable colour of
    :data:`OTHER_COLORS`, never a method's."""
    if name in METHOD_COLORS:
        return METHOD_COLORS[name]
    return OTHER_COLORS[sum(map(ord, name)) % len(OTHER_COLORS)]


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
        ax.plot(rows["epoch"], rows[column], marker=marker, color=method_color(name),
                label=f"{name} {label}" if label else name, **kwargs)
    ax.set_xlabel("epoch")
    return ax


def order_color(order: int) -> str:
    """The colour of the order-``order`` difference D_N (N = 0..3), the same in every notebook."""
    palette = sns.color_palette("viridis", 4).as_hex()
    return palette[int(order) % len(palette)]


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
            ax.plot(sample, color=color or method_color("baseline"), lw=1.2)
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
            ax.axvspan(start + j - 0.5, start + k + 0.5, color=color or method_color("ies"), alpha=alpha,
                       lw=0, label=label)
            label = None
            j = k + 1
        else:
            j += 1


def plot_paired(ax: plt.Axes, runs, metric: str, *, methods: list[str] | None = None, percent: bool = True,
                label: str | None = None, xlabel: str = "method") -> plt.Axes:
    """A paired comparison over seeds from a long table ``runs`` (columns ``method``, ``seed``,
    ``metric``): one dot per (method, seed) in the method's colour, a grey line joining the values of
    the same seed, and the mean +- standard deviation over seeds beside each method's dots.
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
        ax.scatter([i] * len(values), values, color=method_color(m), s=28, zorder=2)
        ax.errorbar(i + 0.18, values.mean(), yerr=values.std() if len(values) > 1 else None, fmt="D",
                    color=method_color(m), capsize=4, ms=6, zorder=3)
    ax.set_xticks(list(x), methods)
    ax.set_xlim(-0.5, len(methods) - 0.5)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(label or (metric.replace("_", " ") + (" (%)" if percent else "")))
    return ax


def setting_colors(names: Sequence[str], fixed: Mapping[str, str] | None = None) -> dict[str, str]:
    """A colour per name: ``fixed`` ones (e.g. ``{"IES (paper)": METHOD_COLORS["ies"]}``) as given, the
    others the colours of :data:`OTHER_COLORS` in order (cycled), so that no variant takes a method's colour."""
    fixed = dict(fixed or {})
    colors, k = {}, 0
    for name in dict.fromkeys(names):
        if name in fixed:
            colors[name] = fixed[name]
        else:
            colors[name] = other_color(k)
            k += 1
    return colors


def ablation_panels(table, panels: Mapping[str, Sequence[str]], *, baseline: str | None = None,
                    colors: Mapping[str, str] | None = None, x: str = "saved_mean", y: str = "best_acc_mean",
                    xerr: str | None = "saved_std", yerr: str | None = "best_acc_std", label: str = "label",
                    ylabel: str = "best test accuracy (%)", ncols: int = 4) -> plt.Figure:
    """Small multiples of accuracy against backprop saved, one panel per ablation family.

    ``table`` has one row per setting (e.g. :func:`ies.experiments.sweep.aggregate` plus a ``label`` column);
    ``panels`` maps a panel title to the labels drawn in it (labels absent from ``table`` are skipped,
    panels left empty are not drawn). Every panel shows the ``baseline`` row (a setting index of
    ``table``) as a dotted line with its spread over seeds as a band, in the baseline's colour, and
    each of its settings as a point with the seed spread as error bars (``xerr``/``yerr`` columns,
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
            ax.errorbar(100 * row[x], 100 * row[y], xerr=column(row, xerr), yerr=column(row, yerr),
                        fmt="oDs^vP*X"[i % 8], ms=7, capsize=3, color=palette[name], label=name)
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
    the standard deviation as a band. ``histories`` is a long table (``ies.experiments.sweep.load_histories``
    plus a ``label`` column). ``colors`` fixes the colour of some labels in every panel (e.g. the
    reference setting); the others get :data:`OTHER_COLORS` per panel. Both axes are labelled, the y axis in
    percent."""
    nrows = -(-len(facets) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.2 * ncols, 3.2 * nrows), sharex=True, sharey=True,
                             squeeze=False)
    for ax, (title, labels) in zip(axes.flat, facets.items(), strict=False):
        rows = histories[histories[label].isin(labels)].assign(_pct=lambda d: 100 * d[y])
        if len(rows):
            order = [v for v in labels if v in set(rows[label])]
            sns.lineplot(data=rows, x="epoch", y="_pct", hue=label, hue_order=order, errorbar="sd", ax=ax,
                         palette=setting_colors(order, colors))
            ax.legend(fontsize=7, title=None)
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.set_ylabel(f"{y.replace('_', ' ')} (%)")
    for ax in list(axes.flat)[len(facets):]:
        ax.set_axis_off()
    return fig


def method_on_one_page(loss_matrix, mastered_matrix, threshold: float, *, order: int = 2, window: int = 3,
                       rule: str = "official", sample: int | None = None, title: str | None = None):
    """The hero figure of the course, from a real IES run: one sample's loss (top) and, below, its
    ``|D_order|`` and the rule's statistic (the mean of the last ``window`` values for the authors' rule)
    against ``delta``, the epochs it was excluded from back-propagation shaded, its re-entries marked.

    ``loss_matrix`` ``(N, T)``: the per-sample losses of the run (``keep_loss_matrix=True``);
    ``mastered_matrix`` ``(N, T)`` bool: the tracker's decision at the end of every epoch (a sample decided
    mastered after epoch ``t`` is excluded from epoch ``t + 1``). ``sample``: which one (default: the sample with
    exactly one re-entry and the longest exclusion, else the most re-entries, else the longest exclusion).

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
        count, length = reentry.sum(1), excluded.sum(1)
        one = (count == 1).nonzero().flatten()
        if len(one):
            sample = int(one[length[one].argmax()])
        elif count.max() > 0:
            sample = int(count.argmax())
        else:
            sample = int(length.argmax())
    x = np.arange(1, epochs + 1)
    loss = losses[sample]
    d = backward_difference(loss, order).abs() if epochs > order else loss[:0]
    stat = d.unfold(0, window, 1).mean(1) if rule == "official" and len(d) >= window else d
    out_epochs = (excluded[sample].nonzero().flatten() + 1).tolist()
    back = (reentry[sample].nonzero().flatten() + 2).tolist()

    fig, (top, bottom) = plt.subplots(2, 1, figsize=(8, 5.2), sharex=True, height_ratios=(1, 1.2))
    for ax in (top, bottom):
        shade(ax, excluded[sample].tolist(), start=1, color=method_color("ies"), alpha=0.18,
              label="excluded from backprop" if ax is top else None)
    top.plot(x, loss.numpy(), color=method_color("baseline"), marker="o", ms=3, lw=1.5, label="loss of this sample")
    top.set(ylabel="loss", yscale="log")
    bottom.plot(x[order:], d.clamp(min=1e-12).numpy(), color=other_color(0), lw=1, marker=".", ms=4,
                label=f"$|D_{order}|$")
    if rule == "official" and len(d) >= window:
        bottom.plot(x[order + window - 1:], stat.clamp(min=1e-12).numpy(), color=other_color(1), lw=2.2,
                    label=f"mean of the last {window} $|D_{order}|$ (the rule)")
    bottom.axhline(threshold, color="black", ls="--", lw=1.2, label=r"$\delta$")
    bottom.set(xlabel="epoch", ylabel=f"$|D_{order}|$", yscale="log")
    for t in back:
        for ax in (top, bottom):
            ax.axvline(t, color=other_color(2), lw=1.5, ls=":")
        top.annotate("re-entry", (t, float(loss[t - 1])), xytext=(6, 10), textcoords="offset points",
                     color=other_color(2), fontsize=9)
    top.legend(loc="upper right", fontsize=8)
    bottom.legend(loc="lower left", fontsize=8)
    top.set_title(title or f"sample {sample}: excluded in {len(out_epochs)} of {epochs} epochs, "
                  f"{len(back)} re-entr{'y' if len(back) == 1 else 'ies'}")
    fig.tight_layout()
    return fig, {"sample": sample, "excluded_epochs": out_epochs, "reentry_epochs": back, "threshold": threshold}
