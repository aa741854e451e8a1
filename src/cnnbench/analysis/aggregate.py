"""Aggregates across cells for few runs, after rliable (Agarwal et al. 2021, "Deep reinforcement learning
at the edge of the statistical precipice"), beside Demšar's mean ranks.

For each configuration the scores form a runs × tasks table (the seeds × the cells, e.g. datasets):

- **IQM**: the interquartile mean of all its runs pooled over the tasks (`scipy.stats.trim_mean` with
  25% cut at each end: rliable's `aggregate_iqm`), robust to an outlying run, and its **mean**.
- **Stratified bootstrap** 95% intervals: the runs are resampled with replacement within each task
  (strata), 2,000 times, percentile interval; the generator is seeded, so a report is reproducible;
  only with at least 3 runs in every task.
- **Probability of improvement** P(X > Y): per task, the probability that a run of X beats a run of Y
  (Mann–Whitney's U / (n·m), a tie counting one half), averaged over the tasks; with its stratified
  bootstrap interval. Given for the configuration with the best IQM against each other one.
- **Performance profile**: per threshold τ, the share of a configuration's runs (all tasks pooled)
  scoring above τ.

Scores are the metric's own values (accuracy as a fraction), not normalised per task: a harder dataset
weighs with its lower values. The metric's direction is respected (for a lower-is-better metric the
best IQM is the lowest and "improvement" means lower). rliable itself is not a dependency; its
estimators are a few lines of numpy/scipy, written out here and checked against direct computation.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

REPS = 2000
SEED = 0
MIN_RUNS = 3  # runs in every task for an interval (as for any interval in cnnbench: from 3 blocks)


@dataclass
class Aggregates:
    table: pd.DataFrame  # config, runs, tasks, iqm, iqm_ci_low, iqm_ci_high, mean, mean_ci_low, mean_ci_high
    improvement: pd.DataFrame  # a, b, p_improvement, ci_low, ci_high (a = the best IQM)
    profiles: pd.DataFrame  # config, tau, fraction
    tasks: list[str]
    left_out: list[str]  # configurations without a run in every task
    higher_is_better: bool


def iqm(x: np.ndarray, axis=None):
    from scipy import stats

    return stats.trim_mean(x, 0.25, axis=axis)


def _resample(rng: np.random.Generator, runs: np.ndarray, reps: int) -> np.ndarray:
    """reps × n resamples (with replacement) of one task's runs."""
    return runs[rng.integers(0, len(runs), size=(reps, len(runs)))]


def stratified_interval(per_task: list[np.ndarray], statistic, reps: int = REPS,
                        seed: int = SEED) -> tuple[float, float]:
    """The 95% percentile interval of `statistic(pooled runs, axis=1)` over stratified bootstrap samples."""
    rng = np.random.default_rng(seed)
    pooled = np.concatenate([_resample(rng, runs, reps) for runs in per_task], axis=1)
    values = statistic(pooled, axis=1)
    low, high = np.percentile(values, [2.5, 97.5])
    return float(low), float(high)


def probability_of_improvement(x_tasks: list[np.ndarray], y_tasks: list[np.ndarray]) -> float:
    """P(X > Y): per task the share of run pairs (x, y) with x > y (a tie: one half), averaged over tasks."""
    per_task = []
    for x, y in zip(x_tasks, y_tasks):
        diff = np.asarray(x, float)[:, None] - np.asarray(y, float)[None, :]
        per_task.append(((diff > 0) + 0.5 * (diff == 0)).mean())
    return float(np.mean(per_task))


def _improvement_interval(x_tasks, y_tasks, reps: int = REPS, seed: int = SEED) -> tuple[float, float]:
    rng = np.random.default_rng(seed)
    per_task = []
    for x, y in zip(x_tasks, y_tasks):
        xs, ys = _resample(rng, np.asarray(x, float), reps), _resample(rng, np.asarray(y, float), reps)
        diff = xs[:, :, None] - ys[:, None, :]
        per_task.append(((diff > 0) + 0.5 * (diff == 0)).mean(axis=(1, 2)))
    values = np.mean(per_task, axis=0)
    low, high = np.percentile(values, [2.5, 97.5])
    return float(low), float(high)


