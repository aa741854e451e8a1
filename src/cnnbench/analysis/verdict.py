"""A comparison in plain language (`Comparison.verdict`): the best, what cannot be told apart from it,
what is worse and by how much, and what the sample cannot support."""

from __future__ import annotations

import math

from .comparison import Comparison
from .stat_tests import T_TEST


def _fmt(cmp: Comparison, x: float) -> str:
    return cmp.fmt(x) if cmp.fmt else f"{x:.4g}"


def _fmt_diff(cmp: Comparison, x: float) -> str:
    return cmp.fmt_diff(x) if cmp.fmt_diff else f"{x:.4g}"


def name_list(names: list[str], most: int = 6) -> str:
    """'a, b, c' — at most `most` names, then 'and N more'."""
    shown = ", ".join(names[:most])
    return shown + (f" and {len(names) - most} more" if len(names) > most else "")


def _how(cmp: Comparison) -> str:
    """The pairwise test as used, for the verdict."""
    tests = set(cmp.pairwise.loc[cmp.pairwise["p"].notna(), "test"].astype(str))
    t_tests = T_TEST in tests
    if t_tests and len(tests) == 1:
        name = "paired t-test (Shapiro–Wilk did not reject normal differences)"
    elif t_tests:
        name = "paired t-test, Wilcoxon signed-rank where Shapiro–Wilk rejects normal differences"
    else:
        name = "Wilcoxon signed-rank"
    return f"{name}, Holm-corrected, α = {cmp.alpha:g}"


def _omnibus(cmp: Comparison) -> tuple[bool, str | None]:
    """Whether the Friedman test rejects, and the sentence saying so (None: no omnibus p-value)."""
    f = cmp.friedman
    if f is None:
        return False, None
    differ = f["p"] < cmp.alpha
    what = "The configurations differ" if differ else "No evidence that the configurations differ"
    if not math.isnan(f.get("exact_p", math.nan)):
        test = f"Friedman test, exact p {_p_is(f['p'])}"
    else:
        test = (f"Friedman / Iman–Davenport F = {f['iman_davenport_f']:.3g}, p {_p_is(f['p'])} by the F "
                "approximation")
    return differ, f"{what} ({test}, {f['k']} configurations × {f['n']} {cmp.block_name})."


