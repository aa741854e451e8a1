"""The engine: a Keras-like `fit` / `evaluate` for PyTorch image classifiers.

    history = cnnbench.fit("keras_mnist_cnn", x_train, y_train, loss="categorical_crossentropy",
                           optimizer="adam", epochs=5, batch_size=128, validation_split=0.1)
    history.history["val_accuracy"]; history.model; cnnbench.evaluate(history.model, x_test, y_test)

Design (after airbench94): the whole training set is one uint8 tensor on the training device; a batch
is an index slice, scaled to [0, 1] and (optionally) augmented as a whole batch; the step is the plain
forward / backward / step of PyTorch, with nothing else on the hot path. Per-epoch numbers are summed
as tensors and read once at the end of the epoch (one device sync per epoch).

Randomness is derived from (seed, epoch): the epoch's shuffling and augmentation use a generator seeded
from it, and the global RNG (dropout) is reseeded from it at the start of every epoch. So a run resumed
from its epoch-k checkpoint continues exactly as the uninterrupted run would have, and the checkpoint
needs no RNG state.
"""

from __future__ import annotations

import copy
import inspect
import io
import logging
import math
import os
import sys
import time
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, overload

import numpy as np
import torch
from torch import nn

from .. import losses as losses_mod
from .. import optim as optim_mod
from ..errors import UserError, did_you_mean, environment_fault
from ..store.files import atomic_write, remove_stale_temps
from .inference import heap_allocations

log = logging.getLogger("cnnbench")

__all__ = ["fit", "evaluate", "parameter_count", "forward_flops", "History", "Callback", "EarlyStopping",
           "MultiOutputLoss", "LambdaCallback", "to_images", "to_labels"]


# --- inputs -------------------------------------------------------------------------------------


def to_images(x: Any) -> torch.Tensor:
    """Images as a Keras user passes them -> an N×C×H×W tensor (uint8 kept as uint8, else float32).

    N×H×W (grey), N×H×W×C (Keras' channels-last) and N×C×H×W are accepted; C is 1, 3 or 4.
    """
    t = torch.as_tensor(np.ascontiguousarray(x)) if isinstance(x, np.ndarray) else torch.as_tensor(x)
    if t.ndim == 3:
        t = t.unsqueeze(1)
    if t.ndim != 4:
        raise UserError(f"images must be N×H×W, N×H×W×C or N×C×H×W, got shape {tuple(t.shape)}")
    if t.shape[-1] in (1, 3, 4) and t.shape[1] not in (1, 3, 4):
        t = t.permute(0, 3, 1, 2)
    if t.dtype != torch.uint8:
        t = t.float()
    return t.contiguous()


def to_labels(y: Any) -> torch.Tensor:
    """Integer class labels (N,) or one-hot (N×K) -> int64 class indices (N,)."""
    t = torch.as_tensor(np.asarray(y)) if isinstance(y, np.ndarray) else torch.as_tensor(y)
    if t.ndim == 2 and t.shape[1] > 1:
        t = t.argmax(1)
    t = t.reshape(-1)
    if t.is_floating_point() and not torch.equal(t, t.round()):
        raise UserError("labels must be integer class indices (or one-hot rows)")
    return t.long()


def resolve_device(device: str | torch.device | None) -> torch.device:
    if device is None or str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(device)
    except RuntimeError:
        raise UserError(f"unknown device {device!r}; use cpu, cuda or auto") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError("device 'cuda' asked for, but torch sees no CUDA GPU; use --device cpu or auto")
    return device


def _as_float01(xb: torch.Tensor) -> torch.Tensor:
    xb = xb.float().div_(255.0) if xb.dtype == torch.uint8 else xb
    return xb.contiguous(memory_format=torch.channels_last)


def _epoch_seed(seed: int, epoch: int) -> int:
    # A fixed, well-mixed 63-bit seed per (seed, epoch): independent streams, identical on resume.
    return (seed * 0x9E3779B97F4A7C15 + (epoch + 1) * 0xBF58476D1CE4E5B9) % (2**63 - 1)


# --- history and callbacks ----------------------------------------------------------------------


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
    def _format(logs: dict) -> str:
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
        print(f"\r{batch + 1:>{digits}}/{steps} [{bar}] - {now - self._t0:.0f}s - {self._format(running())}",
              end="", file=self._out(), flush=True)

    def on_epoch_end(self, epoch, logs):
        seconds = time.perf_counter() - self._t0
        line = f"{seconds:.1f}s - {self._format(logs)}"
        if self.mode == 1:
            steps = self.trainer.epoch_steps  # this epoch's batches (steps_per_epoch can shorten an epoch)
            print(f"\r{steps}/{steps} [{'=' * 30}] - {line}", file=self._out(), flush=True)
        else:
            print(f"Epoch {epoch + 1}/{self.trainer.epochs} - {line}", file=self._out(), flush=True)


VERBOSE = (0, 1, 2, "auto")


def _verbose_mode(verbose, stream=None) -> int:
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
        from ..metrics import monitor_mode  # the one rule for mode="auto" (Keras'), shared with reduce_on_plateau

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


# --- several outputs (Keras' compile(loss={...}, loss_weights={...})) ------------------------------


class MultiOutputLoss:
    """The losses of a model whose `forward` returns a dict of outputs, one `TrainingLoss` per output.

    Labels are an int64 tensor N×M, column i the labels of output `names[i]` (so that batches, the
    validation split and checkpoints slice them as one tensor). As Keras' `CompileLoss`: the loss
    trained on is `sum_i w_i * loss_i` (a missing weight is 1.0), and each output's *unweighted* loss
    is reported as `<name>_loss`."""

    def __init__(self, losses: dict[str, Any], weights: dict[str, float] | None = None):
        self.names = list(losses)
        self.losses = dict(losses)
        weights = weights or {}
        self.weights = {n: float(weights.get(n, 1.0)) for n in self.names}
        self.given_weights = {n: float(w) for n, w in weights.items()}
        self.out_features = {n: self.losses[n].out_features for n in self.names}
        self.num_classes = {n: self.losses[n].num_classes for n in self.names}
        self.name = " + ".join(f"{self.weights[n]:g}·{n}:{self.losses[n].name}" for n in self.names)

    def _check(self, outputs) -> None:
        if not isinstance(outputs, dict) or set(outputs) != set(self.names):
            got = sorted(outputs) if isinstance(outputs, dict) else f"a {type(outputs).__name__}"
            raise UserError(f"the model's forward returns {got}, but the labels and losses name the outputs "
                            f"{self.names}; return a dict with exactly these keys")

    def parts(self, outputs: dict, labels: torch.Tensor, sample_weight=None):
        """(total = Σ w_i · loss_i, {name: unweighted loss_i})."""
        self._check(outputs)
        total, parts = 0, {}
        for i, n in enumerate(self.names):
            value = self.losses[n](outputs[n], labels[:, i], sample_weight)
            parts[n] = value
            total = total + value * self.weights[n]
        return total, parts

    def __call__(self, outputs: dict, labels: torch.Tensor, sample_weight=None) -> torch.Tensor:
        return self.parts(outputs, labels, sample_weight)[0]

    def probabilities(self, outputs: dict) -> dict[str, torch.Tensor]:
        self._check(outputs)
        return {n: self.losses[n].probabilities(outputs[n]) for n in self.names}

    def __repr__(self) -> str:
        return f"MultiOutputLoss({self.losses!r}, weights={self.weights!r})"


