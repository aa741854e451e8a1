"""The statistical protocol: which configurations are best, which differences are real, how large.

`compare(frame)` takes results in long form — one row per (configuration, block) with a value — where
a *block* is a paired unit: within one dataset and model, the seeds (runs with the same seed share
their data order and initial weights); across datasets, the datasets (each configuration scored by its
mean over seeds). It follows Demšar (2006) for the omnibus test and the critical difference, and
Benavoli et al. (2016) for the pairwise tests:

- **Ranking**: mean, std, a 95% t-interval of the mean (only from 3 blocks on), and the mean rank
  within blocks (rank 1 = best; ties share the average rank). Rank-based statistics use the blocks
  in which every configuration has a value. The order is by mean rounded to 12 significant digits,
  then by name, so round-off never decides it; configurations with equal values in every block are
  an exact tie (`best` is true for every one tied with the top).
- **Omnibus** (from 3 configurations and 3 complete blocks; none below): Friedman's χ²_F = 12N / (k(k+1))
  · (Σ R_j² − k(k+1)²/4) on the mean ranks R_j (Demšar's eq., without scipy's tie correction) and
  Iman & Davenport's F_F = (N−1) χ²_F / (N(k−1) − χ²_F). Its p-value is exact where the arrangements
  of the ranks within blocks can be counted (`friedman_exact_p`; k ≤ 7 and small N), else F_F's
  F-approximation, and the verdict says which.
- **Critical difference** (Nemenyi): CD = q_α √(k(k+1) / (6N)), q_α the studentized range quantile / √2.
- **Pairwise**: each configuration against the best (or all pairs) on the blocks the two share.
  `test="wilcoxon"`: the Wilcoxon signed-rank test (zero differences split between the signs as Demšar
  recommends; exact p-value by enumerating the sign flips up to 16 non-zero differences).
  `test="auto"` (seeds of one experiment): the paired t-test, unless Shapiro–Wilk rejects normality
  of the paired differences at α / m, then the Wilcoxon test (autorank's rule). Holm's step-down
  correction over the comparisons actually made; the mean paired difference with its 95% t-interval and
  the matched-pairs rank-biserial correlation (zeros counted as the test counts them) as effect sizes;
  with a ROPE, the Bayesian signed-rank test (Benavoli et al. 2014, baycomp): P(a better),
  P(practically equivalent), P(b better).

Honest small samples: below 3 blocks there is no interval and no p-value (the table says why), and a
note says when the exact Wilcoxon test cannot reach significance at all (2 / 2^N ≥ α / m).
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd

from .comparison import Comparison
from .stat_tests import (
    T_TEST,
    friedman_exact_p,
    holm,
    min_wilcoxon_p,
    rank_biserial,
    stats,
    wilcoxon_zsplit,
)
from .verdict import verdict

MIN_BLOCKS = 3  # fewer paired blocks support no interval and no test


RANKING_COLUMNS = ["rank", "config", "n", "mean", "std", "ci_low", "ci_high", "mean_rank", "best", "tied_with_best",
                   "p_holm_vs_best", "p_raw_vs_best", "test_vs_best", "can_reject_vs_best", "effect_vs_best"]
PAIRWISE_COLUMNS = ["a", "b", "n", "test", "normality_p", "statistic", "p", "p_holm", "significant", "can_reject",
                    "mean_diff", "diff_ci_low", "diff_ci_high", "effect_size"]
BAYES_COLUMNS = ["p_a_better", "p_equivalent", "p_b_better"]
TESTS = ("wilcoxon", "auto")


def compare(frame: pd.DataFrame, config: str = "config", block: str = "block", value: str = "value", *,
            higher_is_better: bool = True, alpha: float = 0.05, rope: float | None = None,
            pairs: str = "best", what: str | None = None, fmt=None, fmt_diff=None, seed: int = 0,
            test: str = "wilcoxon", block_name: str = "blocks") -> Comparison:
    """Compare configurations on paired blocks (see the module docstring for the protocol).

    `frame`: one row per (configuration, block) with `value` (NaN: missing). `pairs`: "best" (each
    configuration against the best by mean: k − 1 comparisons) or "all". `rope`: half-width of the
    region of practical equivalence in the value's units (e.g. 0.01 = one point of accuracy), for the
    Bayesian signed-rank test. `test`: the pairwise test, "wilcoxon" (the signed-rank test: blocks that
    are data sets, Demšar's setting) or "auto" (the paired t-test unless Shapiro–Wilk rejects normality
    of the paired differences, then the Wilcoxon test — autorank's rule; for blocks that are replicates
    of one experiment, e.g. seeds). `what` and `fmt` name and format the values in the verdict;
    `block_name` says what a block is ("seeds", "datasets").

    Configurations may have values in different blocks (e.g. fewer seeds for some): each is described
    on its own values, mean ranks and the Friedman test use the blocks every configuration has, and
    each pairwise test the blocks its two configurations share.

    >>> df = pd.DataFrame({"config": list("AB") * 6, "block": np.repeat(range(6), 2),
    ...                    "value": [.90, .80, .91, .82, .92, .81, .93, .80, .90, .83, .94, .82]})
    >>> cmp = compare(df)
    >>> cmp.best, round(float(cmp.pairwise["p"].iloc[0]), 5)
    ('A', 0.03125)
    """
    if pairs not in ("best", "all"):
        raise ValueError(f"pairs must be 'best' or 'all', got {pairs!r}")
    if test not in TESTS:
        raise ValueError(f"test must be one of {', '.join(map(repr, TESTS))}, got {test!r}")
    if frame.duplicated([config, block]).any():
        dup = frame[frame.duplicated([config, block], keep=False)].iloc[0]
        raise ValueError(f"two values for configuration {dup[config]!r} in block {dup[block]!r}")
    sign = 1.0 if higher_is_better else -1.0
    values = frame.pivot(index=block, columns=config, values=value).astype(float)
    notes: list[str] = []
    groups = exact_ties(values)
    ranking = _describe(values, sign, groups)
    complete = values.dropna()
    n_blocks = len(complete)
    if len(complete) < len(values) and values.shape[1] > 1:
        notes.append(f"{len(values) - n_blocks} of {len(values)} {block_name} lack a value for some configuration; "
                     f"mean ranks and the Friedman test use the {n_blocks} complete {block_name} only, each pairwise "
                     f"test the {block_name} its two configurations share")
    if n_blocks and values.shape[1] > 1:
        ranks = (complete * -sign).rank(axis=1, method="average")
        ranking["mean_rank"] = ranking["config"].map(ranks.mean())
    k = values.shape[1]
    fried = _friedman(complete, ranking, sign) if n_blocks >= MIN_BLOCKS and k >= 3 else None
    cd = nemenyi = None
    if fried is not None:
        cd = float(stats().studentized_range.ppf(1 - alpha, k, np.inf) / math.sqrt(2)
                   * math.sqrt(k * (k + 1) / (6 * n_blocks)))
        nemenyi = _nemenyi(complete * sign)
    pairwise = _pairwise(values, ranking, sign, alpha, rope, pairs, seed, test, groups)
    _mark_best_group(ranking, pairwise, alpha)
    sample_notes = _sample_notes(values, pairwise, alpha, block_name)
    notes += sample_notes
    cmp = Comparison(ranking, fried, cd, nemenyi, pairwise, values, higher_is_better, alpha, rope, n_blocks,
                     notes, what=what or value, fmt=fmt, fmt_diff=fmt_diff, test=test, block_name=block_name)
    cmp.decisive = bool(cmp.testable and pairwise["can_reject"].astype(bool).any())
    if len(cmp.best_group) > 1:
        notes.insert(0, f"{' and '.join(cmp.best_group)} have equal values in every block: they are tied for best "
                        "(listed by name), and the others are compared with the first")
    cmp.verdict = verdict(cmp)
    return cmp


# --- pieces -------------------------------------------------------------------------------------

TIE_RTOL = 1e-9  # equal to round-off; counts out of N ≤ 10^7 test images differ by ≥ 1e-7 relative


def exact_ties(values: pd.DataFrame) -> dict[str, int]:
    """Configuration -> the index of its group of exact ties: configurations with a value in the same
    blocks and equal values (to round-off) in each of them share a group."""
    names = list(values.columns)
    group = {name: i for i, name in enumerate(names)}
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            if group[b] != names.index(b):
                continue
            x, y = values[a], values[b]
            have = x.notna()
            if have.any() and (have == y.notna()).all() and np.allclose(x[have], y[have], rtol=TIE_RTOL, atol=0):
                group[b] = group[a]
    return group


def _order_key(x: float) -> float:
    """A mean as a sort key that float round-off does not change (12 significant digits)."""
    return float(f"{x:.12g}") if math.isfinite(x) else math.inf


def _describe(values: pd.DataFrame, sign: float, groups: dict[str, int]) -> pd.DataFrame:
    rows = []
    for name in values.columns:
        v = values[name].dropna().to_numpy()
        n = len(v)
        mean = float(v.mean()) if n else math.nan
        std = float(v.std(ddof=1)) if n > 1 else math.nan
        half = stats().t.ppf(0.975, n - 1) * std / math.sqrt(n) if n >= MIN_BLOCKS else math.nan
        rows.append({"config": name, "n": n, "mean": mean, "std": std, "ci_low": mean - half, "ci_high": mean + half})
    t = pd.DataFrame(rows, columns=["config", "n", "mean", "std", "ci_low", "ci_high"])
    # Order by mean, rounded so that round-off cannot decide; exact ties share their group's key and go by name.
    key = {r.config: _order_key(-sign * r.mean) if n_ok else math.inf
           for r, n_ok in zip(t.itertuples(), t["n"] > 0)}
    group_key: dict[int, float] = {}
    for name, g in groups.items():
        group_key[g] = min(group_key.get(g, math.inf), key[name])
    t["_key"] = [group_key[groups[c]] for c in t["config"]]
    t["_name"] = t["config"].astype(str)
    t = t.sort_values(["_key", "_name"], kind="stable").reset_index(drop=True)
    rank = t["_key"].where(t["n"] > 0).rank(method="min")
    t.insert(0, "rank", rank.astype("Int64"))
    top = groups[t["config"].iloc[0]] if len(t) and t["n"].iloc[0] > 0 else None
    t["best"] = [groups[c] == top for c in t["config"]]
    t = t.drop(columns=["_key", "_name"])
    t["mean_rank"] = math.nan
    t["tied_with_best"] = False
    t["p_holm_vs_best"] = math.nan
    t["p_raw_vs_best"] = math.nan
    t["test_vs_best"] = ""
    t["can_reject_vs_best"] = False
    t["effect_vs_best"] = math.nan
    return t[RANKING_COLUMNS]


def _friedman(complete: pd.DataFrame, ranking: pd.DataFrame, sign: float) -> dict:
    n, k = complete.shape
    r = ranking.set_index("config").loc[complete.columns, "mean_rank"].to_numpy(float)
    chi2 = 12 * n / (k * (k + 1)) * (np.sum(r**2) - k * (k + 1) ** 2 / 4)
    chi2 = max(float(chi2), 0.0)
    denom = n * (k - 1) - chi2
    f = (n - 1) * chi2 / denom if denom > 0 else math.inf
    id_p = float(stats().f.sf(f, k - 1, (k - 1) * (n - 1)))
    ranks = (complete * -sign).rank(axis=1, method="average").to_numpy(float)
    exact = friedman_exact_p(ranks)
    return {"statistic": chi2, "pvalue": float(stats().chi2.sf(chi2, k - 1)), "iman_davenport_f": float(f),
            "iman_davenport_p": id_p, "exact_p": math.nan if exact is None else exact,
            "p": id_p if exact is None else exact,
            "method": "Iman–Davenport F approximation (too many arrangements to enumerate)" if exact is None
            else "exact (every arrangement of the ranks within each block)", "k": k, "n": n}


def _nemenyi(oriented: pd.DataFrame) -> pd.DataFrame:
    import scikit_posthocs as sp

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        p = sp.posthoc_nemenyi_friedman(oriented.to_numpy())
    p.index = p.columns = list(oriented.columns)
    return p


def _pairwise(values, ranking, sign, alpha, rope, pairs, seed, test, groups) -> pd.DataFrame:
    cols = PAIRWISE_COLUMNS + (BAYES_COLUMNS if rope else [])
    order = [c for c in ranking["config"] if values[c].notna().any()]
    if len(order) < 2:
        return pd.DataFrame(columns=cols)
    if pairs == "best":
        todo = [(order[0], b) for b in order[1:]]
    else:
        todo = [(a, b) for i, a in enumerate(order) for b in order[i + 1:]]
    tested = sum(groups[a] != groups[b] for a, b in todo) or 1
    # autorank checks normality at α / (populations); here the populations are the m paired differences
    rows = [_pair(values[a], values[b], a, b, sign, rope, seed, test, alpha / tested, groups[a] == groups[b])
            for a, b in todo]
    out = pd.DataFrame(rows, columns=cols)
    out["p_holm"] = holm(out["p"])
    out["significant"] = out["p_holm"] < alpha
    out["can_reject"] = _can_reject(out, alpha)
    return out


def _can_reject(pairwise: pd.DataFrame, alpha: float) -> pd.Series:
    """Whether each comparison's test could have given a Holm-adjusted p below α whatever the data: the
    t-test can; the exact Wilcoxon test on n pairs cannot go below 2 / 2^n, and when every comparison is a
    Wilcoxon test Holm's first step needs that below α / m."""
    tested = pairwise["p"].notna()
    wilcoxon = pairwise["test"].astype(str).str.startswith("wilcoxon") & tested
    m = int(tested.sum()) if (wilcoxon == tested).all() else 1
    floor = pairwise["n"].map(lambda n: min_wilcoxon_p(int(n)) * m)
    return tested & (~wilcoxon | (floor < alpha))


