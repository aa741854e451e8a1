"""Planning a study: what `cnnbench run` would run here, checked before anything is written.

`plan(study, ...)` checks the spec against its data and the study directory: the output directory, the
data directory, every dataset (loaded once), every run's validation split, model input, batch size,
losses, micro-batching and weights (`check_run`), and reads the stored status of each run (`Plan`).
Everything that can be wrong with the user's input is refused here with one line.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import data, losses, models
from ..engine.outputs import check_micro_batching, output_losses
from ..errors import UserError
from ..spec import StudySpec, canonical, target_labels
from ..store.db import FINISHED, ReadOnlyStore, Store, check_ours, check_owner
from .one_run import load_dataset, load_sample_weight


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
    study_dir = study_dir_for(study, output)
    runs: list = []
    skipped: list[str] = []
    loaded: dict[str, Any] = {}  # canonical dataset spec -> the dataset, or None (missing, skipped)
    for run in study.runs:
        ds = _dataset_of(study, run.config["dataset"], data_dir, download, loaded, skipped)
        if ds is not None:
            check_run(study, run.config, ds)
            runs.append(run)
    statuses = {}
    if read_only:
        statuses = stored_statuses(study_dir, study.name)
    elif (study_dir / "study.db").exists():
        store = Store.open(study_dir, study.name)  # refuses a directory of another study
        statuses = store.statuses()
        store.close()
    return Plan(study, study_dir, runs, skipped, statuses)


def _dataset_of(study: StudySpec, spec: dict, data_dir: str | None, download: bool, loaded: dict,
                skipped: list[str]):
    """The dataset of `spec`, loaded once (`loaded`: by canonical spec); None for a missing one the study
    skips (`skip_missing_datasets`: one line in `skipped`)."""
    key = canonical(spec)
    if key not in loaded:
        try:
            loaded[key] = load_dataset(spec if download else {**spec, "download": False}, data_dir)
        except UserError as e:
            if not study.meta.skip_missing_datasets:
                raise
            loaded[key] = None
            skipped.append(f"dataset {spec['name']}: {e}")
    return loaded[key]


def check_run(study: StudySpec, cfg: dict, ds) -> None:
    """UserError (one line naming the study file) unless the run `cfg` can train on dataset `ds`: its
    validation split, model input, batch size, losses, micro-batching, sample and class weights."""
    name, n_all = cfg["dataset"]["name"], ds.x_train.shape[0]
    n_train = data.train_size(n_all, cfg["validation_split"])
    if n_train < 1 or (n_train == n_all and cfg["validation_split"] > 0):
        raise UserError(f"{study.source}: validation_split {cfg['validation_split']} of the {n_all} training "
                        f"images of {name} leaves an empty part; choose a validation_split between "
                        f"{1 / n_all:.2g} and {1 - 1 / n_all:.4g}")
    models.check_input(cfg["model"], ds.input_shape, f"{study.source}: dataset {name!r}")
    if cfg["batch_size"] > n_train:
        raise UserError(f"{study.source}: batch_size {cfg['batch_size']} is larger than the {n_train} "
                        f"training images of {name}; use a batch_size <= {n_train}")
    parts = _training_losses(study, cfg, ds)
    try:
        if cfg["micro_batch_size"] and cfg["micro_batch_size"] < cfg["batch_size"]:
            for training_loss in parts:
                check_micro_batching(training_loss.loss)
        _check_weights(cfg, ds)
    except UserError as e:
        raise UserError(f"{study.source}: {e}") from None


def _training_losses(study: StudySpec, cfg: dict, ds) -> list:
    """The run's loss per output, adapted to its classes: a loss that cannot apply is refused."""
    if not cfg.get("targets"):
        return [losses.adapt(losses.get(cfg["loss"]), ds.num_classes)]
    # several outputs: a map per class of the dataset, a loss that fits each output

    try:
        columns = {n: (c[0][:1], c[2]) for n, c in ds.label_columns.items()}  # CIFAR-100's coarse_label, ...
        classes = target_labels(cfg["targets"], ds.y_train[:1], ds.num_classes, columns,
                                f"dataset {cfg['dataset']['name']!r}")[1]
        return list(output_losses(cfg["loss"], cfg.get("loss_weights"), list(classes), classes).losses.values())
    except UserError as e:
        raise UserError(f"{study.source}: {e}") from None


def _check_weights(cfg: dict, ds) -> None:
    """The run's sample_weight file holds one weight per training image; its class_weight names the
    dataset's classes with non-negative weights."""
    if cfg.get("sample_weight"):
        load_sample_weight(cfg["sample_weight"], ds.x_train.shape[0])
    if cfg["class_weight"] is not None:  # refuses unknown classes and negative weights
        try:
            losses.class_weights_to_sample_weights(ds.y_train[:1], cfg["class_weight"], ds.num_classes)
        except UserError as e:
            raise UserError(f"class_weight: {e}") from None


def stored_statuses(study_dir: Path, name: str) -> dict[str, str]:
    """The stored status of each run key in `study_dir` (empty without a study.db), read without
    writing anything, not even SQLite's -wal/-shm files (`ReadOnlyStore.open_untouched`); refuses a
    database that is not ours or holds another study, as `Store.open` does."""
    path = study_dir / "study.db"
    owner = check_ours(path)
    if not path.exists() or path.stat().st_size == 0:
        return {}
    check_owner(study_dir, owner, name)
    store = ReadOnlyStore.open_untouched(study_dir)
    try:
        return store.statuses()
    finally:
        store.close()