def aggregates(long: pd.DataFrame, higher_is_better: bool = True, reps: int = REPS,
               seed: int = SEED) -> Aggregates | None:
    """`long`: one row per run with columns config, task, value. None with fewer than 2 tasks."""
    long = long.dropna(subset=["value"])
    tasks = list(dict.fromkeys(long["task"]))
    if len(tasks) < 2:
        return None
    sign = 1.0 if higher_is_better else -1.0
    scores: dict[str, list[np.ndarray]] = {}
    left_out = []
    for config, g in long.groupby("config", sort=False):
        per_task = [g.loc[g["task"] == t, "value"].to_numpy(float) for t in tasks]
        if any(len(v) == 0 for v in per_task):
            left_out.append(str(config))
            continue
        scores[str(config)] = per_task
    rows = []
    for config, per_task in scores.items():
        pooled = np.concatenate(per_task)
        enough = min(len(v) for v in per_task) >= MIN_RUNS
        iqm_ci = stratified_interval(per_task, iqm, reps, seed) if enough else (np.nan, np.nan)
        mean_ci = stratified_interval(per_task, np.mean, reps, seed) if enough else (np.nan, np.nan)
        rows.append({"config": config, "runs": len(pooled), "tasks": len(tasks), "iqm": float(iqm(pooled)),
                     "iqm_ci_low": iqm_ci[0], "iqm_ci_high": iqm_ci[1], "mean": float(pooled.mean()),
                     "mean_ci_low": mean_ci[0], "mean_ci_high": mean_ci[1]})
    table = pd.DataFrame(rows, columns=["config", "runs", "tasks", "iqm", "iqm_ci_low", "iqm_ci_high", "mean",
                                        "mean_ci_low", "mean_ci_high"])
    if not table.empty:
        table = table.assign(_key=-sign * table["iqm"], _name=table["config"]).sort_values(
            ["_key", "_name"], kind="stable").drop(columns=["_key", "_name"]).reset_index(drop=True)
    improvement = []
    if len(table) > 1:
        best = table["config"].iloc[0]
        x = [sign * v for v in scores[best]]
        for other in table["config"].iloc[1:]:
            y = [sign * v for v in scores[other]]
            enough = min(len(v) for v in x + y) >= MIN_RUNS
            low, high = _improvement_interval(x, y, reps, seed) if enough else (np.nan, np.nan)
            improvement.append({"a": best, "b": other, "p_improvement": probability_of_improvement(x, y),
                                "ci_low": low, "ci_high": high})
    profiles = performance_profiles(scores, higher_is_better)
    return Aggregates(table, pd.DataFrame(improvement, columns=["a", "b", "p_improvement", "ci_low", "ci_high"]),
                      profiles, tasks, left_out, higher_is_better)


def performance_profiles(scores: dict[str, list[np.ndarray]], higher_is_better: bool = True,
                         points: int = 101) -> pd.DataFrame:
    """Per configuration and threshold τ (a grid over the observed range): the share of its runs scoring
    better than τ (above it; below it for a lower-is-better metric)."""
    if not scores:
        return pd.DataFrame(columns=["config", "tau", "fraction"])
    every = np.concatenate([np.concatenate(v) for v in scores.values()])
    taus = np.linspace(every.min(), every.max(), points)
    rows = []
    for config, per_task in scores.items():
        pooled = np.concatenate(per_task)
        better = (pooled[None, :] > taus[:, None]) if higher_is_better else (pooled[None, :] < taus[:, None])
        rows += [{"config": config, "tau": float(t), "fraction": float(f)} for t, f in zip(taus, better.mean(axis=1))]
    return pd.DataFrame(rows)
