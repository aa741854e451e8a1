"""The comparison protocol against published numbers and independent computations.

Demšar (2006), "Statistical comparisons of classifiers over multiple data sets", JMLR 7: Table 6 gives
the AUC of four C4.5 variants on 14 data sets; section 3.2.4 works the Friedman test, the Iman–Davenport
statistic and the Nemenyi critical difference on it. Two of the mean ranks printed there (2.893 and
1.964) differ from those of the table itself (2.929 and 1.929) in the third decimal; the paper's χ²_F =
9.28 and F_F = 3.69 follow from the printed ranks, so the tests check the formula on the printed ranks
and the table's own ranks against the table.
"""

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from cnnbench import analysis
from cnnbench.analysis.compare import compare
from cnnbench.analysis.stat_tests import holm, min_wilcoxon_p
from cnnbench.errors import UserError

DEMSAR_NAMES = ["C4.5", "C4.5+m", "C4.5+cf", "C4.5+m+cf"]
DEMSAR_AUC = np.array([
    [0.763, 0.768, 0.771, 0.798], [0.599, 0.591, 0.590, 0.569], [0.954, 0.971, 0.968, 0.967],
    [0.628, 0.661, 0.654, 0.657], [0.882, 0.888, 0.886, 0.898], [0.936, 0.931, 0.916, 0.931],
    [0.661, 0.668, 0.609, 0.685], [0.583, 0.583, 0.563, 0.625], [0.775, 0.838, 0.866, 0.875],
    [1.000, 1.000, 1.000, 1.000], [0.940, 0.962, 0.965, 0.962], [0.619, 0.666, 0.614, 0.669],
    [0.972, 0.981, 0.975, 0.975], [0.957, 0.978, 0.946, 0.970]])


def _long(table: np.ndarray, names) -> pd.DataFrame:
    return pd.DataFrame([{"config": n, "block": i, "value": table[i, j]}
                         for i in range(table.shape[0]) for j, n in enumerate(names)])


@pytest.fixture(scope="module")
def demsar():
    return compare(_long(DEMSAR_AUC, DEMSAR_NAMES), pairs="all")


def test_demsar_mean_ranks_from_the_table(demsar):
    ranks = demsar.ranking.set_index("config")["mean_rank"]
    assert ranks["C4.5"] == pytest.approx(44 / 14) and round(ranks["C4.5"], 3) == 3.143
    assert ranks["C4.5+m"] == pytest.approx(2.000)
    assert round(ranks["C4.5+cf"], 3) == 2.929 and round(ranks["C4.5+m+cf"], 3) == 1.929
    # independently: scipy's rankdata per row, best = rank 1
    expected = stats.rankdata(-DEMSAR_AUC, axis=1).mean(axis=0)
    assert list(ranks[DEMSAR_NAMES]) == pytest.approx(list(expected))


def test_demsar_friedman_and_iman_davenport(demsar):
    f = demsar.friedman
    assert f["k"] == 4 and f["n"] == 14
    assert f["statistic"] == pytest.approx(9.857, abs=1e-3)
    assert f["iman_davenport_f"] == pytest.approx(3.987, abs=1e-3)
    # The paper's own figures follow from its printed ranks with the same formulas.
    printed = np.array([3.143, 2.000, 2.893, 1.964])
    chi2 = 12 * 14 / (4 * 5) * (np.sum(printed**2) - 4 * 25 / 4)
    assert round(chi2, 2) == 9.28 and round(13 * chi2 / (14 * 3 - chi2), 2) == 3.69
    # scipy's Friedman statistic is the same one divided by the tie correction 1 - Σ(t³-t)/(N(k³-k))
    ties = sum(((c := np.unique(row, return_counts=True)[1]) ** 3 - c).sum() for row in DEMSAR_AUC)
    scipy_chi2 = stats.friedmanchisquare(*DEMSAR_AUC.T).statistic
    assert f["statistic"] / (1 - ties / (14 * (4**3 - 4))) == pytest.approx(scipy_chi2)
    assert f["pvalue"] == pytest.approx(stats.chi2.sf(f["statistic"], 3))
    assert f["iman_davenport_p"] == pytest.approx(stats.f.sf(f["iman_davenport_f"], 3, 39))
    assert f["iman_davenport_p"] < 0.05  # Demšar: the null hypothesis is rejected


