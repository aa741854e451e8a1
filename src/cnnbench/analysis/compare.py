"""The statistical protocol: which configurations are best, which differences are real, how large.

`compare(frame)` takes results in long form — one row per (configuration, block) with a value — where
a *block* is a paired unit: within one dataset and model, the seeds (runs with the same seed share
their data order and initial weights); across datasets, the datasets (each configuration scored by its
mean over seeds). It follows Demšar (2006) for the omnibus test and the critical difference, and
Benavoli et al. (2016) for the pairwise tests:

- **Ranking**: mean, std, a 95% t-interval of the mean (only from 3 blocks on), and the mean rank
  within blocks (rank 1 = best; ties share the average rank). Rank-based statistics use the blocks
  in which every configuration has a value.
- **Omnibus**: Friedman's χ²_F = 12N / (k(k+1)) · (Σ R_j² − k(k+1)²/4) on the mean ranks R_j (Demšar's
  eq., without the tie correction that scipy applies) and Iman & Davenport's F_F = (N−1) χ²_F /
  (N(k−1) − χ²_F) with (k−1, (k−1)(N−1)) degrees of freedom; the verdict uses F_F (less conservative).
- **Critical difference** (Nemenyi): CD = q_α √(k(k+1) / (6N)), q_α the studentized range quantile / √2.
- **Pairwise**: each configuration against the best (or all pairs) with the Wilcoxon signed-rank test
  on the paired blocks (zero differences split between the signs as Demšar recommends; exact p-value
  by enumerating the sign flips up to 16 non-zero differences), Holm's step-down correction
  over the comparisons actually made; the mean paired difference with its 95% t-interval and the
  matched-pairs rank-biserial correlation as effect sizes; with a ROPE, the Bayesian signed-rank test
  (Benavoli et al. 2014, baycomp): P(a better), P(practically equivalent), P(b better).

Honest small samples: below 3 blocks there is no interval and no p-value (the table says why), and a
note says when the exact Wilcoxon test cannot reach significance at all (2 / 2^N ≥ α / m).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

MIN_BLOCKS = 3  # fewer paired blocks support no interval and no test


def _stats():
    """scipy.stats, imported on first use (~0.7 s): a comparison with fewer than 3 blocks needs none."""
    from scipy import stats

    return stats


@dataclass
class Comparison:
    """The outcome of `compare`. Values are in the metric's own units."""

    # ranking: rank, config, n, mean, std, ci_low, ci_high, mean_rank, tied_with_best, p_vs_best, effect_vs_best
    ranking: pd.DataFrame
    friedman: dict | None  # statistic, pvalue, iman_davenport_f, iman_davenport_p, k, n
    critical_difference: float | None
    nemenyi: pd.DataFrame | None  # k x k Nemenyi p-values (scikit-posthocs), for the CD diagram
    pairwise: pd.DataFrame
    values: pd.DataFrame  # blocks x configurations
    higher_is_better: bool
    alpha: float
    rope: float | None
    n_blocks: int  # blocks in which every configuration has a value
    notes: list[str] = field(default_factory=list)
    verdict: str = ""
    what: str = "value"  # the metric's name, for the verdict
    fmt: Callable[[float], str] | None = None  # value -> str for the verdict (default: 4 significant digits)
    fmt_diff: Callable[[float], str] | None = None  # difference -> str for the verdict (e.g. "0.52 points")
    # False when the pairwise test could not have found any difference (too few blocks for any test, or
    # for one to reach α after Holm): then "tied with best" says nothing, and tables should not mark it
    decisive: bool = True

    @property
    def best(self) -> str | None:
        return None if self.ranking.empty else str(self.ranking["config"].iloc[0])

    @property
    def testable(self) -> bool:
        return not self.pairwise.empty and self.pairwise["p"].notna().any()


def holm(pvalues) -> np.ndarray:
    """Holm's (1979) step-down adjusted p-values: sort ascending, p_(i) · (m − i + 1), running max,
    capped at 1; NaN p-values are not counted as comparisons."""
    p = np.asarray(pvalues, dtype=float)
    out = np.full_like(p, np.nan)
    ok = ~np.isnan(p)
    m = int(ok.sum())
    if m == 0:
        return out
    idx = np.flatnonzero(ok)[np.argsort(p[ok], kind="stable")]
    adjusted = np.minimum(1.0, np.maximum.accumulate(p[idx] * (m - np.arange(m))))
    out[idx] = adjusted
    return out


