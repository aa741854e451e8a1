"""A study's answer: `compare_study(study_dirs)` runs the protocol of `compare` on stored runs.

Cells and blocks (Demšar 2006): runs are split into *cells* by the study's `[analysis] cells` keys
(default the dataset: a result is only meaningful within its dataset; a study that compares models
on one dataset ranks them as configurations). Within a cell the
configurations (the remaining axes: loss, optimizer, ...) are compared with the seeds as paired
blocks. Across cells each configuration is scored by its mean over seeds in each cell and compared
with the cells as blocks — the protocol for comparing methods over several data sets.

Several study directories (one study split across machines) are one set of runs: a run key is the
hash of a run's whole config, so equal keys are the same run. A key finished in two stores with
different results is a conflict: it is reported and left out, never silently merged.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from .. import metrics as metrics_mod
from ..errors import UserError
from ..store.db import FINISHED, Store
from ..store.db import METRICS as STORED_METRICS
from .aggregate import Aggregates, aggregates
from .compare import compare
from .comparison import Comparison
from .frames import final_runs, history_frame, metrics_catalog, runs_frame, scored
from .names import display_names
from .raced import compare_raced

DEFAULT_SETTINGS = {"metric": metrics_mod.DEFAULT, "alpha": 0.05, "rope": None, "cells": ["dataset"],
                    "target_accuracy": None}

# Losses that are one loss on one-hot labels: comparing them measures round-off, not a difference.
EQUIVALENT_LOSSES = [
    ({"categorical_crossentropy", "sparse_categorical_crossentropy", "kl_divergence"},
     "are the same loss on one-hot labels (KL divergence differs from cross-entropy by the labels' entropy, 0 "
     "for one-hot labels), so their runs differ only by round-off; a difference between them is not a "
     "difference between losses"),
    ({"hinge", "mean_absolute_error"},
     "differ by a constant on probabilities with one-hot labels (hinge = mean absolute error + (K-1)/K for K "
     "softmax outputs; + 1 on the negatives of a single sigmoid output), so they have the same gradients and "
     "their runs differ only by round-off; a difference between them is not a difference between losses"),
]


@dataclass
class Cell:
    name: str  # "dataset=mnist", or the study's name when there is one cell
    keys: dict  # the cell's values of the cell keys
    runs: pd.DataFrame  # the cell's ranked runs, with a `config` column naming their configuration
    comparison: Comparison
    label: str = ""  # the name as tables and the verdict show it: paths cut to their file name (names.py)

    def __post_init__(self) -> None:
        self.label = self.label or self.name


@dataclass
class StudyComparison:
    metric: metrics_mod.Metric
    alpha: float
    rope: float | None
    target_accuracy: float | None
    cell_keys: list[str]
    cells: list[Cell]
    across: Comparison | None
    runs: pd.DataFrame
    history: pd.DataFrame
    conflicts: pd.DataFrame
    study_names: list[str]
    study_dirs: list[Path]
    meta: dict = field(default_factory=dict)  # the first store's meta table (study, tuning, analysis, ...)
    race: Any = None  # racing.StudyRace of a study run with [racing]: who left the race when, what it saved
    notes: list[str] = field(default_factory=list)
    verdict: str = ""
    # several cells: rliable's aggregates (IQM and mean with stratified-bootstrap intervals, probability of
    # improvement, performance profiles) over all runs, the cells as tasks (aggregate.py)
    aggregates: Aggregates | None = None
    # the metrics the analysed runs know (their custom metrics and outputs' scores beside the built-ins)
    catalog: metrics_mod.Catalog = field(default_factory=metrics_mod.Catalog)

    def fmt(self, x: float) -> str:
        return format_value(self.metric, x)


def format_value(metric: metrics_mod.Metric, x: float) -> str:
    if x is None or x != x:
        return "–"
    return f"{100 * x:.2f}%" if metric.percent else f"{x:.4g}"


def format_difference(metric: metrics_mod.Metric, x: float) -> str:
    if x is None or x != x:
        return "–"
    return f"{100 * x:.2f} points" if metric.percent else f"{x:.4g}"


# --- loading ------------------------------------------------------------------------------------


def load_runs(study_dirs) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, list[dict], metrics_mod.Catalog]:
    """The union of the runs of `study_dirs`: (runs, history, conflicts, metas, the runs' metric catalog).

    A run key stored in several directories is one run: a finished copy wins over an unfinished one;
    two finished copies with different results are a conflict (one row per differing field) and the
    key is left out of the runs."""
    dirs = [Path(d) for d in ([study_dirs] if isinstance(study_dirs, (str, Path)) else study_dirs)]
    if not dirs:
        raise UserError("give at least one study directory")
    runs, hists, metas, catalogs = [], [], [], []
    for d in dirs:
        store = Store.open_readonly(d)
        try:
            r, h, c = runs_frame(store), history_frame(store), metrics_catalog([store])
            metas.append({row[0]: row[1] for row in store.conn.execute("SELECT key, value FROM meta")})
        finally:
            store.close()
        runs.append(r.assign(study_dir=str(d)))
        catalogs.append(c)
        hists.append(h.assign(study_dir=str(d)) if not h.empty else h)
    all_runs = pd.concat([r for r in runs if not r.empty], ignore_index=True) if any(
        not r.empty for r in runs) else runs[0].assign(study_dir=pd.Series(dtype=str))
    all_hist = pd.concat([h for h in hists if not h.empty], ignore_index=True) if any(
        not h.empty for h in hists) else hists[0]
    conflicts = pd.DataFrame(columns=["key", "label", "field", "values", "dirs"])
    if len(dirs) > 1 and not all_runs.empty:
        all_runs, conflicts = _union(all_runs)
        if not all_hist.empty:  # each run's history from the store whose copy was kept
            kept = dict(zip(all_runs["key"], all_runs["study_dir"]))
            all_hist = all_hist[all_hist["run_key"].map(kept) == all_hist["study_dir"]].reset_index(drop=True)
    return all_runs, all_hist, conflicts, metas, metrics_mod.Catalog.merged(catalogs)


def _union(runs: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    compared = ["status", *STORED_METRICS]
    kept, conflicts = [], []
    for key, g in runs.groupby("key", sort=False):
        done = g[g["status"].isin(FINISHED)]
        if len(done) > 1:
            differing = [c for c in compared if c in done and not _all_equal(done[c])]
            for c in differing:
                conflicts.append({"key": key, "label": g["label"].iloc[0], "field": c,
                                  "values": ", ".join(str(v) for v in done[c]), "dirs": ", ".join(done["study_dir"])})
            if differing:
                continue
        # a finished copy, else the most advanced unfinished one
        row = runs.loc[done.index[0] if len(done) else g["epochs_done"].idxmax()].copy()
        for flag in ("current", "final", "tuning"):  # a role in any store's spec counts
            row[flag] = bool(g[flag].any())
        kept.append(row)
    out = pd.DataFrame(kept).reset_index(drop=True) if kept else runs.iloc[:0]
    return out, pd.DataFrame(conflicts, columns=["key", "label", "field", "values", "dirs"])


def _all_equal(values: pd.Series) -> bool:
    first = values.iloc[0]
    for v in values.iloc[1:]:
        both_nan = isinstance(v, float) and isinstance(first, float) and math.isnan(v) and math.isnan(first)
        if not both_nan and v != first and not (pd.isna(v) and pd.isna(first)):
            return False
    return True


def _settings(metas: list[dict], overrides: dict) -> dict:
    stored = {}
    for meta in metas:
        if meta.get("analysis"):
            stored = json.loads(meta["analysis"])
            break
    out = dict(DEFAULT_SETTINGS)
    out.update({k: v for k, v in stored.items() if k in out and v is not None})
    out.update({k: v for k, v in overrides.items() if v is not None})
    return out


# --- metrics that need the history ----------------------------------------------------------------


def add_time_to_target(runs: pd.DataFrame, history: pd.DataFrame, target: float | None) -> pd.DataFrame:
    """`epochs_to_target` / `seconds_to_target`: the first epoch whose validation accuracy reaches
    `target` (1-based) and the training seconds up to its end (AlgoPerf's time-to-target); NaN for a
    run that never reached it."""
    runs = runs.copy()
    runs["epochs_to_target"] = math.nan
    runs["seconds_to_target"] = math.nan
    if target is None or history.empty or "val_acc" not in history:
        return runs
    h = history.sort_values(["run_key", "epoch"])
    h = h.assign(_elapsed=h.groupby("run_key")["seconds"].cumsum())
    reached = h[h["val_acc"] >= target].groupby("run_key").first()
    runs["epochs_to_target"] = runs["key"].map(reached["epoch"] + 1)
    runs["seconds_to_target"] = runs["key"].map(reached["_elapsed"])
    return runs


# --- the comparison -----------------------------------------------------------------------------


def compare_study(study_dirs, metric: str | None = None, cells: list[str] | None = None, alpha: float | None = None,
                  rope: float | None = None, target_accuracy: float | None = None,
                  pairs: str = "best") -> StudyComparison:
    """The study's answer from its store(s): one `Comparison` per cell (seeds as blocks) and one
    across cells (cells as blocks) when there are several. Arguments left at None come from the
    study's `[analysis]` settings (stored when it ran), else the defaults (test accuracy, α = 0.05,
    no ROPE, cells by dataset)."""
    runs, history, conflicts, metas, catalog = load_runs(study_dirs)
    s = _settings(metas, {"metric": metric, "cells": cells, "alpha": alpha, "rope": rope,
                          "target_accuracy": target_accuracy})
    m = metrics_mod.get(s["metric"], catalog)
    if not 0 < s["alpha"] < 1:
        raise UserError(f"alpha must be between 0 and 1, got {s['alpha']}")
    dirs = [Path(d) for d in ([study_dirs] if isinstance(study_dirs, (str, Path)) else study_dirs)]
    names = list(dict.fromkeys(meta.get("study") or d.name for meta, d in zip(metas, dirs)))
    if not runs.empty:
        runs = add_time_to_target(runs, history, s["target_accuracy"])
    ranked = final_runs(runs)
    race = None
    if metas and metas[0].get("racing") and not ranked.empty:
        # A raced study: the race as the stored results decide it. A run of a configuration that had left
        # the race before that seed's round (speculative, to keep a core busy) is kept but not ranked, so
        # the ranking does not depend on how many workers ran the race.
        from . import racing

        race = racing.from_runs(ranked, metas[0]["racing"], names[0], catalog)
        ranked = ranked[~ranked["key"].isin(set(race.beyond))]
    if not ranked.empty and history is not None and not history.empty:
        history = history[history["run_key"].isin(set(ranked["key"]))]
    sc = StudyComparison(m, float(s["alpha"]), s["rope"], s["target_accuracy"], [], [], None, runs, history,
                         conflicts, names, dirs, meta=metas[0] if metas else {}, race=race, catalog=catalog)
    if len(names) > 1:
        sc.notes.append(f"the directories hold differently named studies ({', '.join(names)}); their runs are "
                        "analysed together, a run key being the same run in any of them")
    if not conflicts.empty:
        sc.notes.append(f"{conflicts['key'].nunique()} run(s) finished with different results in different "
                        "directories; they are left out (see the conflicts table)")
    if ranked.empty:
        sc.verdict = "No finished runs to compare yet."
        return sc
    if m.name not in ranked or (ranked[m.name].isna().all() and (ranked["status"] == "done").any()):
        raise UserError(f"no run of this study has {m.name!r} (recorded only by newer versions of cnnbench, or "
                        f"it needs [analysis] target_accuracy); rank by another metric, e.g. --metric test_acc")
    frame = ranked.assign(_value=scored(ranked, m.name))
    axis_cols = [c for c in frame.columns if c.startswith("axis.")]
    sc.cell_keys = [c for c in s["cells"] if f"axis.{c}" in frame]
    cell_cols = [f"axis.{c}" for c in sc.cell_keys]
    config_cols = [c for c in axis_cols if c not in cell_cols]
    frame["_config"] = (frame[config_cols].astype(str).apply(
        lambda r: " · ".join(f"{c[5:]}={v}" for c, v in r.items()), axis=1) if config_cols else names[0])
    missing = int((frame["status"] == "done").sum() - frame.loc[frame["status"] == "done", "_value"].notna().sum())
    if missing:
        sc.notes.append(f"{missing} finished run(s) have no {m.name} (recorded before this metric existed, or "
                        "never reached the target) and are left out")
    diverged = frame[frame["status"] == "diverged"]
    if len(diverged):
        how = ("count at chance level" if m.name in ("test_acc", "val_acc", "train_acc", "test_top5_acc",
                                                        "val_top5_acc") else f"have no {m.name} and are left out")
        sc.notes.append(f"{len(diverged)} run(s) diverged (NaN/inf loss) and {how}")
    failed = int((frame["status"] == "failed").sum())
    if failed:
        sc.notes.append(f"{failed} run(s) failed (an error, not a result) and are left out; see runs.csv")

    fmt = lambda x: format_value(m, x)  # noqa: E731
    fmt_diff = lambda x: format_difference(m, x)  # noqa: E731
    groups = frame.groupby(cell_cols, sort=False) if cell_cols else [((), frame)]
    # a raced study ranked by the metric it raced on: each cell as its race decided (analysis/raced.py)
    raced_cells = ({c.name: c for c in race.cells} if race is not None and race.settings["metric"] == m.name
                   else {})
    for key, g in groups:
        key = key if isinstance(key, tuple) else (key,)
        keys = dict(zip(sc.cell_keys, key))
        name = " · ".join(f"{k}={v}" for k, v in keys.items()) or names[0]
        long = g[["_config", "seed", "_value"]].rename(columns={"_config": "config", "seed": "block",
                                                                 "_value": "value"})
        long = long.groupby(["config", "block"], as_index=False)["value"].mean()
        # the seeds are replicates of one experiment: the paired t-test where the differences look normal
        settings = dict(higher_is_better=m.higher_is_better, alpha=sc.alpha, rope=sc.rope, pairs=pairs,
                        what=m.label, fmt=fmt, fmt_diff=fmt_diff, test="auto", block_name="seeds")
        cell_race = raced_cells.get(name)
        cmp = compare_raced(long, cell_race, **settings) if cell_race is not None else compare(long, **settings)
        cmp.notes += _equivalence_notes(g)
        sc.cells.append(Cell(name, keys, g.drop(columns=["_value"]).rename(columns={"_config": "config"}), cmp))
    labels = display_names(c.name for c in sc.cells)
    for c in sc.cells:
        c.label = labels[c.name]
    if len(sc.cells) > 1:
        per_cell = frame.groupby([*cell_cols, "_config"], sort=False)["_value"].mean().reset_index()
        per_cell["block"] = per_cell[cell_cols].astype(str).agg(" · ".join, axis=1)
        long = per_cell.rename(columns={"_config": "config", "_value": "value"})[["config", "block", "value"]]
        # the cells are different experiments (Demšar 2006): the signed-rank test, no normality assumed
        sc.across = compare(long, higher_is_better=m.higher_is_better, alpha=sc.alpha, rope=sc.rope, pairs=pairs,
                            what=f"{m.label} (mean over seeds, {across_blocks(sc.cell_keys)} as blocks)", fmt=fmt,
                            fmt_diff=fmt_diff, test="wilcoxon", block_name=across_blocks(sc.cell_keys))
        runs_long = pd.DataFrame({"config": frame["_config"], "value": frame["_value"],
                                  "task": frame[cell_cols].astype(str).agg(" · ".join, axis=1)})
        sc.aggregates = aggregates(runs_long, higher_is_better=m.higher_is_better)
    sc.notes += _tuning_notes(frame, sc.meta)
    sc.verdict = _study_verdict(sc)
    return sc


def _equivalence_notes(runs: pd.DataFrame) -> list[str]:
    if "config.loss.name" not in runs:
        return []
    present = set(runs["config.loss.name"].dropna())
    notes = []
    smoothing = runs.get("config.loss.label_smoothing")
    hard = smoothing is None or not (pd.to_numeric(smoothing, errors="coerce").fillna(0) > 0).any()
    for group, why in EQUIVALENT_LOSSES:
        both = sorted(present & group)
        if len(both) > 1 and hard:
            notes.append(f"{' and '.join(both)} {why}")
    return notes


def _tuning_notes(frame: pd.DataFrame, meta: dict) -> list[str]:
    if not meta.get("tuning") or not frame["tuning"].any():
        return []
    tuning = json.loads(meta["tuning"])
    reused = frame[frame["tuning"] & frame["final"]]
    note = (f"learning rates were chosen on {tuning.get('metric', 'val_acc')} by the search; ")
    if len(reused):
        return [note + f"{len(reused)} ranked run(s) are the search runs that chose the rate (their seed was a "
                "search seed): selected on validation, they are ranked on the test set with the other seeds "
                "(set [tuning] reuse = false to keep selection and ranking apart)"]
    return [note + "no ranked run was used to choose it"]


def across_blocks(cell_keys: list[str]) -> str:
    """What the blocks are across cells: "datasets" when the cells are the datasets, else "cells"."""
    return "datasets" if list(cell_keys) == ["dataset"] else "cells"


def _cell_answer(cell: Cell) -> str | None:
    c = cell.comparison
    if c.best is None:
        return None
    group = c.best_group
    best = f"{' and '.join(group)} (tied: equal on every seed)" if len(group) > 1 else c.best
    rest = c.ranking[~c.ranking["best"].astype(bool)]
    tied = list(rest.loc[rest["tied_with_best"].astype(bool) & rest["can_reject_vs_best"].astype(bool), "config"])
    if rest.empty:
        with_ = ""
    elif not c.testable:
        with_ = " (by mean only: too few seeds for a test)"
    elif not c.decisive:
        with_ = " (by mean only: no test could separate anything with these seeds)"
    elif tied:
        with_ = f" (not distinguishable: {', '.join(tied[:4])}{' …' if len(tied) > 4 else ''})"
    elif not rest["can_reject_vs_best"].astype(bool).all():
        with_ = " (significantly better than every configuration a test could separate)"
    else:
        with_ = " (significantly better than the rest)"
    return f"In {cell.label}: best {best}{with_}."


def _study_verdict(sc: StudyComparison) -> str:
    """One cell: its verdict. Several: each cell's answer first (the seeds there are the evidence), then
    the comparison across cells, whose blocks are the cells (often too few for a test)."""
    if len(sc.cells) == 1:
        return sc.cells[0].comparison.verdict
    lines = [line for cell in sc.cells if (line := _cell_answer(cell))]
    if sc.across is not None:
        blocks = across_blocks(sc.cell_keys)
        lines.append(f"Across the {len(sc.cells)} {blocks} ({' × '.join(sc.cell_keys)}): {sc.across.verdict}")
    agg = sc.aggregates
    if agg is not None and len(agg.table) > 1:
        top = agg.table.iloc[0]
        ci = ("" if top["iqm_ci_low"] != top["iqm_ci_low"] else
              f", 95% CI {format_value(sc.metric, top['iqm_ci_low'])} to {format_value(sc.metric, top['iqm_ci_high'])}")
        text = (f"Over every run of every {blocks[:-1]} (rliable's interquartile mean, stratified bootstrap): best "
                f"{top['config']} (IQM {format_value(sc.metric, top['iqm'])}{ci})")
        if not agg.improvement.empty:
            nxt = agg.improvement.iloc[0]
            text += f"; the probability that one of its runs beats one of {nxt['b']}'s is {nxt['p_improvement']:.2f}"
        lines.append(text + ".")
    return " ".join(lines)


def cell_table(sc: StudyComparison, rows: str, cols: str) -> pd.DataFrame:
    """Means of the metric over seeds, `rows` axis × `cols` axis (e.g. loss × dataset, model ×
    optimizer), over the ranked runs; axis names without the `axis.` prefix."""
    frame = final_runs(sc.runs)
    frame = frame.assign(_value=scored(frame, sc.metric.name))
    r, c = f"axis.{rows}", f"axis.{cols}"
    if r not in frame or c not in frame:
        raise UserError(f"the study has no varying {rows!r} and {cols!r} to tabulate")
    return frame.pivot_table(index=r, columns=c, values="_value", aggfunc="mean").rename_axis(
        index=rows, columns=cols)