def test_friedman_equals_scipy_without_ties():
    rng = np.random.default_rng(1)
    table = rng.normal(size=(9, 5)) + np.arange(5) * 0.3
    cmp = compare(_long(table, list("ABCDE")))
    assert cmp.friedman["statistic"] == pytest.approx(stats.friedmanchisquare(*table.T).statistic)
    assert cmp.friedman["pvalue"] == pytest.approx(stats.friedmanchisquare(*table.T).pvalue)


def test_demsar_nemenyi_critical_difference(demsar):
    assert demsar.critical_difference == pytest.approx(1.25, abs=5e-3)  # Demšar, section 3.2.4
    # q_0.05 of Demšar's Table 5(a), truncated to three decimals there
    for k, q in {2: 1.960, 3: 2.343, 4: 2.569, 5: 2.728, 6: 2.850, 10: 3.164}.items():
        table = np.tile(np.arange(k, dtype=float), (14, 1)) + np.linspace(0, 0.1, 14)[:, None]
        cmp = compare(_long(table, [f"c{i}" for i in range(k)]))
        if k >= 3:
            assert cmp.critical_difference / math.sqrt(k * (k + 1) / (6 * 14)) == pytest.approx(q, abs=1e-3)
    # the post-hoc p-values are scikit-posthocs' Nemenyi test on the same blocks
    import scikit_posthocs as sp
    ref = sp.posthoc_nemenyi_friedman(DEMSAR_AUC)
    assert demsar.nemenyi.loc[DEMSAR_NAMES, DEMSAR_NAMES].to_numpy() == pytest.approx(ref.to_numpy())


def test_pairwise_wilcoxon_holm_against_scipy_and_statsmodels(demsar):
    from statsmodels.stats.multitest import multipletests

    pw = demsar.pairwise
    assert len(pw) == 6  # all pairs
    for r in pw.itertuples():
        a, b = DEMSAR_AUC[:, DEMSAR_NAMES.index(r.a)], DEMSAR_AUC[:, DEMSAR_NAMES.index(r.b)]
        assert r.p == pytest.approx(_sign_flip_p(a - b))
        assert r.mean_diff == pytest.approx((a - b).mean())
        half = stats.t.ppf(0.975, 13) * (a - b).std(ddof=1) / math.sqrt(14)
        assert (r.diff_ci_low, r.diff_ci_high) == pytest.approx(((a - b).mean() - half, (a - b).mean() + half))
    assert list(pw["p_holm"]) == pytest.approx(list(multipletests(pw["p"], method="holm")[1]))
    # Demšar 3.1.3: C4.5+m beats C4.5 by the Wilcoxon test (T = 12 with the zero differences split,
    # p < 0.05), before correction
    row = pw[(pw["a"] == "C4.5+m") & (pw["b"] == "C4.5")].iloc[0]
    assert row.statistic == 12 and row.p < 0.05


def _sign_flip_p(d):
    """The exact two-sided p of the zsplit signed-rank statistic, by brute force over sign flips."""
    import itertools

    ranks = stats.rankdata(np.abs(d))
    zero = ranks[d == 0].sum() / 2
    observed = ranks[d > 0].sum() + zero
    centre = ranks.sum() / 2
    nz = ranks[d != 0]
    hits = [abs(sum(r for r, s in zip(nz, signs) if s) + zero - centre) >= abs(observed - centre) - 1e-9
            for signs in itertools.product([0, 1], repeat=len(nz))]
    return np.mean(hits)