def compare(frame: pd.DataFrame, config: str = "config", block: str = "block", value: str = "value", *,
            higher_is_better: bool = True, alpha: float = 0.05, rope: float | None = None,
            pairs: str = "best", what: str | None = None, fmt=None, fmt_diff=None, seed: int = 0) -> Comparison:
    """Compare configurations on paired blocks (see the module docstring for the protocol).

    `frame`: one row per (configuration, block) with `value` (NaN: missing). `pairs`: "best" (each
    configuration against the best by mean: k − 1 comparisons) or "all". `rope`: half-width of the
    region of practical equivalence in the value's units (e.g. 0.01 = one point of accuracy), for the
    Bayesian signed-rank test. `what` and `fmt` name and format the values in the verdict.

    >>> df = pd.DataFrame({"config": list("AB") * 6, "block": np.repeat(range(6), 2),
    ...                    "value": [.90, .80, .91, .82, .92, .81, .93, .80, .90, .83, .94, .82]})
    >>> cmp = compare(df)
    >>> cmp.best, round(float(cmp.pairwise["p"].iloc[0]), 5)
    ('A', 0.03125)
    """
    if pairs not in ("best", "all"):
        raise ValueError(f"pairs must be 'best' or 'all', got {pairs!r}")
    if frame.duplicated([config, block]).any():
        dup = frame[frame.duplicated([config, block], keep=False)].iloc[0]
        raise ValueError(f"two values for configuration {dup[config]!r} in block {dup[block]!r}")
    sign = 1.0 if higher_is_better else -1.0
    values = frame.pivot(index=block, columns=config, values=value).astype(float)
    notes: list[str] = []
    ranking = _describe(values, sign)
    complete = values.dropna()
    n_blocks = len(complete)
    if len(complete) < len(values) and values.shape[1] > 1:
        notes.append(f"{len(values) - n_blocks} of {len(values)} blocks lack a value for some configuration; "
                     "mean ranks and the Friedman test use the complete blocks only")
    if n_blocks and values.shape[1] > 1:
        ranks = (complete * -sign).rank(axis=1, method="average")
        ranking["mean_rank"] = ranking["config"].map(ranks.mean())
    fried = _friedman(complete, ranking) if n_blocks >= 2 and values.shape[1] >= 3 else None
    cd = nemenyi = None
    if fried is not None and n_blocks >= MIN_BLOCKS:
        k = values.shape[1]
        cd = float(_stats().studentized_range.ppf(1 - alpha, k, np.inf) / math.sqrt(2)
                   * math.sqrt(k * (k + 1) / (6 * n_blocks)))
        nemenyi = _nemenyi(complete * sign)
    pairwise = _pairwise(values, ranking, sign, alpha, rope, pairs, seed)
    _mark_best_group(ranking, pairwise, alpha)
    sample_notes = _sample_notes(values, pairwise, alpha)
    notes += sample_notes
    cmp = Comparison(ranking, fried, cd, nemenyi, pairwise, values, higher_is_better, alpha, rope, n_blocks,
                     notes, what=what or value, fmt=fmt, fmt_diff=fmt_diff)
    cmp.decisive = cmp.testable and not sample_notes
    cmp.verdict = verdict(cmp)
    return cmp


# --- pieces -------------------------------------------------------------------------------------


def _describe(values: pd.DataFrame, sign: float) -> pd.DataFrame:
    rows = []
    for name in values.columns:
        v = values[name].dropna().to_numpy()
        n = len(v)
        mean = float(v.mean()) if n else math.nan
        std = float(v.std(ddof=1)) if n > 1 else math.nan
        half = _stats().t.ppf(0.975, n - 1) * std / math.sqrt(n) if n >= MIN_BLOCKS else math.nan
        rows.append({"config": name, "n": n, "mean": mean, "std": std, "ci_low": mean - half, "ci_high": mean + half})
    t = pd.DataFrame(rows, columns=["config", "n", "mean", "std", "ci_low", "ci_high"])
    t["_key"] = -sign * t["mean"]
    t = t.sort_values("_key", na_position="last", kind="stable").drop(columns="_key").reset_index(drop=True)
    t.insert(0, "rank", (-sign * t["mean"]).rank(method="min").astype("Int64"))
    t["mean_rank"] = math.nan
    t["tied_with_best"] = False
    t["p_vs_best"] = math.nan
    t["effect_vs_best"] = math.nan
    return t


