"""The `Loss` base class and Keras 3's reductions (a port of keras.src.losses.loss)."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any

import torch

from ..errors import UserError
from .ops import as_float, divide_no_nan, same_rank

REDUCTIONS = ("sum_over_batch_size", "sum", "mean", "mean_with_sample_weight", "none", None)


def check_reduction(reduction):
    if reduction not in REDUCTIONS:
        allowed = ", ".join(repr(r) for r in REDUCTIONS if r is not None)
        raise UserError(f"unknown loss reduction {reduction!r}; use one of {allowed}")
    return reduction


def reduce_weighted(values, sample_weight=None, mask=None, reduction="sum_over_batch_size"):
    """Weight and reduce per-sample losses exactly as Keras 3 does.

    `sum` sums; `sum_over_batch_size` and `mean` divide the (weighted) sum by the number of
    elements, not by the weight sum; `mean_with_sample_weight` divides by the weight sum;
    `none` returns the weighted per-sample values. A boolean `mask` (e.g. from `ignore_class`)
    makes masked entries count as absent."""
    check_reduction(reduction)
    if sample_weight is not None:
        sample_weight = torch.as_tensor(sample_weight, device=values.device).to(values.dtype)
    if mask is not None:
        if reduction in ("mean", "sum_over_batch_size"):
            total = float(mask.numel())
            valid = mask.to(values.dtype).sum()
            float_mask = torch.where(mask, divide_no_nan(total, valid), torch.zeros_like(valid))
        else:
            float_mask = mask.to(values.dtype)
        if sample_weight is not None:
            float_mask, sample_weight = same_rank(float_mask, sample_weight)
            sample_weight = sample_weight * float_mask
        else:
            sample_weight = float_mask
    if sample_weight is not None:
        values, sample_weight = same_rank(values, sample_weight)
        values = values * sample_weight
    if reduction is None or reduction == "none" or values.dim() == 0 or tuple(values.shape) == (0,):
        return values
    loss = values.sum()
    if reduction in ("sum_over_batch_size", "mean", "mean_with_sample_weight"):
        if reduction == "mean_with_sample_weight" and sample_weight is not None:
            loss = divide_no_nan(loss, sample_weight.sum().to(loss.dtype))
        else:
            loss = loss / float(values.numel())  # numel > 0 here; a Python number: no device copy
    return loss


class Loss:
    """Base class of every loss: Keras 3 semantics on torch tensors.

    Subclasses implement `call(y_true, y_pred) -> Tensor` (per-sample losses, shape [N] for
    [N, C] inputs) and return their constructor options from `get_config()`.

    Class attributes tell `adapt` how to feed the loss from raw model outputs:
      * `labels`: `"one_hot"` (y_true is a float [N, C] distribution) or `"sparse"` (int [N]).
      * `inputs`: `"probabilities"` (softmax / sigmoid of the outputs) or `"logits"` (raw).
        A loss with a `from_logits` attribute always gets logits, with `from_logits=True`.
      * `binary`: an element-wise binary loss (BCE, binary focal): one sigmoid unit on a 2-class
        task; one sigmoid per class (one-vs-rest) on more classes.
      * `binary_only`: refuse tasks with more than two classes.
    """

    labels = "one_hot"
    inputs = "probabilities"
    binary = False
    binary_only = False

    def __init__(self, reduction="sum_over_batch_size", name=None):
        self.reduction = check_reduction(reduction)
        self.name = name or snake(type(self).__name__)

    # -- to implement ------------------------------------------------------------------------------
    def call(self, y_true: torch.Tensor, y_pred: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def mask(self, y_true: torch.Tensor, y_pred: torch.Tensor) -> torch.Tensor | None:
        """Boolean mask of the per-sample losses that count (None: all of them)."""
        return None

    # -- Keras API ---------------------------------------------------------------------------------
    def __call__(self, y_true, y_pred, sample_weight=None) -> torch.Tensor:
        y_pred = as_float(y_pred)
        y_true = torch.as_tensor(y_true, device=y_pred.device)
        if self.labels != "sparse" or y_true.is_floating_point():
            y_true = y_true.to(y_pred.dtype)
        losses = self.call(y_true, y_pred)
        return reduce_weighted(losses, sample_weight, self.mask(y_true, y_pred), self.reduction)

    def get_config(self) -> dict[str, Any]:
        """`name`, `reduction` and the options of cnnbench's own loss classes, each read from the
        attribute of the same name (see `builtin_options`). A subclass written outside cnnbench
        adds its own options by overriding this: `{**super().get_config(), "margin": self.margin}`."""
        config = {"name": self.name, "reduction": self.reduction}
        for option in builtin_options(type(self)):
            config[option] = getattr(self, option)
        return config

    def __repr__(self) -> str:
        options = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items() if k != "name")
        return f"{type(self).__name__}({options})"


@functools.cache
def builtin_options(cls: type) -> tuple[str, ...]:
    """The constructor options (besides `reduction`, `name`) that the classes of this package in
    `cls`'s MRO declare, base classes first.

    Every built-in loss stores each constructor option under its own name, so its config is read from
    its signature instead of being written out per class. Only this package's classes are read: the
    options of a subclass written elsewhere are named by its own `get_config`, as they always were
    (its attributes need not follow this convention)."""
    options: list[str] = []
    for klass in reversed(cls.__mro__):
        if "__init__" not in vars(klass) or not klass.__module__.startswith(__package__ + "."):
            continue
        for p in inspect.signature(klass.__init__).parameters.values():
            keyword = p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
            if keyword and p.name not in ("self", "reduction", "name") and p.name not in options:
                options.append(p.name)
    return tuple(options)


class FunctionLoss(Loss):
    """Wraps a function `fn(y_true, y_pred, **options) -> per-sample tensor` as a `Loss`."""

    def __init__(self, fn: Callable, reduction="sum_over_batch_size", name=None, labels="one_hot",
                 inputs="probabilities", binary=False, binary_only=False, **options):
        super().__init__(reduction=reduction, name=name or getattr(fn, "__name__", "loss"))
        self.fn = fn
        self.options = options
        self.labels, self.inputs, self.binary, self.binary_only = labels, inputs, binary, binary_only

    def call(self, y_true, y_pred):
        return self.fn(y_true, y_pred, **self.options)

    def get_config(self):
        # the function's options, not this wrapper's constructor (fn, labels, ... are not options)
        return {"name": self.name, "reduction": self.reduction, **self.options}


def snake(name: str) -> str:
    """`CategoricalCrossentropy` -> `categorical_crossentropy` (a class's default loss name)."""
    out = []
    for i, ch in enumerate(name):
        if ch.isupper() and i and (not name[i - 1].isupper() or (i + 1 < len(name) and name[i + 1].islower())):
            out.append("_")
        out.append(ch.lower())
    return "".join(out)
