"""The callbacks `fit` calls, Keras': History, Callback, LambdaCallback, EarlyStopping, the progress
display (`verbose`), and building a fit's list of them."""

from __future__ import annotations

import inspect
import math
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from ..errors import UserError, did_you_mean
from ..metrics import monitor_mode  # the one rule for mode="auto" (Keras'), shared with reduce_on_plateau

if TYPE_CHECKING:
    from .loop import Trainer


@dataclass
class History:
    """What `fit` returns, shaped like Keras' `History`: `history.history["val_accuracy"]`, `history.epoch`.

    `status` is "done" or "diverged" (a NaN/inf loss stopped training at `history.epoch[-1]`);
    `stopped_epoch` is set when early stopping ended training.
    """

    history: dict[str, list[float]] = field(default_factory=dict)
    epoch: list[int] = field(default_factory=list)
    model: nn.Module | None = None
    params: dict[str, Any] = field(default_factory=dict)
    status: str = "done"
    stopped_epoch: int | None = None
    best_epoch: int | None = None  # set by EarlyStopping: the epoch of the best monitored value
    notes: list[str] = field(default_factory=list)  # e.g. a damaged checkpoint set aside

    def append(self, epoch: int, logs: dict[str, float]) -> None:
        self.epoch.append(epoch)
        for k, v in logs.items():
            self.history.setdefault(k, []).append(v)

    def state_dict(self) -> dict:
        return {"history": self.history, "epoch": self.epoch, "status": self.status,
                "stopped_epoch": -1 if self.stopped_epoch is None else self.stopped_epoch}

    def load_state_dict(self, state: dict) -> None:
        self.history = {k: list(v) for k, v in state["history"].items()}
        self.epoch = list(state["epoch"])
        self.status = state["status"]
        self.stopped_epoch = None if state["stopped_epoch"] < 0 else state["stopped_epoch"]


class Callback:
    """Hooks called by `fit`. `self.trainer` is set before `on_train_begin`; set
    `self.trainer.stop_training = True` to stop after the current epoch."""

    trainer: Trainer

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


class ProgressDisplay(Callback):
    """Keras' `verbose`: 1 = a progress bar per epoch (redrawn in place, at most every 0.1 s), 2 = one
    line per epoch. Written to `stream` (default: standard output, as Keras).

    Its `on_epoch_end` runs before the other callbacks' (`Trainer.run`), so the bar's line is ended before
    a callback prints: Keras runs its ProgbarLogger last, and a `print` in `on_epoch_end` lands at the
    end of the open bar line there. It shows the epoch's logs as the engine made them (keys a callback
    adds are in the History, not on the line)."""

    def __init__(self, mode: int, stream=None):
        self.mode, self.stream = mode, stream
        self._last = 0.0

    def _out(self):
        return self.stream or sys.stdout

    @staticmethod
    def format_logs(logs: dict) -> str:
        return " - ".join(f"{k}: {v:.4f}" for k, v in logs.items() if k not in ("seconds", "learning_rate")
                          and isinstance(v, (int, float)))

    def on_epoch_begin(self, epoch, logs=None):
        self._t0 = time.perf_counter()
        if self.mode == 1:
            print(f"Epoch {epoch + 1}/{self.trainer.epochs}", file=self._out(), flush=True)

    def on_batch_end(self, batch: int, steps: int, running: Callable[[], dict]) -> None:
        now = time.perf_counter()
        if self.mode != 1 or (now - self._last < 0.1 and batch + 1 < steps):
            return
        self._last = now
        width, done = 30, (batch + 1) / steps
        bar = "=" * int(width * done)
        bar = (bar[:-1] + ">" if done < 1 and bar else bar).ljust(width, ".")
        digits = len(str(steps))
        print(f"\r{batch + 1:>{digits}}/{steps} [{bar}] - {now - self._t0:.0f}s - {self.format_logs(running())}",
              end="", file=self._out(), flush=True)

    def on_epoch_end(self, epoch, logs):
        seconds = time.perf_counter() - self._t0
        line = f"{seconds:.1f}s - {self.format_logs(logs)}"
        if self.mode == 1:
            steps = self.trainer.epoch_steps  # this epoch's batches (steps_per_epoch can shorten an epoch)
            print(f"\r{steps}/{steps} [{'=' * 30}] - {line}", file=self._out(), flush=True)
        else:
            print(f"Epoch {epoch + 1}/{self.trainer.epochs} - {line}", file=self._out(), flush=True)


VERBOSE = (0, 1, 2, "auto")


def verbose_mode(verbose, stream=None) -> int:
    """Keras' rule: "auto" is 1 on a terminal, else 2 (one line per epoch in a log)."""
    if isinstance(verbose, bool) or verbose not in VERBOSE:
        raise UserError(f"verbose must be 0 (silent), 1 (progress bar), 2 (one line per epoch) or 'auto', "
                        f"got {verbose!r}")
    if verbose == "auto":
        isatty = getattr(stream or sys.stdout, "isatty", None)
        return 1 if isatty is not None and isatty() else 2
    return verbose


MONITORS = ("val_loss", "val_accuracy", "loss", "accuracy")
MONITOR_ALIASES = {"val_acc": "val_accuracy", "acc": "accuracy"}  # Keras 2's names


class EarlyStopping(Callback):
    """Keras 3's EarlyStopping: stop when `monitor` has not improved by more than `min_delta` for
    `patience` epochs; with `restore_best_weights`, end with the weights of the best epoch."""

    def __init__(self, monitor: str = "val_loss", min_delta: float = 0.0, patience: int = 0,
                 mode: str = "auto", restore_best_weights: bool = False, start_from_epoch: int = 0):
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


def build_callbacks(early_stopping, callbacks: Iterable[Callback]) -> list[Callback]:
    out = list(callbacks)
    if early_stopping:
        options = early_stopping if isinstance(early_stopping, dict) else {}
        allowed = list(inspect.signature(EarlyStopping).parameters)
        for key in options:
            if key not in allowed:
                hint = did_you_mean(key, allowed)
                raise UserError(f"early_stopping has no option {key!r}; {hint}allowed: {', '.join(allowed)}")
        out.insert(0, EarlyStopping(**options))
    return out
