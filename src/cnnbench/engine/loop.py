"""One run's training loop (`Trainer`): the epoch's batches and order, the step, validation, callbacks,
and the checkpoint it saves after every epoch and resumes from.

Design (after airbench94): the whole training set is one uint8 tensor on the training device; a batch
is an index slice, scaled to [0, 1] and (optionally) augmented as a whole batch; the step is the plain
forward / backward / step of PyTorch, with nothing else on the hot path. Per-epoch numbers are summed
as tensors and read once at the end of the epoch (one device sync per epoch).

Randomness is derived from (seed, epoch): the epoch's shuffling and augmentation use a generator seeded
from it, and the global RNG (dropout) is reseeded from it at the start of every epoch. So a run resumed
from its epoch-k checkpoint continues exactly as the uninterrupted run would have, and the checkpoint
needs no RNG state."""

from __future__ import annotations

import copy
import io
import logging
import math
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .. import optim as optim_mod
from ..errors import environment_fault
from ..store.files import atomic_write, remove_stale_temps
from .callbacks import Callback, History, ProgressDisplay
from .evaluation import evaluate_batches, metric_values, no_metric_values
from .inputs import as_float01, epoch_seed, precision_autocast
from .outputs import CompiledLoss, float_outputs, predicted_labels

log = logging.getLogger("cnnbench")


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
        self.compiled = CompiledLoss(training_loss)  # one output is a one-entry list of outputs
        self.metrics = list(metrics)  # [(log name, output index, fn)]: computed over each epoch
        self.device, self.seed, self.batch_size, self.epochs = device, seed, batch_size, epochs
        self.micro_batch_size = micro_batch_size if micro_batch_size and micro_batch_size < batch_size else None
        self.autocast = precision_autocast(device, precision)
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
        return torch.randperm(n, generator=torch.Generator().manual_seed(epoch_seed(self.seed, first)))

    def train_epoch(self, epoch: int, x: torch.Tensor, y: torch.Tensor, sw: torch.Tensor | None
                    ) -> dict[str, float | None]:
        """Train one epoch; its logs: `loss`, each output's loss and accuracy (`CompiledLoss`), the metrics."""
        gen = torch.Generator().manual_seed(epoch_seed(self.seed, epoch))
        torch.manual_seed(epoch_seed(self.seed, epoch) ^ 0x5DEECE66D)  # dropout stream
        first, batch_numbers = self.epoch_batches(epoch, x.shape[0])
        order = self._order(epoch, first, x.shape[0], gen).to(self.device)
        n = sum(min(self.batch_size, x.shape[0] - b * self.batch_size) for b in batch_numbers)  # images seen
        self.model.train()
        optim_mod.train_mode(self.optimizer)
        sums = _EpochSums(self.compiled, self.device, keep_probabilities=bool(self.metrics))
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
            self._step(x, y, sw, idx, gen, sums)
            for bar in bars:  # reads the running sums only when it redraws (a device sync)
                # the lambda is called (or not) inside the hook, never kept: it sees this batch's values
                bar(step, steps, lambda: self.compiled.running_logs(sums.loss, sums.corrects, seen))  # noqa: B023
        return sums.logs(n, self.metrics)

    def _step(self, x: torch.Tensor, y: torch.Tensor, sw: torch.Tensor | None, idx: torch.Tensor,
              gen: torch.Generator, sums: _EpochSums) -> None:
        """One batch `idx`: forward, backward, the model's weight penalty, the optimizer's step."""
        self.optimizer.zero_grad(set_to_none=True)
        # Gradient accumulation: a batch too large for memory is processed in micro-batches whose
        # losses are weighted by their share of the batch, so the gradient is the batch's gradient.
        chunks = (idx,) if self.micro_batch_size is None else idx.split(self.micro_batch_size)
        for chunk in chunks:
            xb, yb = as_float01(x[chunk]), y[chunk]
            if self.augment is not None:
                xb = self.augment(xb, gen)
            with self.autocast:
                out = float_outputs(self.model(xb))  # losses always compute in float32 (Keras' semantics)
            loss, parts = self.compiled.losses(out, yb, None if sw is None else sw[chunk])
            share = chunk.numel() / idx.numel()
            if len(chunks) > 1:
                loss = loss * share
            loss.backward()
            sums.add(loss, parts, out, yb, share if len(chunks) > 1 else 1, idx.numel())
        if self.regularization is not None:
            penalty = self.regularization()
            penalty.backward()
            sums.loss += penalty.detach() * idx.numel()
        self.optimizer.step()

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
            logs: dict[str, Any] = self.train_epoch(epoch, x, y, sw)  # Any: callbacks may add their own
            train_loss = logs["loss"]  # a number (NaN/inf when the epoch diverged)
            optim_mod.eval_mode(self.optimizer)  # Schedule-Free: evaluate (and checkpoint) the averaged weights
            validate = val is not None and math.isfinite(train_loss)
            self.skipped_validation = validate and not _should_validate(epoch, self.validation_freq)
            if val is not None and validate and not self.skipped_validation:
                logs.update({f"val_{k}": v for k, v in
                             evaluate_batches(self.model, self.loss, *val, batch_size=max(self.batch_size, 1024),
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


class _EpochSums:
    """An epoch's running sums on the device, read once at its end: the loss (× images), each output's
    unweighted loss (several outputs) and correct count, and for the metrics asked for the batches'
    probabilities and labels (as Keras' metrics: on the training batches as trained, before the step)."""

    def __init__(self, compiled: CompiledLoss, device: torch.device, keep_probabilities: bool):
        self.compiled, self.keep_probabilities = compiled, keep_probabilities
        self.loss = torch.zeros((), device=device)
        self.parts = [torch.zeros((), device=device) for _ in compiled.part_names]
        self.corrects = [torch.zeros((), device=device, dtype=torch.long) for _ in compiled.prefixes]
        self.probabilities: list[list[torch.Tensor]] = []  # per batch, per output
        self.labels: list[torch.Tensor] = []

    def add(self, loss: torch.Tensor, parts: list[torch.Tensor], out, yb: torch.Tensor, share: float,
            batch: int) -> None:
        """A (micro-)batch's numbers; `share` its part of the batch of `batch` images (1 for a whole batch)."""
        self.loss += loss.detach() * batch
        for part_sum, part in zip(self.parts, parts):
            part_sum += part.detach() * share * batch
        for correct, out_i, y_i in zip(self.corrects, self.compiled.outputs(out), self.compiled.labels(yb)):
            correct += (predicted_labels(out_i.detach()) == y_i).sum()
        if self.keep_probabilities:
            with torch.no_grad():
                self.probabilities.append([p.detach().cpu() for p in self.compiled.probabilities(out)])
            self.labels.append(yb.detach().cpu())

    def logs(self, n: int, plan: Sequence) -> dict[str, float | None]:
        loss = (self.loss / n).item()
        logs: dict[str, float | None] = {"loss": loss}
        logs.update({name: (v / n).item() for name, v in zip(self.compiled.part_names, self.parts)})
        logs.update({f"{prefix}accuracy": (v.float() / n).item() for prefix, v in zip(self.compiled.prefixes,
                                                                                       self.corrects)})
        if plan and math.isfinite(loss):
            whole = [torch.cat(p) for p in zip(*self.probabilities)]
            logs.update(metric_values(plan, whole, self.compiled.labels(torch.cat(self.labels))))
        elif plan:  # a NaN/inf loss: the epoch has no metric values (the run is diverged)
            logs.update(no_metric_values(plan))
        return logs
