"""Racing over seeds: spend the compute where the answer is still open. This module holds the race's
decisions; `runs/racing.py` hands the runs they ask for to the workers.

A study with a `[racing]` table runs in rounds (F-Race, Birattari et al. 2002; irace, López-Ibáñez et
al. 2016). Round r trains seed r (the r-th seed the study lists) of every configuration still in the
race, in every cell (a dataset, or the study's `[analysis] cells`); each cell races on its own. After
each round from `first_test` seeds on, the configurations still racing are compared on the seeds run
so far (paired blocks) and every configuration significantly worse than the best is eliminated. The
race in a cell ends when `keep` configurations (or fewer) remain, or the seeds run out; the survivors
then run every seed. A configuration whose run diverges (NaN/inf loss) is eliminated at once.

Everything here is a pure function of the stored results: `replay` walks the rounds again from the
finished runs each time it is asked, so a study killed at any moment and run again takes exactly the
same decisions and runs, whatever the number of workers or the order in which runs finished. Decisions
read only complete rounds; a run of a later round that finished early (a speculative run, started so
that no core idles at the end of a round) never enters a decision, and a speculative run of a
configuration eliminated before its round is kept in the store but left out of the ranking, so the
report does not depend on the worker count either.

The tests (`test = "t"` is the default):
- "t": the paired t-test of each racing configuration against the best (the best mean), two-sided,
  Holm-corrected over the comparisons of the step (irace's "t-test" with Holm). The seeds within one
  cell are replicates of one experiment; the t-test on them separates a clear difference from 3 seeds
  on, where the exact Wilcoxon test cannot reach p < 0.125 with 4 pairs. Each decision records the
  Shapiro–Wilk p of the paired differences (the normality the t-test assumes), as autorank does.
  Differences that are equal on every seed have no variance: the t statistic is undefined and nothing
  is eliminated on them (irace's rule: an undefined test is p = 1).
- "friedman": irace's "F-test": the Friedman test over the racing configurations (blocks = seeds), and
  when it rejects at `alpha`, Conover's post-hoc keeps the configurations whose rank sum is within the
  critical difference of the best's (Conover 1999, pp. 369–371); with two configurations left, the exact
  Wilcoxon signed-rank test (zero differences split).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import SimpleNamespace

import numpy as np

from .. import metrics
from ..store.db import FINISHED
from .stat_tests import holm, wilcoxon_zsplit


@dataclass(frozen=True)
class Elimination:
    """Why and when a configuration left the race."""

    round: int  # 1-based: the number of seeds it had when it left
    reason: str  # "worse" (a test) or "diverged"
    test: str  # "t", "friedman", "wilcoxon", or "" for a divergence
    best: str  # the best configuration at that step
    statistic: float = math.nan  # t, Friedman's χ², or the Wilcoxon statistic
    p: float = math.nan  # raw p (t: vs the best; friedman: the omnibus p)
    p_holm: float = math.nan  # t only: Holm-adjusted over the step's comparisons
    mean_diff: float = math.nan  # best − this, in the metric's units, oriented so > 0 means the best is better
    normality_p: float = math.nan  # t only: Shapiro–Wilk p of the paired differences
    diverged_seed: int | None = None

    def describe(self) -> str:
        if self.reason == "diverged":
            return f"diverged (NaN/inf loss) with seed {self.diverged_seed}, round {self.round}"
        if self.test == "t":
            normal = "" if math.isnan(self.normality_p) else f"; Shapiro–Wilk p = {self.normality_p:.3g}"
            return (f"round {self.round}: worse than {self.best} (paired t = {self.statistic:.3g}, "
                    f"p = {self.p:.3g}, Holm p = {self.p_holm:.3g}{normal})")
        if self.test == "wilcoxon":
            return f"round {self.round}: worse than {self.best} (exact Wilcoxon p = {self.p:.3g})"
        return (f"round {self.round}: worse than {self.best} (Friedman χ² = {self.statistic:.3g}, p = {self.p:.3g}; "
                "outside Conover's critical difference)")


@dataclass
class CellRace:
    """One cell's race, replayed from the stored results."""

    name: str
    configs: list[str]  # in the study's order
    alive: list[str]
    eliminated: dict[str, Elimination] = field(default_factory=dict)
    rounds: int = 0  # complete rounds decided on
    over: bool = False  # keep reached or seeds run out: the survivors run every seed
    standing: list[str] = field(default_factory=list)  # alive, best first by mean over the decided rounds
    history: list[tuple[int, list[str]]] = field(default_factory=list)  # (round, alive after it)


