"""Scores of a model on a set: `evaluate` (Keras' `model.evaluate`), the validation pass of `fit`, and the
plan of the metrics asked for (`fit(metrics=...)`)."""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from typing import Any, Literal, overload

import torch
from torch import nn

from .. import losses as losses_mod
from .. import metrics as metrics_mod
from ..errors import UserError
from .callbacks import ProgressDisplay, verbose_mode
from .inference import evaluator, heap_allocations
from .inputs import (
    as_float01,
    check_whole_number,
    label_columns,
    precision_autocast,
    resolve_device,
    to_images,
    to_labels,
)
from .outputs import CompiledLoss, MultiOutputLoss, float_outputs, output_losses, predicted_labels
from .record import evaluation_loss, record_of


def metric_plan(metrics, training_loss) -> list[tuple[str, int, Any]]:
    """[(log name, the output's index in the loss's outputs, fn)] for `fit(metrics=...)`."""
    if metrics is None or (isinstance(metrics, (list, tuple, dict)) and not metrics):
        return []
    if not isinstance(training_loss, MultiOutputLoss):
        if isinstance(metrics, dict):
            raise UserError("metrics as a dict {output: [...]} is for a model with several outputs; give a list")
        return [(name, 0, fn) for name, fn in metrics_mod.resolve_metrics(metrics)]
    plan: list[tuple[str, int, Any]] = []  # Keras': a dict per output, a list for every output
    for output, specs in metrics_mod.per_output(metrics, training_loss.names).items():
        i = training_loss.names.index(output)
        plan += [(f"{output}_{name}", i, fn) for name, fn in metrics_mod.resolve_metrics(specs)]
    return plan


def metric_values(plan, probabilities: list[torch.Tensor], labels: list[torch.Tensor]) -> dict[str, float | None]:
    """The plan's metrics over a whole set, from each output's probabilities and labels (`CompiledLoss`)."""
    return {name: metrics_mod.compute(fn, labels[i], probabilities[i]) for name, i, fn in plan}


def no_metric_values(plan) -> dict[str, float | None]:
    """The plan's metrics where there is nothing to compute them on (an empty set, a diverged epoch)."""
    return {name: None for name, _, _ in plan}


