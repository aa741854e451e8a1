"""Executing one run: data -> engine -> store. The executors (local, Ray) only decide where.

`execute(task)` is the whole life of a run inside a worker: mark it running, load (once per process)
and split its dataset, `fit` with a per-epoch checkpoint and a history row per epoch, evaluate on the
test and validation sets (`evaluate`: the run's own loss and accuracy, and the loss-independent
top-5 accuracy, NLL, ECE and macro-F1), count its parameters and FLOPs, record the outcome. A run that
fails or diverges is recorded as such; the study goes on.
"""

from __future__ import annotations

import math
import os
import platform
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch

from ..errors import UserError
from ..store import Store

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


def environment(device: torch.device) -> dict[str, Any]:
    from .. import __version__

    name = torch.cuda.get_device_name(device) if device.type == "cuda" else (platform.processor() or platform.machine())
    return {"cnnbench": __version__, "torch": torch.__version__, "python": platform.python_version(),
            "device": str(device), "device_name": name, "cpu_threads": torch.get_num_threads(),
            "platform": platform.platform(), "host": platform.node()}


# One process trains many runs: datasets are loaded once and shared by them, stores opened once.
_DATASETS: dict[tuple[str, str | None], Any] = {}
_STORES: dict[str, Store] = {}


def load_dataset(spec: dict[str, Any], data_dir: str | None):
    from .. import data
    from ..study import canonical

    key = (canonical(spec), data_dir)
    if key not in _DATASETS:
        _DATASETS[key] = data.load(spec, data_dir=data_dir)
    return _DATASETS[key]


def _store(study_dir: str) -> Store:
    if study_dir not in _STORES:
        _STORES[study_dir] = Store(Path(study_dir) / "study.db")
    return _STORES[study_dir]


def checkpoint_path(study_dir: str | Path, key: str) -> Path:
    return Path(study_dir) / "checkpoints" / f"{key}.pt"


def _tensorboard_writer(task: Task):
    """A TensorBoard writer for one run (`pip install tensorboard`); runs of a configuration sit
    side by side, so `tensorboard --logdir STUDY_DIR/tensorboard` compares configurations."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise UserError('--tensorboard needs the tensorboard package: pip install "cnnbench[loggers]"') from None
    safe = "".join(c if c.isalnum() or c in "=._-" else "_" for c in task.label)[:120]
    return SummaryWriter(str(Path(task.study_dir) / "tensorboard" / safe / f"seed={task.config['seed']}_{task.key[:8]}"))


def model_path(study_dir: str | Path, key: str) -> Path:
    return Path(study_dir) / "models" / f"{key}.pt"


def load_sample_weight(path: str | None, n_train: int):
    """A study's `sample_weight` file: one non-negative weight per training image (dataset order)."""
    if path is None:
        return None
    import numpy as np

    from ..errors import UserError

    try:
        w = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as e:
        raise UserError(f"sample_weight: cannot read {path} ({e}); give a .npy file of {n_train} weights") from None
    w = np.asarray(w, dtype=np.float32).reshape(-1)
    if w.shape[0] != n_train:
        raise UserError(f"sample_weight: {path} holds {w.shape[0]} weights but the training set has {n_train} "
                        "images; give one weight per training image, in the dataset's order")
    if not np.all(np.isfinite(w)) or (w < 0).any():
        raise UserError(f"sample_weight: {path} has negative or non-finite weights; weights must be >= 0")
    return torch.from_numpy(w)


def prepare(config: dict[str, Any], data_dir: str | None):
    """The run's data: (x_train, y_train, validation or None, x_test, y_test, num_classes, sample_weight)."""
    from .. import data, losses

    ds = load_dataset(config["dataset"], data_dir)
    x, y = ds.x_train, ds.y_train
    sw = load_sample_weight(config.get("sample_weight"), len(y))
    val = None
    if config["validation_split"] > 0:
        split = dict(fraction=config["validation_split"], mode=config["validation_mode"], seed=config["seed"])
        if sw is not None:  # the same partition: it depends only on the labels, the mode and the seed
            sw = data.split_validation(sw, y, **split)[0]
        x, y, xv, yv = data.split_validation(x, y, **split)
        val = (xv, yv)
    if config["label_noise"] > 0:
        y = losses.add_label_noise(y, config["label_noise"], ds.num_classes, seed=config["seed"])
    return x, y, val, ds.x_test, ds.y_test, ds.num_classes, sw


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