@dataclass
class Race:
    """Every cell's race, and which runs it wants next."""

    cells: list[CellRace]
    needed: list[str]  # run keys the race needs now (not finished): this round's, or all seeds of survivors
    ahead: list[str]  # next round's runs of racing configurations, best first: speculative, if a core idles
    beyond: list[str]  # finished runs of configurations eliminated before that seed's round (not ranked)
    skipped: list[str] = field(default_factory=list)  # runs never needed: their configuration left the race

    @property
    def over(self) -> bool:
        return all(c.over for c in self.cells)


@dataclass(frozen=True)
class Entry:
    """One run as the race sees it."""

    key: str
    cell: str
    config: str
    seed: int


def replay(spec, seeds: list[int], entries: Iterable[Entry], results: Mapping[str, tuple[str, float]],
           higher_is_better: bool) -> Race:
    """The race as the stored results decide it. `spec`: the `[racing]` settings (first_test, alpha,
    keep, test); `seeds`: the study's seeds in their order (round r runs seeds[r]); `entries`: the runs of
    the full grid; `results`: run key -> (status, metric value) of the stored runs."""
    sign = 1.0 if higher_is_better else -1.0
    by_cell: dict[str, dict[tuple[str, int], str]] = {}
    order: dict[str, list[str]] = {}
    for e in entries:
        by_cell.setdefault(e.cell, {})[(e.config, e.seed)] = e.key
        configs = order.setdefault(e.cell, [])
        if e.config not in configs:
            configs.append(e.config)
    race = Race([], [], [], [])
    for cell, keys in by_cell.items():
        c = _replay_cell(spec, seeds, cell, order[cell], keys, results, sign)
        race.cells.append(c)
        status = lambda k: results.get(k, ("new", math.nan))[0]  # noqa: E731
        if c.over:
            race.needed += [keys[(cfg, s)] for cfg in c.alive for s in seeds
                            if (cfg, s) in keys and status(keys[(cfg, s)]) not in FINISHED]
        else:
            seed = seeds[c.rounds]
            race.needed += [keys[(cfg, seed)] for cfg in c.alive
                            if (cfg, seed) in keys and status(keys[(cfg, seed)]) not in FINISHED]
            if c.rounds + 1 < len(seeds):
                nxt = seeds[c.rounds + 1]
                race.ahead += [keys[(cfg, nxt)] for cfg in c.standing
                               if (cfg, nxt) in keys and status(keys[(cfg, nxt)]) not in FINISHED]
        for cfg, elim in c.eliminated.items():
            later = [keys[(cfg, s)] for s in seeds[elim.round:] if (cfg, s) in keys]
            race.beyond += [k for k in later if status(k) in FINISHED]
            race.skipped += [k for k in later if status(k) not in FINISHED]
    return race


def _replay_cell(spec, seeds, cell, configs, keys, results, sign) -> CellRace:
    c = CellRace(cell, list(configs), list(configs))
    values: dict[str, list[float]] = {cfg: [] for cfg in configs}
    for r, seed in enumerate(seeds):
        if len(c.alive) <= spec.keep:
            break
        got = {cfg: results.get(keys.get((cfg, seed), ""), ("new", math.nan)) for cfg in c.alive}
        if any(status not in FINISHED for status, _ in got.values()) or any((cfg, seed) not in keys for cfg in c.alive):
            c.standing = _standing(c.alive, values, sign)
            return c  # round r is not complete: nothing more is decided
        for cfg in c.alive:
            values[cfg].append(got[cfg][1])
        c.rounds = r + 1
        diverged = [cfg for cfg in c.alive if got[cfg][0] == "diverged"]
        if diverged and len(diverged) < len(c.alive):  # if every one diverged, none is worse than another
            best = _standing([x for x in c.alive if x not in diverged], values, sign)[0]
            for cfg in diverged:
                c.eliminated[cfg] = Elimination(r + 1, "diverged", "", best, diverged_seed=seed)
            c.alive = [x for x in c.alive if x not in diverged]
        if c.rounds >= spec.first_test and len(c.alive) > spec.keep:
            finite = [x for x in c.alive if all(math.isfinite(v) for v in values[x])]
            out = _step(spec, {x: np.asarray(values[x]) for x in finite}, sign, r + 1)
            c.eliminated.update(out)
            c.alive = [x for x in c.alive if x not in out]
        c.history.append((r + 1, list(c.alive)))
    c.over = True
    c.standing = _standing(c.alive, values, sign)
    return c