def _float_outputs(out):
    return {k: v.float() for k, v in out.items()} if isinstance(out, dict) else out.float()


def _label_columns(y: dict, names: list[str] | None, what: str) -> tuple[list[str], torch.Tensor]:
    """A dict of per-output labels -> (names, N×M int64 tensor)."""
    if not y:
        raise UserError(f"{what} is an empty dict; give {{output_name: labels}} for each output of the model")
    if names is not None and set(y) != set(names):
        raise UserError(f"{what} names the outputs {sorted(y)}, but the model's losses name {sorted(names)}; "
                        "give labels for exactly these outputs")
    names = list(names or y)
    columns = [to_labels(y[n]) for n in names]
    sizes = {n: c.shape[0] for n, c in zip(names, columns)}
    if len(set(sizes.values())) > 1:
        raise UserError(f"{what}: the outputs have different numbers of labels {sizes}; give one label per image "
                        "for every output")
    return names, torch.stack(columns, dim=1)


def _multi_losses(loss, loss_weights, names: list[str], num_classes: dict[str, int]) -> MultiOutputLoss:
    if isinstance(loss, dict) and set(loss) != set(names) and "name" in loss:
        per_output = dict.fromkeys(names, loss)  # one loss spec {"name": ..., options} for every output
    elif isinstance(loss, dict):
        if set(loss) != set(names):
            raise UserError(f"loss names the outputs {sorted(loss)}, but the labels name {sorted(names)}; give "
                            "one loss per output (or one loss for all of them)")
        per_output = {n: loss[n] for n in names}
    else:  # Keras: one loss for every output
        per_output = dict.fromkeys(names, loss)
    weights = loss_weights or {}
    if not isinstance(weights, dict):
        raise UserError(f"loss_weights must be a dict {{output_name: weight}}, got {loss_weights!r}")
    for n, w in weights.items():
        if n not in names:
            hint = did_you_mean(n, names)
            raise UserError(f"loss_weights names output {n!r}, which the model does not have; {hint}outputs: "
                            f"{', '.join(names)}")
        if isinstance(w, bool) or not isinstance(w, (int, float)) or not math.isfinite(w):
            raise UserError(f"loss_weights[{n!r}] must be a number, got {w!r}")
    return MultiOutputLoss({n: losses_mod.adapt(losses_mod.get(per_output[n]), num_classes[n]) for n in names},
                           weights)


def _metric_plan(metrics, training_loss) -> list[tuple[str, str | None, Any]]:
    """[(log name, output name or None, fn)] for `fit(metrics=...)`."""
    from .. import metrics as metrics_mod

    if metrics is None or (isinstance(metrics, (list, tuple, dict)) and not metrics):
        return []
    if not isinstance(training_loss, MultiOutputLoss):
        if isinstance(metrics, dict):
            raise UserError("metrics as a dict {output: [...]} is for a model with several outputs; give a list")
        return [(name, None, fn) for name, fn in metrics_mod.resolve_metrics(metrics)]
    plan: list[tuple[str, str | None, Any]] = []  # Keras': a dict per output, a list for every output
    for output, specs in metrics_mod.per_output(metrics, training_loss.names).items():
        plan += [(f"{output}_{name}", output, fn) for name, fn in metrics_mod.resolve_metrics(specs)]
    return plan


def _metric_values(plan, probabilities, labels) -> dict[str, float | None]:
    """The plan's metrics over a whole set: `probabilities` a tensor (or a dict per output), `labels` N
    (or N×M)."""
    from .. import metrics as metrics_mod

    out = {}
    for name, output, fn in plan:
        if output is None:
            out[name] = metrics_mod.compute(fn, labels, probabilities)
        else:
            i = list(probabilities).index(output)
            out[name] = metrics_mod.compute(fn, labels[:, i], probabilities[output])
    return out


def _cat_probabilities(chunks: list):
    if chunks and isinstance(chunks[0], dict):
        return {k: torch.cat([c[k] for c in chunks]) for k in chunks[0]}
    return torch.cat(chunks)


# --- the training loop --------------------------------------------------------------------------


class _ForeignCheckpoint(Exception):
    """A checkpoint whose tag names another run."""


