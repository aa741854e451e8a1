"""Running a plan: `cnnbench run`'s work once `plan.plan` has checked everything.

`run_plan(plan, ...)` takes the study lock, stores the spec's runs and settings, and runs what is
missing on the executor asked for (`executors.REGISTRY`): with [tuning] the learning-rate search first,
then the final runs; with [racing] the final runs as a race (`analysis.racing.replay` decides what runs next
from the stored results only), else all of them at once (a phase).
"""

from __future__ import annotations

import fcntl
import json
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import UserError, environment_fault
from ..spec import StudySpec
from ..store.db import Store
from ..store.files import atomic_write, remove_stale_temps
from . import executors
from .plan import FINISHED, Plan
from .task import ProgressFn, Task


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
             executor: str = "local", executor_options: dict | None = None, tensorboard: bool = False,
             mlflow: str | None = None) -> None:
    """Run what is missing. With [tuning]: the learning-rate search first, then each configuration at
    its chosen rate with all the seeds (a search run with the chosen rate and a study seed is reused,
    unless `reuse = false`, which keeps the search seeds apart from the study's). `executor`: a name of
    `executors.REGISTRY` ("local", "ray"), `executor_options` its options (e.g. Ray's `address`)."""
    runner = executors.get(executor, **(executor_options or {}))
    with study_lock(p.study_dir):
        store = Store.open(p.study_dir, p.study.name)
        try:
            StudyRun(p, store, runner, data_dir, device, workers, progress, tensorboard, mlflow).run()
        finally:
            store.close()


def race_meta(study: StudySpec) -> str:
    """What `cnnbench report` needs to replay the race: the [racing] settings, the seeds in their order,
    and the metric and cells it decided on (as they were when it ran)."""
    a, racing = study.meta.analysis, study.meta.racing
    assert racing is not None  # stored for a raced study only
    return json.dumps({**racing.model_dump(), "seeds": study.meta.seeds, "metric": a.metric,
                       "cells": a.cells}, sort_keys=True)


def announce(progress: ProgressFn | None, runs, at_most: int | None = None) -> None:
    """A "queued" event for `runs`; `at_most`: how many runs this call can queue in all (a race's bound)."""
    if progress:
        progress({"event": "queued", "runs": [{"key": r.key, "label": r.label, "seed": r.seed,
                                                "epochs": r.config["epochs"]} for r in runs],
                  **({"at_most": at_most} if at_most is not None else {})})


@dataclass
class StudyRun:
    """One `cnnbench run` of a plan, under the study lock, with the study's store open."""

    p: Plan
    store: Store
    executor: executors.Executor
    data_dir: str | None
    device: str
    workers: Any
    progress: ProgressFn | None
    tensorboard: bool = False
    mlflow: str | None = None

    def run(self) -> None:
        p, store = self.p, self.store
        tuning, racing = p.study.meta.tuning, p.study.meta.racing
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
        finals = p.runs if tuning is None else self.tune(tuning)
        if racing is not None:
            self.race(finals)
        else:
            self.phase([r for r in finals if p.statuses.get(r.key) not in FINISHED])

    def tune(self, tuning) -> list:
        """The learning-rate search; returns the final runs at the chosen rates (stored, in the plan)."""
        from .. import analysis

        p = self.p
        self.phase(p.todo)
        chosen = analysis.chosen_learning_rates(analysis.runs_frame(self.store), tuning.metric)
        finals = p.study.final_runs(chosen)
        self.store.add_runs(finals, replace_current=False)
        p.statuses = self.store.statuses()
        p.runs = p.runs + [r for r in finals if r.key not in {x.key for x in p.runs}]
        return finals

    def task(self, run) -> Task:
        p = self.p
        return Task(run.key, run.label, run.config, str(p.study_dir), self.data_dir, self.device,
                    p.study.meta.save_models, self.tensorboard, mlflow=self.mlflow, study=p.study.name)

    def phase(self, todo, announced: bool = False) -> None:
        """Run `todo` (announced first, unless `announced` already)."""
        if not announced:
            announce(self.progress, todo)
        if todo:
            self.execute([self.task(r) for r in todo], len(todo))

    def execute(self, tasks, n_tasks: int) -> None:
        """Run `tasks` (a list, or a source handing them out as they are needed) on the executor."""
        self.executor.run(tasks, n_tasks, self.workers, self.device, self.progress)

    def race(self, runs) -> None:
        """Run `runs` (the full grid of final runs) as a race (`analysis.racing.replay` from the stored results
        only). An executor that streams takes a `RaceSource` that hands runs to workers as they free up
        (the next round's runs only while this round's are still training); another goes round by round."""
        from . import racing

        race = _Race(self, runs)
        if not self.executor.streams:
            self._race_in_rounds(race)
            return
        source = racing.RaceSource(race.state, race.make_task, candidates=runs)
        self.execute(source, len(runs))

    def _race_in_rounds(self, race: _Race) -> None:
        while True:
            todo = [race.by_key[k] for k in race.state()[0].needed]
            if not todo:
                return
            self.phase(todo, announced=True)
            statuses = self.store.statuses()
            if any(statuses.get(r.key) not in FINISHED for r in todo):
                return  # a run failed: the race cannot decide this round; the next `cnnbench run` retries it


class _Race:
    """A race's state as its study run sees it: replayed from the stored results when one came in, each
    run announced once (when the race first needs it, or when it is started speculatively)."""

    def __init__(self, run: StudyRun, runs):
        from ..analysis import racing

        self.run, a = run, run.p.study.meta.analysis
        self.entries = racing.entries(runs, a.cells, run.p.study.name)
        self.by_key = {r.key: r for r in runs}
        self.announced: set[str] = set()
        self.at_most = sum(1 for r in runs if run.p.statuses.get(r.key) not in FINISHED)  # the grid less what is done
        self.last: dict = {}  # the race as last replayed, and the finished runs it was replayed from

    def state(self):
        from .. import metrics
        from ..analysis import racing, runs_frame

        study = self.run.p.study
        statuses = self.run.store.statuses()
        finished = frozenset((k, s) for k, s in statuses.items() if s in FINISHED)
        if self.last.get("finished") != finished:  # replay only when a result came in (an idle worker asks often)
            a = study.meta.analysis
            frame = runs_frame(self.run.store)
            self.last["race"] = racing.replay(study.meta.racing, study.meta.seeds, self.entries,
                                              racing.results(frame, a.metric),
                                              metrics.higher_is_better(a.metric, study.metrics))
            self.last["finished"] = finished
        race = self.last["race"]
        self.announce([self.by_key[k] for k in race.needed])
        return race, statuses

    def announce(self, runs) -> None:
        new = [r for r in runs if r.key not in self.announced]
        if new:
            self.announced.update(r.key for r in new)
            announce(self.run.progress, new, self.at_most)

    def make_task(self, key: str) -> Task:
        self.announce([self.by_key[key]])  # a speculative run of the next round
        return self.run.task(self.by_key[key])
