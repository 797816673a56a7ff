"""One figure style for the whole course: colours per method, seaborn theme, saving figures."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import seaborn as sns

#: One colour per method, the same in every notebook.
METHOD_COLORS = {
    "baseline": "#4C72B0",
    "ies": "#DD8452",
    "random": "#55A868",
    "loss": "#C44E52",
}


def use_style() -> None:
    """The course's figure style (seaborn ``whitegrid``, readable fonts, tight layout)."""
    sns.set_theme(context="notebook", style="whitegrid", palette="deep")
    plt.rcParams.update({"figure.dpi": 100, "savefig.dpi": 150, "figure.autolayout": True,
                         "axes.titleweight": "bold"})


def method_color(name: str) -> str:
    """The colour of ``name`` (a method, or anything else: a stable colour from the palette)."""
    if name in METHOD_COLORS:
        return METHOD_COLORS[name]
    palette = sns.color_palette("deep", 10).as_hex()
    return palette[sum(map(ord, name)) % len(palette)]


def save(fig: plt.Figure, out: str | Path, name: str) -> Path:
    """Save ``fig`` as ``out/name.png`` and return the path."""
    path = Path(out) / f"{name}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, bbox_inches="tight")
    return path


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
                label: str | None = None) -> plt.Axes:
    """A paired comparison over seeds from a long table ``runs`` (columns ``method``, ``seed``,
    ``metric``): one dot per (method, seed) in the method's colour, a grey line joining the values of
    the same seed, and the mean +- standard deviation over seeds beside each method's dots.
    ``percent`` scales the values by 100."""
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
    ax.set_ylabel(label or (metric.replace("_", " ") + (" (%)" if percent else "")))
    return ax


def family_colors(names) -> dict[str, str]:
    """A distinct colour per name: the :data:`METHOD_COLORS` of known methods, then the ``deep``
    palette's other colours in order (cycled when there are more names than colours)."""
    return _assign_colors(names, METHOD_COLORS)


def _assign_colors(names, fixed: dict[str, str]) -> dict[str, str]:
    names = list(dict.fromkeys(names))
    taken = {c.lower() for n, c in fixed.items() if n in names} | {c.lower() for c in METHOD_COLORS.values()}
    free = [c for c in sns.color_palette("deep", 10).as_hex() + sns.color_palette("dark", 10).as_hex()
            if c.lower() not in taken]
    colors, k = {}, 0
    for name in names:
        if name in fixed:
            colors[name] = fixed[name]
        else:
            colors[name] = free[k % len(free)]
            k += 1
    return colors


def pareto(table, *, x: str = "saved_mean", y: str = "acc_mean", xerr: str | None = "saved_std",
           yerr: str | None = "acc_std", label: str = "label", hue: str = "family", baseline: str | None = None,
           ax: plt.Axes | None = None) -> plt.Figure:
    """Accuracy against backprop saved, one point per setting (a row of ``table``, e.g. from
    :func:`ies.sweep.aggregate` with ``label`` and ``hue`` columns added), the seed spread as error
    bars; the colour tells the ``hue`` group (:func:`family_colors`), the marker the setting inside
    it, the legend (right of the axes) names every setting. The dashed line is the Pareto front (no
    other setting both saves more and is more accurate); the dotted line and band are the
    ``baseline`` row's accuracy +- spread. Both axes in percent."""
    import numpy as np

    if ax is None:
        fig, ax = plt.subplots(figsize=(9.5, 5.5))
    fig = ax.figure
    t = table.copy()
    if baseline is not None and baseline in t.index:
        mean = 100 * t.loc[baseline, y]
        std = 100 * t.loc[baseline, yerr] if yerr else 0.0
        std = std if np.isfinite(std) else 0.0
        ax.axhspan(mean - std, mean + std, color=METHOD_COLORS["baseline"], alpha=0.12, lw=0)
        ax.axhline(mean, color=METHOD_COLORS["baseline"], lw=1, ls=":", label="baseline accuracy")
    colors = family_colors(t[hue])
    markers = "oDs^vP*Xph<>"
    for group, rows in t.groupby(hue, sort=False):
        for i, (_, row) in enumerate(rows.iterrows()):
            ax.errorbar(100 * row[x], 100 * row[y],
                        xerr=100 * np.nan_to_num(row[xerr]) if xerr else None,
                        yerr=100 * np.nan_to_num(row[yerr]) if yerr else None,
                        fmt=markers[i % len(markers)], ms=7, capsize=3, color=colors[group],
                        label=str(row[label]))
    points = t[[x, y]].dropna().sort_values([x, y], ascending=[False, False])
    front, best = [], -np.inf
    for px, py in points.itertuples(index=False):
        if py > best:
            front.append((px, py))
            best = py
    if len(front) > 1:
        fx, fy = zip(*sorted(front), strict=True)
        ax.plot(100 * np.array(fx), 100 * np.array(fy), ls="--", color="0.4", lw=1, zorder=0, label="Pareto front")
    ax.set_xlabel("backprop saved (%)")
    ax.set_ylabel("final test accuracy (%)")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    return fig


def mastered_curves(histories, facets: dict[str, list[str]], *, label: str = "label",
                    y: str = "excluded_fraction", ncols: int = 3, colors: dict[str, str] | None = None) -> plt.Figure:
    """``y`` (default: the fraction of samples left out of backprop) against epoch, one panel per facet
    (``{title: [labels]}``) and one line per label inside it, mean over the runs of that label with
    the standard deviation as a band. ``histories`` is a long table (``ies.sweep.load_histories``
    plus a ``label`` column). ``colors`` fixes the colour of some labels in every panel (e.g. the
    reference setting); the others get distinct colours per panel. The y axis is in percent."""
    nrows = -(-len(facets) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.2 * ncols, 3.2 * nrows), sharex=True, sharey=True,
                             squeeze=False)
    for ax, (title, labels) in zip(axes.flat, facets.items(), strict=False):
        rows = histories[histories[label].isin(labels)].assign(_pct=lambda d: 100 * d[y])
        if len(rows):
            order = [v for v in labels if v in set(rows[label])]
            sns.lineplot(data=rows, x="epoch", y="_pct", hue=label, hue_order=order, errorbar="sd", ax=ax,
                         palette=_assign_colors(order, colors or {}))
            ax.legend(fontsize=7, title=None)
        ax.set_title(title)
        ax.set_ylabel(f"{y.replace('_', ' ')} (%)")
    for ax in list(axes.flat)[len(facets):]:
        ax.set_axis_off()
    return fig