def test_exact_wilcoxon_equals_scipy_without_zeros_and_brute_force_with_them():
    from cnnbench.analysis.stat_tests import wilcoxon_zsplit

    rng = np.random.default_rng(3)
    for n in (3, 6, 9, 12):
        d = rng.normal(0.3, 1, n)
        t, p, how = wilcoxon_zsplit(d)
        ref = stats.wilcoxon(d, method="exact")
        assert (t, p, how) == (pytest.approx(ref.statistic), pytest.approx(ref.pvalue), "wilcoxon (exact)")
    d = np.array([0.0, 0.0, 0.01, 0.02, 0.02, -0.01, 0.03, 0.04])  # zeros and ties
    assert wilcoxon_zsplit(d)[1] == pytest.approx(_sign_flip_p(d))
    assert wilcoxon_zsplit(d)[0] == pytest.approx(stats.wilcoxon(d, zero_method="zsplit").statistic)


def test_holm_by_hand():
    assert list(holm([0.01, 0.04, 0.03])) == pytest.approx([0.03, 0.06, 0.06])
    out = holm([0.5, math.nan, 0.01])
    assert out[2] == pytest.approx(0.02) and out[0] == pytest.approx(0.5) and math.isnan(out[1])


def test_rank_biserial_effect_size_by_hand():
    # differences a - b: +1, +2, +3, -4, +5 -> ranks of |d| 1..5; R+ = 11, R- = 4 -> r = 7/15
    df = _long(np.array([[1, 0], [2, 0], [3, 0], [0, 4], [5, 0]], float), ["A", "B"])
    pw = compare(df).pairwise.iloc[0]
    assert pw["a"] == "A" and pw["effect_size"] == pytest.approx(7 / 15)
    assert pw["p"] == pytest.approx(stats.wilcoxon([1, 2, 3, 0, 5], [0, 0, 0, 4, 0]).pvalue)


def test_lower_is_better_ranks_the_smallest_first():
    table = np.array([[0.3, 0.5, 0.9], [0.2, 0.6, 0.8], [0.25, 0.55, 0.7], [0.3, 0.7, 0.9]])
    cmp = compare(_long(table, ["low", "mid", "high"]), higher_is_better=False)
    assert list(cmp.ranking["config"]) == ["low", "mid", "high"]
    assert list(cmp.ranking["mean_rank"]) == [1.0, 2.0, 3.0]
    assert (cmp.pairwise["effect_size"] > 0).all()  # > 0: the first-named (the best) is better
    bayes = compare(_long(table, ["low", "mid", "high"]), higher_is_better=False, rope=0.01).pairwise
    assert (bayes["p_a_better"] > 0.9).all() and (bayes["p_b_better"] < 0.05).all()


def test_two_blocks_give_no_interval_and_no_p_value():
    cmp = compare(_long(DEMSAR_AUC[:2], DEMSAR_NAMES))
    assert cmp.ranking["ci_low"].isna().all() and cmp.ranking["p_holm_vs_best"].isna().all()
    assert cmp.pairwise["p"].isna().all() and not cmp.testable
    assert cmp.ranking["tied_with_best"].all() and not cmp.decisive  # nothing can be told apart
    assert "only 2 paired blocks" in " ".join(cmp.notes)
    assert "No pairwise test is possible" in cmp.verdict and "p =" not in cmp.verdict


def test_a_sample_too_small_to_reach_significance_says_how_many_seeds_are_needed():
    # every seed puts A far ahead, but 5 pairs cannot give p < 0.0625 (then x3 by Holm)
    table = np.array([[0.9, 0.5, 0.4, 0.3]] * 5) + np.linspace(0, 0.01, 5)[:, None] * [1, 2, 3, 4]
    cmp = compare(_long(table, list("ABCD")))
    assert min_wilcoxon_p(5) == pytest.approx(0.0625)
    assert not cmp.pairwise["significant"].any() and not cmp.decisive  # a tie says nothing here
    note = " ".join(cmp.notes)
    assert "cannot give p < 0.188" in note and "at least 7 blocks" in note  # 2/2^7 * 3 = 0.047 < 0.05
    assert "cannot separate anything from the best" in cmp.verdict