def verdict(cmp: Comparison) -> str:
    """The comparison in plain language: the best, what cannot be told apart from it, what is worse
    and by how much, and what the sample cannot support."""
    t = cmp.ranking[cmp.ranking["n"] > 0]
    if t.empty:
        return "No results to compare yet."
    best = t.iloc[0]
    direction = "highest" if cmp.higher_is_better else "lowest"
    spread = f" ± {_fmt_diff(cmp, best['std'])}" if best["n"] > 1 else ""
    group = cmp.best_group
    who = (f"{' and '.join(group)}, tied (equal values in every one of the {cmp.block_name})" if len(group) > 1
           else str(best["config"]))
    parts = [f"Best by {direction} mean {cmp.what}: {who} ({_fmt(cmp, best['mean'])}{spread}, n = {best['n']})."]
    if len(t) == len(group):
        return parts[0]
    differ, omnibus = _omnibus(cmp)
    if omnibus:
        parts.append(omnibus)
    sample = [n for n in cmp.notes if "no confidence interval or p-value" in n or "cannot give p <" in n]
    how = _how(cmp) if cmp.testable else ""
    rest = t[~t["best"].astype(bool)]
    can = rest["can_reject_vs_best"].astype(bool)
    tied = list(rest.loc[rest["tied_with_best"].astype(bool) & can, "config"])
    untestable = list(rest.loc[~can, "config"])
    worse = rest[~rest["tied_with_best"].astype(bool)]
    if not cmp.testable:
        parts.append(f"No pairwise test is possible: {sample[0]}." if sample
                     else "No pairwise test is possible: the order is by mean only.")
    elif not cmp.decisive:  # tests ran but could not reach significance whatever the data
        parts.append(f"The pairwise test ({how}) cannot separate anything from the best here"
                     + (f": {sample[0]}." if sample else "."))
    else:
        if tied:
            parts.append(f"Not distinguishable from it ({how}): {name_list(tied)}.")
        elif worse.empty:
            pass
        elif untestable:
            parts.append(f"Significantly worse ({how}): {name_list(list(worse['config']))}.")
        else:
            parts.append(f"It is significantly better than every other configuration ({how}).")
        if not worse.empty and tied:
            parts.append(f"Significantly worse: {name_list(list(worse['config']))}.")
        if untestable:
            parts.append(f"Not testable here (too few {cmp.block_name} for the test their differences need): "
                         f"{name_list(untestable)}.")
        if not worse.empty:
            closest = worse.iloc[0]
            pw = cmp.pairwise
            row = pw[(pw["a"] == best["config"]) & (pw["b"] == closest["config"])].iloc[0]
            low, high = sorted((abs(row["diff_ci_low"]), abs(row["diff_ci_high"])))
            parts.append(f"The closest significantly worse, {closest['config']}, is behind by "
                         f"{_fmt_diff(cmp, abs(row['mean_diff']))} (95% CI {_fmt_diff(cmp, low)} to "
                         f"{_fmt_diff(cmp, high)}).")
    if differ and cmp.critical_difference is not None:
        parts.append(_nemenyi_sentence(cmp, set(worse["config"]) if cmp.decisive else set()))
    if cmp.rope and tied and "p_equivalent" in cmp.pairwise:
        vs = cmp.pairwise[cmp.pairwise["a"] == best["config"]].set_index("b")  # pairs="all": b repeats
        equiv = [c for c in tied if c in vs.index and vs.loc[c, "p_equivalent"] >= 0.95]
        if equiv:
            parts.append(f"Practically equivalent to the best (P(|difference| < {_fmt_diff(cmp, cmp.rope)}) ≥ 0.95, "
                         f"Bayesian signed-rank): {name_list(equiv)}.")
    return " ".join(parts)


def _p_is(p: float) -> str:
    """'= 0.0123' or '< 1e-4', to follow a 'p'."""
    return "= –" if p is None or p != p else (f"= {p:.3g}" if p >= 1e-4 else "< 1e-4")


def _nemenyi_sentence(cmp: Comparison, worse_by_pairs: set[str]) -> str:
    """What the critical-difference diagram shows, in words: which configurations rank more than CD
    behind the best-ranked one, and whether that is more, fewer or other configurations than the pairwise
    tests found worse. Mean ranks pool every configuration's ranks in every block, so with few blocks
    this post-hoc test can separate what a pairwise test cannot, and the reverse (and its answer for a
    pair depends on the other configurations in the study: Benavoli et al. 2016)."""
    t = cmp.ranking.dropna(subset=["mean_rank"]).sort_values("mean_rank", kind="stable")
    top = t.iloc[0]
    behind = list(t.loc[t["mean_rank"] - top["mean_rank"] > cmp.critical_difference, "config"])
    cd = f"Nemenyi, CD = {cmp.critical_difference:.2f} in mean rank"
    if not behind:
        return f"By mean rank ({cd}) no configuration is significantly behind the best-ranked, {top['config']}."
    found = set(behind)
    if found > worse_by_pairs:
        compared = "separate more than the pairwise tests"
    elif found < worse_by_pairs:
        compared = "separate fewer than the pairwise tests"
    elif found == worse_by_pairs:
        compared = "separate the same configurations as the pairwise tests"
    else:
        compared = "separate other configurations than the pairwise tests"
    return (f"Mean ranks, which pool every configuration's rank in every block, {compared} ({cd}): the "
            f"best-ranked, {top['config']} (mean rank {top['mean_rank']:.2f}), is significantly ahead of "
            f"{name_list(behind)}.")
