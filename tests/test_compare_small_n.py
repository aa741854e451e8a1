"""The protocol where studies live (issue 20): few seeds, exact ties, configurations with fewer seeds
than others; each test fails on the defect it is named after."""

import itertools
import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from cnnbench import analysis
from cnnbench.analysis.compare import compare
from cnnbench.analysis.stat_tests import friedman_exact_p, holm, rank_biserial
from cnnbench.report import format as fmt
from cnnbench.report import tables

# 3 losses × 2 optimizers × 4 seeds; correct test images out of 10,000
FOUR_SEEDS = {
    "loss=categorical_crossentropy · optimizer=adam": [7912, 7885, 7930, 7871],
    "loss=categorical_crossentropy · optimizer=sgd": [6120, 5987, 6243, 6051],
    "loss=hinge · optimizer=adam": [7420, 7511, 7388, 7460],
    "loss=hinge · optimizer=sgd": [3410, 2890, 3655, 3120],
    "loss=mean_squared_error · optimizer=adam": [7702, 7689, 7745, 7650],
    "loss=mean_squared_error · optimizer=sgd": [861, 858, 866, 859],  # chance level
}


def _frame(table: dict, total: float = 10000) -> pd.DataFrame:
    return pd.DataFrame([{"config": c, "block": s, "value": v / total} for c, vs in table.items()
                         for s, v in enumerate(vs)])


def _long(table: np.ndarray, names) -> pd.DataFrame:
    return pd.DataFrame([{"config": n, "block": i, "value": table[i, j]}
                         for i in range(table.shape[0]) for j, n in enumerate(names)])


def test_four_seeds_separate_chance_level_from_the_best_by_the_paired_t_test():
    cmp = compare(_frame(FOUR_SEEDS), test="auto", block_name="seeds")
    t = cmp.ranking.set_index("config")
    best, chance = "loss=categorical_crossentropy · optimizer=adam", "loss=mean_squared_error · optimizer=sgd"
    assert cmp.best == best and cmp.decisive
    assert not t.loc[chance, "tied_with_best"] and t.loc[chance, "test_vs_best"] == "paired t-test"
    assert t.loc[chance, "p_holm_vs_best"] < 0.05
    assert "cannot separate" not in cmp.verdict and "significantly better than every other" in cmp.verdict
    # the t-test is scipy's paired t-test; the normality check scipy's Shapiro–Wilk on the differences
    pw = cmp.pairwise.set_index("b")
    x, y = np.array(FOUR_SEEDS[best]) / 1e4, np.array(FOUR_SEEDS[chance]) / 1e4
    assert pw.loc[chance, "p"] == pytest.approx(stats.ttest_rel(x, y).pvalue, rel=1e-9)
    assert pw.loc[chance, "statistic"] == pytest.approx(stats.ttest_rel(x, y).statistic, rel=1e-9)
    assert pw.loc[chance, "normality_p"] == pytest.approx(stats.shapiro(x - y).pvalue)
    # the signed-rank test alone cannot: 4 pairs give p ≥ 0.125
    wilcoxon = compare(_frame(FOUR_SEEDS), test="wilcoxon", block_name="seeds")
    assert not wilcoxon.decisive and "cannot separate anything" in wilcoxon.verdict


def test_the_study_compares_seeds_by_the_t_test_and_cells_by_the_signed_rank_test(tmp_path):
    from cnnbench import spec as study
    from cnnbench.store.db import Store

    toml = ('name = "four"\nseeds = [0, 1, 2, 3]\n[grid]\ndataset = ["digits", {name = "digits", limit_train = 500}]\n'
            'loss = ["categorical_crossentropy", "hinge", "mean_squared_error"]\noptimizer = ["adam", "sgd"]\n')
    s = study.parse_text(toml, source="test")
    store = Store.open(tmp_path / "s", s.name)
    store.add_runs(s.runs)
    for r in s.runs:
        name = f"loss={r.config['loss']['name']} · optimizer={r.config['optimizer']['name']}"
        acc = FOUR_SEEDS[name][r.seed] / 1e4 - (0.01 if "limit_train" in str(r.config["dataset"]) else 0)
        store.finish(r.key, "done", {"test_acc": acc, "test_loss": 1 - acc}, num_classes=10, seconds=1.0)
    store.close()
    sc = analysis.compare_study(tmp_path / "s")
    assert len(sc.cells) == 2
    for cell in sc.cells:
        t = cell.comparison.ranking.set_index("config")
        assert not t.loc["loss=mean_squared_error · optimizer=sgd", "tied_with_best"]
        assert cell.comparison.test == "auto" and cell.comparison.block_name == "seeds"
    assert sc.across.test == "wilcoxon" and sc.across.block_name == "datasets"
    # the per-dataset answers (4 seeds each) lead; across 2 datasets nothing is testable, and it says datasets
    assert sc.verdict.startswith("In dataset=") and "(significantly better than the rest)" in sc.verdict
    across = sc.verdict[sc.verdict.index("Across the 2 datasets"):]
    assert "only 2 paired datasets per configuration" in across and "p =" not in across