def execute(task: Task, progress: ProgressFn | None = None, store=None) -> str:
    """Train, evaluate and record one run; return its final status.

    `store` receives `mark_running`, `record_epoch` and `finish` (default: the study's SQLite store,
    opened once per process; the Ray executor passes a proxy to the driver's store)."""
    from ..train import LambdaCallback, evaluate, fit, forward_flops, parameter_count, resolve_device

    store = store if store is not None else _store(task.study_dir)
    device = resolve_device(task.device)
    store.mark_running(task.key, environment(device))
    cfg = task.config
    ckpt = checkpoint_path(task.study_dir, task.key)
    parent = os.getppid()
    t0 = time.perf_counter()

    writer = _tensorboard_writer(task) if task.tensorboard else None

    def on_epoch_end(epoch: int, logs: dict) -> None:
        store.record_epoch(task.key, epoch, logs)
        if writer is not None:
            for name, value in logs.items():
                writer.add_scalar(name, value, epoch + 1)
            writer.flush()
        if progress:
            progress({"event": "epoch", "key": task.key, "label": task.label, "epoch": epoch + 1,
                      "epochs": cfg["epochs"], "logs": logs})
        if os.getppid() != parent:  # our parent was killed: stop rather than train an orphan run
            raise SystemExit(1)

    try:
        x, y, val, x_test, y_test, num_classes, sample_weight = prepare(cfg, task.data_dir)
        history = fit(cfg["model"], x, y, loss=cfg["loss"], optimizer=cfg["optimizer"], epochs=cfg["epochs"],
                      batch_size=cfg["batch_size"], validation_data=val, seed=cfg["seed"], device=device,
                      num_classes=num_classes, class_weight=cfg["class_weight"], sample_weight=sample_weight,
                      augmentation=cfg["augmentation"], early_stopping=cfg["early_stopping"],
                      micro_batch_size=cfg.get("micro_batch_size"), precision=cfg.get("precision", "fp32"),
                      callbacks=[LambdaCallback(on_epoch_end=on_epoch_end)], checkpoint=ckpt)
        status, error = "done", None
        if history.status == "diverged":
            status, error = "diverged", f"loss became NaN/inf at epoch {history.epoch[-1] + 1}"
        metrics_epoch, best_epoch = summary_epoch(history, cfg["early_stopping"])
        last_epoch = metrics_epoch if status == "diverged" else (history.epoch[-1] if history.epoch else None)
        metrics = {**epoch_metrics(history, metrics_epoch), **validation_summary(history, last_epoch)}
        # Architecture facts, counted for a diverged run too; a count that fails is None, never an error.
        facts = {"params": parameter_count(history.model), "metrics_epoch": metrics_epoch,
                 "flops": forward_flops(history.model, x_test[:1] if len(x_test) else x[:1])}
        if status == "done":
            # Evaluated as trained: under the run's precision (Keras' mixed-precision policy applies too).
            precision = cfg.get("precision", "fp32")
            splits = [("test", x_test, y_test)] + ([("val", *val)] if val is not None else [])
            for split, xs, ys in splits:
                scores = evaluate(history.model, xs, ys, num_classes=num_classes, precision=precision)
                for name, base in EVALUATION_COLUMNS.items():
                    column = f"{split}_{base}"
                    # val_acc / val_loss stay the history's numbers at metrics_epoch (the same weights)
                    if column not in metrics or metrics[column] is None:
                        metrics[column] = scores[name]
            if task.save_model:
                from .. import saving

                ds = load_dataset(cfg["dataset"], task.data_dir)
                saving.save(history.model, model_path(task.study_dir, task.key),
                            config={"dataset": cfg["dataset"], "class_names": list(ds.class_names),
                                    "loss": cfg["loss"], "run_key": task.key})
        store.finish(task.key, status, metrics, error=error, seconds=time.perf_counter() - t0,
                     best_epoch=best_epoch, stopped_epoch=history.stopped_epoch,
                     epochs_done=len(history.epoch), num_classes=num_classes, **facts)
        ckpt.unlink(missing_ok=True)
    except (KeyboardInterrupt, SystemExit):
        raise  # leave the run 'running' with its checkpoint: the next `cnnbench run` resumes it
    except UserError as e:
        status = "failed"
        store.finish(task.key, status, error=str(e), seconds=time.perf_counter() - t0)
    except Exception as e:  # a bug or an environment problem in one run must not end the study
        status = "failed"
        detail = "".join(traceback.format_exception_only(type(e), e)).strip()
        store.finish(task.key, status, error=f"{detail}\n{traceback.format_exc(limit=-3)}",
                     seconds=time.perf_counter() - t0)
    if progress:
        progress({"event": "done", "key": task.key, "label": task.label, "status": status})
    return status
