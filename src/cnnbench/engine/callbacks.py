"""What `fit` keeps and shows of its callbacks: `History` (what fit returns, Keras'), the progress
display (`verbose`), and the list of callbacks a fit runs. The callbacks themselves (Callback,
LambdaCallback, EarlyStopping) are a family of their own, `cnnbench.callbacks`."""

from __future__ import annotations

import inspect
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from ..callbacks import Callback, EarlyStopping
from ..errors import UserError, did_you_mean


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