def test_where_the_differences_are_not_normal_the_wilcoxon_test_is_used_and_named():
    # one seed far off: Shapiro–Wilk rejects normal differences
    table = np.array([[0.90, 0.80], [0.91, 0.81], [0.92, 0.82], [0.93, 0.83], [0.94, 0.84], [0.95, 0.85],
                      [0.96, 0.86], [0.97, 0.37]])
    cmp = compare(_long(table, ["A", "B"]), test="auto")
    row = cmp.pairwise.iloc[0]
    assert row["normality_p"] == pytest.approx(stats.shapiro(table[:, 0] - table[:, 1]).pvalue)
    assert row["normality_p"] < 0.05 and row["test"].startswith("wilcoxon (exact)") and "Shapiro" in row["test"]
    assert row["p"] == pytest.approx(2 / 2**8)
    assert cmp.ranking["test_vs_best"].iloc[1] == row["test"]


def test_holm_caps_at_one():
    assert list(holm([0.4, 0.5, 0.6])) == [1.0, 1.0, 1.0]  # 3 · 0.4 = 1.2 without the cap
    cmp = compare(_long(np.array([[0.9, 0.89, 0.91, 0.895]] * 2 + [[0.9, 0.91, 0.89, 0.9]] * 4)
                        + np.linspace(0, 1e-3, 6)[:, None], list("ABCD")))
    assert cmp.pairwise["p_holm"].max() <= 1.0 and cmp.ranking["p_holm_vs_best"].max() <= 1.0


# A best and three configurations on 8 seeds, each ahead of the best in one seed (its third-smallest
# difference): exact Wilcoxon p = 2 · 5 / 256 = 0.039 each, which Holm lifts to 0.117.
_D = np.array([1, 2, -3, 4, 5, 6, 7, 8]) * 1e-3
_BASE = 0.9 + np.linspace(0, 0.01, 8)
NEAR = np.stack([_BASE, _BASE - _D, _BASE - 1.1 * _D, _BASE - 1.2 * _D], axis=1)


def test_tied_with_best_is_decided_on_the_holm_adjusted_p_and_that_p_is_the_one_shown():
    cmp = compare(_long(NEAR, list("ABCD")))
    t = cmp.ranking.set_index("config")
    assert cmp.best == "A"
    lifted = t[(t["p_raw_vs_best"] < 0.05) & (t["p_holm_vs_best"] >= 0.05)]
    assert len(lifted) >= 1  # the data do what the test needs
    assert lifted["tied_with_best"].all()  # raw p < α, adjusted p ≥ α: not significantly worse
    pw = cmp.pairwise.set_index("b")
    for name in ("B", "C", "D"):
        assert t.loc[name, "p_holm_vs_best"] == pw.loc[name, "p_holm"]
        assert t.loc[name, "p_raw_vs_best"] == pw.loc[name, "p"]
    shown = tables.ranking(cmp, _metric())
    column = shown.header.index("p vs best (Holm-adjusted)")
    for row, r in zip(shown.rows[1:], cmp.ranking.iloc[1:].itertuples()):
        assert row[column].text == fmt.p_value(r.p_holm_vs_best) != fmt.p_value(r.p_raw_vs_best)


def _metric():
    from cnnbench import metrics

    return metrics.get("test_acc")


