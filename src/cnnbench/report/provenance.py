"""What was run, where and when, read from the study directories (read-only: `store.connect_readonly`):
the spec and its description, run counts, environments, dates, time spent, model sizes."""

from __future__ import annotations

import json
import tomllib
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

from ..store.db import connect_readonly
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


# --- what wrote the report, and the data it is about ---------------------------------------------------

ANALYSIS_PACKAGES = ("numpy", "scipy", "pandas", "scikit-posthocs", "baycomp", "matplotlib")


def git_commit(path: Path) -> str | None:
    """The commit of the git checkout holding `path` ("+ uncommitted changes" when its tracked files
    differ), or None when it is not in one (an installed wheel) or git is missing."""
    import subprocess

    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(["git", "-C", str(path), *args], capture_output=True, text=True, timeout=10,
                                  check=False)
        except (OSError, subprocess.SubprocessError):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    if not commit:
        return None
    dirty = git("status", "--porcelain", "--untracked-files=no", "--", ".")
    return commit[:12] + (" + uncommitted changes" if dirty else "")


def software() -> list[list[str]]:
    """(package, version) of cnnbench — with its git commit when it runs from a checkout — and of the
    packages the statistics and figures come from. These wrote the report; the runs' own versions are in
    the environment table."""
    from importlib import metadata

    from .. import __version__

    here = Path(__file__).resolve().parent
    commit = git_commit(here)
    rows = [["cnnbench", f"{__version__}" + (f" (git {commit})" if commit else " (not a git checkout)")]]
    for name in ANALYSIS_PACKAGES:
        try:
            rows.append([name, metadata.version(name)])
        except metadata.PackageNotFoundError:
            rows.append([name, "not installed"])
    return rows


HASH_LIMIT = 2 * 1024**3  # bytes of source files hashed per dataset; larger ones are named, not hashed


def dataset_checksums(runs: pd.DataFrame, data_dir=None) -> list[list[str]]:
    """Per dataset the runs used: its spec and a SHA-256 of its source files as found here (under
    `data_dir`, default $CNNBENCH_DATA or ~/.cache/cnnbench), or why there is none. The store records no
    checksum, so this hashes what this machine has: the same files the runs read only if the data were
    not replaced since."""
    import hashlib

    from ..data import loading

    specs: dict[str, dict] = {}
    for r in runs.itertuples():
        config = json.loads(r.config) if isinstance(r.config, str) else {}
        spec = config.get("dataset")
        if spec is not None:
            specs.setdefault(json.dumps(spec, sort_keys=True), spec)
    rows = []
    for spec in specs.values():
        shown = _spec_text(spec)
        try:
            source, _, _ = loading.source_of(spec)
            root = loading.default_data_dir(data_dir)
            found = source.locate(root)
        except Exception as e:
            rows.append([shown, f"not recorded ({type(e).__name__})"])
            continue
        if found is None:
            rows.append([shown, f"not recorded (its files are not under {root} here)"])
            continue
        paths = sorted({Path(p) for p in found})
        if not paths:
            rows.append([shown, "not recorded (no source file: the data come with a library)"])
            continue
        files_ = [f for p in paths for f in ([p] if p.is_file() else sorted(x for x in p.rglob("*") if x.is_file()))]
        size = sum(f.stat().st_size for f in files_)
        if size > HASH_LIMIT:
            rows.append([shown, f"not hashed ({size / 1024**3:.1f} GB in {len(files_)} files)"])
            continue
        digest = hashlib.sha256()
        for f in files_:
            digest.update(f.name.encode("utf-8") + b"\0")
            with open(f, "rb") as fh:
                for chunk in iter(lambda fh=fh: fh.read(1 << 20), b""):
                    digest.update(chunk)
        plural = "s" if len(files_) != 1 else ""
        rows.append([shown, f"sha256 {digest.hexdigest()[:16]} of {len(files_)} source file{plural}"])
    return rows


def _spec_text(spec) -> str:
    if isinstance(spec, dict):
        options = ", ".join(f"{k}={v}" for k, v in spec.items() if k != "name" and v is not None)
        return f"{spec.get('name')}" + (f" ({options})" if options else "")
    return str(spec)
