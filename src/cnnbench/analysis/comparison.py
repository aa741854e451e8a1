"""What `compare` returns (`Comparison`): the ranking, the omnibus test, the pairwise tests and the
verdict, in the metric's own units. Its own module so that the verdict, the report and the race read
it without importing the protocol that builds it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import pandas as pd


@dataclass
class Comparison:
    """The outcome of `compare`. Values are in the metric's own units."""

    # ranking: rank, config, n, mean, std, ci_low, ci_high, mean_rank, best, tied_with_best, p_holm_vs_best,
    # p_raw_vs_best, test_vs_best, can_reject_vs_best, effect_vs_best (see RANKING_COLUMNS)
    ranking: pd.DataFrame
    # statistic, pvalue (χ²), iman_davenport_f, iman_davenport_p, exact_p, p (the one the verdict uses),
    # method, k, n; None below 3 configurations or 3 complete blocks (no omnibus p-value then)
    friedman: dict | None
    critical_difference: float | None
    nemenyi: pd.DataFrame | None  # k x k Nemenyi p-values (scikit-posthocs), for the CD diagram
    pairwise: pd.DataFrame  # see PAIRWISE_COLUMNS
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
    # False when no pairwise test could have found any difference (too few blocks for any test, or for
    # one to reach α after Holm): then "tied with best" says nothing, and tables should not mark it
    decisive: bool = True
    test: str = "wilcoxon"  # the pairwise rule: "wilcoxon" or "auto" (paired t-test unless not normal)
    block_name: str = "blocks"  # what a block is, for the notes and the verdict ("seeds", "datasets")

    @property
    def best(self) -> str | None:
        return None if self.ranking.empty else str(self.ranking["config"].iloc[0])

    @property
    def best_group(self) -> list[str]:
        """The best and every configuration exactly tied with it (equal values on every block)."""
        if self.ranking.empty:
            return []
        return [str(c) for c in self.ranking.loc[self.ranking["best"].astype(bool), "config"]]

    @property
    def testable(self) -> bool:
        return not self.pairwise.empty and self.pairwise["p"].notna().any()
