"""rliable's aggregates (Agarwal et al. 2021) across cells, against direct computation."""

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from cnnbench.analysis.aggregate import aggregates, iqm, probability_of_improvement


def _long(scores: dict) -> pd.DataFrame:
    return pd.DataFrame([{"config": c, "task": t, "value": v} for c, tasks in scores.items()
                         for t, values in tasks.items() for v in values])


SCORES = {"A": {"d1": [0.90, 0.92, 0.91, 0.50], "d2": [0.70, 0.72, 0.74, 0.73]},
          "B": {"d1": [0.85, 0.88, 0.86, 0.87], "d2": [0.71, 0.69, 0.70, 0.68]},
          "C": {"d1": [0.10, 0.12, 0.11, 0.13], "d2": [0.10, 0.11, 0.09, 0.10]}}


def test_iqm_is_the_mean_of_the_middle_half_of_the_pooled_runs():
    pooled = np.array(SCORES["A"]["d1"] + SCORES["A"]["d2"])
    middle = np.sort(pooled)[2:6]  # 8 runs: drop 2 at each end
    assert iqm(pooled) == pytest.approx(middle.mean()) == pytest.approx(stats.trim_mean(pooled, 0.25))
    agg = aggregates(_long(SCORES))
    t = agg.table.set_index("config")
    assert t.loc["A", "iqm"] == pytest.approx(middle.mean()) and t.loc["A", "mean"] == pytest.approx(pooled.mean())
    # B's middle half (0.70, 0.71, 0.85, 0.86) beats A's (0.72, 0.73, 0.74, 0.90): B first
    assert list(agg.table["config"]) == ["B", "A", "C"] and agg.tasks == ["d1", "d2"]
    for r in agg.table.itertuples():  # the intervals hold the estimates
        assert r.iqm_ci_low <= r.iqm <= r.iqm_ci_high and r.mean_ci_low <= r.mean <= r.mean_ci_high


def test_probability_of_improvement_by_hand():
    x, y = [np.array([1.0, 3.0]), np.array([2.0])], [np.array([2.0, 2.0]), np.array([2.0, 1.0])]
    # task 1: pairs (1,2) (1,2) (3,2) (3,2) -> 2/4; task 2: (2,2) tie = 0.5, (2,1) = 1 -> 0.75; mean 0.625
    assert probability_of_improvement(x, y) == pytest.approx(0.625)
    agg = aggregates(_long(SCORES))
    poi = agg.improvement.set_index("b")
    a = [np.array(SCORES["B"][t]) for t in ("d1", "d2")]
    assert set(agg.improvement["a"]) == {"B"}
    for other in ("A", "C"):
        b = [np.array(SCORES[other][t]) for t in ("d1", "d2")]
        u = np.mean([stats.mannwhitneyu(xa, yb).statistic / (len(xa) * len(yb)) for xa, yb in zip(a, b)])
        assert poi.loc[other, "p_improvement"] == pytest.approx(u)
        assert poi.loc[other, "ci_low"] <= poi.loc[other, "p_improvement"] <= poi.loc[other, "ci_high"]


def test_deterministic_and_direction_aware():
    first, again = aggregates(_long(SCORES)), aggregates(_long(SCORES))
    pd.testing.assert_frame_equal(first.table, again.table)
    pd.testing.assert_frame_equal(first.improvement, again.improvement)
    lower = aggregates(_long(SCORES), higher_is_better=False)
    assert list(lower.table["config"]) == ["C", "A", "B"]
    assert (lower.improvement["p_improvement"] > 0.5).all()  # lower is better: C beats the rest
    profile = first.profiles[first.profiles["config"] == "C"]
    assert profile["fraction"].is_monotonic_decreasing and profile["fraction"].iloc[0] > 0


def test_a_configuration_missing_a_task_is_left_out_and_one_task_gives_none():
    scores = {**SCORES, "D": {"d1": [0.5, 0.6]}}
    agg = aggregates(_long(scores))
    assert agg.left_out == ["D"] and "D" not in set(agg.table["config"])
    assert aggregates(_long({"A": {"d1": [0.1, 0.2]}, "B": {"d1": [0.3, 0.4]}})) is None
    two_runs = aggregates(_long({"A": {"d1": [0.1, 0.2], "d2": [0.3, 0.4]}, "B": {"d1": [0.3, 0.4], "d2": [0.5, 0.6]}}))
    assert two_runs.table[["iqm_ci_low", "mean_ci_low"]].isna().all().all()  # 2 runs per task: no interval
    assert two_runs.improvement[["ci_low", "ci_high"]].isna().all().all()