def test_two_seeds_give_no_omnibus_p_value():
    table = np.array([[0.9, 0.8, 0.7, 0.6], [0.91, 0.82, 0.71, 0.5]])
    cmp = compare(_long(table, list("ABCD")), test="auto", block_name="seeds")
    assert cmp.friedman is None and cmp.critical_difference is None and cmp.nemenyi is None
    assert "p =" not in cmp.verdict and "p <" not in cmp.verdict and "χ²" not in cmp.verdict
    line = tables.friedman_line(cmp)
    assert "p =" not in line and "p <" not in line and line.startswith("Friedman test: none here")


def _brute_force_friedman_p(ranks: np.ndarray) -> float:
    """Every arrangement of every block's ranks (k!^N of them): the share whose Σ R_j² reaches the observed."""
    observed = (ranks.sum(axis=0) ** 2).sum()
    per_block = [list(itertools.permutations(row)) for row in ranks]
    hits = total = 0
    for arrangement in itertools.product(*per_block):
        total += 1
        hits += (np.sum(arrangement, axis=0) ** 2).sum() >= observed - 1e-9
    return hits / total


@pytest.mark.parametrize("k, n, seed", [(3, 4, 0), (3, 5, 1), (4, 3, 2), (4, 3, 3)])
def test_exact_friedman_p_equals_the_enumeration_of_every_arrangement(k, n, seed):
    rng = np.random.default_rng(seed)
    values = rng.integers(0, 3 if seed % 2 else 50, (n, k)).astype(float)  # odd seeds: many ties
    ranks = stats.rankdata(-values, axis=1)
    assert friedman_exact_p(ranks) == pytest.approx(_brute_force_friedman_p(ranks), abs=1e-12)
    cmp = compare(_long(values, [f"c{j}" for j in range(k)]))
    assert cmp.friedman["exact_p"] == pytest.approx(_brute_force_friedman_p(ranks), abs=1e-12)
    assert cmp.friedman["p"] == cmp.friedman["exact_p"] and cmp.friedman["method"].startswith("exact")


def test_three_seeds_quote_the_exact_friedman_p_not_the_f_approximation():
    table = np.array([[0.9, 0.8, 0.7, 0.6, 0.5], [0.91, 0.82, 0.71, 0.62, 0.5], [0.92, 0.81, 0.72, 0.61, 0.52]])
    cmp = compare(_long(table, list("ABCDE")), test="auto", block_name="seeds")
    exact = (1 / 120) ** 2  # the second and third seeds order the five as the first: 1 arrangement in 120 each
    assert cmp.friedman["exact_p"] == pytest.approx(exact)
    assert cmp.friedman["iman_davenport_p"] != pytest.approx(exact)
    assert f"exact p {'< 1e-4' if exact < 1e-4 else '= ' + format(exact, '.3g')}" in cmp.verdict
    assert "exact p" in tables.friedman_line(cmp)


def test_too_many_arrangements_fall_back_to_the_approximation_and_say_so():
    rng = np.random.default_rng(0)
    table = rng.normal(size=(12, 8))
    cmp = compare(_long(table, [f"c{j}" for j in range(8)]))
    assert math.isnan(cmp.friedman["exact_p"]) and cmp.friedman["p"] == cmp.friedman["iman_davenport_p"]
    assert "approximation" in cmp.verdict and "approximation" in tables.friedman_line(cmp)


def test_exact_ties_are_both_best_in_an_order_round_off_does_not_decide():
    correct = {"x": [6036, 6101, 5990, 6050], "y": [6036, 6101, 5990, 6050], "z": [5900, 5950, 5800, 5890],
               "w": [5000, 5100, 4950, 5020]}
    plain = _frame(correct, 8000)
    # the same counts through another float path: 1 ulp apart in some seeds
    perturbed = plain.copy()
    perturbed.loc[perturbed["config"] == "x", "value"] = [v / 8000 * (1 + 1e-16) for v in correct["x"]]
    results = []
    swapped = plain.assign(config=plain["config"].map({"x": "y", "y": "x"}).fillna(plain["config"]))
    for frame in (plain, perturbed, swapped):
        cmp = compare(frame, test="auto", block_name="seeds")
        results.append(cmp)
        assert cmp.best_group == ["x", "y"] and list(cmp.ranking["config"][:2]) == ["x", "y"]
        assert list(cmp.ranking["rank"][:2]) == [1, 1] and cmp.ranking["best"].tolist() == [True, True, False, False]
        assert "x and y, tied" in cmp.verdict
    holm_of = [c.pairwise.set_index("b")["p_holm"][["z", "w"]].tolist() for c in results]
    assert holm_of[0] == holm_of[1] == holm_of[2]
    shown = tables.ranking(results[0], _metric())
    assert [row[3].strong for row in shown.rows] == [True, True, False, False]


