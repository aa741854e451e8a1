"""What was run, where and when, read from the study directories (read-only: `store.connect_readonly`):
the spec and its description, run counts, environments, dates, time spent, model sizes."""

from __future__ import annotations

import json
import tomllib
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

from ..store import connect_readonly
from . import format as fmt


@dataclass
class Source:
    """One study directory: its study's name, the spec as stored there, and the spec's description."""

    dir: Path
    name: str
    spec_text: str | None
    description: str
    meta: dict[str, str]


def read_source(study_dir: str | Path) -> Source:
    study_dir = Path(study_dir)
    conn = connect_readonly(study_dir)
    try:
        meta = {r[0]: r[1] for r in conn.execute("SELECT key, value FROM meta")}
    finally:
        conn.close()
    spec_path = study_dir / "study.toml"
    text = spec_path.read_text(encoding="utf-8", errors="replace") if spec_path.is_file() else None
    description = ""
    if text is not None:
        try:
            description = str(tomllib.loads(text).get("description", ""))
        except tomllib.TOMLDecodeError:  # a spec edited by hand after the run: show it, skip the description
            pass
    return Source(study_dir, meta.get("study") or study_dir.name, text, description, meta)


_RUN_COLUMNS = ("key", "status", "current", "final", "tuning", "axes", "config", "environment", "started_at",
                "finished_at", "seconds", "epochs_done", "params", "flops")


def raw_runs(study_dirs: list[Path]) -> pd.DataFrame:
    """One row per run key over all the stores (the first store that holds a key wins), with the
    columns the report's provenance needs; columns an older store lacks (params, flops) are NaN."""
    frames = []
    for d in study_dirs:
        conn = connect_readonly(d)
        try:
            have = {r[1] for r in conn.execute("PRAGMA table_info(runs)")}
            cols = [c for c in _RUN_COLUMNS if c in have]
            rows = [dict(r) for r in conn.execute(f"SELECT {', '.join(cols)} FROM runs")]
        finally:
            conn.close()
        frame = pd.DataFrame(rows, columns=cols).reindex(columns=list(_RUN_COLUMNS))
        frame["study_dir"] = str(d)
        frames.append(frame)
    runs = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=[*_RUN_COLUMNS, "study_dir"])
    return runs.drop_duplicates("key", keep="first").reset_index(drop=True)


def status_counts(runs: pd.DataFrame) -> dict[str, int]:
    """Runs by status among the spec's current runs, and how many are kept from earlier specs."""
    if runs.empty:
        return {}
    current = runs[runs["current"].astype(bool)]
    counts = {str(k): int(v) for k, v in current["status"].value_counts().items()}
    if len(current) < len(runs):
        counts["kept from earlier versions of the spec (not ranked; in runs.csv)"] = len(runs) - len(current)
    return counts


_ENV_FIELDS = {"cnnbench": "cnnbench", "torch": "torch", "python": "python", "device": "device",
               "device_name": "CPU / GPU model", "cpu_threads": "threads", "platform": "platform"}


def environments(runs: pd.DataFrame) -> tuple[list[str], list[list[str]]]:
    """The distinct environments the runs ran in (header, rows), each with its number of runs."""
    envs = [json.loads(e) for e in runs["environment"].dropna()] if not runs.empty else []
    if not envs:
        return [], []
    frame = pd.DataFrame([{label: str(e.get(k, fmt.DASH)) for k, label in _ENV_FIELDS.items()} for e in envs])
    grouped = frame.groupby(list(frame.columns), sort=False).size().reset_index(name="runs")
    return list(grouped.columns), [[str(v) for v in row] for row in grouped.itertuples(index=False)]


@dataclass
class Timing:
    first_start: str
    last_finish: str
    wall: str  # first start to last finish: machines that ran side by side count once
    run_seconds: str  # the sum of every run's own time: the compute spent


def timing(runs: pd.DataFrame) -> Timing:
    def date(t) -> str:
        return fmt.DASH if fmt.missing(t) else datetime.fromtimestamp(float(t), UTC).strftime(
            "%Y-%m-%d %H:%M UTC")

    start = runs["started_at"].min() if not runs.empty else None
    end = runs["finished_at"].max() if not runs.empty else None
    wall = None if fmt.missing(start) or fmt.missing(end) else float(end) - float(start)
    spent = runs["seconds"].sum(min_count=1) if not runs.empty else None
    return Timing(date(start), date(end), fmt.seconds(wall), fmt.seconds(spent))


def model_costs(runs: pd.DataFrame) -> list[list[str]]:
    """Rows of (model, dataset, parameters, FLOPs per image): a model's size depends on the input
    shape and the number of classes, so it is given per dataset. "–" where the store has no count
    (a store written before cnnbench counted them)."""
    rows: dict[tuple[str, str], list] = {}
    for r in runs.itertuples():
        config, axes = json.loads(r.config), json.loads(r.axes) if isinstance(r.axes, str) else {}
        key = (axes.get("model") or _spec_name(config.get("model")),
               axes.get("dataset") or _spec_name(config.get("dataset")))
        counts = rows.setdefault(key, [None, None])
        for i, x in enumerate((r.params, r.flops)):
            if fmt.missing(counts[i]) and not fmt.missing(x):
                counts[i] = x
    return [[model, dataset, fmt.si(params), fmt.si(flops)]
            for (model, dataset), (params, flops) in sorted(rows.items())]


def _spec_name(spec) -> str:
    if isinstance(spec, dict):
        return str(spec.get("name", fmt.DASH))
    return fmt.DASH if spec is None else str(spec)