class Trainer:
    """One run: model, loss, optimizer and the loop. `fit` is its public face."""

    def __init__(self, model: nn.Module, training_loss, optimizer: torch.optim.Optimizer, *,
                 device: torch.device, seed: int, batch_size: int, epochs: int,
                 callbacks: Sequence[Callback] = (), augment: Callable | None = None,
                 checkpoint: str | os.PathLike | None = None, micro_batch_size: int | None = None,
                 precision: str = "fp32", metrics: Sequence = (), shuffle: bool | str = True,
                 initial_epoch: int = 0, validation_freq: int | Sequence[int] = 1,
                 steps_per_epoch: int | None = None, checkpoint_tag: str | None = None):
        self.model, self.loss, self.optimizer = model, training_loss, optimizer
        self.checkpoint_tag = checkpoint_tag
        self.shuffle, self.initial_epoch, self.validation_freq = shuffle, initial_epoch, validation_freq
        self.steps_per_epoch = steps_per_epoch
        self.epoch_steps = 0  # batches of the epoch being trained (for the progress bar)
        self.skipped_validation = False  # validation_freq left this epoch without validation
        self.multi = isinstance(training_loss, MultiOutputLoss)
        self.metrics = list(metrics)  # [(log name, output or None, fn)]: computed over each epoch
        self.device, self.seed, self.batch_size, self.epochs = device, seed, batch_size, epochs
        self.micro_batch_size = micro_batch_size if micro_batch_size and micro_batch_size < batch_size else None
        self.autocast = _autocast(device, precision)
        # Keras adds a model's weight penalties (e.g. the ResNet example's L2) to the loss it reports.
        self.regularization = getattr(model, "regularization_loss", None)
        self.callbacks, self.augment = list(callbacks), augment
        self.checkpoint = Path(checkpoint) if checkpoint else None
        self.history = History(model=model)
        self.stop_training = False
        for cb in self.callbacks:
            cb.trainer = self

    # -- checkpoints: model, optimizer (+ schedule), history, callback states ----------------------
    def state_dict(self) -> dict:
        return {"model": self.model.state_dict(), "optimizer": optim_mod.state_dict(self.optimizer),
                "history": self.history.state_dict(), "callbacks": [cb.state_dict() for cb in self.callbacks],
                **({"tag": self.checkpoint_tag} if self.checkpoint_tag is not None else {})}

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        optim_mod.load_state_dict(self.optimizer, state["optimizer"])
        self.history.load_state_dict(state["history"])
        for cb, s in zip(self.callbacks, state["callbacks"]):
            cb.load_state_dict(s)

    def _save_checkpoint(self) -> None:
        """Write the checkpoint atomically (`files.atomic_write`): a kill or a full disk leaves the
        previous checkpoint, never a torn one; the temporary file is removed on any failure, and a full
        disk or a read-only directory becomes one line (`EnvironmentFault`)."""
        # Serialise in memory, then write with Python's I/O: torch's file writer reports a full disk
        # from a C++ destructor, which can abort the whole process instead of raising.
        assert self.checkpoint is not None  # called only for a run with a checkpoint
        buffer = io.BytesIO()
        torch.save(self.state_dict(), buffer)
        atomic_write(self.checkpoint, buffer.getbuffer(), fault=True)

    def _load_checkpoint(self) -> int:
        """Restore from the checkpoint if there is one; return the first epoch still to train.

        A checkpoint that cannot be loaded (truncated, garbage, from an incompatible model) is set
        aside as `KEY.pt.corrupt-TIMESTAMP`, said in one line (logger "cnnbench", `history.notes`),
        and the run starts again from scratch, from the state it had before the attempt."""
        if not self.checkpoint:
            return 0
        remove_stale_temps(self.checkpoint)  # a write killed half-way: the checkpoint is the old, whole one
        if not self.checkpoint.exists():
            return 0
        fresh = copy.deepcopy(self.state_dict())
        try:
            state = torch.load(self.checkpoint, map_location=self.device, weights_only=True)
            tag = state.get("tag") if isinstance(state, dict) else None
            if self.checkpoint_tag is not None and tag is not None and tag != self.checkpoint_tag:
                # another run's checkpoint under this run's name (copied, or a file moved by hand): resuming
                # from it would train this run on from another's weights. A checkpoint without a tag is
                # older than tags and was this run's.
                raise _ForeignCheckpoint(f"it belongs to {tag!r}, not {self.checkpoint_tag!r}")
            self.load_state_dict(state)
        except (KeyboardInterrupt, SystemExit, MemoryError):
            raise
        except Exception as e:
            fault = environment_fault(e, self.checkpoint, "read") if isinstance(e, OSError) else None
            if fault is not None:
                raise fault from None
            self.load_state_dict(fresh)  # whatever the failed load changed
            self.stop_training = False
            foreign = isinstance(e, _ForeignCheckpoint)
            stamp = time.strftime('%Y%m%dT%H%M%S')
            aside = self.checkpoint.with_name(f"{self.checkpoint.name}.{'foreign' if foreign else 'corrupt'}-{stamp}")
            os.replace(self.checkpoint, aside)
            reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            reason = reason.split(" (1) ")[0].split(". ")[0][:160]  # torch's advice (weights_only=False) dropped
            if "weights_only" in reason:
                reason = "not a checkpoint that loads safely"
            what = (f"is another run's ({reason})" if foreign
                    else f"could not be loaded ({type(e).__name__}: {reason})")
            note = f"checkpoint {self.checkpoint} {what}; set aside as {aside.name}; the run starts again from epoch 1"
            self.history.notes.append(note)
            log.warning("cnnbench: %s", note)
            return 0
        if self.history.status == "diverged" or self.history.stopped_epoch is not None:
            self.stop_training = True
        return self.history.epoch[-1] + 1 if self.history.epoch else 0

    # -- the loop --------------------------------------------------------------------------------
    def epoch_batches(self, epoch: int, n: int) -> tuple[int, range]:
        """(the epoch that began the pass over the data this epoch is part of, the pass's batches it trains).

        As Keras' epoch iterator over arrays: without `steps_per_epoch` (or with one of at least a pass's
        batches) every epoch is one whole pass; with fewer, an epoch takes the next `steps_per_epoch`
        batches of the running pass, and the epoch that reaches the pass's end stops there (Keras warns
        "Your input ran out of data") and the next epoch begins a new pass. A function of the epoch alone,
        so a resumed run trains the same batches."""
        batches = math.ceil(n / self.batch_size)
        per = self.steps_per_epoch
        if per is None or per >= batches:
            return epoch, range(batches)
        epochs_per_pass = math.ceil(batches / per)
        done = epoch - self.initial_epoch  # Keras' iterator starts its first pass at initial_epoch
        first = epoch - done % epochs_per_pass
        start = (done % epochs_per_pass) * per
        return first, range(start, min(start + per, batches))

    def _order(self, epoch: int, first: int, n: int, gen: torch.Generator) -> torch.Tensor:
        """The pass's order of the images: shuffled once per pass (seeded by the pass's first epoch, with the
        epoch's own generator when the pass begins now: the order of the default fit), in order for
        `shuffle=False`; for `shuffle="batch"` (Keras') in order, each batch shuffled within itself in
        `train_epoch`."""
        if self.shuffle is not True:
            return torch.arange(n)
        if first == epoch:
            return torch.randperm(n, generator=gen)
        return torch.randperm(n, generator=torch.Generator().manual_seed(_epoch_seed(self.seed, first)))

    def train_epoch(self, epoch: int, x: torch.Tensor, y: torch.Tensor, sw: torch.Tensor | None):
        model, loss_fn, opt = self.model, self.loss, self.optimizer
        gen = torch.Generator().manual_seed(_epoch_seed(self.seed, epoch))
        torch.manual_seed(_epoch_seed(self.seed, epoch) ^ 0x5DEECE66D)  # dropout stream
        first, batch_numbers = self.epoch_batches(epoch, x.shape[0])
        order = self._order(epoch, first, x.shape[0], gen).to(self.device)
        n = sum(min(self.batch_size, x.shape[0] - b * self.batch_size) for b in batch_numbers)  # images seen
        model.train()
        optim_mod.train_mode(opt)
        loss_sum = torch.zeros((), device=self.device)
        correct = torch.zeros((), device=self.device, dtype=torch.long)
        if self.multi:
            part_sums = {k: torch.zeros((), device=self.device) for k in loss_fn.names}
            corrects = {k: torch.zeros((), device=self.device, dtype=torch.long) for k in loss_fn.names}
        seen_probabilities, seen_labels = [], []
        # what follows the batches: Keras' progress bar (verbose=1), a callback's on_batch_progress
        bars = [cb.on_batch_end if isinstance(cb, ProgressDisplay) else cb.on_batch_progress
                for cb in self.callbacks
                if (isinstance(cb, ProgressDisplay) and cb.mode == 1) or hasattr(cb, "on_batch_progress")]
        steps = self.epoch_steps = len(batch_numbers)
        seen = 0
        for step, start in enumerate(b * self.batch_size for b in batch_numbers):
            idx = order[start:start + self.batch_size]
            if self.shuffle == "batch":
                idx = idx[torch.randperm(idx.numel(), generator=gen).to(self.device)]
            seen += idx.numel()
            opt.zero_grad(set_to_none=True)
            # Gradient accumulation: a batch too large for memory is processed in micro-batches whose
            # losses are weighted by their share of the batch, so the gradient is the batch's gradient.
            chunks = (idx,) if self.micro_batch_size is None else idx.split(self.micro_batch_size)
            for chunk in chunks:
                xb, yb = _as_float01(x[chunk]), y[chunk]
                if self.augment is not None:
                    xb = self.augment(xb, gen)
                with self.autocast:
                    out = _float_outputs(model(xb))  # losses always compute in float32 (Keras' semantics)
                if self.multi:
                    loss, parts = loss_fn.parts(out, yb, None if sw is None else sw[chunk])
                else:
                    loss = loss_fn(out, yb, None if sw is None else sw[chunk])
                share = chunk.numel() / idx.numel()
                if len(chunks) > 1:
                    loss = loss * share
                loss.backward()
                loss_sum += loss.detach() * idx.numel()
                if self.multi:
                    for i, k in enumerate(loss_fn.names):
                        part = parts[k].detach() * (share if len(chunks) > 1 else 1)
                        part_sums[k] += part * idx.numel()
                        corrects[k] += (_predicted_labels(out[k].detach()) == yb[:, i]).sum()
                else:
                    correct += (_predicted_labels(out.detach()) == yb).sum()
                if self.metrics:  # as Keras' metrics: on the training batches as trained, before the step
                    with torch.no_grad():
                        seen_probabilities.append(_detached(loss_fn.probabilities(out)))
                    seen_labels.append(yb.detach().cpu())
            if self.regularization is not None:
                penalty = self.regularization()
                penalty.backward()
                loss_sum += penalty.detach() * idx.numel()
            opt.step()
            for bar in bars:  # reads the running sums only when it redraws (a device sync)
                # the lambda is called (or not) inside the hook, never kept: it sees this batch's values
                bar(step, steps, lambda: {"loss": loss_sum.item() / seen} if self.multi else  # noqa: B023
                                 {"loss": loss_sum.item() / seen, "accuracy": correct.item() / seen})  # noqa: B023
        if not self.multi and not self.metrics:
            return (loss_sum / n).item(), (correct.float() / n).item()
        logs: dict[str, float | None] = {"loss": (loss_sum / n).item()}
        if self.multi:
            logs.update({f"{k}_loss": (v / n).item() for k, v in part_sums.items()})
            logs.update({f"{k}_accuracy": (v.float() / n).item() for k, v in corrects.items()})
        else:
            logs["accuracy"] = (correct.float() / n).item()
        if self.metrics and math.isfinite((loss_sum / n).item()):
            logs.update(_metric_values(self.metrics, _cat_probabilities(seen_probabilities), torch.cat(seen_labels)))
        elif self.metrics:  # a NaN/inf loss: the epoch has no metric values (the run is diverged)
            logs.update({name: None for name, _, _ in self.metrics})
        return logs

    def run(self, x, y, sw, val: tuple[torch.Tensor, torch.Tensor] | None) -> History:
        self.n_train = x.shape[0]
        for cb in self.callbacks:
            cb.on_train_begin()
        # after on_train_begin: a resumed callback keeps its state; Keras' initial_epoch numbers the epochs
        first_epoch = max(self._load_checkpoint(), self.initial_epoch)
        # the progress display ends its line before the other callbacks run (ProgressDisplay's doc)
        epoch_end_order = sorted(self.callbacks, key=lambda cb: not isinstance(cb, ProgressDisplay))
        last_logs: dict = {}  # on_train_end's logs: the last epoch's, as Keras' fit passes them
        for epoch in range(first_epoch, self.epochs):
            if self.stop_training:
                break
            for cb in self.callbacks:
                cb.on_epoch_begin(epoch)
            t0 = time.perf_counter()
            lr = optim_mod.current_lr(self.optimizer)
            result = self.train_epoch(epoch, x, y, sw)
            if isinstance(result, dict):  # several outputs, or custom metrics
                logs = result
                train_loss = logs["loss"]
            else:
                train_loss, train_acc = result
                logs = {"loss": train_loss, "accuracy": train_acc}
            optim_mod.eval_mode(self.optimizer)  # Schedule-Free: evaluate (and checkpoint) the averaged weights
            validate = val is not None and math.isfinite(train_loss)
            self.skipped_validation = validate and not _should_validate(epoch, self.validation_freq)
            if val is not None and validate and not self.skipped_validation:
                logs.update({f"val_{k}": v for k, v in
                             _evaluate(self.model, self.loss, *val, batch_size=max(self.batch_size, 1024),
                                       autocast=self.autocast, metrics=self.metrics).items()})
            logs["learning_rate"] = lr
            logs["seconds"] = time.perf_counter() - t0
            self.history.append(epoch, logs)
            if not math.isfinite(train_loss):
                # NaN guard: record the epoch, stop, let the caller record the run as diverged.
                self.history.status = "diverged"
                self.stop_training = True
            else:  # the schedule counts this fit's epochs (its optimizer is new), from 0 as without initial_epoch
                optim_mod.on_epoch_end(self.optimizer, epoch - self.initial_epoch, logs)
            logged = set(logs)
            for cb in epoch_end_order:
                cb.on_epoch_end(epoch, logs)
            last_logs = logs
            for key in [k for k in logs if k not in logged]:  # as Keras' History, the last callback: the keys
                self.history.history.setdefault(key, []).append(logs[key])  # callbacks added are kept too
            if self.checkpoint is not None:
                self._save_checkpoint()
        optim_mod.eval_mode(self.optimizer)
        for cb in self.callbacks:
            cb.on_train_end(last_logs)
        return self.history