def test_the_verdict_names_the_best_the_tied_and_the_worse():
    rng = np.random.default_rng(0)
    base = rng.normal(0.9, 0.01, 12)
    table = np.stack([base + 0.0201, base + 0.02 + rng.normal(0, 1e-3, 12), base], axis=1)
    cmp = compare(_long(table, ["best", "twin", "worse"]), rope=0.005)
    t = cmp.ranking.set_index("config")
    assert cmp.best == "best" and t.loc["twin", "tied_with_best"] and not t.loc["worse", "tied_with_best"]
    assert cmp.decisive
    assert "Best by highest mean value: best" in cmp.verdict
    assert "Not distinguishable from it (Wilcoxon signed-rank, Holm-corrected, α = 0.05): twin." in cmp.verdict
    assert "Significantly worse: worse." in cmp.verdict
    vs = cmp.pairwise.set_index("b")
    assert vs.loc["twin", "p_equivalent"] > 0.95 and vs.loc["worse", "p_a_better"] > 0.95
    assert vs[["p_a_better", "p_equivalent", "p_b_better"]].sum(axis=1).to_numpy() == pytest.approx(1.0)
    assert "Practically equivalent to the best" in cmp.verdict


def test_identical_configurations_are_not_different():
    table = np.array([[0.9, 0.9, 0.8], [0.91, 0.91, 0.82], [0.92, 0.92, 0.81], [0.93, 0.93, 0.8]])
    cmp = compare(_long(table, ["a", "b", "c"]), pairs="all")
    pw = cmp.pairwise.set_index(["a", "b"])
    # equal in every block: an exact tie for best, no test made (and none counted by Holm)
    assert cmp.best_group == ["a", "b"] and list(cmp.ranking["rank"]) == [1, 1, 3]
    assert math.isnan(pw.loc[("a", "b"), "p"]) and pw.loc[("a", "b"), "mean_diff"] == 0.0
    assert pw.loc[("a", "b"), "test"].startswith("none (equal values")
    assert pw.loc[("a", "c"), "p_holm"] == pytest.approx(min(1, 2 * pw.loc[("a", "c"), "p"]))


# --- compare_study on stores written without training -------------------------------------------------


def _store(tmp_path, name, toml, values, *, history=None):
    """A study directory whose runs finished with `values(run) -> test_acc` (no training)."""
    from cnnbench import spec as study
    from cnnbench.store.db import Store

    s = study.parse_text(toml, source="test")
    d = tmp_path / name
    store = Store.open(d, s.name)
    store.add_runs(s.runs)
    for r in s.runs:
        if history:
            for e, logs in enumerate(history(r)):
                store.record_epoch(r.key, e, logs)
        acc = values(r)
        store.finish(r.key, "done", {"test_acc": acc, "test_loss": 1 - acc}, num_classes=10, seconds=1.0)
    store.close()
    return d, s


LOSSES = """
name = "cmp"
seeds = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]
[grid]
loss = ["categorical_crossentropy", "kl_divergence", "mean_squared_error"]
optimizer = ["adam", "sgd"]
"""


def _acc(r):
    loss, opt, seed = r.config["loss"]["name"], r.config["optimizer"]["name"], r.seed
    base = {"categorical_crossentropy": 0.95, "kl_divergence": 0.95, "mean_squared_error": 0.90}[loss]
    twin = (1.5e-4 if seed % 2 else -1e-4) if loss == "kl_divergence" else 0.0  # round-off, either way
    return base - (0.1 if opt == "sgd" else 0.0) + 0.001 * ((seed * 7) % 5) + twin