def _friedman(complete: pd.DataFrame, ranking: pd.DataFrame) -> dict:
    n, k = complete.shape
    r = ranking.set_index("config").loc[complete.columns, "mean_rank"].to_numpy(float)
    chi2 = 12 * n / (k * (k + 1)) * (np.sum(r**2) - k * (k + 1) ** 2 / 4)
    chi2 = max(float(chi2), 0.0)
    denom = n * (k - 1) - chi2
    f = (n - 1) * chi2 / denom if denom > 0 else math.inf
    return {"statistic": chi2, "pvalue": float(_stats().chi2.sf(chi2, k - 1)),
            "iman_davenport_f": float(f), "iman_davenport_p": float(_stats().f.sf(f, k - 1, (k - 1) * (n - 1))),
            "k": k, "n": n}


def _nemenyi(oriented: pd.DataFrame) -> pd.DataFrame:
    import scikit_posthocs as sp

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        p = sp.posthoc_nemenyi_friedman(oriented.to_numpy())
    p.index = p.columns = list(oriented.columns)
    return p


def _pairwise(values, ranking, sign, alpha, rope, pairs, seed) -> pd.DataFrame:
    cols = ["a", "b", "n", "test", "statistic", "p", "p_holm", "significant", "mean_diff", "diff_ci_low",
            "diff_ci_high", "effect_size"] + (["p_a_better", "p_equivalent", "p_b_better"] if rope else [])
    order = [c for c in ranking["config"] if values[c].notna().any()]
    if len(order) < 2:
        return pd.DataFrame(columns=cols)
    if pairs == "best":
        todo = [(order[0], b) for b in order[1:]]
    else:
        todo = [(a, b) for i, a in enumerate(order) for b in order[i + 1:]]
    rows = [_pair(values[a], values[b], a, b, sign, rope, seed) for a, b in todo]
    out = pd.DataFrame(rows, columns=cols)
    out["p_holm"] = holm(out["p"])
    out["significant"] = out["p_holm"] < alpha
    return out


def _pair(x: pd.Series, y: pd.Series, a: str, b: str, sign: float, rope, seed) -> dict:
    both = pd.concat([x, y], axis=1).dropna()
    xa, ya = both.iloc[:, 0].to_numpy(), both.iloc[:, 1].to_numpy()
    n = len(both)
    d = xa - ya  # a − b in the metric's units
    row = {"a": a, "b": b, "n": n, "test": "wilcoxon", "statistic": math.nan, "p": math.nan,
           "mean_diff": float(d.mean()) if n else math.nan, "diff_ci_low": math.nan, "diff_ci_high": math.nan,
           "effect_size": math.nan}
    if n < MIN_BLOCKS:
        row["test"] = "none (fewer than 3 paired blocks)"
        return row
    sd = d.std(ddof=1)
    half = _stats().t.ppf(0.975, n - 1) * sd / math.sqrt(n)
    row["diff_ci_low"], row["diff_ci_high"] = row["mean_diff"] - half, row["mean_diff"] + half
    nonzero = d[d != 0]
    if len(nonzero) == 0:  # identical in every block: no evidence of a difference
        row.update(statistic=0.0, p=1.0, effect_size=0.0, test="wilcoxon (all differences zero)")
    else:
        statistic, p, row["test"] = wilcoxon_zsplit(d)
        ranks = _stats().rankdata(np.abs(nonzero))
        r_plus, r_minus = ranks[nonzero > 0].sum(), ranks[nonzero < 0].sum()
        # matched-pairs rank-biserial correlation (Kerby 2014), oriented so > 0 means a is better
        row.update(statistic=statistic, p=p, effect_size=float(sign * (r_plus - r_minus) / (r_plus + r_minus)))
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


EXACT_MAX = 16  # enumerate all 2^m sign flips up to m = 16 non-zero differences (65,536 rows)