def _should_validate(epoch: int, validation_freq: int | Sequence[int]) -> bool:
    """Keras' `validation_freq`: every `validation_freq`-th epoch, or the epochs listed, both 1-based."""
    if isinstance(validation_freq, int):
        return (epoch + 1) % validation_freq == 0
    return epoch + 1 in validation_freq


def _predicted_labels(outputs: torch.Tensor) -> torch.Tensor:
    # argmax of the logits is argmax of the probabilities; one output unit is a sigmoid: p > 0.5.
    return outputs.argmax(1) if outputs.shape[1] > 1 else (outputs[:, 0] > 0).long()


PRECISIONS = ("fp32", "bf16")


def _autocast(device: torch.device, precision: str):
    """bf16: the model's matmuls and convolutions in bfloat16 (autocast), weights and loss in float32.
    Training 2.0x float32 on one thread of a CPU with AVX-512 BF16 (BENCHMARKS.md); not yet measured on a GPU."""
    if precision not in PRECISIONS:
        raise UserError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16")


@heap_allocations()  # the batches' activations reuse heap pages (inference.py; same numbers)
@torch.no_grad()
def _evaluate(model: nn.Module, training_loss, x: torch.Tensor, y: torch.Tensor, batch_size: int = 1024,
              autocast=None, all_metrics: bool = False, metrics: Sequence = ()) -> dict[str, float | None]:
    """The run's own loss and accuracy on (x, y); with `all_metrics`, also the loss-independent metrics
    of `metrics.classification_metrics` on the loss's `.probabilities(outputs)`.

    Sums are kept in float64 (per-batch mean loss × batch size; exact counts), so the numbers do not
    depend on the batch size beyond the model's own float32 arithmetic."""
    autocast = autocast or _autocast(x.device, "fp32")
    if isinstance(training_loss, MultiOutputLoss):
        return _evaluate_multi(model, training_loss, x, y, batch_size, autocast, all_metrics, metrics)
    model.eval()
    from .inference import evaluator  # model(xb), same numbers, Conv+ReLU fused (inference.py)

    forward = evaluator(model)
    # float64 where the device has it (MPS has not)
    sum_dtype = torch.float32 if x.device.type == "mps" else torch.float64
    loss_sum = torch.zeros((), device=x.device, dtype=sum_dtype)
    correct = torch.zeros((), device=x.device, dtype=torch.long)
    probabilities = []
    for start in range(0, x.shape[0], batch_size):
        xb, yb = _as_float01(x[start:start + batch_size]), y[start:start + batch_size]
        with autocast:
            out = forward(xb).float()
        loss_sum += training_loss(out, yb).to(sum_dtype) * yb.numel()
        correct += (_predicted_labels(out) == yb).sum()
        if all_metrics or metrics:
            probabilities.append(training_loss.probabilities(out))
    n = max(x.shape[0], 1)
    loss = loss_sum / n
    regularization = getattr(model, "regularization_loss", None)
    if regularization is not None:  # as Keras' evaluate: the weight penalty is part of the loss
        loss = loss + regularization()
    result: dict[str, float | None] = {"loss": loss.item(), "accuracy": correct.item() / n}
    if all_metrics:
        from ..metrics import classification_metrics

        if probabilities:
            result.update(classification_metrics(torch.cat(probabilities), y))
        else:  # an empty set: no evidence
            result.update(top5_accuracy=None, nll=math.nan, ece=math.nan, macro_f1=math.nan)
    if metrics:
        result.update(_metric_values(metrics, torch.cat(probabilities), y) if probabilities
                      else {name: None for name, _, _ in metrics})
    return result