def test_compare_study_one_cell_seeds_as_blocks(tmp_path):
    d, _s = _store(tmp_path, "a", LOSSES, _acc)
    sc = analysis.compare_study(d)
    assert sc.metric.name == "test_acc" and len(sc.cells) == 1 and sc.across is None
    cmp = sc.cells[0].comparison
    assert cmp.n_blocks == 10 and len(cmp.ranking) == 6
    assert cmp.best == "loss=kl_divergence · optimizer=adam"
    tied = set(cmp.ranking.loc[cmp.ranking["tied_with_best"].astype(bool), "config"])
    assert tied == {"loss=kl_divergence · optimizer=adam", "loss=categorical_crossentropy · optimizer=adam"}
    assert any("same loss on one-hot labels" in n for n in cmp.notes)
    assert sc.verdict.startswith("Best by highest mean test accuracy: loss=kl_divergence · optimizer=adam (95.")


def test_compare_study_lower_is_better_metric(tmp_path):
    d, _ = _store(tmp_path, "a", LOSSES, _acc)
    sc = analysis.compare_study(d, metric="test_loss")
    assert not sc.metric.higher_is_better and "lowest" in sc.verdict
    assert sc.cells[0].comparison.best == "loss=kl_divergence · optimizer=adam"
    with pytest.raises(UserError, match="unknown metric 'test_accuracy'"):
        analysis.compare_study(d, metric="test_accuracy")
    with pytest.raises(UserError, match="no run of this study has 'test_nll'"):
        analysis.compare_study(d, metric="test_nll")


def test_compare_study_cells_and_across_cells(tmp_path):
    d, _ = _store(tmp_path, "a", LOSSES, _acc)
    sc = analysis.compare_study(d, cells=["optimizer"])
    assert [c.name for c in sc.cells] == ["optimizer=adam", "optimizer=sgd"]
    assert sc.across is not None and sc.across.n_blocks == 2
    # across cells a configuration is its mean over seeds in each cell
    per_cell = {c.name: c.comparison.ranking.set_index("config")["mean"] for c in sc.cells}
    mse = sc.across.ranking.set_index("config").loc["loss=mean_squared_error", "mean"]
    assert mse == pytest.approx((per_cell["optimizer=adam"]["loss=mean_squared_error"]
                                 + per_cell["optimizer=sgd"]["loss=mean_squared_error"]) / 2)
    assert sc.across.ranking["ci_low"].isna().all()  # 2 cells: no interval
    # the per-cell answers (10 seeds each) lead; across cells there are 2 blocks, nothing testable
    assert sc.verdict.startswith("In optimizer=adam: best ") and "Across the 2 cells (optimizer):" in sc.verdict
    assert sc.verdict.index("In optimizer=sgd") < sc.verdict.index("Across the 2 cells")
    assert "only 2 paired cells per configuration" in sc.verdict and "seed" not in sc.verdict.split("blocks):")[1]
    table = analysis.cell_table(sc, "loss", "optimizer")
    assert table.loc["mean_squared_error", "sgd"] == pytest.approx(per_cell["optimizer=sgd"]["loss=mean_squared_error"])


def test_several_stores_are_one_study_and_conflicts_are_reported(tmp_path):
    import sqlite3

    one, s = _store(tmp_path, "one", LOSSES, _acc)
    split_a, _ = _store(tmp_path, "a", LOSSES, _acc)
    split_b, _ = _store(tmp_path, "b", LOSSES, _acc)
    # machine A finished the even seeds, machine B the odd ones
    for d, parity in ((split_a, 1), (split_b, 0)):
        con = sqlite3.connect(d / "study.db")
        keys = [r.key for r in s.runs if r.seed % 2 == parity]
        con.executemany("UPDATE runs SET status='pending', test_acc=NULL WHERE key=?", [(k,) for k in keys])
        con.commit()
        con.close()
    whole, split = analysis.compare_study(one), analysis.compare_study([split_a, split_b])
    pd.testing.assert_frame_equal(whole.cells[0].comparison.ranking, split.cells[0].comparison.ranking)
    assert split.conflicts.empty and len(split.runs) == len(s.runs)

    con = sqlite3.connect(split_b / "study.db")  # the same run key finished with another result
    key = s.runs[0].key
    con.execute("UPDATE runs SET status='done', test_acc=0.5 WHERE key=?", (key,))
    con.commit()
    con.close()
    conflicted = analysis.compare_study([split_a, split_b])
    assert list(conflicted.conflicts["key"]) == [key] and key not in set(conflicted.runs["key"])
    assert any("different results" in n for n in conflicted.notes)