@heap_allocations()  # the batches' activations reuse heap pages (inference.py; same numbers)
@torch.no_grad()
def evaluate_batches(model: nn.Module, training_loss, x: torch.Tensor, y: torch.Tensor, batch_size: int = 1024,
                     autocast=None, all_metrics: bool = False, metrics: Sequence = ()) -> dict[str, float | None]:
    """The run's own loss and accuracy on (x, y); with `all_metrics`, also the loss-independent metrics
    of `metrics.classification_metrics` on the loss's `.probabilities(outputs)`; then the `metrics`
    asked for (`metric_plan`). Per output (`CompiledLoss`): one output logs `loss`, `accuracy`, ...;
    several log `loss` (Σ w_i · loss_i), `<name>_loss` (unweighted), `<name>_accuracy`, `<name>_nll`, ...

    Sums are kept in float64 (per-batch mean loss × batch size; exact counts), so the numbers do not
    depend on the batch size beyond the model's own float32 arithmetic."""
    autocast = autocast or precision_autocast(x.device, "fp32")
    compiled = CompiledLoss(training_loss)
    model.eval()
    forward = evaluator(model)  # model(xb), same numbers, Conv+ReLU fused (inference.py)
    # float64 where the device has it (MPS has not)
    sum_dtype = torch.float32 if x.device.type == "mps" else torch.float64
    loss_sum = torch.zeros((), device=x.device, dtype=sum_dtype)
    part_sums = [torch.zeros((), device=x.device, dtype=sum_dtype) for _ in compiled.part_names]
    corrects = [torch.zeros((), device=x.device, dtype=torch.long) for _ in compiled.prefixes]
    probabilities: list[list[torch.Tensor]] = []  # per batch, per output
    for start in range(0, x.shape[0], batch_size):
        xb, yb = as_float01(x[start:start + batch_size]), y[start:start + batch_size]
        with autocast:
            out = float_outputs(forward(xb))
        total, parts = compiled.losses(out, yb)
        loss_sum += total.to(sum_dtype) * yb.shape[0]
        for part_sum, part in zip(part_sums, parts):
            part_sum += part.to(sum_dtype) * yb.shape[0]
        for correct, out_i, y_i in zip(corrects, compiled.outputs(out), compiled.labels(yb)):
            correct += (predicted_labels(out_i) == y_i).sum()
        if all_metrics or metrics:
            probabilities.append(compiled.probabilities(out))
    n = max(x.shape[0], 1)
    loss = loss_sum / n
    regularization = getattr(model, "regularization_loss", None)
    if regularization is not None:  # as Keras' evaluate: the weight penalty is part of the loss
        loss = loss + regularization()
    result: dict[str, float | None] = {"loss": loss.item()}
    result.update({name: (v / n).item() for name, v in zip(compiled.part_names, part_sums)})
    result.update({f"{prefix}accuracy": v.item() / n for prefix, v in zip(compiled.prefixes, corrects)})
    whole = [torch.cat(p) for p in zip(*probabilities)]  # per output, over the set
    labels = compiled.labels(y)
    if all_metrics:
        for i, prefix in enumerate(compiled.prefixes):
            if probabilities:
                scores = metrics_mod.classification_metrics(whole[i], labels[i])
            else:  # an empty set: no evidence
                scores = dict(top5_accuracy=None, nll=math.nan, ece=math.nan, macro_f1=math.nan)
            result.update({f"{prefix}{m}": v for m, v in scores.items()})
    if metrics:
        result.update(metric_values(metrics, whole, labels) if probabilities else no_metric_values(metrics))
    return result


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
    mode = verbose_mode(verbose)
    batch_size = 1024 if batch_size is None else batch_size  # the default: scores do not depend on it
    check_whole_number(batch_size, "batch_size")
    x = to_images(x)
    record = record_of(model)
    training_loss, y = _scoring_loss(loss, y, evaluation_loss(record), num_classes, loss_weights)
    if metrics is None:  # those fit was given, or a loaded model's built-in ones (never code from a file)
        metrics = record.evaluation_metrics()
    plan = metric_plan(metrics, training_loss)
    dev = next(model.parameters()).device if device is None else resolve_device(device)
    t0 = time.perf_counter()
    scores = evaluate_batches(model.to(dev), training_loss, x.to(dev), y.to(dev), batch_size,
                              autocast=precision_autocast(dev, precision), all_metrics=True, metrics=plan)
    if mode:  # Keras' progress bar, as it looks when evaluation is done (no redraws: one line)
        steps = math.ceil(x.shape[0] / batch_size)
        bar = f" [{'=' * 30}]" if mode == 1 else ""
        print(f"{steps}/{steps}{bar} - {time.perf_counter() - t0:.0f}s - {ProgressDisplay.format_logs(scores)}",
              flush=True)
    if return_dict:
        return scores
    return keras_order(scores, training_loss.names if isinstance(training_loss, MultiOutputLoss) else None)


def _scoring_loss(loss, y, trained, num_classes, loss_weights
                  ) -> tuple[losses_mod.TrainingLoss | MultiOutputLoss, torch.Tensor]:
    """`evaluate`'s loss and its labels as a tensor: `loss` if given, else the model's (`trained`: the
    record's), else categorical cross-entropy; `y` a dict for several outputs."""
    training_loss: losses_mod.TrainingLoss | MultiOutputLoss | None
    if isinstance(y, dict):
        if loss is None and isinstance(trained, MultiOutputLoss):
            training_loss = trained
            names, y = label_columns(y, trained.names, "y")
        else:
            names, y = label_columns(y, list(loss) if isinstance(loss, dict) and "name" not in loss else None, "y")
            classes = {n: int((num_classes.get(n) if isinstance(num_classes, dict) else num_classes)
                              or int(y[:, i].max().item()) + 1) for i, n in enumerate(names)}
            training_loss = output_losses(loss or "categorical_crossentropy", loss_weights, names, classes)
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
    return training_loss, y


def keras_order(scores: Scores, outputs: list[str] | None = None) -> list[float | None]:
    """`evaluate`'s scores as the list Keras 3's `evaluate` returns (`Trainer._flatten_metrics_in_order`):
    the names of `model.metrics` first, in order -- the loss, the compiled metrics (one output: accuracy,
    top5_accuracy, nll, ece, macro_f1, the `metrics` asked for), each output's loss -- then the other
    scores sorted by name. With several outputs Keras' compiled metrics are named `<output>_<metric>` in
    the logs but not in `model.metrics`, so they come last, sorted: [loss, <o1>_loss, <o2>_loss, sorted
    rest]."""
    known = ["loss", *(f"{o}_loss" for o in outputs)] if outputs else list(scores)
    return [scores[k] for k in known if k in scores] + [scores[k] for k in sorted(scores) if k not in known]