@torch.no_grad()
def _evaluate_multi(model, training_loss: MultiOutputLoss, x, y, batch_size, autocast, all_metrics, metrics):
    """`_evaluate` for several outputs: `loss` (Σ w_i · loss_i, with the weight penalty), `<name>_loss`
    (unweighted), `<name>_accuracy`, and per output the metrics asked for (`<name>_<metric>`)."""
    model.eval()
    from .inference import evaluator

    forward = evaluator(model)
    names = training_loss.names
    sum_dtype = torch.float32 if x.device.type == "mps" else torch.float64
    loss_sum = torch.zeros((), device=x.device, dtype=sum_dtype)
    part_sums = {k: torch.zeros((), device=x.device, dtype=sum_dtype) for k in names}
    corrects = {k: torch.zeros((), device=x.device, dtype=torch.long) for k in names}
    probabilities = []
    for start in range(0, x.shape[0], batch_size):
        xb, yb = _as_float01(x[start:start + batch_size]), y[start:start + batch_size]
        with autocast:
            out = _float_outputs(forward(xb))
        total, parts = training_loss.parts(out, yb)
        loss_sum += total.to(sum_dtype) * yb.shape[0]
        for i, k in enumerate(names):
            part_sums[k] += parts[k].to(sum_dtype) * yb.shape[0]
            corrects[k] += (_predicted_labels(out[k]) == yb[:, i]).sum()
        if all_metrics or metrics:
            probabilities.append(training_loss.probabilities(out))
    n = max(x.shape[0], 1)
    loss = loss_sum / n
    regularization = getattr(model, "regularization_loss", None)
    if regularization is not None:
        loss = loss + regularization()
    result = {"loss": loss.item()}
    result.update({f"{k}_loss": (v / n).item() for k, v in part_sums.items()})
    result.update({f"{k}_accuracy": v.item() / n for k, v in corrects.items()})
    if all_metrics:
        from ..metrics import classification_metrics

        for i, k in enumerate(names):
            if probabilities:
                scores = classification_metrics(torch.cat([p[k] for p in probabilities]), y[:, i])
            else:
                scores = dict(top5_accuracy=None, nll=math.nan, ece=math.nan, macro_f1=math.nan)
            result.update({f"{k}_{m}": v for m, v in scores.items()})
    if metrics:
        result.update(_metric_values(metrics, _cat_probabilities(probabilities), y) if probabilities
                      else {name: None for name, _, _ in metrics})
    return result


def _detached(p):
    return {k: v.detach().cpu() for k, v in p.items()} if isinstance(p, dict) else p.detach().cpu()


def _build_callbacks(early_stopping, callbacks: Iterable[Callback]) -> list[Callback]:
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


def _validation_freq(value) -> int | list[int]:
    """Keras' validation_freq: a whole number >= 1, or a list of (1-based) epochs."""
    if isinstance(value, (list, tuple, range)):
        for epoch in value:
            _whole_number(epoch, "each epoch of validation_freq")
        return [int(e) for e in value]
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise UserError(f"validation_freq must be a whole number >= 1 or a list of 1-based epochs, got {value!r}")
    return int(value)


def _whole_number(value, name: str, minimum: int = 1) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise UserError(f"{name} must be a whole number >= {minimum}, got {value!r}")


