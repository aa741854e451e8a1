"""`cnnbench run`: check a study, store its runs, execute what is missing, write the report.

Everything that can be wrong with the user's input is checked before anything is written: the spec
(study.py), the device, the data directory, every dataset (loaded once here), every batch size against
its training set and every loss against its number of classes.
"""

from __future__ import annotations

import fcntl
import os
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import UserError, environment_fault
from ..spec.study import StudySpec, canonical
from ..store.db import Store
from ..store.files import atomic_write, remove_stale_temps
from .one_run import Task, load_dataset

FINISHED = ("done", "diverged")


@dataclass
class Plan:
    study: StudySpec
    study_dir: Path
    runs: list  # the study's runs that can run here (datasets present)
    skipped: list[str] = field(default_factory=list)  # one line per missing dataset
    statuses: dict[str, str] = field(default_factory=dict)  # stored status of each run key

    @property
    def todo(self):
        return [r for r in self.runs if self.statuses.get(r.key) not in FINISHED]

    @property
    def done(self):
        """The runs already finished (done or diverged) in the study directory."""
        return [r for r in self.runs if self.statuses.get(r.key) in FINISHED]

    def frame(self):
        """One row per run that can run here: key, label, seed, role, status ("new" if not stored), the
        axes (`axis.NAME`)."""
        import pandas as pd

        rows = [{"key": r.key, "label": r.label, "seed": r.seed, "role": r.role,
                 "status": self.statuses.get(r.key, "new"), **{f"axis.{k}": v for k, v in r.axes.items()}}
                for r in self.runs]
        return pd.DataFrame(rows, columns=None if rows else ["key", "label", "seed", "role", "status"])


def study_dir_for(study: StudySpec, output: str | os.PathLike | None) -> Path:
    path = Path(output or study.meta.output_dir or Path("runs") / study.name).absolute()
    for p in (path, *path.parents):  # a file where a directory must go
        if p.exists() and not p.is_dir():
            raise UserError(f"output directory {path}: {p} is a file; choose another directory with --output")
    return path


def check_data_dir(data_dir: str | None) -> str | None:
    if data_dir is None:
        data_dir = os.environ.get("CNNBENCH_DATA") or None
    if data_dir is None:
        return None
    p = Path(data_dir)
    if p.exists() and not p.is_dir():
        raise UserError(f"data directory {p} is a file, not a directory; pass a directory with --data-dir")
    if not p.is_dir():
        raise UserError(f"data directory {p} does not exist; create it or pass another --data-dir")
    if not os.access(p, os.R_OK | os.X_OK):
        raise UserError(f"data directory {p} is not readable; fix its permissions or pass another --data-dir")
    return str(p)


