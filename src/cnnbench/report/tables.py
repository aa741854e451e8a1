"""The report's tables as data (header + rows of `Entry`), shared by the HTML and Markdown report,
the paper tables and the terminal.

The statistics come from `cnnbench.analysis` as they are; this module only chooses the columns and
formats the numbers (format.py), so every output shows the same numbers.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

from ..metrics import Metric
from . import format as fmt
from .format import DASH, Entry

TIED_MARK = "†"  # not significantly worse than the best (the comparison's tied_with_best)


@dataclass
class Table:
    header: list[str]
    rows: list[list[Entry]]
    caption: str = ""
    notes: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.rows)

    def text_rows(self) -> list[list[str]]:
        return [[e.text for e in row] for row in self.rows]


def text(x) -> Entry:
    return Entry(str(x))


def num(x, shown: str) -> Entry:
    return Entry(shown, fmt.number(x))


# --- one comparison ------------------------------------------------------------------------------


def ranking(c, metric: Metric) -> Table:
    """A comparison's ranked configurations: mean ± std over the blocks (seeds), the 95% interval of
    the mean, mean rank, and against the best: the Holm-adjusted p-value of the pairwise test and the
    mean paired difference (this − best); the mark says which are not significantly worse. Every
    configuration exactly tied for best (equal values in every block) is "best" and bold."""
    header = ["#", "configuration", "n", f"{fmt.heading(metric)}: mean ± std", "95% CI", "mean rank",
              "p vs best (Holm-adjusted)", f"Δ vs best{' (points)' if metric.percent else ''}", "vs best", "test",
              "notes"]
    rows = []
    tied_best = int(c.ranking["best"].astype(bool).sum()) > 1 if "best" in c.ranking else False
    for r in c.ranking.itertuples():
        best = _true(getattr(r, "best", r.Index == 0))
        left_race = getattr(r, "left_race", "")
        if best:
            mark = "best (tied: equal in every block)" if tied_best else "best"
        elif isinstance(left_race, str) and left_race:  # a raced study: what the race decided (analysis/raced.py)
            mark = left_race
        elif not getattr(c, "decisive", True):  # no test could have told them apart: no mark either way
            mark = f"not testable (too few {getattr(c, 'block_name', 'blocks')})"
        elif fmt.missing(getattr(r, "p_raw_vs_best", 0.0)):
            mark = f"not tested (fewer than 3 {getattr(c, 'block_name', 'blocks')} shared with the best)"
        elif not _true(getattr(r, "can_reject_vs_best", True)):
            mark = f"not testable (its test cannot reach α with these {getattr(c, 'block_name', 'blocks')})"
        else:
            mark = f"{TIED_MARK} not significantly worse" if _true(r.tied_with_best) else "significantly worse"
        test = getattr(r, "test_vs_best", "") or ""
        shown_test = isinstance(test, str) and not best and not fmt.missing(getattr(r, "p_raw_vs_best", None))
        rows.append([num(r.rank, fmt.count(r.rank)), text(r.config), num(r.n, fmt.count(r.n)),
                     Entry(fmt.mean_std(r.mean, r.std, metric), fmt.number(r.mean), strong=best),
                     num(r.ci_low, fmt.interval(r.ci_low, r.ci_high, metric)),
                     num(r.mean_rank, fmt.fixed(r.mean_rank)), num(r.p_holm_vs_best, fmt.p_value(r.p_holm_vs_best)),
                     num(r.effect_vs_best, fmt.difference(r.effect_vs_best, metric)), text(mark),
                     text(test if shown_test else ""), text(_failures(r))])
    return Table(header, rows)


def _true(x) -> bool:
    return bool(x) and not fmt.missing(x)


def _failures(r) -> str:
    parts = [f"{int(n)} {what}" for n, what in ((getattr(r, "diverged", 0), "diverged"),
                                                (getattr(r, "failed", 0), "failed")) if not fmt.missing(n) and n]
    return ", ".join(parts)


def pairwise(c, metric: Metric) -> Table:
    """Every pair of configurations the comparison tested: the test used (and the Shapiro–Wilk p of the
    differences where normality was checked), the raw and the Holm-adjusted p, the effect sizes, and the
    Bayesian probabilities when a region of practical equivalence (rope) was given."""
    pw = c.pairwise
    if pw is None or pw.empty:
        return Table([], [])
    bayes = "p_equivalent" in pw.columns and pw["p_equivalent"].notna().any()
    normality = "normality_p" in pw.columns and pw["normality_p"].notna().any()
    header = ["a", "b", "n", "test", *(["Shapiro–Wilk p"] if normality else []), "statistic", "p (raw)",
              "p (Holm-adjusted)", "significant", f"mean a − b{' (points)' if metric.percent else ''}",
              "95% CI of a − b", "rank-biserial r"]
    if bayes:
        header += ["P(a better)", "P(equivalent)", "P(b better)"]
    rows = []
    for r in pw.itertuples():
        sig = DASH if fmt.missing(r.p_holm) else ("yes" if _true(r.significant) else "no")
        row = [text(r.a), text(r.b), num(r.n, fmt.count(r.n)), text(r.test),
               *([num(r.normality_p, fmt.p_value(r.normality_p))] if normality else []),
               num(r.statistic, fmt.statistic(r.statistic)),
               num(r.p, fmt.p_value(r.p)), num(r.p_holm, fmt.p_value(r.p_holm)), text(sig),
               num(r.mean_diff, fmt.difference(r.mean_diff, metric)),
               num(getattr(r, "diff_ci_low", None), _diff_interval(r, metric)),
               num(r.effect_size, fmt.fixed(r.effect_size))]
        if bayes:
            row += [num(x, fmt.probability(x)) for x in (r.p_a_better, r.p_equivalent, r.p_b_better)]
        rows.append(row)
    return Table(header, rows)


def _diff_interval(r, metric: Metric) -> str:
    low, high = getattr(r, "diff_ci_low", None), getattr(r, "diff_ci_high", None)
    if fmt.missing(low) or fmt.missing(high):
        return DASH
    return f"[{fmt.difference(low, metric)}, {fmt.difference(high, metric)}]"


def _p_is(p) -> str:
    """'= 0.0123' or '< 1e-4', to follow a 'p'."""
    shown = fmt.p_value(p)
    return f"< {shown[1:]}" if shown.startswith("<") else f"= {shown}"


def friedman_line(c) -> str:
    """The omnibus test and the critical difference, or why there is none: the exact p-value where the
    arrangements of the ranks could be enumerated, else the χ² and Iman–Davenport approximations, named."""
    f = c.friedman
    blocks = getattr(c, "block_name", "blocks")
    if not f:
        return (f"Friedman test: none here (it needs at least 3 configurations and 3 {blocks} that all of them "
                "share); see the notes.")
    head = f"Friedman test over {f['k']} configurations × {f['n']} {blocks}: χ²_F = {fmt.statistic(f['statistic'])}, "
    if not fmt.missing(f.get("exact_p")):
        line = (head + f"exact p {_p_is(f['exact_p'])} (every arrangement of the ranks within each of the "
                f"{blocks} counted); Iman–Davenport F = {fmt.statistic(f.get('iman_davenport_f'))}.")
    else:
        line = (head + f"p {_p_is(f['pvalue'])} (χ² approximation); Iman–Davenport F = "
                f"{fmt.statistic(f.get('iman_davenport_f'))}, p {_p_is(f.get('iman_davenport_p'))} (F approximation, "
                "used in the verdict: too many arrangements to count the exact distribution).")
    if not fmt.missing(c.critical_difference):
        line += (f" Nemenyi critical difference at α = {c.alpha:g}: {fmt.fixed(c.critical_difference)} mean-rank "
                 f"units (configurations whose mean ranks differ by less are not told apart).")
    return line


def aggregates(agg, metric: Metric) -> tuple[Table, Table]:
    """rliable's aggregates across cells: each configuration's IQM and mean over all its runs with their
    stratified-bootstrap 95% intervals, beside Demšar's mean ranks; and the probability of improvement of
    the best IQM over each other configuration."""
    header = ["configuration", "runs", "cells", f"IQM{fmt.unit(metric)}", "95% CI (bootstrap)",
              f"mean{fmt.unit(metric)}", "95% CI (bootstrap) "]
    rows = [[text(r.config), num(r.runs, fmt.count(r.runs)), num(r.tasks, fmt.count(r.tasks)),
             Entry(fmt.value(r.iqm, metric), fmt.number(r.iqm), strong=r.Index == 0),
             num(r.iqm_ci_low, fmt.interval(r.iqm_ci_low, r.iqm_ci_high, metric)),
             num(r.mean, fmt.value(r.mean, metric)),
             num(r.mean_ci_low, fmt.interval(r.mean_ci_low, r.mean_ci_high, metric))]
            for r in agg.table.itertuples()]
    def interval(r) -> str:
        return DASH if fmt.missing(r.ci_low) else f"[{fmt.probability(r.ci_low)}, {fmt.probability(r.ci_high)}]"

    poi = [[text(r.a), text(r.b), num(r.p_improvement, fmt.probability(r.p_improvement)), num(r.ci_low, interval(r))]
           for r in agg.improvement.itertuples()]
    return Table(header, rows), Table(["a (best IQM)", "b", "P(a better than b)", "95% CI (bootstrap)"], poi)


# --- study-wide ----------------------------------------------------------------------------------


def marginal(t: pd.DataFrame, axis: str, metric: Metric) -> Table:
    header = ["#", axis, "mean rank", f"{fmt.heading(metric)}: mean ± std", "runs"]
    rows = [[num(_rank_number(r["rank"]), str(r["rank"])), text(r[axis]),
             num(r["mean_rank"], fmt.fixed(r["mean_rank"])),
             Entry(fmt.mean_std(r["mean"], r["std"], metric), fmt.number(r["mean"])), num(r["n"], fmt.count(r["n"]))]
            for _, r in t.iterrows()]
    return Table(header, rows)


def _rank_number(rank) -> float | None:
    try:
        return float(rank)
    except (TypeError, ValueError):
        return None


def tuning(table: pd.DataFrame, budget: pd.DataFrame) -> Table:
    chosen = {r.label: r.learning_rate for r in table[table["chosen"]].itertuples()}
    header = ["configuration", "chosen learning rate", "rates tried", "search runs", "epochs", "seconds"]
    rows = [[text(r.label),
             num(chosen.get(r.label), f"{chosen[r.label]:g}" if r.label in chosen else "– (no finite result)"),
             num(r.rates, fmt.count(r.rates)), num(r.runs, fmt.count(r.runs)), num(r.epochs, fmt.count(r.epochs)),
             num(r.seconds, fmt.fixed(r.seconds, 0))] for r in budget.itertuples()]
    return Table(header, rows)


def conflicts(frame: pd.DataFrame) -> Table:
    if frame is None or frame.empty:
        return Table([], [])
    header = ["run key", "configuration", "field", "values", "study directories"]
    rows = [[text(r.key), text(getattr(r, "label", "")), text(r.field), text(_join(r.values)), text(_join(r.dirs))]
            for r in frame.itertuples()]
    return Table(header, rows)


def _join(x) -> str:
    return " | ".join(str(v) for v in x) if isinstance(x, (list, tuple)) else str(x)


def plain(header: list[str], rows: list[list[str]]) -> Table:
    return Table(header, [[text(c) for c in row] for row in rows])