def _standing(alive: list[str], values: dict[str, list[float]], sign: float) -> list[str]:
    """Best first by mean over the decided rounds; ties keep the study's order (deterministic)."""
    def score(cfg):
        v = [x for x in values[cfg] if math.isfinite(x)]
        return -sign * float(np.mean(v)) if v else math.inf
    return sorted(alive, key=lambda cfg: (score(cfg), alive.index(cfg)))


def _step(spec, values: dict[str, np.ndarray], sign: float, round_: int) -> dict[str, Elimination]:
    if len(values) < 2:
        return {}
    names = list(values)
    best = _standing(names, {k: list(v) for k, v in values.items()}, sign)[0]
    if spec.test == "t":
        return _t_step(values, best, sign, spec.alpha, round_)
    return _friedman_step(values, best, sign, spec.alpha, round_)


def _t_step(values, best, sign, alpha, round_) -> dict[str, Elimination]:
    from scipy import stats

    others = [x for x in values if x != best]
    rows = []
    for cfg in others:
        d = sign * (values[best] - values[cfg])  # > 0: the best is better
        t, p = paired_t(d)
        normal = math.nan
        if len(d) >= 3 and np.ptp(d) > 0:
            normal = float(stats.shapiro(d).pvalue)
        rows.append((cfg, t, p, float(np.mean(d)), normal))
    adjusted = holm([r[2] for r in rows])
    out = {}
    for (cfg, t, p, diff, normal), p_adj in zip(rows, adjusted):
        if p_adj < alpha and diff > 0:
            out[cfg] = Elimination(round_, "worse", "t", best, t, p, float(p_adj), diff, normal)
    return out


def paired_t(d: np.ndarray) -> tuple[float, float]:
    """Two-sided paired t-test on the differences `d` (scipy's ttest_1samp against 0); differences
    without variance give (nan, 1.0): the statistic is undefined, so nothing is decided on them."""
    from scipy import stats

    d = np.asarray(d, dtype=float)
    if len(d) < 2 or np.ptp(d) == 0:
        return math.nan, 1.0
    res = stats.ttest_1samp(d, 0.0)
    return float(res.statistic), float(res.pvalue)


def _friedman_step(values, best, sign, alpha, round_) -> dict[str, Elimination]:
    from scipy import stats

    names = list(values)
    if len(names) == 2:
        other = names[1] if names[0] == best else names[0]
        d = sign * (values[best] - values[other])
        stat, p, _ = wilcoxon_zsplit(d)
        if p < alpha and float(np.mean(d)) > 0:
            return {other: Elimination(round_, "worse", "wilcoxon", best, stat, p, mean_diff=float(np.mean(d)))}
        return {}
    # ranks within each seed, rank 1 = best (irace ranks costs; we orient by the metric's direction)
    matrix = np.column_stack([-sign * values[x] for x in names])
    ranks = np.apply_along_axis(stats.rankdata, 1, matrix)
    n, k = ranks.shape
    r_sum = ranks.sum(axis=0)
    ties = sum(float((cnt ** 3 - cnt).sum()) for cnt in (np.unique(row, return_counts=True)[1] for row in ranks))
    denom = n * k * (k + 1) - ties / (k - 1)
    if denom <= 0:
        return {}
    chi2 = 12 * float(((r_sum - n * (k + 1) / 2) ** 2).sum()) / denom
    p = float(stats.chi2.sf(chi2, k - 1))
    if not p < alpha:
        return {}
    a = float((ranks ** 2).sum())
    spread = 2 * (n * a - float((r_sum ** 2).sum())) / ((n - 1) * (k - 1))
    crit = float(stats.t.ppf(1 - alpha / 2, (n - 1) * (k - 1))) * math.sqrt(max(spread, 0.0))
    best_sum = r_sum[names.index(best)]
    out = {}
    for i, cfg in enumerate(names):
        if cfg != best and r_sum[i] - best_sum > crit:
            diff = float(np.mean(sign * (values[best] - values[cfg])))
            out[cfg] = Elimination(round_, "worse", "friedman", best, chi2, p, mean_diff=diff)
    return out


# --- what the race cost, against the full grid -------------------------------------------------------


