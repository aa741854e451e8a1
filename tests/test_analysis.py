"""Statistics against values computed by hand."""

import math

import pandas as pd
import pytest
from scipy import stats

from cnnbench import analysis


def _frame(rows):
    base = {"current": True, "final": True, "tuning": False, "num_classes": 10, "key": None}
    df = pd.DataFrame([{**base, **r} for r in rows])
    df["key"] = [f"k{i}" for i in range(len(df))]
    return df


def test_configurations_mean_std_and_ci_by_hand():
    a, b = [0.90, 0.92, 0.94], [0.80, 0.85, 0.83]
    df = pd.DataFrame({"config": ["A"] * 3 + ["B"] * 3, "block": [0, 1, 2] * 2, "value": a + b})
    t = analysis.compare(df).ranking
    assert list(t["config"]) == ["A", "B"]
    assert t.loc[0, "mean"] == pytest.approx(0.92) and t.loc[0, "std"] == pytest.approx(0.02)
    half = stats.t.ppf(0.975, 2) * 0.02 / math.sqrt(3)
    assert t.loc[0, "ci_low"] == pytest.approx(0.92 - half) and t.loc[0, "ci_high"] == pytest.approx(0.92 + half)


def test_diverged_runs_count_at_chance_and_failed_runs_are_left_out():
    rows = [{"label": "A", "seed": 0, "status": "done", "test_acc": 0.99, "axis.loss": "A"},
            {"label": "A", "seed": 1, "status": "diverged", "test_acc": None, "axis.loss": "A"},
            {"label": "A", "seed": 2, "status": "diverged", "test_acc": None, "axis.loss": "A"},
            {"label": "B", "seed": 0, "status": "done", "test_acc": 0.90, "axis.loss": "B"},
            {"label": "B", "seed": 1, "status": "done", "test_acc": 0.91, "axis.loss": "B"},
            {"label": "B", "seed": 2, "status": "failed", "test_acc": None, "axis.loss": "B"}]
    df = _frame(rows)
    score = analysis.scored(df).tolist()
    assert score[:3] == [0.99, 0.1, 0.1] and score[3:5] == [0.90, 0.91] and math.isnan(score[5])
    # A's survivor alone would rank it first; at chance its two diverged seeds rank it last
    assert analysis.scored(df.assign(test_top5_acc=None), "test_top5_acc").tolist()[1] == 0.5  # 5 of 10 classes
    m = analysis.marginal_rankings(_frame(rows))["loss"]
    # seed 2 is an incomplete block (B failed): only seeds 0 and 1 are ranked
    assert list(m["loss"]) == ["B", "A"] and list(m["n"]) == [2, 2]
    assert list(m["mean_rank"]) == [1.5, 1.5]


def test_marginal_mean_rank_within_blocks():
    rows = []
    for seed in (0, 1):
        for opt, shift in (("adam", 0.0), ("sgd", -0.1)):
            for loss, base in (("ce", 0.9), ("mse", 0.8)):
                rows.append({"label": f"{loss}/{opt}", "seed": seed, "status": "done", "test_acc": base + shift,
                             "axis.loss": loss, "axis.optimizer": opt})
    m = analysis.marginal_rankings(_frame(rows))
    assert list(m["loss"]["loss"]) == ["ce", "mse"] and list(m["loss"]["mean_rank"]) == [1.0, 2.0]
    assert list(m["optimizer"]["optimizer"]) == ["adam", "sgd"]
    lower = analysis.marginal_rankings(_frame(rows).assign(test_loss=lambda d: 1 - d["test_acc"]), "test_loss")
    assert list(lower["loss"]["loss"]) == ["ce", "mse"] and list(lower["loss"]["mean_rank"]) == [1.0, 2.0]


def test_a_value_without_any_result_is_listed_last_and_the_others_still_ranked():
    rows = [{"label": loss, "seed": seed, "status": status, "test_acc": acc, "axis.loss": loss}
            for seed in (0, 1)
            for loss, status, acc in (("mse", "failed", None), ("mae", "done", 0.8 + seed / 100),
                                      ("kl", "done", 0.9))]
    m = analysis.marginal_rankings(_frame(rows))["loss"]
    assert list(m["loss"]) == ["kl", "mae", "mse"] and list(m["rank"]) == ["1", "2", "–"]
    assert list(m["n"]) == [2, 2, 0] and list(m["mean_rank"][:2]) == [1.0, 2.0]
    assert math.isnan(m["mean_rank"].iloc[2])


def test_no_ranked_run_yet_gives_no_tables():
    rows = [{"label": "A", "seed": 0, "status": "failed", "test_acc": None, "axis.loss": "A", "final": False,
             "tuning": True}]
    assert analysis.marginal_rankings(_frame(rows)) == {}
