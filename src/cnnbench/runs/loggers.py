"""A run's optional loggers beside the store: TensorBoard (`--tensorboard`) and MLflow (`--mlflow URI`).

`RunLoggers(task)` opens those the task asks for; one_run calls `log_epoch` after each epoch is stored,
`finish` once the run's outcome is stored, and `abort` for a run that failed or was interrupted.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from ..errors import UserError
from .task import Task


def tensorboard_writer(task: Task):
    """A TensorBoard writer for one run (`pip install tensorboard`); runs of a configuration sit
    side by side, so `tensorboard --logdir STUDY_DIR/tensorboard` compares configurations."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise UserError('--tensorboard needs the tensorboard package: pip install "cnnbench[loggers]"') from None
    safe = "".join(c if c.isalnum() or c in "=._-" else "_" for c in task.label)[:120]
    run_dir = f"seed={task.config['seed']}_{task.key[:8]}"
    return SummaryWriter(str(Path(task.study_dir) / "tensorboard" / safe / run_dir))


def flatten(config: dict[str, Any], prefix: str = "") -> dict[str, str]:
    """A resolved config as MLflow params: nested keys joined by dots, values as JSON-ish text."""
    out: dict[str, str] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten(value, name + "."))
        else:
            out[name] = "None" if value is None else str(value)
    return out


class MlflowRun:
    """One cnnbench run as one MLflow run (`--mlflow URI`): experiment = the study's name, run name =
    the label and seed; tags study, label, seed, run_key, status; params = the resolved config
    flattened; metrics = each epoch's logs (step = the epoch, 0-based as Keras' callbacks count) and
    the final metrics. A resumed run continues its MLflow run (found by its run_key tag). MLflow
    failing never fails the run: the first error is logged in one line and tracking stops."""

    def __init__(self, task: Task):
        try:
            from mlflow.tracking import MlflowClient
        except ImportError:
            raise UserError('--mlflow needs MLflow: pip install mlflow-skinny '
                            '(or pip install -e ".[loggers]")') from None
        uri = task.mlflow or ""  # a RunLoggers opens one only for a task with a URI
        if uri.startswith("file:") or "://" not in uri:
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow 3 asks file stores to opt in
        self.run_id = None
        try:
            self.client = MlflowClient(tracking_uri=uri)
            name = task.study or Path(task.study_dir).name
            exp = self.client.get_experiment_by_name(name)
            exp_id = exp.experiment_id if exp is not None else self.client.create_experiment(name)
            found = self.client.search_runs([exp_id], filter_string=f"tags.run_key = '{task.key}'", max_results=1)
            seed = task.config.get("seed")
            if found:
                self.run_id = found[0].info.run_id
                self.client.update_run(self.run_id, status="RUNNING")
                if found[0].data.params:
                    return
            else:
                tags = {"study": name, "label": task.label, "seed": str(seed), "run_key": task.key}
                run = self.client.create_run(exp_id, tags=tags, run_name=f"{task.label} seed={seed}")
                self.run_id = run.info.run_id
            from mlflow.entities import Param

            params = [Param(k, v[:6000]) for k, v in flatten(task.config).items()]
            for i in range(0, len(params), 100):  # MLflow takes at most 100 params per batch
                self.client.log_batch(self.run_id, params=params[i:i + 100])
        except Exception as e:
            self._disable(e)

    def _disable(self, e: Exception) -> None:
        import logging

        logging.getLogger("cnnbench").warning("cnnbench: MLflow logging stopped for this run: %s: %s",
                                              type(e).__name__, str(e).splitlines()[0] if str(e) else "")
        self.run_id = None

    def _metrics(self, values: dict[str, Any], step: int):
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        return [Metric(k, float(v), now, step) for k, v in values.items()
                if isinstance(v, (int, float)) and not isinstance(v, bool)]

    def log_epoch(self, epoch: int, logs: dict[str, float]) -> None:
        if self.run_id is None:
            return
        try:
            self.client.log_batch(self.run_id, metrics=self._metrics(logs, epoch))
        except Exception as e:
            self._disable(e)

    def finish(self, status: str, metrics: dict[str, Any], facts: dict[str, Any]) -> None:
        if self.run_id is None:
            return
        try:
            final = {k: v for k, v in {**metrics, **facts}.items() if v is not None}
            self.client.log_batch(self.run_id, metrics=self._metrics(final, 0))
            self.client.set_tag(self.run_id, "status", status)
            self.client.set_terminated(self.run_id, "FINISHED")
        except Exception as e:
            self._disable(e)
        self.run_id = None

    def abort(self, status: str = "KILLED") -> None:
        if self.run_id is None:
            return
        try:
            self.client.set_terminated(self.run_id, status)
        except Exception:
            pass
        self.run_id = None



class RunLoggers:
    """The loggers one task asks for (none, TensorBoard, MLflow or both), fed together."""

    def __init__(self, task: Task):
        # opened before the run starts: a missing package is the user's to fix (one line), not a failed run
        self.writer = tensorboard_writer(task) if task.tensorboard else None
        self.tracker = MlflowRun(task) if task.mlflow else None

    def log_epoch(self, epoch: int, logs: dict[str, Any]) -> None:
        if self.tracker is not None:
            self.tracker.log_epoch(epoch, logs)
        if self.writer is not None:
            for name, value in logs.items():
                if value is not None:  # a metric with no value (top-5 on <= 5 classes)
                    self.writer.add_scalar(name, value, epoch + 1)
            self.writer.flush()

    def finish(self, status: str, metrics: dict[str, Any], facts: dict[str, Any]) -> None:
        """The run's outcome is stored: its final metrics to MLflow, the MLflow run ended."""
        if self.tracker is not None:
            self.tracker.finish(status, metrics, facts)
            self.tracker = None

    def abort(self, status: str) -> None:
        """A failed ("FAILED") or interrupted ("KILLED") run: end the MLflow run as such."""
        if self.tracker is not None:
            self.tracker.abort(status)
            self.tracker = None