def check_micro_batching(loss) -> None:
    """Micro-batching weights each slice's loss by its share of the batch, which is the batch's loss
    only when the loss averages over the batch's samples."""
    reduction = getattr(loss, "reduction", "sum_over_batch_size")
    ignore_class = getattr(loss, "ignore_class", None)
    if reduction not in ("sum_over_batch_size", "mean") or ignore_class is not None:
        ignoring = "" if ignore_class is None else f" and ignore_class {ignore_class!r}"
        raise UserError(f"micro_batch_size needs a loss that averages over the batch (reduction "
                        f"'sum_over_batch_size', no ignore_class); loss {loss.name!r} has reduction "
                        f"{reduction!r}{ignoring}; drop micro_batch_size or use the default reduction")


def fit(model: nn.Module | str | dict, x, y, *, loss="categorical_crossentropy", optimizer="adam",
        epochs: int = 1, batch_size: int | None = 32, validation_split: float | None = None,
        validation_data: tuple | None = None, callbacks: Iterable[Callback] = (), seed: int = 0,
        device: str | torch.device = "auto", num_classes: int | dict[str, int] | None = None,
        class_weight: dict | str | None = None, sample_weight=None, augmentation: dict | None = None,
        early_stopping: dict | bool | None = None, checkpoint: str | os.PathLike | None = None,
        micro_batch_size: int | None = None, precision: str = "fp32", verbose: int | str = "auto",
        loss_weights: dict[str, float] | None = None, metrics: Sequence[str] | dict | None = None,
        shuffle: bool | str = True, initial_epoch: int = 0, validation_freq: int | Sequence[int] = 1,
        steps_per_epoch: int | None = None, checkpoint_tag: str | None = None) -> History:
    """Train `model` on images `x` and labels `y`, Keras style; return the `History`.

    `model`: an `nn.Module` or a registry name/spec (built for the data's shape and the loss's output
    units, with `seed`). `loss` / `optimizer`: names, specs or objects. `x`: N×H×W, N×H×W×C or
    N×C×H×W (uint8 pixels are scaled to [0, 1]); `y`: integer labels. `validation_split` takes the
    last fraction of the data, before shuffling, as Keras does. `checkpoint`: a file written after
    every epoch; if it exists, training resumes from it. `checkpoint_tag` (e.g. a study's run key) is
    written into it: a checkpoint tagged for another run is set aside, as a damaged one is, and training
    starts over. `micro_batch_size`: accumulate the gradient of
    each batch over slices of this size (for batches that do not fit in memory). `precision="bf16"`:
    bfloat16 autocast for the model (faster; float32 is Keras' default). `verbose`: Keras' 0 (silent),
    1 (a progress bar per epoch), 2 (one line per epoch) or "auto" (the default: 1 on a terminal, else
    2). The trained model is `history.model`.

    Keras' epoch options: `shuffle` (True: a new order every pass over the data; False: the images in
    order; "batch": in order, each batch shuffled within itself), `initial_epoch` (epochs are numbered
    from it: `epochs - initial_epoch` epochs are trained and `history.epoch` starts there; a schedule
    counts from the first of them, as the optimizer is new), `validation_freq` (validate every n-th
    epoch, or at the 1-based epochs of a list; the `val_` lists of the history then hold only those
    epochs, as Keras'), `steps_per_epoch` (batches per epoch: an epoch takes the next batches of the
    running pass, which ends an epoch early when it runs out, as Keras' iterator over arrays).

    Several outputs (Keras' `compile(loss={...}, loss_weights={...})`): a model whose `forward` returns
    a dict of outputs, `y = {"digit": y1, "big": y2}` (and `validation_data=(x_val, {...})`), `loss` a
    dict per output (or one loss for all), `loss_weights` a dict (missing = 1.0); a registry name as
    `model` is built with one head per output (`models.MultiHead`). The loss trained on
    and logged as `loss` is Σ w_i · loss_i; the history also has each output's unweighted
    `<name>_loss` and `<name>_accuracy` (and `val_...`), as Keras names them.

    `metrics` (Keras' `metrics=[...]`): names of `cnnbench.metrics.BUILTIN_FUNCTIONS` (`top5_accuracy`,
    `nll`, `ece`, `macro_f1`) or `"package.module:function"` taking `(y_true, probabilities)`; each is
    computed over every epoch's training batches (as trained, before each step, as Keras) and over the
    validation set, logged as `<name>` / `val_<name>` (per output `<output>_<name>`, from a dict
    `{output: [...]}`).
    """
    verbose = _verbose_mode(verbose)
    _whole_number(epochs, "epochs", minimum=0)
    batch_size = 32 if batch_size is None else batch_size  # Keras' default for None
    _whole_number(batch_size, "batch_size")
    _whole_number(initial_epoch, "initial_epoch", minimum=0)
    if steps_per_epoch is not None:
        _whole_number(steps_per_epoch, "steps_per_epoch")
    if shuffle not in (True, False, "batch") or not isinstance(shuffle, (bool, str)):
        raise UserError(f"shuffle must be True, False or 'batch' (Keras'), got {shuffle!r}")
    validation_freq = _validation_freq(validation_freq)
    if micro_batch_size is not None:
        _whole_number(micro_batch_size, "micro_batch_size")
    dev = resolve_device(device)
    _autocast(dev, precision)  # validate before any work
    x = to_images(x)
    names = None  # the outputs' names, for a model with several outputs
    if isinstance(y, dict):
        names, y = _label_columns(y, None, "y")
    else:
        y = to_labels(y)
        if loss_weights is not None:
            raise UserError("loss_weights weighs the losses of several outputs; give y as a dict "
                            "{output_name: labels} (and a model whose forward returns a dict), or drop loss_weights")
    if x.shape[0] != y.shape[0]:
        raise UserError(f"x has {x.shape[0]} images but y has {y.shape[0]} labels")
    sw = None if sample_weight is None else torch.as_tensor(np.asarray(sample_weight), dtype=torch.float32)
    if sw is not None and tuple(sw.shape) != (x.shape[0],):
        raise UserError(f"sample_weight has shape {tuple(sw.shape)}; give one weight per image ({x.shape[0]})")
    val: tuple[torch.Tensor, torch.Tensor] | None = None
    if validation_data is not None:
        if not isinstance(validation_data, (tuple, list)) or len(validation_data) != 2:
            raise UserError("validation_data must be a pair (x_val, y_val)")
        if names is not None:
            x_val = to_images(validation_data[0])
            if not isinstance(validation_data[1], dict):
                raise UserError("validation_data's y must be a dict {output_name: labels}, as y is")
            val = (x_val, _label_columns(validation_data[1], names, "validation_data's y")[1])
        else:
            val = (to_images(validation_data[0]), to_labels(validation_data[1]))
        if val[0].shape[0] != val[1].shape[0]:
            raise UserError(f"validation_data has {val[0].shape[0]} images but {val[1].shape[0]} labels")
    elif validation_split:
        if not 0.0 < validation_split < 1.0:
            raise UserError(f"validation_split must be in (0, 1), got {validation_split}")
        from ..data import train_size

        n_train = train_size(x.shape[0], validation_split)  # Keras: the last fraction is validation
        val = (x[n_train:], y[n_train:])
        x, y = x[:n_train], y[:n_train]
        sw = None if sw is None else sw[:n_train]
    if batch_size < 1 or batch_size > x.shape[0]:
        raise UserError(f"batch_size {batch_size} must be between 1 and the {x.shape[0]} training images")
    labels = torch.cat([y, val[1]]) if val else y  # y has >= batch_size >= 1 labels here
    training_loss: losses_mod.TrainingLoss | MultiOutputLoss
    if names is None:
        if isinstance(num_classes, dict):
            raise UserError("num_classes is a dict per output, but y is one output's labels; give a number")
        lowest, highest = int(labels.min()), int(labels.max())
        if num_classes is None:
            num_classes = highest + 1
        if lowest < 0 or highest >= num_classes:
            raise UserError(f"labels span {lowest}..{highest}, outside 0..{num_classes - 1}; "
                            "labels must be class indices 0..num_classes-1")
        training_loss = losses_mod.adapt(losses_mod.get(loss), num_classes)
        if micro_batch_size is not None and micro_batch_size < batch_size:
            check_micro_batching(training_loss.loss)
    else:
        if class_weight is not None:
            raise UserError("class_weight applies to a model with one output; with several outputs use "
                            "sample_weight (one weight per image, for every output)")
        classes = {}
        for i, n in enumerate(names):
            lowest, highest = int(labels[:, i].min()), int(labels[:, i].max())
            k = (num_classes.get(n) if isinstance(num_classes, dict) else num_classes) or highest + 1
            if lowest < 0 or highest >= k:
                raise UserError(f"labels of output {n!r} span {lowest}..{highest}, outside 0..{k - 1}; "
                                "labels must be class indices 0..num_classes-1")
            classes[n] = int(k)
        num_classes = classes
        training_loss = _multi_losses(loss, loss_weights, names, classes)
        if micro_batch_size is not None and micro_batch_size < batch_size:
            for part in training_loss.losses.values():
                check_micro_batching(part.loss)
    metric_plan = _metric_plan(metrics, training_loss)
    if class_weight is not None:
        assert num_classes is not None and not isinstance(num_classes, dict)  # refused above for several outputs
        cw = losses_mod.class_weights_to_sample_weights(y, class_weight, num_classes)
        sw = cw if sw is None else sw * cw

    if not isinstance(model, nn.Module):
        from .. import models as models_mod

        torch.manual_seed(seed)
        # several outputs: a registry model gets one head per output, a user's model num_outputs={name: units}
        model = models_mod.get(model, input_shape=tuple(x.shape[1:]), num_outputs=training_loss.out_features)
    model = model.to(dev, memory_format=torch.channels_last)  # type: ignore[call-overload]  # torch's overloads omit it
    assert isinstance(model, nn.Module)
    params = [p for p in model.parameters() if p.requires_grad]
    steps = math.ceil(x.shape[0] / batch_size) if steps_per_epoch is None else steps_per_epoch  # Keras' params
    batches = math.ceil(x.shape[0] / batch_size)
    if steps_per_epoch is not None and batches % steps_per_epoch and epochs > initial_epoch:
        # Keras warns at every such epoch ("Your input ran out of data"); once is enough to say why
        warnings.warn(f"steps_per_epoch={steps_per_epoch} does not divide the {batches} batches of a pass over the "
                      f"data; as Keras, an epoch that reaches the end of the pass stops there, with fewer steps",
                      stacklevel=2)
    if isinstance(optimizer, torch.optim.Optimizer):
        opt = optimizer
    else:  # a schedule spans the epochs this fit trains
        opt = optim_mod.get(optimizer, params, steps_per_epoch=min(steps, batches),
                            epochs=max(epochs - initial_epoch, 0), batch_size=batch_size)

    augment = None
    if augmentation:
        from ..data import augment as augment_mod

        augment = augment_mod.get(augmentation)
    x, y = x.to(dev), y.to(dev)
    sw = None if sw is None else sw.to(dev)
    val = None if val is None else (val[0].to(dev), val[1].to(dev))
    callbacks = _build_callbacks(early_stopping, callbacks)
    if verbose:  # last: it shows the logs after the other callbacks' epoch ends
        callbacks.append(ProgressDisplay(verbose))
    trainer = Trainer(model, training_loss, opt, device=dev, seed=seed, batch_size=batch_size, epochs=epochs,
                      callbacks=callbacks, augment=augment, checkpoint=checkpoint,
                      micro_batch_size=micro_batch_size, precision=precision, metrics=metric_plan,
                      shuffle=shuffle, initial_epoch=initial_epoch, validation_freq=validation_freq,
                      steps_per_epoch=steps_per_epoch, checkpoint_tag=checkpoint_tag)
    with heap_allocations():  # the steps' activations reuse heap pages (inference.py; same numbers)
        history = trainer.run(x, y, sw, val)
    history.params = {"verbose": verbose, "epochs": epochs, "steps": steps,  # Keras' three, then cnnbench's
                      "batch_size": batch_size, "num_classes": num_classes}
    # plain attributes (torch types Module.__setattr__ for tensors and modules only)
    model.cnnbench_loss = training_loss  # type: ignore[assignment]  # so evaluate()/predict() need not be told the loss
    model.cnnbench_metrics = metrics  # type: ignore[assignment]  # evaluate() computes them too
    return history