def wilcoxon_zsplit(d: np.ndarray) -> tuple[float, float, str]:
    """Wilcoxon's signed-rank test of paired differences `d`, zero differences handled as Demšar
    (2006, 3.1.3) recommends: ranked with the others, their ranks split evenly between R+ and R−.

    Returns (T = min(R+, R−), two-sided p, how). With up to `EXACT_MAX` non-zero differences the
    p-value is exact: the statistic under every sign flip of the non-zero differences (a zero's half
    ranks do not move), ties included — scipy's exact method assumes no zeros and no ties and falls
    back to the normal approximation otherwise. Beyond that, scipy's normal approximation."""
    ranks = _stats().rankdata(np.abs(d))
    nz = d != 0
    r_plus = ranks[d > 0].sum() + ranks[~nz].sum() / 2
    total = ranks.sum()
    statistic = float(min(r_plus, total - r_plus))
    m = int(nz.sum())
    if m > EXACT_MAX:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            res = _stats().wilcoxon(d, zero_method="zsplit", method="asymptotic")
        return float(res.statistic), float(res.pvalue), "wilcoxon (normal approximation)"
    flips = (np.arange(2**m)[:, None] >> np.arange(m)) & 1  # every subset of the non-zero differences
    t_plus = flips @ ranks[nz] + ranks[~nz].sum() / 2
    centre = total / 2
    p = float(np.mean(np.abs(t_plus - centre) >= abs(r_plus - centre) - 1e-9))
    return statistic, p, "wilcoxon (exact)"


def _mark_best_group(ranking: pd.DataFrame, pairwise: pd.DataFrame, alpha: float) -> None:
    """The best and every configuration not significantly different from it (Holm) are tied with
    the best; without any test (too few blocks) every configuration is, since none can be told apart."""
    if ranking.empty:
        return
    best = ranking["config"].iloc[0]
    vs_best = pairwise[pairwise["a"] == best].set_index("b") if not pairwise.empty else pd.DataFrame()
    tested = not vs_best.empty and vs_best["p"].notna().any()
    for i, name in enumerate(ranking["config"]):
        if name == best:
            ranking.loc[i, "tied_with_best"] = True
            continue
        if name in vs_best.index:
            r = vs_best.loc[name]
            ranking.loc[i, "p_vs_best"] = r["p_holm"]
            ranking.loc[i, "effect_vs_best"] = -r["mean_diff"]  # this configuration − the best
            ranking.loc[i, "tied_with_best"] = bool(not (r["p_holm"] < alpha)) if tested else True
        else:
            ranking.loc[i, "tied_with_best"] = not tested and not math.isnan(ranking.loc[i, "mean"])


def min_wilcoxon_p(n: int) -> float:
    """The smallest two-sided p-value the exact Wilcoxon signed-rank test can give with n pairs."""
    return min(1.0, 2.0 / 2**n)


def _sample_notes(values: pd.DataFrame, pairwise: pd.DataFrame, alpha: float) -> list[str]:
    notes: list[str] = []
    k = values.shape[1]
    if k < 2:
        return notes
    n = int(values.notna().sum().min())
    if n < MIN_BLOCKS:
        notes.append(f"only {n} paired block{'s' if n != 1 else ''} per configuration: no confidence interval or "
                     f"p-value is given (at least {MIN_BLOCKS} are needed); the order is by mean only and may "
                     "not repeat with other seeds")
        return notes
    m = int(pairwise["p"].notna().sum()) or 1
    # Holm's first step compares the smallest p with alpha / m; the exact test cannot go below 2 / 2^n.
    if min_wilcoxon_p(n) * m >= alpha:
        need = next(j for j in range(n, 64) if min_wilcoxon_p(j) * m < alpha)
        notes.append(f"with {n} paired blocks the exact Wilcoxon test cannot give p < {min_wilcoxon_p(n) * m:.3g} "
                     f"after Holm's correction for {m} comparison{'s' if m != 1 else ''}: no difference can be "
                     f"significant at α = {alpha:g}; at least {need} blocks (seeds) are needed")
    return notes


# --- the verdict --------------------------------------------------------------------------------


def _fmt(cmp: Comparison, x: float) -> str:
    return cmp.fmt(x) if cmp.fmt else f"{x:.4g}"


def _fmt_diff(cmp: Comparison, x: float) -> str:
    return cmp.fmt_diff(x) if cmp.fmt_diff else f"{x:.4g}"


def _names(names: list[str], most: int = 6) -> str:
    shown = ", ".join(names[:most])
    return shown + (f" and {len(names) - most} more" if len(names) > most else "")


