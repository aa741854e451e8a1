"""One run's life: data -> engine -> store. The executors (local, Ray) only decide where it runs.

`run_task(task)` is the whole life of a run inside a worker: mark it running, load (once per process)
and split its dataset, `fit` with a per-epoch checkpoint and a history row per epoch, evaluate on the
test and validation sets (`evaluate`: the run's own loss and accuracy, and the loss-independent
top-5 accuracy, NLL, ECE and macro-F1), count its parameters and FLOPs, record the outcome. A run that
fails or diverges is recorded as such; the study goes on.

Its steps, one function each: `prepare` (the data) -> `_train` (callbacks that record each epoch, `fit`
with the checkpoint of `store.checkpoints`) -> `_evaluate_and_record` (the row from the history, `_test`
on the test and validation sets, `_save_model`, `store.finish`). The loggers (TensorBoard, MLflow) are
in runs/loggers.py.
"""

from __future__ import annotations

import math
import os
import platform
import time
import traceback
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .. import data, losses
from ..callbacks import Callback, LambdaCallback
from ..engine.evaluation import evaluate
from ..engine.fit import fit
from ..engine.flops import forward_flops, parameter_count
from ..engine.inputs import resolve_device
from ..errors import EnvironmentFault, UserError, environment_fault
from ..metrics import resolve_metrics
from ..spec import build_callbacks, canonical, target_labels
from ..store import model_files
from ..store.checkpoints import checkpoint_path, model_path
from ..store.db import Store
from .loggers import RunLoggers
from .task import ProgressFn, Task

# Intra-op threads of a run trained on the CPU, whichever executor runs it (in-process, a worker, Ray):
# torch's CPU kernels reduce in an order that depends on the thread count, so the same run trained with
# 2 threads and with 1 differs in the last bits (e.g. train_loss 0.45898744 vs 0.45898739). A fixed count
# makes a run's numbers independent of how many runs or workers share the machine, and a resumed run
# continue exactly where it stopped. One thread: small CNNs gain little from more (BENCHMARKS.md), and
# the local executor runs one worker per core. Not part of any run's key.
RUN_THREADS = 1
# A run in progress sends its running loss at most this often within an epoch (a display's refresh).
BATCH_EVENT_S = 1.0


@contextmanager
def run_threads(device: torch.device):
    """torch.set_num_threads(RUN_THREADS) for a run on the CPU, restored afterwards."""
    if device.type != "cpu":
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(RUN_THREADS)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def environment(device: torch.device) -> dict[str, Any]:
    from .. import __version__

    name = torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_model()
    return {"cnnbench": __version__, "torch": torch.__version__, "python": platform.python_version(),
            "device": str(device), "device_name": name, "cpu_threads": torch.get_num_threads(),
            "platform": platform.platform(), "host": platform.node()}


def cpu_model() -> str:
    """The CPU's model name (Linux: /proc/cpuinfo; macOS: sysctl), else the architecture: a report says
    what the runs ran on, and "x86_64" does not."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    if platform.system() == "Darwin":
        import subprocess

        try:
            return subprocess.run(["sysctl", "-n", "machdep.cpu.brand_string"], capture_output=True, text=True,
                                  timeout=5).stdout.strip() or platform.machine()
        except (OSError, subprocess.SubprocessError):
            pass
    return platform.processor() or platform.machine()


# One process trains many runs: datasets are loaded once and shared by them, stores opened once.
_DATASETS: dict[tuple[str, str | None], Any] = {}
_STORES: dict[str, Store] = {}


def dataset_loaded(spec: dict[str, Any], data_dir: str | None) -> bool:
    """Whether this process has dataset `spec` from `data_dir` loaded already."""
    return (canonical(spec), data_dir) in _DATASETS


def forget_datasets() -> None:
    """Drop the datasets this process loaded (a parent whose workers load their own copies)."""
    _DATASETS.clear()


def load_dataset(spec: dict[str, Any], data_dir: str | None):
    key = (canonical(spec), data_dir)
    if key not in _DATASETS:
        _DATASETS[key] = data.load(spec, data_dir=data_dir)
    return _DATASETS[key]


def open_store(study_dir: str) -> Store:
    """The study's store in this process, opened once."""
    if study_dir not in _STORES:
        _STORES[study_dir] = Store(Path(study_dir) / "study.db")
    return _STORES[study_dir]


