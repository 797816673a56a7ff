"""Notebook 07's analysis on a hand-made run table."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from ies.experiments import peers_report as pr  # noqa: E402


def runs():
    rows = []
    for seed, (base_acc, base_wall) in enumerate([(0.90, 100.0), (0.92, 120.0), (0.91, 110.0)]):
        rows.append(("baseline", "-", seed, base_acc, 0.0, base_wall))
        rows.append(("ies", "2x", seed, base_acc - 0.005, 0.50, base_wall * 0.6))
        rows.append(("infobatch", "2x", seed, base_acc - 0.03 - 0.01 * seed, 0.48, base_wall * 0.5))
        rows.append(("ies", "1.5x", seed, base_acc, 1 / 3, base_wall * 0.8))
    cols = ["method", "budget", "seed", "best_test_accuracy", "compute_saving", "wall_time_s"]
    return pd.DataFrame(rows, columns=cols).assign(target_saving=lambda d: d["budget"].map({"2x": 0.5, "1.5x": 1 / 3}))


def test_summary_pairs_wall_clock_by_seed():
    s = pr.budget_table(runs()).set_index(["budget", "method"])
    assert s.loc[("2x", "ies"), "wall_ratio_mean"] == pytest.approx(0.6)
    assert s.loc[("2x", "ies"), "wall_ratio_std"] == pytest.approx(0.0, abs=1e-12)
    assert s.loc[("2x", "infobatch"), "acc_mean"] == pytest.approx((0.87 + 0.88 + 0.86) / 3)
    assert s.loc[("2x", "infobatch"), "acc_std"] == pytest.approx(0.01)
    assert s.loc[("2x", "ies"), "ideal_speedup"] == pytest.approx(2.0)
    assert s.loc[("-", "baseline"), "n"] == 3 and s.loc[("-", "baseline"), "wall_ratio_mean"] == 1.0
    shown = pr.display_table(pr.budget_table(runs()))
    assert shown.loc[1, "best accuracy (%)"] == "90.50 ± 1.00" and shown.loc[1, "FLOP-ideal speedup"] == "2.00x"


def test_verdicts_name_the_best_method_per_budget():
    v = pr.budget_verdicts(runs())
    two = v[v["budget"] == "2x"].set_index("claim")["verdict"]
    assert two["ies beats infobatch"] == "supported"  # +3, +4, +5 pt over 3 seeds
    assert two["ies within 1 pt of the baseline"] == "supported"  # exactly -0.5 pt each seed
    assert two["infobatch within 1 pt of the baseline"] == "not supported"
    one = v[v["budget"] == "1.5x"]
    assert one["claim"].tolist() == ["ies within 1 pt of the baseline"]  # the only method there
    assert one["verdict"].tolist() == ["supported"]  # identical to the baseline every seed


def test_paper_tables_keep_their_settings():
    t4 = pr.paper_table4()
    assert len(t4) == 22 and not t4["method"].str.contains("InfoBatch", case=False).any()
    ies2 = t4[(t4["method"] == "IES") & (t4["speedup"] == "~2x")].set_index("data")["best_accuracy"]
    assert ies2.to_dict() == {"CIFAR-10": 93.7, "CIFAR-100": 74.9}
    assert t4["source"].str.contains("100 epochs, 3 runs").all()
    f5 = pr.paper_fig5()
    assert set(f5["method"]) == {"random", "small_loss_rescale", "ies"}
    assert f5["source"].str.contains("read off the plot").all()
    assert pr.paper_fig7()["wall_time_s"].tolist() == [1197, 1445, 1220, 1623]
    assert pr.independent_runs()["source"].str.contains("not the paper").all()


def test_figures_have_one_panel_per_budget():
    fig = pr.plot_accuracy_vs_saving(runs())
    assert [ax.get_title() for ax in fig.axes] == ["budget 2x", "budget 1.5x"]
    fig2 = pr.plot_wall_vs_saving(runs())
    hist = pd.DataFrame({"method": ["baseline", "baseline", "ies", "ies"], "budget": ["-", "-", "2x", "2x"],
                         "seed": 0, "epoch": [1, 2, 1, 2], "forward_samples": [10, 10, 10, 10],
                         "backprop_samples": [10, 10, 10, 4]})
    fig3 = pr.plot_counts(hist, "2x")
    assert len(fig3.axes[1].lines) == 2
    for f in (fig, fig2, fig3):
        plt.close(f)


def test_a_method_that_missed_the_budget_is_not_compared():
    t = runs().assign(matched=lambda d: ~((d["method"] == "infobatch") & (d["budget"] == "2x")))
    v = pr.budget_verdicts(t)
    two = v[v["budget"] == "2x"].set_index("claim")
    assert two.loc["infobatch reaches 2x", "verdict"] == pr.UNREACHED
    assert two.loc["infobatch reaches 2x", "difference"] == "saved 48.0 % (target 50.0 %)"
    assert not two.index.str.contains("beats").any()  # ies is the only method left at 2x