def _pair(x: pd.Series, y: pd.Series, a: str, b: str, sign: float, rope, seed, test: str,
          normality_alpha: float, tie: bool) -> dict:
    both = pd.concat([x, y], axis=1).dropna()
    xa, ya = both.iloc[:, 0].to_numpy(), both.iloc[:, 1].to_numpy()
    n = len(both)
    d = xa - ya  # a − b in the metric's units
    row = {"a": a, "b": b, "n": n, "test": "wilcoxon", "normality_p": math.nan, "statistic": math.nan,
           "p": math.nan, "mean_diff": float(d.mean()) if n else math.nan, "diff_ci_low": math.nan,
           "diff_ci_high": math.nan, "effect_size": math.nan}
    if tie:  # exact ties for best: the same results, so nothing to test (and no comparison for Holm to count)
        row.update(test="none (equal values in every block)", mean_diff=0.0, effect_size=0.0)
        return row
    if n < MIN_BLOCKS:
        row["test"] = f"none (fewer than {MIN_BLOCKS} paired blocks)"
        return row
    sd = d.std(ddof=1)
    half = stats().t.ppf(0.975, n - 1) * sd / math.sqrt(n)
    row["diff_ci_low"], row["diff_ci_high"] = row["mean_diff"] - half, row["mean_diff"] + half
    if not (d != 0).any():  # identical in every block: no evidence of a difference
        row.update(statistic=0.0, p=1.0, effect_size=0.0, test="wilcoxon (all differences zero)")
    else:
        statistic, p, how = wilcoxon_zsplit(d)
        row.update(statistic=statistic, p=p, test=how, effect_size=float(sign * rank_biserial(d)))
        if test == "auto":
            if sd > 0:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    normality = float(stats().shapiro(d).pvalue)
                row["normality_p"] = normality
                if normality >= normality_alpha:
                    t_stat = float(row["mean_diff"] / (sd / math.sqrt(n)))
                    row.update(statistic=t_stat, p=float(2 * stats().t.sf(abs(t_stat), n - 1)), test=T_TEST)
                else:
                    row["test"] = f"{how} (Shapiro–Wilk rejects normal differences)"
            else:
                row["test"] = f"{how} (t-test undefined: every difference equal)"
    if rope:
        import baycomp

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            left, equiv, right = baycomp.SignedRankTest.probs(xa, ya, rope=rope, nsamples=10000, random_state=seed)
        # baycomp's left is P(x − y > rope) (x = a higher), right P(y − x > rope); "better" follows
        # the metric's direction
        a_better, b_better = (left, right) if sign > 0 else (right, left)
        row.update(p_a_better=float(a_better), p_equivalent=float(equiv), p_b_better=float(b_better))
    return row


