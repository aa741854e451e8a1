"""Keras' callbacks, a family like the losses: the `Callback` base class whose hooks `fit` calls (a
user's callback derives from it), `LambdaCallback`, `EarlyStopping`, and their registry
(`cnnbench list callbacks`).

A study names a built-in callback by its registered name or Keras' class name
(`callbacks = [{ name = "EarlyStopping", monitor = "val_loss", patience = 3 }]`) or a class of its own
(`{ name = "package.module:Class", ... }`, imported only from a file the user trusts). The progress
display and the list of callbacks `fit` runs are the engine's (`engine/callbacks.py`)."""

from __future__ import annotations

import math
import typing
from collections.abc import Callable
from typing import Annotated, Literal, Protocol

import torch
from torch import nn

from .errors import UserError
from .metrics import MONITOR_ALIASES, monitor_mode
from .registry import Option, Registry


class Training(Protocol):
    """What a callback sees of the training that calls it (the engine's `Trainer`, engine/loop.py)."""

    model: nn.Module
    history: typing.Any  # the fit's History (status, stopped_epoch, best_epoch)
    stop_training: bool  # set True to stop after this epoch
    skipped_validation: bool  # validation_freq: no validation ran this epoch


class Callback:
    """Hooks called by `fit`. `self.trainer` is set before `on_train_begin`; set
    `self.trainer.stop_training = True` to stop after the current epoch."""

    trainer: Training

    def on_train_begin(self, logs: dict | None = None) -> None: ...
    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None: ...
    def on_epoch_end(self, epoch: int, logs: dict) -> None: ...
    def on_train_end(self, logs: dict | None = None) -> None: ...  # logs: the last epoch's, as Keras

    # cnnbench's own per-batch hook (not Keras'): a callback that defines
    #     on_batch_progress(self, batch: int, steps: int, running: Callable[[], dict]) -> None
    # is called after every training batch; `running()` gives the epoch's running loss (and accuracy) so
    # far, a device sync: call it only when it is shown (a progress display, at most every so often).

    # Callbacks with state that must survive a resume override these (tensors, numbers, strings only).
    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None: ...


class LambdaCallback(Callback):
    """Keras' `LambdaCallback`, same arguments in the same order: `on_epoch_begin(epoch, logs)`,
    `on_epoch_end(epoch, logs)`, `on_train_begin(logs)` (logs None), `on_train_end(logs)` (the last epoch's
    logs; `{}` when no epoch ran)."""

    def __init__(self, on_epoch_begin: Callable[[int, dict | None], None] | None = None,
                 on_epoch_end: Callable[[int, dict], None] | None = None,
                 on_train_begin: Callable[[dict | None], None] | None = None,
                 on_train_end: Callable[[dict | None], None] | None = None):
        self._epoch_begin, self._epoch_end = on_epoch_begin, on_epoch_end
        self._begin, self._end = on_train_begin, on_train_end

    def on_train_begin(self, logs=None):
        if self._begin:
            self._begin(logs)

    def on_epoch_begin(self, epoch, logs=None):
        if self._epoch_begin:
            self._epoch_begin(epoch, logs)

    def on_epoch_end(self, epoch, logs):
        if self._epoch_end:
            self._epoch_end(epoch, logs)

    def on_train_end(self, logs=None):
        if self._end:
            self._end(logs)


class EarlyStopping(Callback):
    """Keras 3's EarlyStopping: stop when `monitor` has not improved by more than `min_delta` for
    `patience` epochs; with `restore_best_weights`, end with the weights of the best epoch."""

    def __init__(self, monitor: Annotated[str, Option("the logged value watched (Keras' names: val_loss, "
                                                      "val_accuracy, loss, accuracy, val_<metric>)")] = "val_loss",
                 min_delta: Annotated[float, Option("a change smaller than this is no improvement")] = 0.0,
                 patience: Annotated[int, Option("epochs without improvement before training stops", ge=0)] = 0,
                 mode: Annotated[Literal["auto", "min", "max"],
                                 Option("which way is better; auto: from the monitor's name")] = "auto",
                 restore_best_weights: Annotated[bool, Option("end with the weights of the best epoch")] = False,
                 start_from_epoch: Annotated[int, Option("epochs before any is compared", ge=0)] = 0):
        if mode not in ("auto", "min", "max"):
            raise UserError(f"early_stopping.mode must be auto, min or max, not {mode!r}")
        monitor = MONITOR_ALIASES.get(monitor, monitor)
        self.monitor, self.patience, self.restore_best_weights = monitor, patience, restore_best_weights
        self.start_from_epoch = start_from_epoch
        self.sign = 1.0 if monitor_mode(monitor, mode) == "min" else -1.0  # compare sign*value: smaller is better
        self.min_delta = abs(min_delta)
        self.on_train_begin()

    def on_train_begin(self, logs=None):
        # As Keras: a callback reused for another fit starts afresh (a resumed fit then loads its state).
        self.best = math.inf
        self.wait = 0
        self.best_epoch = -1
        self.best_weights: dict[str, torch.Tensor] | None = None

    def on_epoch_end(self, epoch, logs):
        if self.trainer.history.status == "diverged":
            return  # NaN/inf loss: training stops anyway; nothing to compare (and no validation ran)
        current = logs.get(self.monitor)
        if current is None and self.monitor.startswith("val_") and self.trainer.skipped_validation:
            return  # validation_freq: no validation this epoch; Keras' EarlyStopping skips the epoch too
        if current is None:
            raise UserError(f"early_stopping monitors {self.monitor!r}, which is not logged; "
                            f"available: {', '.join(sorted(logs))}")
        if epoch < self.start_from_epoch:
            return
        model = self.trainer.model
        if self.restore_best_weights and self.best_weights is None:
            self.best_weights = _copy_state(model)
            self.best_epoch = epoch
        self.wait += 1
        if self.sign * current < self.best - self.min_delta:
            self.best, self.best_epoch, self.wait = self.sign * current, epoch, 0
            if self.restore_best_weights:
                self.best_weights = _copy_state(model)
            return
        if self.wait >= self.patience and epoch > 0:
            self.trainer.stop_training = True
            self.trainer.history.stopped_epoch = epoch

    def on_train_end(self, logs=None):
        if self.best_epoch >= 0:
            self.trainer.history.best_epoch = self.best_epoch
        if self.restore_best_weights and self.best_weights is not None:
            self.trainer.model.load_state_dict(self.best_weights)

    def state_dict(self):
        return {"best": self.best, "wait": self.wait, "best_epoch": self.best_epoch,
                "best_weights": self.best_weights or {}}

    def load_state_dict(self, state):
        self.best, self.wait, self.best_epoch = state["best"], state["wait"], state["best_epoch"]
        self.best_weights = state["best_weights"] or None


def _copy_state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


# A study's `callbacks = [...]` names these (options checked against the signature's declarations, as
# every registry does); `fit(callbacks=[...])` takes the objects.
REGISTRY = Registry("callback", references=True)
REGISTRY.register("early_stopping", aliases=["EarlyStopping"],
                  summary="stop when the monitored value stops improving (Keras' EarlyStopping)")(EarlyStopping)
