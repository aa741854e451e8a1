"""The store as pandas frames: one row per run, one per run and epoch; what is ranked; how a run is scored.

A *configuration* is a run without its seed (its `label`); the seeds are its repetitions. A run that
diverged (NaN/inf loss) counts at chance accuracy (1 / classes): leaving it out would rank a
configuration by its survivors. A failed run (an error, not a result) is left out and flagged.
`marginal_rankings`: for each axis that varies (loss, optimizer, ...), each value's mean metric and its
mean rank among the axis' values, ranked within every combination of the other axes and seed. The
statistics that compare configurations are in `compare.py` (the protocol) and `evidence.py`.
"""

from __future__ import annotations

import json
import math

import pandas as pd

from .. import metrics
from ..store.db import METRICS, Store


def runs_frame(store: Store) -> pd.DataFrame:
    """One row per run: key, label, status, seed, one column per varying axis, metrics, timings, and the
    runs' custom metrics (`metrics = [...]`) as `test_<name>` / `val_<name>` columns."""
    rows, declared, outputs = [], set(), set()
    for r in store.runs():
        row = {"key": r["key"], "label": r["label"], "status": r["status"], "seed": r["config"]["seed"],
               "current": bool(r["current"]), "final": bool(r["final"]), "tuning": bool(r["tuning"]),
               "num_classes": r["num_classes"],
               "learning_rate": r["config"]["optimizer"].get("learning_rate"),
               **{f"axis.{k}": v for k, v in r["axes"].items()},
               **{m: r[m] for m in METRICS}, "epochs_done": r["epochs_done"], "best_epoch": r["best_epoch"],
               "stopped_epoch": r["stopped_epoch"], "seconds": r["seconds"], "error": r["error"]}
        row.update({f"config.{k}": v for k, v in _flatten(r["config"]).items()})
        # a run's custom metrics (metrics = [...]) as test_<name> / val_<name> columns; a built-in column of
        # the same name (test_macro_f1) keeps its value
        custom = r.get("custom_metrics") or {}
        for name, value in custom.items():
            row.setdefault(name, math.nan if value is None else value)
        declared.update(metrics.log_names(r["config"].get("metrics")))  # per output: <output>_<name>
        outputs.update(r["config"].get("targets") or ())
        rows.append(row)
    declared.update(f"{o}_{s}" for o in outputs for s in metrics.OUTPUT_SCORES)
    df = pd.DataFrame(rows)
    for name in sorted(declared):  # a column for every declared metric, NaN until a run records it
        for column in (f"test_{name}", f"val_{name}"):
            if column not in df:
                df[column] = math.nan
    return df


def metrics_catalog(stores) -> metrics.Catalog:
    """The metrics the runs of `stores` know (`metrics.Catalog`): the built-ins, their custom metrics and
    their outputs' scores, from the stored configs."""
    return metrics.Catalog.of_configs(r["config"] for store in stores for r in store.runs())


def history_frame(store: Store) -> pd.DataFrame:
    hist = pd.DataFrame(store.history())
    if hist.empty:
        return hist
    labels = {r["key"]: (r["label"], r["config"]["seed"]) for r in store.runs()}
    hist["label"] = hist["run_key"].map(lambda k: labels[k][0])
    hist["seed"] = hist["run_key"].map(lambda k: labels[k][1])
    return hist


def axes_of(df: pd.DataFrame) -> list[str]:
    return [c[len("axis."):] for c in df.columns if c.startswith("axis.")]


def final_runs(df: pd.DataFrame) -> pd.DataFrame:
    """The runs that are ranked: those of the study's latest spec, less learning-rate search runs
    whose rate was not chosen."""
    return df[df["current"] & df["final"]] if not df.empty else df


def current_runs(df: pd.DataFrame) -> pd.DataFrame:
    return df[df["current"]] if not df.empty else df


def scored(df: pd.DataFrame, metric: str = "test_acc") -> pd.Series:
    """`metric` of finished runs, a diverged run at chance accuracy (accuracy metrics); NaN for the others."""
    value = df[metric].where(df["status"] == "done")
    if metric.endswith("acc") and "num_classes" in df:
        # chance: one class in K guessed right; top-5 accuracy guesses five
        chance = (5.0 if "top5" in metric else 1.0) / df["num_classes"].astype(float)
        value = value.where(df["status"] != "diverged", chance.clip(upper=1.0))
    return value