def plan(study: StudySpec, output=None, data_dir: str | None = None, download: bool = True,
         read_only: bool = False) -> Plan:
    """Check the study against its data and the store; write nothing (with `download=False`, not
    even a dataset download: what is missing is reported as missing). With `read_only`, an existing
    study.db is read without opening it for writing (no schema upgrade, no WAL switch), so a study
    directory one cannot write can be planned; without it, it is opened as a run opens it (a directory
    that cannot be written is refused here, before anything is written)."""
    from .. import data, losses, models

    study_dir = study_dir_for(study, output)
    runs, skipped, checked = [], [], {}
    for run in study.runs:
        cfg = run.config
        ds_key = canonical(cfg["dataset"])
        if ds_key not in checked:
            try:
                spec = cfg["dataset"] if download else {**cfg["dataset"], "download": False}
                checked[ds_key] = load_dataset(spec, data_dir)
            except UserError as e:
                if not study.meta.skip_missing_datasets:
                    raise
                checked[ds_key] = None
                skipped.append(f"dataset {cfg['dataset']['name']}: {e}")
        ds = checked[ds_key]
        if ds is None:
            continue
        n_train = data.train_size(ds.x_train.shape[0], cfg["validation_split"])
        if n_train < 1 or (n_train == ds.x_train.shape[0] and cfg["validation_split"] > 0):
            raise UserError(f"{study.source}: validation_split {cfg['validation_split']} of the "
                            f"{ds.x_train.shape[0]} training images of {cfg['dataset']['name']} leaves an empty "
                            f"part; choose a validation_split between {1 / ds.x_train.shape[0]:.2g} and "
                            f"{1 - 1 / ds.x_train.shape[0]:.4g}")
        models.check_input(cfg["model"], ds.input_shape, f"{study.source}: dataset {cfg['dataset']['name']!r}")
        if cfg["batch_size"] > n_train:
            raise UserError(f"{study.source}: batch_size {cfg['batch_size']} is larger than the {n_train} "
                            f"training images of {cfg['dataset']['name']}; use a batch_size <= {n_train}")
        if cfg.get("targets"):  # several outputs: a map per class of the dataset, a loss that fits each output
            from ..engine.train import _multi_losses
            from ..spec.study import target_labels

            try:
                columns = {n: (c[0][:1], c[2]) for n, c in ds.label_columns.items()}  # CIFAR-100's coarse_label, ...
                classes = target_labels(cfg["targets"], ds.y_train[:1], ds.num_classes, columns,
                                        f"dataset {cfg['dataset']['name']!r}")[1]
                multi = _multi_losses(cfg["loss"], cfg.get("loss_weights"), list(classes), classes)
                parts = list(multi.losses.values())
            except UserError as e:
                raise UserError(f"{study.source}: {e}") from None
        else:
            parts = [losses.adapt(losses.get(cfg["loss"]), ds.num_classes)]  # refuses a loss that cannot apply
        if cfg["micro_batch_size"] and cfg["micro_batch_size"] < cfg["batch_size"]:
            from ..engine.train import check_micro_batching
            try:
                for training_loss in parts:
                    check_micro_batching(training_loss.loss)
            except UserError as e:
                raise UserError(f"{study.source}: {e}") from None
        if cfg.get("sample_weight"):
            from .one_run import load_sample_weight
            try:
                load_sample_weight(cfg["sample_weight"], ds.x_train.shape[0])
            except UserError as e:
                raise UserError(f"{study.source}: {e}") from None
        if cfg["class_weight"] is not None:  # refuses unknown classes and negative weights
            try:
                losses.class_weights_to_sample_weights(ds.y_train[:1], cfg["class_weight"], ds.num_classes)
            except UserError as e:
                raise UserError(f"{study.source}: class_weight: {e}") from None
        runs.append(run)
    statuses = {}
    if read_only:
        statuses = stored_statuses(study_dir, study.name)
    elif (study_dir / "study.db").exists():
        store = Store.open(study_dir, study.name)  # refuses a directory of another study
        statuses = store.statuses()
        store.close()
    return Plan(study, study_dir, runs, skipped, statuses)


def stored_statuses(study_dir: Path, name: str) -> dict[str, str]:
    """The stored status of each run key in `study_dir` (empty without a study.db), read without
    writing anything; refuses a database that is not ours or holds another study, as `Store.open` does."""
    from ..store.db import check_ours

    path = study_dir / "study.db"
    if path.is_file() and path.stat().st_size > 0:
        read = _read_closed_store(path)
        if read is not None:
            owner, statuses = read
            _check_owner(study_dir, owner, name)
            return statuses
    check_ours(path)
    if not path.exists() or path.stat().st_size == 0:
        return {}
    store = Store.open_readonly(study_dir)
    try:
        _check_owner(study_dir, store.get_meta("study"), name)
        return store.statuses()
    finally:
        store.close()


def _check_owner(study_dir: Path, owner: str | None, name: str) -> None:
    if owner is not None and owner != name:
        raise UserError(f"{study_dir} holds study {owner!r}, not {name!r}; "
                        f"choose another output directory with --output")


