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
    half = 100 * 4.302652729911275 * 0.01 / 3 ** 0.5  # t(0.975, 2) x the seeds' std 1 pt / sqrt(3)
    assert shown.loc[1, "best accuracy (%), 95 % interval"] == f"90.50 [{90.5 - half:.2f}, {90.5 + half:.2f}]"
    assert shown.loc[1, "FLOP-ideal speedup"] == "2.00x" and shown.loc[1, "compute saved (%)"] == "50.0 ± 0.0"


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


def test_verdict_rows_carry_the_interval_and_why():
    v = pr.budget_verdicts(runs()).set_index("claim")
    row = v.loc["ies beats infobatch"]  # best - infobatch = +2.5, +3.5, +4.5 pt over the 3 seeds at 2x
    assert row["seeds"] == 3 and row["effect"] == pytest.approx(3.5)
    half = 4.302652729911275 * 1.0 / 3 ** 0.5  # t(0.975, 2) x std 1 pt / sqrt(3)
    assert (row["low"], row["high"]) == (pytest.approx(3.5 - half), pytest.approx(3.5 + half))
    assert row["why"].startswith("the 95 % interval [+1.02, +5.98] pt over 3 seeds")
    # with num_test the spread is floored at the binomial noise: 100 test samples at 89 % give 3.1 pt > 1 pt
    floored = pr.budget_verdicts(runs().assign(num_test=100)).set_index("claim").loc["ies beats infobatch"]
    assert floored["high"] - floored["low"] > row["high"] - row["low"] and "binomial noise" in floored["why"]


def test_an_unreached_budget_says_why_and_warnings_follow_their_method():
    t = runs().assign(matched=lambda d: ~((d["method"] == "infobatch") & (d["budget"] == "2x")),
                      knob=lambda d: d["method"].map({"ies": 0.3, "infobatch": 0.9}),
                      warning=lambda d: (d["method"] == "ies").map({True: "ies: too high", False: ""}))
    v = pr.budget_verdicts(t).set_index(["budget", "claim"])
    why = v.loc[("2x", "infobatch reaches 2x"), "why"]
    assert why == ("its calibrated knob (0.9) saved 48.0 % of the compute over 3 seed(s), the budget needs 50.0 %: "
                   "short of it by more than the tolerance")
    assert v.loc[("2x", "ies within 1 pt of the baseline"), "warning"] == "ies: too high"
    assert v.loc[("2x", "infobatch reaches 2x"), "warning"] == ""


def test_convergence_compares_the_last_window_with_the_one_before():
    acc = {0: [0.5, 0.7, 0.8, 0.9, 0.9, 0.92], 1: [0.5, 0.6, 0.8, 0.8, 0.9, 0.9]}
    hist = pd.DataFrame([{"method": "baseline", "seed": s, "epoch": e + 1, "test_accuracy": a}
                         for s, curve in acc.items() for e, a in enumerate(curve)]
                        + [{"method": "ies", "seed": 0, "epoch": 1, "test_accuracy": 0.1}])
    c = pr.convergence(hist, window=2)
    assert c.plateau == pytest.approx((0.9 + 0.92 + 0.9 + 0.9) / 4)  # epochs 5-6
    assert c.earlier == pytest.approx((0.8 + 0.9 + 0.8 + 0.8) / 4)  # epochs 3-4
    assert c.best == pytest.approx((0.92 + 0.9) / 2) and c.share == pytest.approx(0.825 / 0.905)
    assert not c.converged and c.seeds == 2 and c.epochs == 6
    assert "91.2 % of the plateau" in c.sentence() and "WARNING" in c.sentence()
    flat = pr.convergence(hist, window=1)  # epoch 5 against epoch 6: 0.9 of 0.91
    assert flat.converged and "It has converged" in flat.sentence()
    with pytest.raises(ValueError, match="window 4 needs at least 8 epochs"):
        pr.convergence(hist, window=4)
    with pytest.raises(ValueError, match="baseline"):
        pr.convergence(hist[hist["method"] == "ies"])


def test_the_new_peers_settings_are_settings_only():
    t = pr.peers_2025_settings()
    assert t["method"].tolist() == ["seta", "orderdp", "pfb"]
    assert not t.columns.str.contains("accuracy").any() and t["source"].str.contains("PEERS_2025").all()
