"""The report's race section (a study run with `[racing]`): who left the race when and why, a figure of
the configurations over the rounds, and the compute spent against the full grid. The decisions are
`racing.replay`'s, read from the stored results (`StudyComparison.race`)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from . import figures
from . import format as fmt
from .figures import Figure
from .tables import Table, num, text


def budget_sentence(sc) -> str:
    b = sc.race.budget
    s = sc.race.settings

    def share(a, full):
        return f" ({100 * a / full:.0f}%)" if full else ""

    extra = (f" {b['speculative']} of these runs were started early, to keep a core busy, for configurations "
             "that left the race before that seed's round: they are kept but not ranked, so the ranking does not "
             "depend on the number of workers." if b.get("speculative") else "")
    test = ("paired t-test against the best, Holm-corrected" if s["test"] == "t"
            else "Friedman test with Conover's post-hoc (irace's F-race)")
    seconds = (f"; {fmt.seconds(b['seconds'])} of training of an estimated {fmt.seconds(b['full_seconds'])}"
               f"{share(b['seconds'], b['full_seconds'])}" if math.isfinite(b["full_seconds"]) else "")
    return (f"Raced over up to {len(s['seeds'])} seeds on {s['metric']} ({test}, α = {s['alpha']:g} per step, "
            f"from {s['first_test']} seeds on, until {s['keep']} remain): {b['runs']} of the full grid's "
            f"{b['full_runs']} runs{share(b['runs'], b['full_runs'])}, {b['epochs']} of {b['full_epochs']} "
            f"epochs{share(b['epochs'], b['full_epochs'])}{seconds}.{extra} The configurations still racing at the "
            "end ran every seed; an eliminated configuration keeps the runs it had, and is ranked above on those.")


def cell_table(cell, comparison, metric) -> Table:
    """One row per configuration: still in the race at the end, or when and why it left."""
    means = {}
    if comparison is not None and not comparison.ranking.empty:
        means = {r.config: (r.mean, r.std, r.n) for r in comparison.ranking.itertuples()}
    header = ["configuration", "seeds run", f"{fmt.heading(metric)}: mean ± std", "race"]
    order = _order(cell, comparison)
    rows = []
    for config in order:
        mean, std, n = means.get(config, (math.nan, math.nan, 0))
        elim = cell.eliminated.get(config)
        status = elim.describe() if elim else ("raced to the end" if cell.over else "still racing")
        rows.append([text(config), num(n, fmt.count(n)), num(mean, fmt.mean_std(mean, std, metric)), text(status)])
    return Table(header, rows)


def _order(cell, comparison) -> list[str]:
    """The ranking's order (still racing first, then by the round they left and their mean), else the
    race's own: the survivors by standing, then the eliminated by round, in the study's order."""
    fallback = [*cell.standing, *sorted(cell.eliminated, key=lambda c: (-cell.eliminated[c].round,
                                                                       cell.configs.index(c)))]
    ranked = [] if comparison is None else [c for c in comparison.ranking["config"] if c in cell.configs]
    return ranked + [c for c in fallback if c not in ranked]


def figure(cell, n_seeds: int, comparison=None):
    """Configurations over rounds: a line for the rounds each raced, a cross where it left."""
    import matplotlib.pyplot as plt

    order = _order(cell, comparison)
    height = max(2.2, 0.34 * len(order) + 1.2)
    fig, ax = plt.subplots(figsize=(8.5, height))
    for y, config in enumerate(reversed(order)):
        elim = cell.eliminated.get(config)
        last = elim.round if elim else (n_seeds if cell.over else cell.rounds)
        color = "#999999" if elim else "#1f77b4"
        ax.plot([1, last], [y, y], "-", color=color, lw=3, solid_capstyle="butt")
        if elim:
            ax.plot([last], [y], "x", color="#d62728" if elim.reason == "worse" else "black", ms=9, mew=2)
    ax.set_yticks(range(len(order)))
    ax.set_yticklabels([figures.plain(figures.wrapped(c)) for c in reversed(order)], fontsize=8)
    ax.set_xticks(np.arange(1, n_seeds + 1))
    ax.set_xlim(0.5, n_seeds + 0.5)
    ax.set_xlabel("round (seeds run)")
    ax.grid(axis="x", alpha=0.3)
    ax.set_title(f"The race: {figures.plain(cell.name)}  (red ×: significantly worse; black ×: diverged)",
                 fontsize=9)
    fig.tight_layout()
    return fig


def write_figures(sc, out: Path) -> dict[str, Figure]:
    made: dict[str, Figure] = {}
    if sc.race is None:
        return made
    n_seeds = len(sc.race.settings["seeds"])
    one = len(sc.race.cells) == 1
    comparisons = {c.name: c.comparison for c in sc.cells}
    for cell in sc.race.cells:
        stem = "race" if one else f"race_{figures.slug(cell.name)}"
        made[cell.name] = figures.save(figure(cell, n_seeds, comparisons.get(cell.name)), out, stem, "The race",
                                       "Each line: the rounds (seeds) a configuration raced; a cross: the round it "
                                       "left the race.")
    return made


def status_counts(sc, counts: dict[str, int]) -> dict[str, int]:
    """The runs by status, where a raced study's runs that its race never needed (their configuration left
    the race first) are counted as such rather than as pending."""
    if sc.race is None or not sc.race.race.skipped:
        return counts
    status = dict(zip(sc.runs["key"], sc.runs["status"]))
    out = dict(counts)
    for key in sc.race.race.skipped:  # pending, or a run stopped part-way ('running') that is not needed now
        if out.get(status.get(key), 0) > 0:
            out[status[key]] -= 1
    out = {k: n for k, n in out.items() if n > 0}
    out["not run (their configuration left the race)"] = len(sc.race.race.skipped)
    return out


def context(sc, figs: dict[str, Figure]) -> dict | None:
    if sc.race is None:
        return None
    comparisons = {c.name: c.comparison for c in sc.cells}
    cells = [{"name": cell.name, "table": cell_table(cell, comparisons.get(cell.name), sc.metric),
              "figure": figs.get(cell.name)} for cell in sc.race.cells]
    return {"text": budget_sentence(sc), "cells": cells}
