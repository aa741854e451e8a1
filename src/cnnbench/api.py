"""The Python API for studies: what `cnnbench run`, `cnnbench report` and `cnnbench list studies` do,
as calls (the command line is a thin shell over this module).

    import cnnbench
    study = cnnbench.Study.from_toml("default")              # a .toml file, or a built-in study's name
    study = cnnbench.Study.from_dict({"name": "mine", "epochs": 2, "seeds": [0, 1],
                                      "grid": {"loss": ["categorical_crossentropy", "mse"]}})
    plan = study.plan()                 # the runs and which are already done; writes nothing
    result = study.run(workers=1)       # trains what is missing, writes the report; resumable
    study.results()                     # pandas DataFrame, one row per run
    study.report()                      # rewrites the report from the store

`Study` wraps a parsed spec (`cnnbench.spec.StudySpec`: the validated settings and the resolved runs,
each keyed by the hash of its config). Bad input raises `cnnbench.UserError` (one line: the problem
and the fix; messages name an option by its command-line flag, e.g. `--workers` for `workers=`);
a full disk or an unwritable directory raises `cnnbench.errors.EnvironmentFault` (a `UserError`), and
the same call resumes once it is fixed.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import UserError
from .runs.progress import StudyProgress, show_plan
from .spec import StudySpec

if TYPE_CHECKING:
    from .report.notebook import ReportView, comparison_html

__all__ = ["ReportView", "RunResult", "Study", "StudyProgress", "builtin_studies", "comparison_html", "report"]



@dataclass
class RunResult:
    """What `Study.run` did."""

    study_dir: Path
    runs: int  # the study's runs that could run here (with [tuning]: the search runs and the final runs)
    already_finished: int  # of these, finished (done or diverged) before this call
    ran: int  # runs this call trained (or tried to)
    failed: list[str] = field(default_factory=list)  # keys of the study's runs that failed (errors: results())
    seconds: float = 0.0  # wall time of the training
    report: Path | None = None  # report.html, when the report was written

    @property
    def ok(self) -> bool:
        """True when every run finished (done or diverged); a failed run is retried by the next run()."""
        return not self.failed


class Study:
    """A study: its spec, where its runs are stored, and what can be done with it.

    `output` is the study directory (default: the spec's `output_dir`, else `runs/NAME`, relative to
    the working directory). Every method takes `output=` to use another directory for that call; a
    `run(output=...)` also makes it the directory later calls read."""

    def __init__(self, spec: StudySpec, output: str | os.PathLike | None = None):
        if not isinstance(spec, StudySpec):
            raise TypeError(f"Study wraps a cnnbench.spec.StudySpec; got {type(spec).__name__} (use "
                            "Study.from_toml or Study.from_dict)")
        self.spec = spec
        self.output = output

    # --- construction ---------------------------------------------------------------------------

    @classmethod
    def from_toml(cls, path_or_name: str | os.PathLike | None = None, *,
                  output: str | os.PathLike | None = None) -> Study:
        """A study file, or a built-in study by name (`None`: the default study)."""
        from .spec import load

        return cls(load(path_or_name), output)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, output: str | os.PathLike | None = None,
                  source: str = "<dict>") -> Study:
        """A study from the dict a study file parses to (`tomllib.load`): the same keys, the same
        checks, the same run keys. Tuples count as lists. `source` names the study in error messages."""
        from .spec import parse

        if not isinstance(data, Mapping):
            raise UserError(f"{source}: a study is a dict of its keys (name, seeds, grid, ...), got "
                            f"{type(data).__name__}; pass a dict such as {{'name': 'mine', 'epochs': 2}}")
        plain: dict[str, Any] = _plain(data)
        if (where := _none_at(plain)) is not None:
            raise UserError(f"{source}: {where} is None, which a study file cannot hold (TOML has no null); "
                            "leave the key out for its default, or use false where the option takes it "
                            "(e.g. early_stopping = false)")
        spec = parse(plain, source)
        spec.text = _to_toml(plain, source)
        return cls(spec, output)

    @classmethod
    def open(cls, study_dir: str | os.PathLike) -> Study:
        """The study that ran in `study_dir`, from the study.toml it keeps there; its output is that
        directory."""
        from .spec import load

        path = Path(study_dir) / "study.toml"
        if not path.is_file():
            raise UserError(f"{study_dir} is not a study directory (no study.toml); give the directory a "
                            "study ran into (its --output), or use Study.from_toml")
        return cls(load(path), study_dir)

    # --- what it is -----------------------------------------------------------------------------

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def description(self) -> str:
        return self.spec.meta.description

    @property
    def source(self) -> str:
        return self.spec.source

    @property
    def text(self) -> str:
        """The spec as TOML (kept as study.toml in the study directory)."""
        return self.spec.text

    @property
    def runs(self) -> list:
        """The resolved runs (`cnnbench.spec.Run`: key, label, axes, config, role); with [tuning], the
        learning-rate search runs (the final runs follow from their results)."""
        return self.spec.runs

    @property
    def study_dir(self) -> Path:
        """The study directory (absolute)."""
        return self._dir(None)

    def __repr__(self) -> str:
        return f"Study({self.name!r}, {len(self.runs)} runs, source={self.source!r})"

    def _dir(self, output) -> Path:
        from .runs.plan import study_dir_for

        return study_dir_for(self.spec, output if output is not None else self.output)

    # --- planning and running -------------------------------------------------------------------

    def plan(self, output: str | os.PathLike | None = None, *, data_dir: str | os.PathLike | None = None,
             device: str = "auto", workers: int | str = "auto", executor: str = "local",
             cpus_per_run: float = 1, gpus_per_run: float = 0, tensorboard: bool = False,
             mlflow: str | None = None):
        """What `run` would do, without doing it: a `cnnbench.runs.plan.Plan` (`.runs` that can run here,
        `.statuses` of the stored runs, `.todo`, `.done`, `.skipped` datasets, `.study_dir`, `.frame()`).

        Checks everything `run` checks with the same arguments (the spec against its data, the device,
        workers, the executor, the loggers) and raises the same `UserError`; writes nothing: no
        download (a missing dataset is reported as missing), the study directory only read."""
        data_dir = self._check(data_dir, device, workers, tensorboard, mlflow)[0]
        _executor_options(executor, None, cpus_per_run, gpus_per_run)
        from .runs import plan as planning

        return planning.plan(self.spec, output if output is not None else self.output, data_dir, download=False,
                           read_only=True)

    def estimate(self, output: str | os.PathLike | None = None, *, data_dir: str | os.PathLike | None = None,
                 device: str = "auto", workers: int | str = "auto", calibrate: bool = True, plan=None):
        """How long `run` would take on this machine: a `cnnbench.runs.estimate.Estimate` (`.seconds`,
        `.line()`, `.exceeds_hour`), from the study's finished runs, else from a short calibration (a
        few training steps per model/dataset/batch size, at most ~20 s in all; `calibrate=False`: none).
        Writes nothing. `plan`: a plan already made with the same arguments (else `plan(...)` makes one)."""
        from .runs.estimate import estimate
        from .runs.plan import check_data_dir

        if plan is None:
            plan = self.plan(output, data_dir=data_dir, device=device, workers=workers)
        return estimate(plan, workers=_workers(workers), device=device, calibrate=calibrate,
                        data_dir=check_data_dir(None if data_dir is None else str(data_dir)))

    def run(self, output: str | os.PathLike | None = None, *, data_dir: str | os.PathLike | None = None,
            device: str = "auto", workers: int | str = "auto", executor: str = "local",
            ray_address: str | None = None, cpus_per_run: float = 1, gpus_per_run: float = 0,
            tensorboard: bool = False, mlflow: str | None = None, report: bool = True,
            progress: Callable[[dict], None] | None = None,
            on_plan: Callable[[Any], None] | None = None, verbose: int | str = "auto") -> RunResult:
        """Train the runs that are not finished, as `cnnbench run` does, and write the report.

        Everything is checked before anything is written (see `plan`); datasets missing from the data
        directory are downloaded where possible. Finished runs (done or diverged) are kept, failed and
        interrupted ones run again (an interrupted one from its last epoch). `workers`: processes
        ("auto": one per core on a CPU); `executor`: "local" or "ray" (`ray_address`, `cpus_per_run`,
        `gpus_per_run`); `tensorboard`, `mlflow` (a tracking URI): also log there. `progress` receives
        the events `{"event": "queued", "runs": [...]}`, `{"event": "epoch", ...}` and
        `{"event": "started", "key", "label", "epochs"}`, `{"event": "evaluating", "key", "label"}` (the
        run is trained and being tested) and
        `{"event": "done", "key", "label", "status"}`; `on_plan(plan)` is called once the plan is made
        (missing datasets downloaded and cached, the study's store opened) and before any run starts.
        `verbose` (Keras' word): "auto" or 1 shows the plan and the progress (`StudyProgress`: live in
        a terminal or a notebook with ipywidgets, else a line per finished run), 2 a line per finished
        run and per epoch, 0 nothing. A run that fails does not raise: it is in `RunResult.failed`."""
        from .runs import plan as planning
        from .runs import study_run

        data_dir, workers = self._check(data_dir, device, workers, tensorboard, mlflow)
        executor_options = _executor_options(executor, ray_address, cpus_per_run, gpus_per_run)
        if verbose not in ("auto", 0, 1, 2):
            raise UserError(f"verbose must be 'auto', 0, 1 or 2 (as Keras' fit), got {verbose!r}")
        out = output if output is not None else self.output
        p = planning.plan(self.spec, out, data_dir, download=True)
        if on_plan is not None:
            on_plan(p)
        display = None
        if verbose and p.runs:
            display = show_plan(p, live=False if verbose == 2 else None)

        def events(event: dict) -> None:
            if display is not None:
                display.update(event)
            if progress is not None:
                progress(event)

        if not p.runs:
            # a caller with on_plan has shown the plan's skipped datasets (the command line prints them)
            detail = "see above" if on_plan is not None else "; ".join(p.skipped)
            raise UserError(f"{self.source}: no run can start: every dataset is missing ({detail})")
        if output is not None:
            self.output = output
        finished_before = {k for k, status in p.statuses.items() if status in planning.FINISHED}
        t0 = time.perf_counter()
        try:
            study_run.run_plan(p, data_dir=data_dir, device=device, workers=workers, progress=events,
                               executor=executor, executor_options=executor_options, tensorboard=tensorboard,
                               mlflow=mlflow)
        finally:
            if display is not None:
                display.__exit__(None, None, None)
        seconds = time.perf_counter() - t0
        before = sum(r.key in finished_before for r in p.runs)  # p.runs now holds the final runs of a [tuning]
        result = RunResult(p.study_dir, len(p.runs), before, len(p.runs) - before, _failed(p.study_dir), seconds)
        if report:
            result.report = self.report(p.study_dir)
        if display is not None:
            failed = f", {len(result.failed)} failed (see results())" if result.failed else ""
            display.console.print(f"finished in {seconds:.1f} s{failed}" +
                                  (f"; report: {result.report}" if result.report else ""), soft_wrap=True)
        return result

    def _check(self, data_dir, device, workers, tensorboard, mlflow) -> tuple[str | None, int | str]:
        """The run's options, checked before anything is written: (data_dir, workers)."""
        from .engine.inputs import resolve_device
        from .runs.plan import check_data_dir

        data_dir = check_data_dir(None if data_dir is None else str(data_dir))
        resolve_device(device)  # refuse an unavailable device before writing anything
        workers = _workers(workers)
        if tensorboard:
            try:
                import tensorboard as _
            except ImportError:
                raise UserError('--tensorboard needs the tensorboard package: pip install tensorboard (or pip '
                                'install -e ".[loggers]" in the cnnbench checkout)') from None
        if mlflow:
            try:
                import mlflow as _  # noqa: F401
            except ImportError:
                raise UserError('--mlflow needs MLflow: pip install mlflow-skinny (or pip install -e ".[loggers]" '
                                'in the cnnbench checkout)') from None
        return data_dir, workers

    # --- results --------------------------------------------------------------------------------

    def results(self, output: str | os.PathLike | None = None, *, all_runs: bool = False):
        """The stored runs as a pandas DataFrame, one row per run: key, label, status, seed, current,
        final, tuning, `axis.NAME` (the study's varying keys), the metrics (test_acc, test_nll, ...,
        best_val_acc, custom test_/val_ metrics), epochs_done, seconds, error, `config.*` (the resolved
        config, flattened). By default the runs of the spec that last ran in the directory (`current`);
        `all_runs=True`: also those kept from earlier versions of the spec. Only reads the directory."""
        from . import analysis
        from .store.db import Store

        study_dir = self._dir(output)
        _check_owner(study_dir, self.name)
        store = Store.open_readonly(study_dir)
        try:
            df = analysis.runs_frame(store)
        finally:
            store.close()
        if not all_runs and not df.empty:
            df = df[df["current"]].reset_index(drop=True)
        return df

    def compare(self, output: str | os.PathLike | None = None, *, metric: str | None = None, **settings):
        """The study's answer (`cnnbench.analysis.compare_study` of its directory): verdict, per-cell
        rankings and tests. `metric` and `settings` (cells, alpha, rope, target_accuracy) default to the
        study's [analysis]."""
        from . import analysis

        study_dir = self._dir(output)
        _check_owner(study_dir, self.name)
        from .report.notebook import register_notebook_html

        register_notebook_html()
        return analysis.compare_study(study_dir, metric=metric, **settings)

    def report(self, output: str | os.PathLike | None = None, *, report_dir: str | os.PathLike | None = None,
               metric: str | None = None) -> Path:
        """Write the report of the study directory, as `cnnbench report` does, into `report_dir`
        (default STUDY_DIR/report); return the path of report.html. Only reads the study directory."""
        study_dir = self._dir(output)
        _check_owner(study_dir, self.name)
        return report(study_dir, output=report_dir, metric=metric)


    def show_report(self, output: str | os.PathLike | None = None, *, height: int = 700) -> ReportView:
        """The study's report.html, shown inline when it is a notebook cell's value (written first
        if the study directory has none yet)."""
        from .report.notebook import ReportView

        path = self._dir(output) / "report" / "report.html"
        return ReportView(path if path.is_file() else self.report(output), height)


def report(study_dirs, output: str | os.PathLike | None = None, metric: str | None = None) -> Path:
    """`cnnbench report DIR [DIR ...]`: the report of one study directory, or of several holding one
    study's runs (then `output` is required), into `output` (default DIR/report); returns report.html."""
    from .report import write_report

    return write_report(study_dirs, output=output, metric=metric)


def builtin_studies() -> list[str]:
    """The names of the built-in studies (`Study.from_toml(name)`)."""
    from .spec import builtin_studies as names

    return names()


# --- helpers --------------------------------------------------------------------------------------


def _executor_options(executor: str, address: str | None, cpus_per_run: float, gpus_per_run: float) -> dict:
    """The options of `executor` (an entry of `runs.executors.REGISTRY`) among those `run` takes, checked
    by building it (an unknown name, a bad option or Ray missing: one line)."""
    from .runs import executors

    entry = executors.REGISTRY.entry(executor)
    given = {"address": address, "cpus_per_run": cpus_per_run, "gpus_per_run": gpus_per_run}
    options = {k: v for k, v in given.items() if k in entry.options}
    executors.get(entry.name, **options)
    return options


def _workers(value) -> int | str:
    if value == "auto":
        return value
    try:
        n = value if isinstance(value, int) and not isinstance(value, bool) else int(str(value))
    except ValueError:
        n = 0
    if n < 1:
        raise UserError(f"--workers must be a positive integer or 'auto', got {value!r}")
    return n


def _check_owner(study_dir: Path, name: str) -> None:
    """A study directory holding this study's runs (read-only check)."""
    from .store.db import Store

    if not (study_dir / "study.db").is_file():
        raise UserError(f"{study_dir} holds no runs of study {name!r} yet (no study.db); run the study first "
                        "(study.run() or cnnbench run), or give the directory it ran into with output=")
    store = Store.open_readonly(study_dir)
    try:
        owner = store.get_meta("study")
    finally:
        store.close()
    if owner is not None and owner != name:
        raise UserError(f"{study_dir} holds study {owner!r}, not {name!r}; give this study's directory with output=")


def _failed(study_dir: Path) -> list[str]:
    """Keys of the current runs (the spec's) whose status is failed."""
    from .store.db import Store

    store = Store.open_readonly(study_dir)
    try:
        return [r["key"] for r in store.runs() if r["current"] and r["status"] == "failed"]
    finally:
        store.close()


def _plain(value):
    """Mappings as dicts, tuples as lists, all the way down (what tomllib would have produced)."""
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _none_at(value, path: str = "") -> str | None:
    """The first key path holding None (e.g. "grid.early_stopping[0]"), or None."""
    if value is None:
        return path or "the study"
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for k, v in items:
        where = _none_at(v, f"{path}[{k}]" if isinstance(k, int) else f"{path}.{k}" if path else str(k))
        if where is not None:
            return where
    return None


def _to_toml(data: dict, source: str) -> str:
    """The study as TOML text (kept as study.toml, read back by `Study.open`)."""
    import tomli_w

    try:
        return "# written by cnnbench.Study.from_dict\n" + tomli_w.dumps(data)
    except TypeError as e:  # a value TOML has no type for (a numpy number, a Path, an object)
        raise UserError(f"{source}: {e}; give plain str, int, float, bool, list and dict values, as a "
                        "study file would") from None


def __getattr__(name: str):
    """`ReportView` and `comparison_html` (report/notebook.py), imported when asked: the report's modules
    import pandas, which `import cnnbench.api` does not need."""
    if name in ("ReportView", "comparison_html"):
        from .report import notebook

        return getattr(notebook, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
