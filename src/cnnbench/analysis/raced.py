"""The comparison of one cell of a raced study (`[racing]`).

A race decides step by step: after each round, the configurations still racing are tested against the
best of that round (Holm over that step's comparisons), and the significantly worse leave. Testing every
configuration again at the end, as one family, would be a different procedure with a different answer
(the same configuration "significantly worse" in the race and "not distinguishable" in the table). So a
raced cell is reported as the race decided it:

- the configurations still in the race at the end are compared with each other as any cell is (`compare`,
  on their seeds: all of them once the race is over);
- each configuration that left the race follows them, ranked by the round it left (later first) and then
  by its mean, with its own mean ± std over the seeds it ran, and the race's test against the best of
  that round (statistic, raw and Holm p) as its evidence, marked "out in round r: worse" (or diverged);
- the verdict says who left the race when.

Used only when the report ranks by the metric the race decided on; ranked by another metric, a raced
study is compared as any study whose configurations have different numbers of seeds.
"""

from __future__ import annotations

import math

import pandas as pd

from .compare import compare
from .comparison import Comparison
from .verdict import name_list

LEFT = "left_race"  # ranking column: how the configuration left the race ("" for those still in it)


def compare_raced(long: pd.DataFrame, cell, **settings) -> Comparison:
    """`long`: the cell's (config, block, value) rows; `cell`: its `racing.CellRace`; `settings`: compare()'s."""
    alive = [c for c in cell.alive if c in set(long["config"])]
    if not cell.eliminated or not alive:
        return compare(long, **settings)
    cmp = compare(long[long["config"].isin(alive)], **settings)
    everyone = compare(long, **{**settings, "pairs": "best"})  # for each eliminated configuration's own numbers
    own = everyone.ranking.set_index("config")
    sign = 1.0 if settings.get("higher_is_better", True) else -1.0
    left = sorted((c for c in cell.eliminated if c in own.index),
                  key=lambda c: (-cell.eliminated[c].round, -sign * own.loc[c, "mean"]))
    best = str(cmp.ranking["config"].iloc[0]) if not cmp.ranking.empty else None
    rows = []
    for i, config in enumerate(left):
        e = cell.eliminated[config]
        row = own.loc[config].to_dict()
        worse = e.reason == "worse"
        row.update(config=config, rank=len(cmp.ranking) + i + 1, mean_rank=math.nan, best=False,
                   tied_with_best=False, p_raw_vs_best=e.p if worse else math.nan,
                   p_holm_vs_best=(e.p_holm if e.test == "t" else e.p) if worse else math.nan,
                   test_vs_best=_test_name(e) if worse else "",
                   can_reject_vs_best=worse, effect_vs_best=-sign * e.mean_diff if worse else math.nan)
        than = "" if e.best == best else f" than {e.best}, the best then"  # the best of its round, if another
        row[LEFT] = (f"out in round {e.round}: worse{than}" if worse
                     else f"out in round {e.round}: diverged (seed {e.diverged_seed})")
        rows.append(row)
    ranking = cmp.ranking.assign(**{LEFT: ""})
    cmp.ranking = pd.concat([ranking, pd.DataFrame(rows)[ranking.columns]], ignore_index=True)
    cmp.values = everyone.values  # every run's value, for the figures
    cmp.verdict = f"{cmp.verdict} {race_sentence(cell, left)}".strip()
    return cmp


def _test_name(e) -> str:
    return {"t": "race: paired t-test, Holm", "friedman": "race: Friedman + Conover",
            "wilcoxon": "race: exact Wilcoxon"}.get(e.test, "race")


def race_sentence(cell, left: list[str]) -> str:
    by_round: dict[int, list[str]] = {}
    for config in left:
        by_round.setdefault(cell.eliminated[config].round, []).append(config)
    parts = [f"after {r} seed{'s' if r > 1 else ''}: {name_list(sorted(configs))}"
             for r, configs in sorted(by_round.items())]
    state = "raced to the end" if cell.over else f"still racing after {cell.rounds} rounds"
    return (f"{len(left)} configuration{'s' if len(left) != 1 else ''} left the race as significantly worse than "
            f"the best of its round or diverged ({'; '.join(parts)}); each is ranked below on the seeds it ran. "
            f"{len(cell.alive)} configuration{'s' if len(cell.alive) != 1 else ''} {state}.")
