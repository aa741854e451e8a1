"""The loss over a model's outputs (Keras' `compile(loss=..., loss_weights=...)`): one output's
`losses.TrainingLoss`, or `MultiOutputLoss` for a model whose forward returns a dict of outputs."""

from __future__ import annotations

import math
from typing import Any

import torch

from .. import losses as losses_mod
from ..errors import UserError, did_you_mean


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

    def check(self, outputs) -> None:
        if not isinstance(outputs, dict) or set(outputs) != set(self.names):
            got = sorted(outputs) if isinstance(outputs, dict) else f"a {type(outputs).__name__}"
            raise UserError(f"the model's forward returns {got}, but the labels and losses name the outputs "
                            f"{self.names}; return a dict with exactly these keys")

    def parts(self, outputs: dict, labels: torch.Tensor, sample_weight=None):
        """(total = Σ w_i · loss_i, {name: unweighted loss_i})."""
        self.check(outputs)
        total, parts = 0, {}
        for i, n in enumerate(self.names):
            value = self.losses[n](outputs[n], labels[:, i], sample_weight)
            parts[n] = value
            total = total + value * self.weights[n]
        return total, parts

    def __call__(self, outputs: dict, labels: torch.Tensor, sample_weight=None) -> torch.Tensor:
        return self.parts(outputs, labels, sample_weight)[0]

    def probabilities(self, outputs: dict) -> dict[str, torch.Tensor]:
        self.check(outputs)
        return {n: self.losses[n].probabilities(outputs[n]) for n in self.names}

    def __repr__(self) -> str:
        return f"MultiOutputLoss({self.losses!r}, weights={self.weights!r})"


def float_outputs(out):
    return {k: v.float() for k, v in out.items()} if isinstance(out, dict) else out.float()


def output_losses(loss, loss_weights, names: list[str], num_classes: dict[str, int]) -> MultiOutputLoss:
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


def predicted_labels(outputs: torch.Tensor) -> torch.Tensor:
    # argmax of the logits is argmax of the probabilities; one output unit is a sigmoid: p > 0.5.
    return outputs.argmax(1) if outputs.shape[1] > 1 else (outputs[:, 0] > 0).long()


def check_micro_batching(loss) -> None:
    """Micro-batching weights each slice's loss by its share of the batch, which is the batch's loss
    only when the loss averages over the batch's samples. `loss`: a loss, a `losses.TrainingLoss`, or a
    `MultiOutputLoss` (each output's loss is checked)."""
    if isinstance(loss, MultiOutputLoss):
        for part in loss.losses.values():
            check_micro_batching(part)
        return
    if isinstance(loss, losses_mod.TrainingLoss):
        loss = loss.loss
    reduction = getattr(loss, "reduction", "sum_over_batch_size")
    ignore_class = getattr(loss, "ignore_class", None)
    if reduction not in ("sum_over_batch_size", "mean") or ignore_class is not None:
        ignoring = "" if ignore_class is None else f" and ignore_class {ignore_class!r}"
        raise UserError(f"micro_batch_size needs a loss that averages over the batch (reduction "
                        f"'sum_over_batch_size', no ignore_class); loss {loss.name!r} has reduction "
                        f"{reduction!r}{ignoring}; drop micro_batch_size or use the default reduction")


def build_training_loss(loss, labels: torch.Tensor, names: list[str] | None, *, num_classes, loss_weights,
                        class_weight) -> tuple[losses_mod.TrainingLoss | MultiOutputLoss, int | dict[str, int]]:
    """`fit`'s loss for its labels (all of them, validation's included) and its number of classes (per output
    for several outputs, `names`): the labels must be class indices below it."""
    if names is None:
        if isinstance(num_classes, dict):
            raise UserError("num_classes is a dict per output, but y is one output's labels; give a number")
        lowest, highest = int(labels.min()), int(labels.max())
        if num_classes is None:
            num_classes = highest + 1
        if lowest < 0 or highest >= num_classes:
            raise UserError(f"labels span {lowest}..{highest}, outside 0..{num_classes - 1}; "
                            "labels must be class indices 0..num_classes-1")
        training_loss = losses_mod.adapt(losses_mod.get(loss), num_classes)  # refuses a num_classes not an integer
        return training_loss, training_loss.num_classes
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
    return output_losses(loss, loss_weights, names, classes), classes


class CompiledLoss:
    """The loss over a model's outputs as the loop and evaluation use it, as Keras' `CompileLoss`: every
    model has a list of outputs, and a model with one output is a one-entry list.

    Per output i: `outputs(out)[i]`, `labels(y)[i]`, `probabilities(out)[i]`, logged under
    `prefixes[i]` ("" for one output: `accuracy`; `<name>_` for several: `<name>_accuracy`). `losses`
    gives the loss trained on and the unweighted loss of each output; a model with several outputs also
    logs those as `part_names` (`<name>_loss`), one output's is `loss` itself, so it has none."""

    def __init__(self, training_loss: losses_mod.TrainingLoss | MultiOutputLoss):
        self.training_loss = training_loss
        self.several = isinstance(training_loss, MultiOutputLoss)
        names = training_loss.names if isinstance(training_loss, MultiOutputLoss) else [None]
        self.prefixes = [f"{n}_" for n in names] if self.several else [""]
        self.part_names = [f"{n}_loss" for n in names] if self.several else []

    def outputs(self, out) -> list[torch.Tensor]:
        if isinstance(self.training_loss, MultiOutputLoss):
            self.training_loss.check(out)
            return [out[n] for n in self.training_loss.names]
        return [out]

    def labels(self, y: torch.Tensor) -> list[torch.Tensor]:
        """One output's labels are N; several outputs' N×M, column i output i's."""
        return [y[:, i] for i in range(len(self.prefixes))] if self.several else [y]

    def losses(self, out, y: torch.Tensor, sample_weight=None) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """(the loss trained on, [the unweighted loss of each output in `part_names`])."""
        if isinstance(self.training_loss, MultiOutputLoss):
            total, parts = self.training_loss.parts(out, y, sample_weight)
            return total, [parts[n] for n in self.training_loss.names]
        return self.training_loss(out, y, sample_weight), []

    def probabilities(self, out) -> list[torch.Tensor]:
        if isinstance(self.training_loss, MultiOutputLoss):
            p = self.training_loss.probabilities(out)
            return [p[n] for n in self.training_loss.names]
        return [self.training_loss.probabilities(out)]

    def running_logs(self, loss_sum: torch.Tensor, corrects: list[torch.Tensor], seen: int) -> dict[str, float]:
        """What a progress bar shows during an epoch: the loss, and one output's accuracy (a device sync)."""
        logs = {"loss": loss_sum.item() / seen}
        if not self.several:
            logs["accuracy"] = corrects[0].item() / seen
        return logs