def verdict(cmp: Comparison) -> str:
    """The comparison in plain language: the best, what cannot be told apart from it, what is worse
    and by how much, and what the sample cannot support."""
    t = cmp.ranking[cmp.ranking["n"] > 0]
    if t.empty:
        return "No results to compare yet."
    best = t.iloc[0]
    direction = "highest" if cmp.higher_is_better else "lowest"
    spread = f" ± {_fmt_diff(cmp, best['std'])}" if best["n"] > 1 else ""
    parts = [f"Best by {direction} mean {cmp.what}: {best['config']} ({_fmt(cmp, best['mean'])}{spread}, "
             f"n = {best['n']})."]
    if len(t) == 1:
        return parts[0]
    fried = cmp.friedman
    differ = False
    if fried is not None and cmp.n_blocks >= MIN_BLOCKS:
        differ = fried["iman_davenport_p"] < cmp.alpha
        parts.append(("The configurations differ" if differ else "No evidence that the configurations differ")
                     + f" (Friedman / Iman–Davenport F = {fried['iman_davenport_f']:.3g}, "
                       f"p {_p_is(fried['iman_davenport_p'])}, {fried['k']} configurations × {fried['n']} blocks).")
    sample = [n for n in cmp.notes if "paired block" in n]
    how = f"Wilcoxon signed-rank, Holm-corrected, α = {cmp.alpha:g}"
    tied = list(t["config"].iloc[1:][t["tied_with_best"].iloc[1:].astype(bool)])
    worse = t.iloc[1:][~t["tied_with_best"].iloc[1:].astype(bool)]
    if not cmp.testable:
        parts.append("No pairwise test is possible: the order is by mean only"
                     + (f" ({sample[0]})." if sample else "."))
    elif sample:  # tests ran but could not reach significance whatever the data
        parts.append(f"The pairwise test ({how}) cannot separate anything from the best here: {sample[0]}.")
    else:
        if tied:
            parts.append(f"Not distinguishable from it ({how}): {_names(tied)}.")
        else:
            parts.append(f"It is significantly better than every other configuration ({how}).")
        if not worse.empty and tied:
            parts.append(f"Significantly worse: {_names(list(worse['config']))}.")
        if not worse.empty:
            closest = worse.iloc[0]
            row = cmp.pairwise[(cmp.pairwise["a"] == best["config"]) & (cmp.pairwise["b"] == closest["config"])].iloc[0]
            low, high = sorted((abs(row["diff_ci_low"]), abs(row["diff_ci_high"])))
            parts.append(f"The closest significantly worse, {closest['config']}, is behind by "
                         f"{_fmt_diff(cmp, abs(row['mean_diff']))} (95% CI {_fmt_diff(cmp, low)} to "
                         f"{_fmt_diff(cmp, high)}).")
    if differ and cmp.critical_difference is not None:
        parts.append(_nemenyi_sentence(cmp))
    if cmp.rope and tied and "p_equivalent" in cmp.pairwise:
        vs = cmp.pairwise.set_index("b")
        equiv = [c for c in tied if c in vs.index and vs.loc[c, "p_equivalent"] >= 0.95]
        if equiv:
            parts.append(f"Practically equivalent to the best (P(|difference| < {_fmt_diff(cmp, cmp.rope)}) ≥ 0.95, "
                         f"Bayesian signed-rank): {_names(equiv)}.")
    return " ".join(parts)


def _p_is(p: float) -> str:
    """'= 0.0123' or '< 1e-4', to follow a 'p'."""
    return "= –" if p is None or p != p else (f"= {p:.3g}" if p >= 1e-4 else "< 1e-4")


def _nemenyi_sentence(cmp: Comparison) -> str:
    """What the critical-difference diagram shows, in words: which configurations rank more than CD
    behind the best-ranked one. Mean ranks pool every configuration's ranks in every block, so with few
    seeds this post-hoc test can separate what the pairwise Wilcoxon test cannot (and its answer for a
    pair depends on the other configurations in the study: Benavoli et al. 2016)."""
    t = cmp.ranking.dropna(subset=["mean_rank"]).sort_values("mean_rank", kind="stable")
    top = t.iloc[0]
    behind = list(t.loc[t["mean_rank"] - top["mean_rank"] > cmp.critical_difference, "config"])
    cd = f"Nemenyi, CD = {cmp.critical_difference:.2f} in mean rank"
    if not behind:
        return f"By mean rank ({cd}) no configuration is significantly behind the best-ranked, {top['config']}."
    return (f"Mean ranks, which pool every configuration's rank in every block, separate more ({cd}): the "
            f"best-ranked, {top['config']} (mean rank {top['mean_rank']:.2f}), is significantly ahead of "
            f"{_names(behind)}.")