def test_rank_biserial_counts_zero_differences_as_the_test_does():
    # 8 seeds; two differ by 1 and 2 test images out of 8000, six are equal
    d = np.array([0, 0, 0, 0, 0, 0, 1, 2]) / 8000
    assert rank_biserial(d) == pytest.approx(15 / 36)  # R+ = 13 + 21/2, R− = 21/2: r = 0.42 (1.00 without zeros)
    table = np.stack([0.75 + d, np.full(8, 0.75)], axis=1)
    row = compare(_long(table, ["A", "B"])).pairwise.iloc[0]
    assert row["effect_size"] == pytest.approx(15 / 36)
    assert row["statistic"] == pytest.approx(stats.wilcoxon(d, zero_method="zsplit").statistic)


def test_pairs_all_with_a_rope():
    rng = np.random.default_rng(0)
    base = rng.normal(0.9, 0.01, 10)
    table = np.stack([base + 0.02, base + 0.02 + rng.normal(0, 1e-3, 10), base], axis=1)
    cmp = compare(_long(table, ["a", "b", "c"]), pairs="all", rope=0.01)
    assert len(cmp.pairwise) == 3 and cmp.pairwise["p_equivalent"].notna().all()
    assert "Practically equivalent to the best" in cmp.verdict


def test_fewer_seeds_for_some_configurations():
    """Racing: an eliminated configuration has fewer seeds. It is described on its own seeds, the mean ranks
    and the Friedman test use the complete seeds, each pairwise test the seeds its pair shares."""
    values = {"A": [0.9, 0.91, 0.92, 0.93, 0.94, 0.95], "B": [0.8, 0.82, 0.81, 0.83, 0.80, 0.82],
              "C": [0.5, 0.52, 0.51, math.nan, math.nan, math.nan]}
    frame = pd.DataFrame([{"config": c, "block": i, "value": v} for c, vs in values.items()
                          for i, v in enumerate(vs) if not math.isnan(v)])
    cmp = compare(frame, test="auto", block_name="seeds")
    t = cmp.ranking.set_index("config")
    assert list(t["n"]) == [6, 6, 3] and cmp.n_blocks == 3 and cmp.friedman["n"] == 3
    pw = cmp.pairwise.set_index("b")
    assert pw.loc["B", "n"] == 6 and pw.loc["C", "n"] == 3
    assert any("3 complete seeds" in n for n in cmp.notes)
    assert cmp.decisive and not t.loc["B", "tied_with_best"] and not t.loc["C", "tied_with_best"]
    # one stopped after 2 seeds: no test against it, the others still tested; no omnibus on 2 complete seeds
    values["D"] = [0.6, 0.61, math.nan, math.nan, math.nan, math.nan]
    frame = pd.DataFrame([{"config": c, "block": i, "value": v} for c, vs in values.items()
                          for i, v in enumerate(vs) if not math.isnan(v)])
    cmp = compare(frame, test="auto", block_name="seeds")
    t = cmp.ranking.set_index("config")
    assert cmp.friedman is None and cmp.decisive and math.isnan(t.loc["D", "p_holm_vs_best"])
    assert t.loc["B", "p_holm_vs_best"] < 0.05 and "Significantly worse" in cmp.verdict
    assert any(n.startswith("fewer than 3 seeds for D (2)") for n in cmp.notes)
    marks = {row[1].text: row[8].text for row in tables.ranking(cmp, _metric()).rows}
    assert marks["D"].startswith("not tested") and marks["B"] == "significantly worse"
