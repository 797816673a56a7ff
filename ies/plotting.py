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