def load_sample_weight(path: str | None, n_train: int):
    """A study's `sample_weight` file: one non-negative weight per training image (dataset order)."""
    if path is None:
        return None

    try:
        w = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as e:
        raise UserError(f"sample_weight: cannot read {path} ({e}); give a .npy file of {n_train} weights") from None
    if w.dtype.kind not in "uifb":  # a string is never a number (np.asarray would parse "1.5", fail on "a")
        raise UserError(f"sample_weight: {path} holds {w.dtype} values, not numbers; save the weights as floats")
    w = np.asarray(w, dtype=np.float32).reshape(-1)
    if w.shape[0] != n_train:
        raise UserError(f"sample_weight: {path} holds {w.shape[0]} weights but the training set has {n_train} "
                        "images; give one weight per training image, in the dataset's order")
    if not np.all(np.isfinite(w)) or (w < 0).any():
        raise UserError(f"sample_weight: {path} has negative or non-finite weights; weights must be >= 0")
    return torch.from_numpy(w)


def prepare(config: dict[str, Any], data_dir: str | None):
    """The run's data: (x_train, y_train, validation or None, x_test, y_test, num_classes, sample_weight)."""
    ds = load_dataset(config["dataset"], data_dir)
    x, y = ds.x_train, ds.y_train
    sw = load_sample_weight(config.get("sample_weight"), len(y))
    val = None
    # the dataset's other label columns (targets from them): {name: [train, validation]}, split with the images
    columns = {n: [c[0], None] for n, c in ds.label_columns.items()} if config.get("targets") else {}
    if config["validation_split"] > 0:
        split = dict(fraction=config["validation_split"], mode=config["validation_mode"], seed=config["seed"])
        if sw is not None:  # the same partition: it depends only on the labels, the mode and the seed
            sw = data.split_validation(sw, y, **split)[0]
        for column in columns.values():
            column[0], _, column[1], _ = data.split_validation(column[0], y, **split)
        x, y, xv, yv = data.split_validation(x, y, **split)
        val = (xv, yv)
    if config["label_noise"] > 0:
        y = losses.add_label_noise(y, config["label_noise"], ds.num_classes, seed=config["seed"])
    y_test, num_classes = ds.y_test, ds.num_classes
    if config.get("targets"):  # several outputs: each output's labels from the (noisy) class labels

        def part(i):
            return {n: (c[i] if i < 2 else ds.label_columns[n][1], ds.label_columns[n][2]) for n, c in columns.items()}

        y, num_classes = target_labels(config["targets"], y, ds.num_classes, part(0))
        y_test = target_labels(config["targets"], y_test, ds.num_classes, part(2))[0]
        if val is not None:
            val = (val[0], target_labels(config["targets"], val[1], ds.num_classes, part(1))[0])
    return x, y, val, ds.x_test, y_test, num_classes, sw


def _metric_names(specs):
    return resolve_metrics(specs) if specs else []


# evaluate()'s keys -> the base of the store's `{split}_{base}` columns
EVALUATION_COLUMNS = {"accuracy": "acc", "loss": "loss", "top5_accuracy": "top5_acc", "nll": "nll", "ece": "ece",
                      "macro_f1": "macro_f1"}


def _finite(value) -> bool:
    return value is not None and math.isfinite(value)


def _at(history, name: str, i: int):
    """History value `name` at list position `i`, or None (a diverged epoch has no validation)."""
    values = history.history.get(name, [])
    return values[i] if 0 <= i < len(values) else None