def _mark_best_group(ranking: pd.DataFrame, pairwise: pd.DataFrame, alpha: float) -> None:
    """The best (and its exact ties) and every configuration not significantly different from it —
    Holm-adjusted p ≥ α, never the raw p — are tied with the best; without any test (too few blocks)
    every configuration is, since none can be told apart."""
    if ranking.empty:
        return
    best = ranking["config"].iloc[0]
    vs_best = pairwise[pairwise["a"] == best].set_index("b") if not pairwise.empty else pd.DataFrame()
    tested = not vs_best.empty and vs_best["p"].notna().any()
    for i, name in enumerate(ranking["config"]):
        if bool(ranking.loc[i, "best"]):
            ranking.loc[i, "tied_with_best"] = True
            if name in vs_best.index:
                ranking.loc[i, "test_vs_best"] = vs_best.loc[name, "test"]
                ranking.loc[i, "effect_vs_best"] = 0.0
            continue
        if name in vs_best.index:
            r = vs_best.loc[name]
            ranking.loc[i, "p_holm_vs_best"] = r["p_holm"]
            ranking.loc[i, "p_raw_vs_best"] = r["p"]
            ranking.loc[i, "test_vs_best"] = r["test"]
            ranking.loc[i, "can_reject_vs_best"] = bool(r["can_reject"])
            ranking.loc[i, "effect_vs_best"] = -r["mean_diff"]  # this configuration − the best
            ranking.loc[i, "tied_with_best"] = bool(not (r["p_holm"] < alpha)) if tested else True
        else:
            ranking.loc[i, "tied_with_best"] = not tested and not math.isnan(ranking.loc[i, "mean"])