def _read_closed_store(path: Path) -> tuple[str | None, dict[str, str]] | None:
    """(owner, statuses) of a study.db no connection has open, or None (then the caller reads it as
    every reader does). SQLite's read-only mode creates the -wal and -shm files of a WAL database that
    has none, and leaves them; a database with neither a -wal nor a -journal beside it is complete in
    its one file, which `immutable=1` reads without creating anything."""
    import sqlite3

    from ..store.db import OUR_COLUMNS

    if any(path.with_name(path.name + suffix).exists() for suffix in ("-wal", "-journal")):
        return None
    try:
        con = sqlite3.connect(path.resolve().as_uri() + "?immutable=1", uri=True)
        try:
            for table in ("meta", "runs"):
                columns = {r[1] for r in con.execute(f'PRAGMA table_info("{table}")')}
                if not OUR_COLUMNS[table] <= columns:
                    return None  # not plainly ours: the checked path says what it is
            row = con.execute("SELECT value FROM meta WHERE key = 'study'").fetchone()
            statuses = {r[0]: r[1] for r in con.execute("SELECT key, status FROM runs")}
        finally:
            con.close()
    except sqlite3.Error:
        return None
    return (row[0] if row else None), statuses


@contextmanager
def study_lock(study_dir: Path):
    """One `cnnbench run` per study directory at a time (a crashed holder releases it)."""
    try:
        study_dir.mkdir(parents=True, exist_ok=True)
        fh = open(study_dir / ".lock", "w")  # noqa: SIM115  (entered below: `with fh:`, after the error handling)
    except OSError as e:
        raise (environment_fault(e, study_dir / ".lock", "create") or UserError(
            f"cannot create {study_dir / '.lock'} ({e.strerror}); "
            "choose another study directory with --output")) from None
    with fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise UserError(f"another `cnnbench run` is using {study_dir}; wait for it or use --output") from None
        yield


def run_plan(p: Plan, *, data_dir: str | None, device: str, workers="auto", progress=None,
            executor: str = "local", ray_options: dict | None = None, tensorboard: bool = False,
            mlflow: str | None = None) -> None:
    """Run what is missing. With [tuning]: the learning-rate search first, then each configuration at
    its chosen rate with all the seeds (a search run with the chosen rate and a study seed is reused,
    unless `reuse = false`, which keeps the search seeds apart from the study's)."""
    tuning, racing = p.study.meta.tuning, p.study.meta.racing
    with study_lock(p.study_dir):
        store = Store.open(p.study_dir, p.study.name)
        try:
            # All the spec's runs are current, those of a missing dataset too: their earlier results stay
            # ranked. Only the runs that can run here are run.
            store.add_runs(p.study.runs)
            store.set_meta("tuning", None if tuning is None else tuning.model_dump_json())
            store.set_meta("racing", None if racing is None else race_meta(p.study))
            # How the report ranks the study (`cnnbench report` reads it back; no run's key depends on it).
            store.set_meta("analysis", p.study.meta.analysis.model_dump_json())
            remove_stale_temps(p.study_dir / "study.toml")  # of a `cnnbench run` killed while writing it
            atomic_write(p.study_dir / "study.toml", p.study.text, fault=True)
            p.statuses = store.statuses()
            options = (data_dir, device, workers, progress, executor, ray_options, tensorboard, mlflow)
            finals = p.runs
            if tuning is not None:
                from .. import analysis

                _run_phase(p, p.todo, *options)  # the learning-rate search
                chosen = analysis.chosen_learning_rates(analysis.runs_frame(store), tuning.metric)
                finals = p.study.final_runs(chosen)
                store.add_runs(finals, replace_current=False)
                p.statuses = store.statuses()
                p.runs = p.runs + [r for r in finals if r.key not in {x.key for x in p.runs}]
            if racing is not None:
                _race(p, finals, store, *options)
            else:
                _run_phase(p, [r for r in finals if p.statuses.get(r.key) not in FINISHED], *options)
        finally:
            store.close()


def race_meta(study: StudySpec) -> str:
    """What `cnnbench report` needs to replay the race: the [racing] settings, the seeds in their order,
    and the metric and cells it decided on (as they were when it ran)."""
    import json

    a = study.meta.analysis
    return json.dumps({**study.meta.racing.model_dump(), "seeds": study.meta.seeds, "metric": a.metric,
                       "cells": a.cells}, sort_keys=True)