def summary_epoch(history, early_stopping: dict | None) -> tuple[int | None, int | None]:
    """(metrics_epoch, best_epoch): the one epoch whose numbers make the run's row, and the best epoch.

    metrics_epoch is the epoch of the weights that are tested: early stopping's best epoch when it
    restored the best weights, else the last epoch; for a diverged run, the last epoch whose training
    (and validation) loss is finite, None if there is none. best_epoch is early stopping's best epoch
    (its monitor and mode), else the epoch of lowest validation loss; None for a diverged run."""
    if history.status == "diverged":
        finite = [i for i in range(len(history.epoch))
                  if _finite(_at(history, "loss", i)) and (
                      "val_loss" not in history.history or _finite(_at(history, "val_loss", i)))]
        return (history.epoch[finite[-1]] if finite else None), None
    best_epoch = history.best_epoch
    val_loss = history.history.get("val_loss")
    if best_epoch is None and val_loss:
        best_epoch = history.epoch[min(range(len(val_loss)), key=val_loss.__getitem__)]
    restored = bool(early_stopping) and early_stopping["restore_best_weights"] and history.best_epoch is not None
    if not history.epoch:
        return None, best_epoch
    return (history.best_epoch if restored else history.epoch[-1]), best_epoch


def epoch_metrics(history, epoch: int | None) -> dict[str, float | None]:
    """train_loss, train_acc, val_loss, val_acc of one epoch of the history (all None for none)."""
    i = history.epoch.index(epoch) if epoch is not None else -1
    return {"train_loss": _at(history, "loss", i), "train_acc": _at(history, "accuracy", i),
            "val_loss": _at(history, "val_loss", i), "val_acc": _at(history, "val_accuracy", i)}


def validation_summary(history, last_epoch: int | None) -> dict[str, float | None]:
    """best_val_acc (the highest of the history), best_val_loss (the lowest; both over the finite
    values), last_val_acc and last_val_loss (at `last_epoch`: the last epoch trained, or for a diverged
    run its last finite one); None without validation."""
    out = {}
    last = history.epoch.index(last_epoch) if last_epoch is not None else None
    for name, column, best in (("val_accuracy", "val_acc", max), ("val_loss", "val_loss", min)):
        values = [v for v in history.history.get(name, []) if _finite(v)]
        out[f"best_{column}"] = best(values) if values else None
        out[f"last_{column}"] = None if last is None else _at(history, name, last)
    return out


def run_task(task: Task, progress: ProgressFn | None = None, store=None) -> str:
    """Train, evaluate and record one run; return its final status.

    `store` receives `mark_running`, `record_epoch` and `finish` (default: the study's SQLite store,
    opened once per process; the Ray executor passes a proxy to the driver's store)."""
    store = store if store is not None else open_store(task.study_dir)
    device = resolve_device(task.device)
    with run_threads(device):
        return _run_task(task, progress, store, device)


def _event(progress: ProgressFn | None, task: Task, event: str, **fields) -> None:
    if progress:
        progress({"event": event, "key": task.key, "label": task.label, **fields})


def _run_task(task: Task, progress: ProgressFn | None, store, device: torch.device) -> str:
    """One run's life: marked running, trained with a checkpoint, evaluated, recorded. A run that fails
    is recorded failed (the study goes on); an interruption or an environment fault is raised with the
    run left 'running' and its checkpoint kept, for the next `cnnbench run` to resume."""
    store.mark_running(task.key, environment(device))
    # a display shows the run from its start, not from its first epoch's end
    _event(progress, task, "started", epochs=task.config["epochs"])
    t0 = time.perf_counter()
    loggers = RunLoggers(task)
    status = None
    try:
        trained = _train(task, progress, store, loggers, device)
        status = _evaluate_and_record(task, trained, progress, store, loggers, t0)
    except (KeyboardInterrupt, SystemExit, EnvironmentFault):
        # Leave the run 'running' with its checkpoint: the next `cnnbench run` resumes it. A full disk or
        # a read-only directory stops the study (every other run would fail the same way).
        raise
    except Exception as e:  # a bug or an environment problem in one run must not end the study
        status = "failed"
        store.finish(task.key, status, error=_failure(e, task), seconds=time.perf_counter() - t0)
    finally:
        loggers.abort("FAILED" if status == "failed" else "KILLED")  # nothing left to end after a finish
    _event(progress, task, "done", status=status)
    return status


