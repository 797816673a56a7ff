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
    color,
    save_figure,
    setting_colors,
)


def test_method_colours_are_fixed_and_nothing_else_takes_one():
    assert color("baseline") == METHOD_COLORS["baseline"] and color("ies") == METHOD_COLORS["ies"]
    assert len(set(METHOD_COLORS.values())) == len(METHOD_COLORS)
    assert not set(OTHER_COLORS) & set(METHOD_COLORS.values())
    for name in ("window 5", "δ=1e-2", "clean loss", "anything"):
        assert color(name) in OTHER_COLORS
    assert color("window 5") != color("δ=1e-2") != color("clean loss")
    colors = setting_colors(["IES (paper)", "a", "b"], {"IES (paper)": METHOD_COLORS["ies"]})
    assert colors == {"IES (paper)": METHOD_COLORS["ies"], "a": OTHER_COLORS[0], "b": OTHER_COLORS[1]}


def notebook_literal(name: str, variable: str):
    """The literal assigned to ``variable`` in notebook ``name``'s code (04's SETTINGS, 07's ALL)."""
    import ast
    import json
    from pathlib import Path

    cells = json.loads((Path(__file__).parents[1] / "notebooks" / f"{name}.ipynb").read_text())["cells"]
    for cell in cells:
        if cell["cell_type"] != "code":
            continue
        for node in ast.walk(ast.parse("".join(cell["source"]))):
            if isinstance(node, ast.Assign) and any(getattr(t, "id", "") == variable for t in node.targets):
                return ast.literal_eval(node.value)
    raise AssertionError(f"{variable} not assigned in {name}")


def course_labels() -> set[str]:
    """Every label a figure of the course draws: methods, 04's settings and random controls, 07's methods,
    08's settings (with both twins) and its groups."""
    from ies.experiments import open_questions as oq

    labels = {"baseline", "ies", "scratch", "ies_recheck_lr", "re-entered", "newly mastered", "FLOP-ideal"}
    labels |= {label for label, _, _ in notebook_literal("04_ablations", "SETTINGS")}
    labels |= {f"random @ {label}" for label in notebook_literal("04_ablations", "RANDOM_CONTROLS")}
    labels |= set(notebook_literal("07_peers", "ALL"))
    settings = oq.settings(twins=("long_tail", "subgroup"))
    labels |= set(settings) | {"CNN · baseline", "CNN · IES"}
    labels |= {"clean", "noisy", "majority", "minority", "head class", "tail class"}
    labels |= {"D0", "D1", "D2", "D3", "float32 storage, float64 differences", "float32 throughout", "bfloat16 storage",
               "never mastered", "loss of a sample"}
    return labels


def test_the_registry_gives_every_course_label_one_colour():
    from ies.experiments.plotting import COLORS, GROUP_COLORS, color, style

    labels = course_labels()
    colours = {label: color(label, strict=True) for label in labels}  # total: no label falls through
    assert len(labels) > 40
    with pytest.raises(KeyError, match="no colour"):
        color("a label no figure draws", strict=True)
    assert all(color(label) == colours[label] for label in labels)  # the same in a second call
    # methods: one colour each, and the notebooks' names agree with the code names
    assert len(set(METHOD_COLORS.values())) == len(METHOD_COLORS)
    assert color("IES") == color("IES (paper)") == color("ies") == color("clean · IES")
    assert color("IES + cap") != color("IES") and style("IES + cap")["ls"] != style("IES")["ls"]
    assert color("loss < δ") == METHOD_COLORS["loss"] and color("random @ cap") == METHOD_COLORS["random"]
    # a group, a setting and a method never share a colour
    groups, settings = set(GROUP_COLORS.values()), set(OTHER_COLORS)
    assert not groups & set(METHOD_COLORS.values()) and not groups & settings
    assert len(groups) == len(GROUP_COLORS)
    ablations = [label for label, _, _ in notebook_literal("04_ablations", "SETTINGS")]
    variants = [label for label in ablations if label not in ("baseline", "IES (paper)", "loss < δ")]
    assert len({color(v) for v in variants}) == len(variants) and {color(v) for v in variants} <= settings
    assert color("random @ δ=1e-2") != color("random @ IES (paper)")  # both random controls of 04, one panel
    # a context sets the line style: the transformer is not a colour of its own
    assert color("transformer · IES") == color("CNN · IES") and style("transformer · IES")["ls"] == "--"
    assert set(COLORS) >= set(METHOD_COLORS)


def test_a_label_keeps_its_colour_in_every_panel_and_no_line_hides_another():
    from ies.experiments.plotting import color, mastered_curves

    table = summary().assign(label=lambda t: t["label"].replace({"N=1": "δ=1e-2"}))
    fig = ablation_panels(table, {"a": ["N=0", "δ=1e-2"], "b": ["δ=1e-2"], "c": ["IES (paper)", "δ=1e-2"]},
                          baseline="threshold=0")
    seen = {to_hex(c.lines[0].get_color()) for ax in fig.axes for c in ax.containers if c.get_label() == "δ=1e-2"}
    assert seen == {color("δ=1e-2")}
    plt.close(fig)
    rows = [{"label": label, "seed": seed, "epoch": e, "excluded_fraction": 0.01 * e}
            for label in ("IES (paper)", "random @ IES (paper)", "δ=1e-2") for seed in (0, 1) for e in range(1, 6)]
    fig = mastered_curves(pd.DataFrame(rows), {"one": ["IES (paper)", "random @ IES (paper)"],
                                               "two": ["δ=1e-2", "random @ IES (paper)", "IES (paper)"]}, ncols=2)
    for ax in fig.axes[:2]:
        lines = {ln.get_label(): ln for ln in ax.get_lines()}
        assert to_hex(lines["IES (paper)"].get_color()) == METHOD_COLORS["ies"]
        assert to_hex(lines["random @ IES (paper)"].get_color()) == METHOD_COLORS["random"]
        ies, rnd = lines["IES (paper)"], lines["random @ IES (paper)"]  # the same values: both must show
        assert rnd.get_linestyle() != ies.get_linestyle()
        assert (ies.get_linewidth() > rnd.get_linewidth()) == (ies.get_zorder() < rnd.get_zorder())
    plt.close(fig)


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


def test_the_hero_sample_has_three_long_phases():
    """Of two samples with one re-entry each, the one back in training for a single epoch loses to the one
    whose exclusion, training again and second exclusion all last; a loss of exactly 0 loses a tie."""
    import torch

    from ies.experiments.plotting import _hero_sample

    excluded = torch.zeros(3, 12, dtype=torch.bool)
    excluded[0, 2:11] = True
    excluded[0, 6] = False  # out 2-5, back for 1 epoch (6), out 7-10
    excluded[1, [3, 4, 5, 9, 10, 11]] = True  # out 3-5, back 6-8, out 9-11, but a loss underflowed to 0
    excluded[2, [3, 4, 5, 9, 10, 11]] = True  # the same phases
    reentry = excluded[:, :-1] & ~excluded[:, 1:]
    losses = torch.rand(3, 12, dtype=torch.float64) + 0.1
    losses[1, 7] = 0.0
    assert _hero_sample(losses, excluded, reentry) == 2
