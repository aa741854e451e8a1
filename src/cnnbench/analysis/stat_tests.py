"""The statistical tests the protocol uses, as pure functions of numbers: Holm's correction, the
Wilcoxon signed-rank test with Demšar's zero split (exact up to 16 non-zero differences), the
matched-pairs rank-biserial correlation, and Friedman's exact p-value by enumeration. `compare.py` puts
them together; `runs/racing.py` uses them to decide a race."""

from __future__ import annotations

import itertools
import warnings

import numpy as np


def stats():
    """scipy.stats, imported on first use (~0.7 s): a comparison with fewer than 3 blocks needs none."""
    from scipy import stats

    return stats


T_TEST = "paired t-test"


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


def rank_biserial(d: np.ndarray) -> float:
    """The matched-pairs rank-biserial correlation (Kerby 2014) of paired differences `d`, r = (R+ − R−) /
    (R+ + R−), counted as the test counts them: zero differences are ranked with the others and their
    ranks split evenly between R+ and R− (Demšar's zsplit), so they pull r towards 0."""
    d = np.asarray(d, dtype=float)
    ranks = stats().rankdata(np.abs(d))
    total = ranks.sum()
    if total == 0:
        return 0.0
    r_plus = ranks[d > 0].sum() + ranks[d == 0].sum() / 2
    return float((2 * r_plus - total) / total)


EXACT_MAX = 16  # enumerate all 2^m sign flips up to m = 16 non-zero differences (65,536 rows)
def wilcoxon_zsplit(d: np.ndarray) -> tuple[float, float, str]:
    """Wilcoxon's signed-rank test of paired differences `d`, zero differences handled as Demšar
    (2006, 3.1.3) recommends: ranked with the others, their ranks split evenly between R+ and R−.

    Returns (T = min(R+, R−), two-sided p, how). With up to `EXACT_MAX` non-zero differences the
    p-value is exact: the statistic under every sign flip of the non-zero differences (a zero's half
    ranks do not move), ties included — scipy's exact method assumes no zeros and no ties and falls
    back to the normal approximation otherwise. Beyond that, scipy's normal approximation."""
    ranks = stats().rankdata(np.abs(d))
    nz = d != 0
    r_plus = ranks[d > 0].sum() + ranks[~nz].sum() / 2
    total = ranks.sum()
    statistic = float(min(r_plus, total - r_plus))
    m = int(nz.sum())
    if m > EXACT_MAX:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            res = stats().wilcoxon(d, zero_method="zsplit", method="asymptotic")
        return float(res.statistic), float(res.pvalue), "wilcoxon (normal approximation)"
    flips = (np.arange(2**m)[:, None] >> np.arange(m)) & 1  # every subset of the non-zero differences
    t_plus = flips @ ranks[nz] + ranks[~nz].sum() / 2
    centre = total / 2
    p = float(np.mean(np.abs(t_plus - centre) >= abs(r_plus - centre) - 1e-9))
    return statistic, p, "wilcoxon (exact)"


def min_wilcoxon_p(n: int) -> float:
    """The smallest two-sided p-value the exact Wilcoxon signed-rank test can give with n pairs."""
    return min(1.0, 2.0 / 2**n)


EXACT_FRIEDMAN_ROWS = 2_500_000  # the enumeration's largest intermediate table (rows of k rank sums)
EXACT_FRIEDMAN_K = 7  # 7! = 5040 arrangements of one block's ranks; beyond, the approximation


def friedman_exact_p(ranks: np.ndarray, max_rows: int = EXACT_FRIEDMAN_ROWS) -> float | None:
    """The exact p-value of Friedman's test: the probability, when each block's ranks are arranged
    uniformly at random among the configurations (the null hypothesis; ties keep their average ranks),
    of a sum of squared rank sums at least the observed one (χ²_F and F_F are increasing in it).

    `ranks`: blocks × configurations. The distribution is built block by block over the vectors of rank
    sums, kept sorted (the configurations are exchangeable under the null, so only the multiset of rank
    sums matters), which is the full enumeration of the k!^N arrangements without listing them. None
    when k > EXACT_FRIEDMAN_K or a step would exceed `max_rows` rows: use the approximation then."""
    ranks = np.asarray(ranks, dtype=float)
    n, k = ranks.shape
    if k > EXACT_FRIEDMAN_K or n == 0:
        return None
    twice = np.rint(2 * ranks).astype(np.int64)  # average ranks are halves: twice them are integers
    observed = int((twice.sum(axis=0) ** 2).sum())
    states = np.sort(twice[:1], axis=1)
    weights: np.ndarray = np.ones(1)
    base = int(2 * k * n + 1)
    for row in twice[1:]:
        arrangements = np.array(sorted(set(itertools.permutations(row.tolist()))), dtype=np.int64)
        if len(states) * len(arrangements) > max_rows:
            return None
        new = (states[:, None, :] + arrangements[None, :, :]).reshape(-1, k)
        new.sort(axis=1)
        keys = new @ (base ** np.arange(k, dtype=np.int64))  # k ≤ 7 and entries ≤ 2kN: fits in int64
        unique, first, inverse = np.unique(keys, return_index=True, return_inverse=True)
        weights = np.bincount(inverse, weights=np.repeat(weights, len(arrangements)) / len(arrangements),
                              minlength=len(unique))
        states = new[first]
    sums = (states**2).sum(axis=1)
    return float(min(1.0, weights[sums >= observed].sum()))