Scores = dict[str, float | None]


@overload
def evaluate(model: nn.Module, x, y, *, loss=..., batch_size: int | None = ..., num_classes: int | dict | None = ...,
             device: str | torch.device | None = ..., precision: str = ...,
             loss_weights: dict[str, float] | None = ..., metrics=..., verbose: int | str = ...,
             return_dict: Literal[True]) -> Scores: ...


@overload
def evaluate(model: nn.Module, x, y, *, loss=..., batch_size: int | None = ..., num_classes: int | dict | None = ...,
             device: str | torch.device | None = ..., precision: str = ...,
             loss_weights: dict[str, float] | None = ..., metrics=..., verbose: int | str = ...,
             return_dict: Literal[False] = ...) -> list[float | None]: ...


def evaluate(model: nn.Module, x, y, *, loss=None, batch_size: int | None = 1024,
             num_classes: int | dict | None = None, device: str | torch.device | None = None, precision: str = "fp32",
             loss_weights: dict[str, float] | None = None, metrics=None, verbose: int | str = "auto",
             return_dict: bool = False) -> Scores | list[float | None]:
    """Scores of `model` on (`x`, `y`): the run's own loss and what is comparable across losses.

    As Keras' `model.evaluate`: a list `[loss, *metrics]` (`keras_order`), or with `return_dict=True`
    a dict of the same scores by name, `{"loss": ..., "accuracy": ..., ...}`; `verbose` 0 (silent), 1 or 2
    (one line with the scores when done) or "auto" (the default: as `fit`, 1 on a terminal, else 2).
    cnnbench's compiled metrics, in Keras' terms, are always accuracy, top5_accuracy, nll, ece and
    macro_f1 (then the `metrics` asked for), so there is no scalar-only return. Scores:

    - `loss`: the training loss (as Keras' evaluate; defaults to the one `fit` trained with), with the
      model's weight penalty if it has one; `accuracy`: fraction with argmax output = label.
    - `top5_accuracy`: true class among the 5 most probable (Keras' `in_top_k`); None with <= 5 classes.
    - `nll` = (1/N) Σ −log clip(p[y], 1e-7, 1), p = the loss's `.probabilities(outputs)`, clipped as
      Keras clips probabilities.
    - `ece`: expected calibration error, 15 equal-width bins of max p (Guo et al. 2017):
      Σ_b |B_b|/N · |acc(B_b) − conf(B_b)|.
    - `macro_f1`: mean over classes of 2TP/(2TP + FP + FN) (scikit-learn's average="macro").

    Formulas in `cnnbench.metrics`; all are computed in float64 over the whole set, so they do not
    depend on `batch_size`. `precision="bf16"` evaluates under the same autocast as training.

    A model with several outputs takes `y` as a dict and returns `loss` (Σ w_i · loss_i) and per output
    `<name>_loss`, `<name>_accuracy`, `<name>_top5_accuracy`, `<name>_nll`, `<name>_ece`,
    `<name>_macro_f1`. `metrics` (default: those `fit` was given) adds `<metric>` (per output
    `<name>_<metric>`), as in `fit`.
    """
    mode = _verbose_mode(verbose)
    batch_size = 1024 if batch_size is None else batch_size  # the default: scores do not depend on it
    _whole_number(batch_size, "batch_size")
    x = to_images(x)
    trained = getattr(model, "cnnbench_loss", None)
    saved = getattr(model, "cnnbench_config", None) or {}
    if trained is None and saved.get("outputs") and saved.get("loss") is not None:
        from ..store.model_files import _training_loss as saved_loss  # a loaded model with several outputs: its losses

        trained = saved_loss(model, saved, None)
    training_loss: losses_mod.TrainingLoss | MultiOutputLoss | None
    if isinstance(y, dict):
        if loss is None and isinstance(trained, MultiOutputLoss):
            training_loss = trained
            names, y = _label_columns(y, trained.names, "y")
        else:
            names, y = _label_columns(y, list(loss) if isinstance(loss, dict) and "name" not in loss else None, "y")
            classes = {n: int((num_classes.get(n) if isinstance(num_classes, dict) else num_classes)
                              or int(y[:, i].max().item()) + 1) for i, n in enumerate(names)}
            training_loss = _multi_losses(loss or "categorical_crossentropy", loss_weights, names, classes)
    else:
        y = to_labels(y)
        if isinstance(num_classes, dict):
            raise UserError("num_classes is a dict per output, but y is one output's labels; give a number")
        if isinstance(trained, MultiOutputLoss) and loss is None:
            raise UserError(f"this model has several outputs ({', '.join(trained.names)}); give y as a dict "
                            "{output_name: labels}")
        if loss is None:
            training_loss = trained
            if training_loss is None:
                training_loss = losses_mod.adapt(losses_mod.get("categorical_crossentropy"),
                                                 num_classes or int(y.max().item()) + 1)
        else:
            training_loss = losses_mod.adapt(losses_mod.get(loss), num_classes or int(y.max().item()) + 1)
    if metrics is None:  # those fit was given, or a loaded model's built-in ones (never code from a file)
        metrics = getattr(model, "cnnbench_metrics", None)
        if metrics is None and saved.get("metrics"):
            from ..store.model_files import _builtin_metrics

            metrics = _builtin_metrics(saved["metrics"])
    plan = _metric_plan(metrics, training_loss)
    dev = next(model.parameters()).device if device is None else resolve_device(device)
    t0 = time.perf_counter()
    scores = _evaluate(model.to(dev), training_loss, x.to(dev), y.to(dev), batch_size,
                       autocast=_autocast(dev, precision), all_metrics=True, metrics=plan)
    if mode:  # Keras' progress bar, as it looks when evaluation is done (no redraws: one line)
        steps = math.ceil(x.shape[0] / batch_size)
        bar = f" [{'=' * 30}]" if mode == 1 else ""
        print(f"{steps}/{steps}{bar} - {time.perf_counter() - t0:.0f}s - {ProgressDisplay._format(scores)}", flush=True)
    if return_dict:
        return scores
    return keras_order(scores, training_loss.names if isinstance(training_loss, MultiOutputLoss) else None)