def _failure(e: Exception, task: Task) -> str:
    """The error a failed run records: the user's one line, or the exception and the last frames. An
    OSError that is an environment fault (a full disk, a read-only directory) is raised instead."""
    if isinstance(e, UserError):
        return str(e)
    if isinstance(e, OSError):
        fault = environment_fault(e, e.filename or Path(task.study_dir) / "study.db")
        if fault is not None:
            raise fault from None
        return f"{type(e).__name__}: {e}\n{traceback.format_exc(limit=-3)}"
    detail = "".join(traceback.format_exception_only(type(e), e)).strip()
    return f"{detail}\n{traceback.format_exc(limit=-3)}"


@dataclass
class Trained:
    """What `fit` left for evaluation: the history (its `model` trained) and the run's data."""

    history: Any
    x: Any
    val: tuple | None
    x_test: Any
    y_test: Any
    num_classes: Any  # a count, or {output: count} for several outputs


def _train(task: Task, progress: ProgressFn | None, store, loggers, device: torch.device) -> Trained:
    """Prepare the run's data and fit it, resuming from and writing to its checkpoint every epoch."""
    cfg = task.config
    # The run's own callbacks (a study's callbacks = [...]) come first, so their checkpointed states
    # keep their places; the recorder sees the logs last.
    callbacks = [*build_callbacks(cfg.get("callbacks")), *_recording_callbacks(task, progress, store, loggers)]
    x, y, val, x_test, y_test, num_classes, sample_weight = prepare(cfg, task.data_dir)
    history = fit(cfg["model"], x, y, loss=cfg["loss"], optimizer=cfg["optimizer"], epochs=cfg["epochs"],
                  batch_size=cfg["batch_size"], validation_data=val, seed=cfg["seed"], device=device,
                  num_classes=num_classes, class_weight=cfg["class_weight"], sample_weight=sample_weight,
                  augmentation=cfg["augmentation"], early_stopping=cfg["early_stopping"],
                  micro_batch_size=cfg.get("micro_batch_size"), precision=cfg.get("precision", "fp32"),
                  metrics=cfg.get("metrics"), loss_weights=cfg.get("loss_weights"), callbacks=callbacks,
                  checkpoint=checkpoint_path(task.study_dir, task.key), checkpoint_tag=task.key, verbose=0)
    return Trained(history, x, val, x_test, y_test, num_classes)


def _recording_callbacks(task: Task, progress: ProgressFn | None, store, loggers) -> list:
    """Each epoch into the store, the loggers and the progress events; a 'batch' event now and then."""
    parent = os.getppid()

    def on_epoch_end(epoch: int, logs: dict) -> None:
        store.record_epoch(task.key, epoch, logs)
        loggers.log_epoch(epoch, logs)
        _event(progress, task, "epoch", epoch=epoch + 1, epochs=task.config["epochs"], logs=logs)
        if os.getppid() != parent:  # our parent was killed: stop rather than train an orphan run
            raise SystemExit(1)

    return [LambdaCallback(on_epoch_end=on_epoch_end), *([_batch_progress(task, progress)] if progress else [])]


def _batch_progress(task: Task, progress: ProgressFn):
    """A callback that sends a 'batch' event at most every BATCH_EVENT_S seconds while an epoch trains
    (the running loss)."""
    class BatchProgress(Callback):
        last, epoch = time.monotonic(), 0

        def on_epoch_begin(self, epoch, logs=None):
            self.epoch = epoch

        def on_batch_progress(self, batch: int, steps: int, running) -> None:
            now = time.monotonic()
            if now - self.last >= BATCH_EVENT_S and batch + 1 < steps:
                self.last = now
                _event(progress, task, "batch", epoch=self.epoch + 1, epochs=task.config["epochs"],
                       batch=batch + 1, steps=steps, logs=running())

    return BatchProgress()


