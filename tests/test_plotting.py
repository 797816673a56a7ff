"""The course's figures: one colour per method, small multiples per ablation family, PNG + SVG for slides."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from matplotlib.colors import to_hex  # noqa: E402

from ies.experiments.plotting import (  # noqa: E402
    METHOD_COLORS,
    OTHER_COLORS,
    ablation_panels,
    method_color,
    save_figure,
    setting_colors,
)


def test_method_colours_are_fixed_and_nothing_else_takes_one():
    assert method_color("baseline") == METHOD_COLORS["baseline"] and method_color("ies") == METHOD_COLORS["ies"]
    assert len(set(METHOD_COLORS.values())) == len(METHOD_COLORS)
    assert not set(OTHER_COLORS) & set(METHOD_COLORS.values())
    for name in ("window 5", "δ=1e-2", "clean loss", "anything"):
        assert method_color(name) in OTHER_COLORS
    colors = setting_colors(["IES (paper)", "a", "b"], {"IES (paper)": METHOD_COLORS["ies"]})
    assert colors == {"IES (paper)": METHOD_COLORS["ies"], "a": OTHER_COLORS[0], "b": OTHER_COLORS[1]}


def test_save_figure_writes_png_and_svg(tmp_path):
    fig, ax = plt.subplots()
    ax.plot([0, 1], [1, 0])
    path = save_figure(fig, tmp_path / "figs", "line")
    plt.close(fig)
    assert path == tmp_path / "figs" / "line.png"
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "<svg" in (tmp_path / "figs" / "line.svg").read_text()
    with pytest.raises(ValueError, match="formats"):
        save_figure(fig, tmp_path, "none", formats=())


def summary() -> pd.DataFrame:
    rows = {  # setting id: label, best accuracy mean / std, saved mean / std
        "threshold=0": ("baseline", 0.90, 0.01, 0.0, 0.0),
        "base": ("IES (paper)", 0.895, 0.01, 0.40, 0.02),
        "order=0": ("N=0", 0.85, 0.02, 0.60, 0.03),
        "order=1": ("N=1", 0.89, 0.01, 0.30, 0.02),
        "selector=random": ("random @ IES (paper)", 0.87, 0.02, 0.40, 0.02),
    }
    return pd.DataFrame.from_dict(rows, orient="index",
                                  columns=["label", "best_acc_mean", "best_acc_std", "saved_mean", "saved_std"])


def test_ablation_panels_one_panel_per_family_with_the_module_colours():
    panels = {"order N": ["N=0", "N=1", "IES (paper)"], "random": ["IES (paper)", "random @ IES (paper)"],
              "never ran": ["window 5"]}
    colors = {"IES (paper)": METHOD_COLORS["ies"], "random @ IES (paper)": METHOD_COLORS["random"]}
    fig = ablation_panels(summary(), panels, baseline="threshold=0", colors=colors)
    visible = [ax for ax in fig.axes if ax.axison]
    assert [ax.get_title() for ax in visible] == ["order N", "random"]  # the empty family is not drawn
    for ax in visible:
        assert ax.get_xlabel() == "backprop saved (%)" and ax.get_ylabel() == "best test accuracy (%)"
        (line,) = [ln for ln in ax.get_lines() if ln.get_label() == "baseline"]
        assert to_hex(line.get_color()) == METHOD_COLORS["baseline"]
        assert line.get_ydata()[0] == pytest.approx(90.0)
        points = {c.get_label(): c for c in ax.containers}
        ies = points["IES (paper)"].lines[0]
        assert to_hex(ies.get_color()) == METHOD_COLORS["ies"]
        assert (ies.get_xdata()[0], ies.get_ydata()[0]) == pytest.approx((40.0, 89.5))
    random = {c.get_label(): c for c in visible[1].containers}["random @ IES (paper)"].lines[0]
    assert to_hex(random.get_color()) == METHOD_COLORS["random"]
    others = {c.get_label(): to_hex(c.lines[0].get_color()) for c in visible[0].containers}
    assert others["N=0"] in OTHER_COLORS and others["N=1"] in OTHER_COLORS and others["N=0"] != others["N=1"]
    plt.close(fig)
    with pytest.raises(ValueError, match="panels"):
        ablation_panels(summary(), {"x": ["nothing"]})


def test_plot_paired_labels_both_axes_in_the_method_colours():
    from ies.experiments.plotting import plot_paired

    runs = pd.DataFrame({"method": ["baseline", "ies", "scratch"] * 2, "seed": [0, 0, 0, 1, 1, 1],
                         "probe_accuracy": [0.5, 0.6, 0.3, 0.7, 0.7, 0.4]})
    fig, ax = plt.subplots()
    plot_paired(ax, runs, "probe_accuracy", xlabel="pretraining")
    assert ax.get_xlabel() == "pretraining" and ax.get_ylabel() == "probe accuracy (%)"
    dots = [to_hex(c.get_facecolor()[0]) for c in ax.collections if c.get_offsets().shape[0] == 2]
    assert dots == [METHOD_COLORS["baseline"], METHOD_COLORS["ies"], METHOD_COLORS["scratch"]]
    plt.close(fig)


def test_method_on_one_page_from_a_real_run(tmp_path):
    """The hero figure is drawn from a real IES run's loss matrix: the sample it picks, its shaded
    (excluded) epochs and its re-entries are those of the tracker's decisions."""
    import matplotlib

    matplotlib.use("Agg")
    import torch

    from ies import Config, train
    from ies.experiments.plotting import method_on_one_page, save_figure
    from ies.method.replay import reentries

    run = train(Config(dataset="synthetic", model="mlp", epochs=14, threshold=2e-3, keep_loss_matrix=True,
                       progress=False, seed=0))
    mask = run.mastered_matrix
    fig, info = method_on_one_page(run.loss_matrix, mask, 2e-3)
    i = info["sample"]
    assert info["excluded_epochs"] == [t + 2 for t in mask[i].nonzero().flatten().tolist() if t + 2 <= mask.shape[1]]
    assert len(info["reentry_epochs"]) == int(reentries(mask[:, :-1])[i])
    if reentries(mask[:, :-1]).max() > 0:
        assert info["reentry_epochs"], "a run with re-entries shows one"
    paths = save_figure(fig, tmp_path, "hero")
    assert (tmp_path / "hero.png").stat().st_size > 0 and paths
    # a hand-made decision matrix: out in epochs 5-6, back in 7, out again in 9-10
    losses = torch.rand(3, 10, dtype=torch.float64) + 0.1
    hand = torch.zeros(3, 10, dtype=torch.bool)
    hand[1, [3, 4, 7, 8]] = True
    _, info = method_on_one_page(losses, hand, 1e-3)
    assert info == {"sample": 1, "excluded_epochs": [5, 6, 9, 10], "reentry_epochs": [7], "threshold": 1e-3}