def keras_order(scores: Scores, outputs: list[str] | None = None) -> list[float | None]:
    """`evaluate`'s scores as the list Keras 3's `evaluate` returns (`Trainer._flatten_metrics_in_order`):
    the names of `model.metrics` first, in order -- the loss, the compiled metrics (one output: accuracy,
    top5_accuracy, nll, ece, macro_f1, the `metrics` asked for), each output's loss -- then the other
    scores sorted by name. With several outputs Keras' compiled metrics are named `<output>_<metric>` in
    the logs but not in `model.metrics`, so they come last, sorted: [loss, <o1>_loss, <o2>_loss, sorted
    rest]."""
    known = ["loss", *(f"{o}_loss" for o in outputs)] if outputs else list(scores)
    return [scores[k] for k in known if k in scores] + [scores[k] for k in sorted(scores) if k not in known]


def parameter_count(model: nn.Module) -> int:
    """Every parameter of the model, trainable or frozen (Keras' "Total params")."""
    return sum(p.numel() for p in model.parameters())


@torch.no_grad()
def forward_flops(model: nn.Module, image: torch.Tensor) -> int | None:
    """Floating-point operations of one forward pass on one image (C×H×W or 1×C×H×W; uint8 is
    scaled to [0, 1]) in eval mode, as `torch.utils.flop_counter.FlopCounterMode` counts them (2 per
    multiply-add of matmuls and convolutions; elementwise operations are not counted). None when they
    cannot be counted (an operation the counter does not know how to run, an old torch): a missing
    count must never fail a run."""
    try:
        from .flops import count_flops  # FlopCounterMode's count, without importing torch._dynamo

        was_training = model.training
        device = next(model.parameters()).device
        xb = _as_float01((image if image.ndim == 4 else image.unsqueeze(0))[:1].to(device))
        model.eval()
        try:
            return count_flops(lambda: model(xb))
        finally:
            model.train(was_training)
    except Exception:
        return None