def test_time_to_target_from_the_history(tmp_path):
    toml = 'name = "t"\nseeds = [0, 1, 2]\n[grid]\noptimizer = ["adam", "sgd"]\n'

    def history(r):
        rise = 0.2 if r.config["optimizer"]["name"] == "adam" else 0.1
        return [{"loss": 1.0, "accuracy": 0.5, "val_loss": 1.0, "val_accuracy": min(0.5 + rise * e, 1.0),
                 "seconds": 2.0} for e in range(4)]

    d, _ = _store(tmp_path, "t", toml, lambda r: 0.9, history=history)
    sc = analysis.compare_study(d, metric="epochs_to_target", target_accuracy=0.85)
    runs = sc.runs.set_index("label")
    assert set(runs.loc["optimizer=adam", "epochs_to_target"]) == {3.0}  # 0.5, 0.7, 0.9: third epoch
    assert set(runs.loc["optimizer=adam", "seconds_to_target"]) == {6.0}
    assert runs.loc["optimizer=sgd", "epochs_to_target"].isna().all()  # 0.5 ... 0.8 never reaches it
    assert sc.cells[0].comparison.best == "optimizer=adam"


def test_analysis_only_reads_the_store_even_an_old_one(tmp_path):
    import hashlib
    import sqlite3

    d, _ = _store(tmp_path, "old", LOSSES, _acc)
    con = sqlite3.connect(d / "study.db")  # a store from before the calibration metrics existed
    con.execute("PRAGMA journal_mode=DELETE")
    for column in ("test_nll", "test_ece", "val_nll"):
        con.execute(f"ALTER TABLE runs DROP COLUMN {column}")
    con.commit()
    con.close()
    before = hashlib.sha256((d / "study.db").read_bytes()).hexdigest()
    sc = analysis.compare_study(d)
    assert sc.cells[0].comparison.best == "loss=kl_divergence · optimizer=adam"
    assert sc.runs["test_nll"].isna().all()  # read as missing, not added to the file
    assert hashlib.sha256((d / "study.db").read_bytes()).hexdigest() == before


def test_hinge_and_mean_absolute_error_are_one_loss_on_probabilities():
    """Why they are flagged as one loss: on softmax outputs with one-hot labels, hinge − MAE = (K−1)/K for
    every sample, so the gradients with respect to the logits are the same (as the reproduction log saw:
    identical runs, seed by seed)."""
    import pandas as pd
    import torch

    from cnnbench import losses
    from cnnbench.analysis.evidence import _equivalence_notes

    k = 10
    logits = torch.randn(64, k, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    labels = torch.randint(0, k, (64,), generator=torch.Generator().manual_seed(1))
    grads, values = [], []
    for name in ("hinge", "mean_absolute_error"):
        z = logits.clone().requires_grad_(True)
        value = losses.adapt(losses.get(name), k)(z, labels)
        value.backward()
        grads.append(z.grad)
        values.append(float(value.detach()))
    assert values[0] - values[1] == pytest.approx((k - 1) / k, abs=1e-12)
    torch.testing.assert_close(grads[0], grads[1], rtol=0, atol=1e-15)

    notes = _equivalence_notes(pd.DataFrame({"config.loss.name": ["hinge", "mean_absolute_error", "hinge"]}))
    assert len(notes) == 1 and notes[0].startswith("hinge and mean_absolute_error differ by a constant")
    assert _equivalence_notes(pd.DataFrame({"config.loss.name": ["hinge", "squared_hinge"]})) == []