def _sample_notes(values: pd.DataFrame, pairwise: pd.DataFrame, alpha: float, block_name: str = "blocks") -> list[str]:
    notes: list[str] = []
    k = values.shape[1]
    if k < 2:
        return notes
    counts = values.notna().sum()
    n = int(counts.min())
    if n < MIN_BLOCKS <= int(counts.max()):  # some have enough (racing stopped the others early)
        few = [f"{c} ({int(counts[c])})" for c in counts.index if counts[c] < MIN_BLOCKS]
        notes.append(f"fewer than {MIN_BLOCKS} {block_name} for {', '.join(few)}: no interval for "
                     f"{'it' if len(few) == 1 else 'them'}, and no test against {'it' if len(few) == 1 else 'them'} "
                     f"(each test uses the {block_name} its pair shares)")
        n = MIN_BLOCKS
    elif n < MIN_BLOCKS:
        notes.append(f"only {n} paired {block_name if n != 1 else block_name.rstrip('s')} per configuration: no "
                     f"confidence interval or p-value is given (at least {MIN_BLOCKS} are needed); the order is by "
                     f"mean only and may not repeat with other {block_name}")
        return notes
    tested = pairwise[pairwise["p"].notna()]
    if tested.empty:
        return notes
    m = len(tested)
    cannot = tested[~tested["can_reject"].astype(bool)]
    if len(cannot) == m:  # every comparison a Wilcoxon test that cannot reach α after Holm
        n = int(tested["n"].min())
        need = next(j for j in range(n, 64) if min_wilcoxon_p(j) * m < alpha)
        floor = min_wilcoxon_p(n) * m
        notes.append(f"with {n} paired {block_name} the exact Wilcoxon test cannot give p < {floor:.3g} "
                     f"after Holm's correction for {m} comparison{'s' if m != 1 else ''}: no difference can be "
                     f"significant at α = {alpha:g}; at least {need} {block_name} are needed")
    elif len(cannot):
        names = ", ".join(f"{r.a} vs {r.b}" for r in cannot.itertuples())
        notes.append(f"{len(cannot)} comparison{'s' if len(cannot) != 1 else ''} fell back to the exact Wilcoxon test "
                     f"(Shapiro–Wilk rejected normal differences), which with {int(cannot['n'].min())} {block_name} "
                     f"cannot give p < {alpha:g}: {names} cannot be significant")
    return notes