def _race(p: Plan, runs, store, data_dir, device, workers, progress, executor, ray_options, tensorboard,
          mlflow) -> None:
    """Run `runs` (the full grid of final runs) as a race: what runs next is decided by `racing.replay`
    from the stored results only. On the local executor a `RaceSource` hands runs to workers as they
    free up (the next round's runs only while this round's are still training); on Ray the race goes
    round by round."""
    from .. import metrics
    from ..analysis import runs_frame
    from . import racing

    spec = p.study.meta.racing
    a = p.study.meta.analysis
    entries = racing.entries(runs, a.cells, p.study.name)
    by_key = {r.key: r for r in runs}
    announced: set[str] = set()
    at_most = sum(1 for r in runs if p.statuses.get(r.key) not in FINISHED)  # the full grid, less what is done
    last: dict = {}  # the race as last replayed, and the finished runs it was replayed from

    def state():
        statuses = store.statuses()
        finished = frozenset((k, s) for k, s in statuses.items() if s in FINISHED)
        if last.get("finished") != finished:  # replay only when a result came in (an idle worker asks often)
            frame = runs_frame(store)  # also declares the study's custom metrics, for their direction
            last["race"] = racing.replay(spec, p.study.meta.seeds, entries, racing.results(frame, a.metric),
                                         metrics.higher_is_better(a.metric))
            last["finished"] = finished
        race = last["race"]
        new = [by_key[k] for k in race.needed if k not in announced]
        if new:
            announced.update(r.key for r in new)
            _announce(progress, new, at_most)
        return race, statuses

    if executor == "ray":
        while True:
            race, statuses = state()
            todo = [by_key[k] for k in race.needed]
            if not todo:
                return
            _run_phase(p, todo, data_dir, device, workers, None, executor, ray_options, tensorboard, mlflow,
                       progress_events=progress)
            statuses = store.statuses()
            if any(statuses.get(r.key) not in FINISHED for r in todo):
                return  # a run failed: the race cannot decide this round; the next `cnnbench run` retries it

    def make_task(key: str) -> Task:
        run = by_key[key]
        if key not in announced:  # a speculative run of the next round
            announced.add(key)
            _announce(progress, [run], at_most)
        return _task(p, run, data_dir, device, tensorboard, mlflow)

    source = racing.RaceSource(state, make_task, candidates=runs)
    _execute(source, len(runs), workers, device, progress)


def _announce(progress, runs, at_most: int | None = None) -> None:
    """A "queued" event for `runs`; `at_most`: how many runs this call can queue in all (a race's bound)."""
    if progress:
        progress({"event": "queued", "runs": [{"key": r.key, "label": r.label, "seed": r.seed,
                                                "epochs": r.config["epochs"]} for r in runs],
                  **({"at_most": at_most} if at_most is not None else {})})


def _task(p: Plan, r, data_dir, device, tensorboard, mlflow) -> Task:
    return Task(r.key, r.label, r.config, str(p.study_dir), data_dir, device, p.study.meta.save_models,
                tensorboard, mlflow=mlflow, study=p.study.name)


def _run_phase(p: Plan, todo, data_dir, device, workers, progress, executor, ray_options, tensorboard,
               mlflow=None, progress_events=None) -> None:
    """Run `todo`, announced first (`progress_events`: events only, when the runs were announced already)."""
    _announce(progress, todo)
    progress = progress or progress_events
    if not todo:
        return
    tasks = [_task(p, r, data_dir, device, tensorboard, mlflow) for r in todo]
    if executor == "ray":
        from .executors import ray as ray_executor

        ray_executor.run_tasks(tasks, progress, **(ray_options or {}))
        return
    _execute(tasks, len(tasks), workers, device, progress)


def _execute(tasks, n_tasks: int, workers, device, progress) -> None:
    """Run `tasks` (a list, or a source handing them out as they are needed) on local workers."""
    from .executors.local import plan_workers, run_tasks

    n_workers, threads = plan_workers(workers, n_tasks, device)
    if n_workers > 1:
        from .one_run import forget_datasets
        forget_datasets()  # workers load their own copy; free the parent's
    run_tasks(tasks, n_workers, threads, progress)