def _evaluate_and_record(task: Task, trained: Trained, progress: ProgressFn | None, store, loggers,
                         t0: float) -> str:
    """The run's row from its history (and, for a finished run, the test and validation sets), stored;
    its model saved if the study keeps models; its checkpoint removed. Returns the status."""
    cfg, history = task.config, trained.history
    status, error = "done", None
    if history.status == "diverged":
        status, error = "diverged", f"loss became NaN/inf at epoch {history.epoch[-1] + 1}"
    _event(progress, task, "evaluating")  # testing takes a while on a large test set: say so, not go quiet
    metrics_epoch, best_epoch = summary_epoch(history, cfg["early_stopping"])
    last_epoch = metrics_epoch if status == "diverged" else (history.epoch[-1] if history.epoch else None)
    metrics = {**epoch_metrics(history, metrics_epoch), **validation_summary(history, last_epoch)}
    # Architecture facts, counted for a diverged run too; a count that fails is None, never an error.
    x_one = trained.x_test[:1] if len(trained.x_test) else trained.x[:1]
    facts = {"params": parameter_count(history.model), "metrics_epoch": metrics_epoch,
             "flops": forward_flops(history.model, x_one)}
    custom: dict[str, Any] = {}
    if status == "done":
        custom = _test(cfg, trained, metrics)
        if task.save_model:
            _save_model(task, history.model)
    num_classes = trained.num_classes
    store.finish(task.key, status, metrics, error=error, seconds=time.perf_counter() - t0,
                 best_epoch=best_epoch, stopped_epoch=history.stopped_epoch,
                 epochs_done=len(history.epoch), custom_metrics=custom, **facts,
                 num_classes=None if isinstance(num_classes, dict) else num_classes)
    loggers.finish(status, {**metrics, **{k: v for k, v in custom.items() if v is not None}}, facts)
    checkpoint_path(task.study_dir, task.key).unlink(missing_ok=True)
    return status


def _test(cfg: dict[str, Any], trained: Trained, metrics: dict[str, Any]) -> dict[str, Any]:
    """Evaluate the trained model on the test set (and the validation set): fills `metrics`' missing
    `{split}_{base}` columns and returns the custom and per-output scores (`test_<name>`, `val_<name>`)."""
    # Evaluated as trained: under the run's precision (Keras' mixed-precision policy applies too).
    precision = cfg.get("precision", "fp32")
    splits = [("test", trained.x_test, trained.y_test)] + ([("val", *trained.val)] if trained.val is not None else [])
    # several outputs: every score of evaluate (each output's metrics too) is kept below
    names = [] if cfg.get("targets") else [m[0] for m in _metric_names(cfg.get("metrics"))]
    custom = {}
    for split, xs, ys in splits:
        scores = evaluate(trained.history.model, xs, ys, num_classes=trained.num_classes, precision=precision,
                          metrics=cfg.get("metrics"), verbose=0, return_dict=True)
        custom.update({f"{split}_{name}": scores[name] for name in names})
        if isinstance(ys, dict):  # several outputs: test_<output>_<score>; the loss is the weighted sum
            custom.update({f"{split}_{name}": v for name, v in scores.items() if name != "loss"})
        for name, base in EVALUATION_COLUMNS.items():
            column = f"{split}_{base}"
            # val_acc / val_loss stay the history's numbers at metrics_epoch (the same weights)
            if column not in metrics or metrics[column] is None:
                metrics[column] = scores.get(name)
    return custom


def _save_model(task: Task, model) -> None:
    """The trained model as STUDY_DIR/models/KEY.pt, with what `cnnbench evaluate` needs to test it."""
    cfg = task.config
    ds = load_dataset(cfg["dataset"], task.data_dir)
    model_files.save(model, model_path(task.study_dir, task.key),
                     config={"dataset": cfg["dataset"], "class_names": list(ds.class_names),
                             "loss": cfg["loss"], "run_key": task.key})