def marginal_rankings(df: pd.DataFrame, metric: str = "test_acc",
                      higher_is_better: bool | None = None) -> dict[str, pd.DataFrame]:
    """For each varying axis: its values ranked by mean rank within blocks of the other axes × seed
    (rank 1 = best; the metric's direction from `cnnbench.metrics.higher_is_better` unless given).

    A value with no result at all (every run failed or still to run) cannot be ranked; it is listed
    last, with rank "–" and 0 runs, and the other values are ranked without it."""
    df = final_runs(df)
    if df.empty:
        return {}
    if higher_is_better is None:
        higher_is_better = metrics.higher_is_better(metric)
    axes = axes_of(df)
    done = df.assign(_score=scored(df, metric))
    out = {}
    for axis in axes:
        col, others = f"axis.{axis}", [f"axis.{a}" for a in axes if a != axis] + ["seed"]
        # Only complete blocks: every value of the axis has a result there (rank 1 of 2 is not rank 1 of 4).
        unscored = [v for v in done[col].unique() if done.loc[done[col] == v, "_score"].isna().all()]
        done_axis = done[~done[col].isin(unscored)]
        levels = done_axis[col].nunique()
        block = done_axis.groupby(others)["_score"].transform(lambda v: v.notna().sum())
        complete = done_axis[block == levels]
        ranks = complete.groupby(others)["_score"].rank(ascending=not higher_is_better, method="average")
        t = complete.assign(_rank=ranks).groupby(col).agg(mean=("_score", "mean"), std=("_score", "std"),
                                                          n=("_score", "size"), mean_rank=("_rank", "mean"))
        t = t.sort_values(["mean_rank", "mean"], ascending=[True, not higher_is_better]).reset_index().rename(
            columns={col: axis})
        t.insert(0, "rank", [str(i) for i in range(1, len(t) + 1)])
        if unscored:
            t = pd.concat([t, pd.DataFrame({"rank": "–", axis: unscored, "mean": math.nan, "std": math.nan,
                                            "n": 0, "mean_rank": math.nan})], ignore_index=True)
        out[axis] = t
    return out


def tuning_table(df: pd.DataFrame, metric: str = "val_acc") -> pd.DataFrame:
    """The learning-rate search: per configuration and rate, the mean `metric` over the search seeds.

    A diverged or failed search run counts as the worst possible value; the chosen rate is the best
    mean (the smallest rate among equals)."""
    cols = ["label", "learning_rate", "runs", "value", "chosen"]
    df = current_runs(df)
    if df.empty or not df["tuning"].any():
        return pd.DataFrame(columns=cols)
    search = df[df["tuning"]].copy()
    worst = -math.inf if metric.endswith("acc") else math.inf
    ok = search["status"] == "done"
    search["value"] = search[metric].where(ok & search[metric].notna(), worst)
    t = search.groupby(["label", "learning_rate"], sort=False).agg(runs=("key", "size"), value=("value", "mean"))
    t = t.reset_index().sort_values(["label", "learning_rate"]).reset_index(drop=True)
    # Rates are sorted, so idxmax's first maximum is the smallest rate among equals.
    sign = 1.0 if metric.endswith("acc") else -1.0
    best = (t["value"] * sign).groupby(t["label"], sort=False).idxmax()
    best = best[t.loc[best, "value"].map(math.isfinite).to_numpy()]  # all worst: nothing to choose
    t["chosen"] = t.index.isin(best)
    return t[cols]


def chosen_learning_rates(df: pd.DataFrame, metric: str = "val_acc", complete: bool = True) -> dict[str, float]:
    """label -> chosen learning rate; with `complete`, only configurations whose search has finished."""
    t = tuning_table(df, metric)
    if t.empty:
        return {}
    if complete:
        current = current_runs(df)
        search = current[current["tuning"]]
        unfinished = set(search.loc[~search["status"].isin(["done", "diverged", "failed"]), "label"])
        t = t[~t["label"].isin(unfinished)]
    return {r.label: float(r.learning_rate) for r in t[t["chosen"]].itertuples()}


def tuning_budget(df: pd.DataFrame) -> pd.DataFrame:
    """Per configuration: rates tried, search runs, epochs and seconds spent on the search."""
    df = current_runs(df)
    search = df[df["tuning"]] if not df.empty else df
    if search.empty:
        return pd.DataFrame(columns=["label", "rates", "runs", "epochs", "seconds"])
    return search.groupby("label", sort=False).agg(
        rates=("learning_rate", "nunique"), runs=("key", "size"), epochs=("epochs_done", "sum"),
        seconds=("seconds", "sum")).reset_index()


def _flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flatten(v, key + "."))
        elif isinstance(v, (list, tuple)):
            out[key] = json.dumps(v)
        else:
            out[key] = v
    return out