def budget(entries: Iterable[Entry], finished: Mapping[str, dict], epochs_of: Mapping[str, int]) -> dict:
    """Runs, epochs and seconds the race spent against the full grid. `finished`: key -> {"epochs":
    epochs trained, "seconds": wall seconds} of the finished runs; `epochs_of`: key -> the epochs a run
    is configured for. The full grid's seconds are the spent seconds plus, for each run not trained, its
    configuration's mean seconds per run (the cell's where the configuration has none)."""
    entries = list(entries)
    spent_runs = [e for e in entries if e.key in finished]
    per_config: dict[tuple[str, str], list[float]] = {}
    per_cell: dict[str, list[float]] = {}
    for e in spent_runs:
        s = finished[e.key].get("seconds")
        if s is not None and math.isfinite(s):
            per_config.setdefault((e.cell, e.config), []).append(s)
            per_cell.setdefault(e.cell, []).append(s)
    seconds = sum(finished[e.key].get("seconds") or 0.0 for e in spent_runs)
    full_seconds = seconds
    for e in entries:
        if e.key not in finished:
            known = per_config.get((e.cell, e.config)) or per_cell.get(e.cell) or [math.nan]
            full_seconds += float(np.mean(known))
    epochs = int(sum(finished[e.key].get("epochs") or 0 for e in spent_runs))
    return {"runs": len(spent_runs), "full_runs": len(entries), "epochs": epochs,
            "full_epochs": epochs + int(sum(epochs_of[e.key] for e in entries if e.key not in finished)),
            "seconds": float(seconds), "full_seconds": float(full_seconds)}


# --- from a study's runs and its store ------------------------------------------------------------------


def entries(runs, cells: list[str], study_name: str) -> list[Entry]:
    """The race's view of a study's (final) runs: each run's cell (its values of the `[analysis] cells`
    keys that vary) and configuration (its other varying keys), named as the analysis names them."""
    out = []
    for r in runs:
        cell = " · ".join(f"{k}={r.axes[k]}" for k in cells if k in r.axes) or study_name
        config = " · ".join(f"{k}={v}" for k, v in r.axes.items() if k not in cells) or study_name
        out.append(Entry(r.key, cell, config, r.seed))
    return out


def results(frame, metric: str) -> dict[str, tuple[str, float]]:
    """run key -> (status, metric value) from `analysis.runs_frame`: NaN where the run has none."""
    if frame.empty:
        return {}
    values = frame[metric] if metric in frame else [math.nan] * len(frame)
    return {k: (s, float(v) if v is not None else math.nan) for k, s, v in zip(frame["key"], frame["status"], values)}


@dataclass
class StudyRace:
    """A raced study's race as its report shows it: the cells' races, what was spent against the full
    grid, and the settings it ran with."""

    race: Race
    budget: dict
    settings: dict  # first_test, alpha, keep, test, seeds, metric, cells

    @property
    def cells(self) -> list[CellRace]:
        return self.race.cells

    @property
    def beyond(self) -> list[str]:
        return self.race.beyond


def from_runs(runs, meta_json: str, study_name: str, catalog=None) -> StudyRace:
    """Replay a stored race from `analysis.runs_frame` rows (the study's current final runs, pending ones
    included), the study's stored `racing` meta (`study_run.race_meta`) and the metrics its runs declare
    (`catalog`, for the metric's direction)."""
    settings = json.loads(meta_json)
    spec = SimpleNamespace(**{k: settings[k] for k in ("first_test", "alpha", "keep", "test")})
    axis_cols = [c for c in runs.columns if c.startswith("axis.")]
    rows = runs.to_dict("records")
    runs_like = [SimpleNamespace(key=r["key"], seed=int(r["seed"]),
                                 axes={c[5:]: r[c] for c in axis_cols if isinstance(r[c], str)}) for r in rows]
    found = entries(runs_like, settings["cells"], study_name)
    race = replay(spec, settings["seeds"], found, results(runs, settings["metric"]),
                  metrics.higher_is_better(settings["metric"], catalog))
    # what was spent includes the speculative runs beyond a configuration's elimination: they cost compute
    finished = {r["key"]: {"epochs": r.get("epochs_done"), "seconds": r.get("seconds")}
                for r in rows if r["status"] in FINISHED}
    epochs_of = {r["key"]: int(r.get("config.epochs") or 0) for r in rows}
    return StudyRace(race, {**budget(found, finished, epochs_of), "speculative": len(race.beyond)}, settings)
