"""One run as the executors hand it out: its key, label and resolved config, where its study lives and
what to log (`Task`), and the callback that receives its progress events (`ProgressFn`). Plain data,
picklable, so a worker process or a Ray actor gets it whole."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

ProgressFn = Callable[[dict[str, Any]], None]


@dataclass(frozen=True)
class Task:
    key: str
    label: str
    config: dict[str, Any]
    study_dir: str
    data_dir: str | None
    device: str
    save_model: bool = False
    tensorboard: bool = False  # also log each epoch to STUDY_DIR/tensorboard/LABEL/seed=N
    mlflow: str | None = None  # an MLflow tracking URI: log each run there (params, epochs, final metrics)
    study: str = ""  # the study's name (MLflow's experiment)
