"""Loss functions with Keras 3 call semantics, on PyTorch.

    loss = cnnbench.losses.get("categorical_crossentropy", label_smoothing=0.1)
    loss(y_true, y_pred, sample_weight=None)     # Keras semantics: y_pred are probabilities
    train_loss = cnnbench.losses.adapt(loss, num_classes=10)
    train_loss(logits, labels)                    # what the engine calls: raw outputs, int labels

A `Loss` computes a per-sample tensor in `call(y_true, y_pred)` (the mean/sum over the last axis,
as Keras does) and reduces it in `__call__` exactly as `keras.losses.Loss` does
(`sum_over_batch_size` by default). Losses are pure tensor functions: no Python-side state and no
`.item()`, so they run on any device and inside `torch.compile`.

`adapt(loss, num_classes)` is the bridge to a model that outputs raw logits and labels that are
int64 class indices: cross-entropy-type losses use the numerically stable logit path
(`log_softmax` / BCE-with-logits), probability-space losses get softmax (or sigmoid) outputs, and
labels are one-hot encoded where the loss needs it.

The formulas of every entry are in `docs/losses.md`.
"""

from __future__ import annotations

import copy
import importlib
import inspect
import math
from typing import Any, Callable

import torch
import torch.nn.functional as F

from .errors import UserError
from .registry import Registry, check_reference, split_spec, with_defaults

__all__ = [
    "REGISTRY",
    "Loss",
    "FunctionLoss",
    "TrainingLoss",
    "get",
    "resolve",
    "list",
    "register",
    "adapt",
    "class_weights_to_sample_weights",
    "add_label_noise",
    "EPSILON",
    "REDUCTIONS",
]

_list = list  # `list` is redefined below as the module's API function

REGISTRY = Registry("loss", plural="losses")

#: `keras.backend.epsilon()`: probabilities are clipped to [EPSILON, 1 - EPSILON].
EPSILON = 1e-7

REDUCTIONS = ("sum_over_batch_size", "sum", "mean", "mean_with_sample_weight", "none", None)


# --------------------------------------------------------------------------------------------------
# Reduction (a port of keras.src.losses.loss.reduce_weighted_values)
# --------------------------------------------------------------------------------------------------
def _check_reduction(reduction):
    if reduction not in REDUCTIONS:
        allowed = ", ".join(repr(r) for r in REDUCTIONS if r is not None)
        raise UserError(f"unknown loss reduction {reduction!r}; use one of {allowed}")
    return reduction


def _same_rank(x1: torch.Tensor, x2: torch.Tensor, expand_rank_1: bool = True):
    """Squeeze/expand the last dim if the ranks differ by exactly one (Keras' rule)."""
    r1, r2 = x1.dim(), x2.dim()
    if r1 == r2:
        return x1, x2
    if r1 == r2 + 1 and x1.shape[-1] == 1:
        if r2 == 1 and expand_rank_1:
            x2 = x2.unsqueeze(-1)
        else:
            x1 = x1.squeeze(-1)
    if r2 == r1 + 1 and x2.shape[-1] == 1:
        if r1 == 1 and expand_rank_1:
            x1 = x1.unsqueeze(-1)
        else:
            x2 = x2.squeeze(-1)
    return x1, x2


def _divide_no_nan(a, b: torch.Tensor) -> torch.Tensor:
    """a / b, and 0 where b == 0 (`a` a tensor or a Python number)."""
    safe = torch.where(b == 0, torch.ones_like(b), b)
    quotient = a / safe
    return torch.where(b == 0, torch.zeros_like(quotient), quotient)


def reduce_weighted(values, sample_weight=None, mask=None, reduction="sum_over_batch_size"):
    """Weight and reduce per-sample losses exactly as Keras 3 does.

    `sum` sums; `sum_over_batch_size` and `mean` divide the (weighted) sum by the number of
    elements, not by the weight sum; `mean_with_sample_weight` divides by the weight sum;
    `none` returns the weighted per-sample values. A boolean `mask` (e.g. from `ignore_class`)
    makes masked entries count as absent."""
    _check_reduction(reduction)
    if sample_weight is not None:
        sample_weight = torch.as_tensor(sample_weight, device=values.device).to(values.dtype)
    if mask is not None:
        if reduction in ("mean", "sum_over_batch_size"):
            total = float(mask.numel())
            valid = mask.to(values.dtype).sum()
            float_mask = torch.where(mask, _divide_no_nan(total, valid), torch.zeros_like(valid))
        else:
            float_mask = mask.to(values.dtype)
        if sample_weight is not None:
            float_mask, sample_weight = _same_rank(float_mask, sample_weight)
            sample_weight = sample_weight * float_mask
        else:
            sample_weight = float_mask
    if sample_weight is not None:
        values, sample_weight = _same_rank(values, sample_weight)
        values = values * sample_weight
    if reduction is None or reduction == "none" or values.dim() == 0 or tuple(values.shape) == (0,):
        return values
    loss = values.sum()
    if reduction in ("sum_over_batch_size", "mean", "mean_with_sample_weight"):
        if reduction == "mean_with_sample_weight" and sample_weight is not None:
            loss = _divide_no_nan(loss, sample_weight.sum().to(loss.dtype))
        else:
            loss = loss / float(values.numel())  # numel > 0 here; a Python number: no device copy
    return loss


# --------------------------------------------------------------------------------------------------
# Base classes
# --------------------------------------------------------------------------------------------------
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
        self.reduction = _check_reduction(reduction)
        self.name = name or _snake(type(self).__name__)

    # -- to implement ------------------------------------------------------------------------------
    def call(self, y_true: torch.Tensor, y_pred: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def mask(self, y_true: torch.Tensor, y_pred: torch.Tensor) -> torch.Tensor | None:
        """Boolean mask of the per-sample losses that count (None: all of them)."""
        return None

    # -- Keras API ---------------------------------------------------------------------------------
    def __call__(self, y_true, y_pred, sample_weight=None) -> torch.Tensor:
        y_pred = _as_float(y_pred)
        y_true = torch.as_tensor(y_true, device=y_pred.device)
        if self.labels != "sparse" or y_true.is_floating_point():
            y_true = y_true.to(y_pred.dtype)
        losses = self.call(y_true, y_pred)
        return reduce_weighted(losses, sample_weight, self.mask(y_true, y_pred), self.reduction)

    def get_config(self) -> dict[str, Any]:
        return {"name": self.name, "reduction": self.reduction}

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def __repr__(self) -> str:
        options = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items() if k != "name")
        return f"{type(self).__name__}({options})"


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
        return {**super().get_config(), **self.options}


def _snake(name: str) -> str:
    out = []
    for i, ch in enumerate(name):
        if ch.isupper() and i and (not name[i - 1].isupper() or (i + 1 < len(name) and name[i + 1].islower())):
            out.append("_")
        out.append(ch.lower())
    return "".join(out)


def _as_float(x) -> torch.Tensor:
    x = torch.as_tensor(x)
    if not x.is_floating_point():
        x = x.to(torch.get_default_dtype())
    return x


def _clip(p: torch.Tensor) -> torch.Tensor:
    return torch.clamp(p, EPSILON, 1.0 - EPSILON)


def _smooth_one_hot(y_true: torch.Tensor, label_smoothing: float) -> torch.Tensor:
    """Keras' categorical label smoothing: y * (1 - ls) + ls / num_classes."""
    if label_smoothing:
        return y_true * (1.0 - label_smoothing) + label_smoothing / y_true.shape[-1]
    return y_true


# --------------------------------------------------------------------------------------------------
# Keras 3 losses
# --------------------------------------------------------------------------------------------------
def _bce_elementwise(y_true, y_pred, from_logits):
    if from_logits:
        return F.binary_cross_entropy_with_logits(y_pred, y_true, reduction="none")
    return F.binary_cross_entropy(_clip(y_pred), y_true, reduction="none")


class BinaryCrossentropy(Loss):
    """Binary cross-entropy, mean over the last axis (Keras `BinaryCrossentropy`).

    loss = -mean(y * log(p) + (1 - y) * log(1 - p)), p clipped to [1e-7, 1 - 1e-7];
    label smoothing: y <- y * (1 - ls) + 0.5 * ls."""

    binary = True

    def __init__(self, from_logits=False, label_smoothing=0.0, axis=-1,
                 reduction="sum_over_batch_size", name="binary_crossentropy"):
        super().__init__(reduction=reduction, name=name)
        self.from_logits, self.label_smoothing, self.axis = from_logits, label_smoothing, axis

    def call(self, y_true, y_pred):
        if self.label_smoothing:
            y_true = y_true * (1.0 - self.label_smoothing) + 0.5 * self.label_smoothing
        return _bce_elementwise(y_true, y_pred, self.from_logits).mean(dim=self.axis)

    def get_config(self):
        return {**super().get_config(), "from_logits": self.from_logits,
                "label_smoothing": self.label_smoothing, "axis": self.axis}


class CategoricalCrossentropy(Loss):
    """Categorical cross-entropy on one-hot labels (Keras `CategoricalCrossentropy`).

    loss = -sum(y * log(p)) with p = y_pred / sum(y_pred) clipped to [1e-7, 1 - 1e-7]
    (or log_softmax(y_pred) when from_logits); label smoothing: y <- y * (1 - ls) + ls / C."""

    def __init__(self, from_logits=False, label_smoothing=0.0, axis=-1,
                 reduction="sum_over_batch_size", name="categorical_crossentropy"):
        super().__init__(reduction=reduction, name=name)
        self.from_logits, self.label_smoothing, self.axis = from_logits, label_smoothing, axis

    def call(self, y_true, y_pred):
        y_true = _smooth_one_hot(y_true, self.label_smoothing)
        return -(y_true * _log_probs(y_pred, self.from_logits, self.axis)).sum(dim=self.axis)

    def get_config(self):
        return {**super().get_config(), "from_logits": self.from_logits,
                "label_smoothing": self.label_smoothing, "axis": self.axis}


def _log_probs(y_pred, from_logits, axis=-1):
    if from_logits:
        return F.log_softmax(y_pred, dim=axis)
    return torch.log(_clip(y_pred / y_pred.sum(dim=axis, keepdim=True)))


class SparseCategoricalCrossentropy(Loss):
    """Categorical cross-entropy on integer labels (Keras `SparseCategoricalCrossentropy`).

    loss = -log(p[y]) with p renormalised and clipped as in CategoricalCrossentropy;
    labels equal to `ignore_class` do not count (masked out of the reduction)."""

    labels = "sparse"

    def __init__(self, from_logits=False, ignore_class=None, reduction="sum_over_batch_size",
                 axis=-1, name="sparse_categorical_crossentropy"):
        super().__init__(reduction=reduction, name=name)
        self.from_logits, self.ignore_class, self.axis = from_logits, ignore_class, axis

    def _labels(self, y_true, y_pred):
        if y_true.dim() == y_pred.dim() and y_true.shape[self.axis] == 1:
            y_true = y_true.squeeze(self.axis)
        return y_true.long()

    def call(self, y_true, y_pred):
        y_true = self._labels(y_true, y_pred)
        axis = self.axis % y_pred.dim()
        if self.ignore_class is not None:
            valid = y_true != self.ignore_class
            y_true = torch.where(valid, y_true, torch.zeros_like(y_true))
            y_pred = torch.where(valid.unsqueeze(axis), y_pred, torch.zeros_like(y_pred))
        log_p = _log_probs(y_pred, self.from_logits, axis)
        res = -torch.gather(log_p, axis, y_true.unsqueeze(axis)).squeeze(axis)
        if self.ignore_class is not None:
            res = torch.where(valid, res, torch.zeros_like(res))
        return res

    def mask(self, y_true, y_pred):
        if self.ignore_class is None:
            return None
        return self._labels(y_true, y_pred) != self.ignore_class

    def get_config(self):
        return {**super().get_config(), "from_logits": self.from_logits,
                "ignore_class": self.ignore_class, "axis": self.axis}


class MeanSquaredError(Loss):
    """loss = mean((y - p)^2) over the last axis."""

    def __init__(self, reduction="sum_over_batch_size", name="mean_squared_error"):
        super().__init__(reduction=reduction, name=name)

    def call(self, y_true, y_pred):
        y_true, y_pred = _same_rank(y_true, y_pred)
        return torch.square(y_true - y_pred).mean(dim=-1)


class MeanAbsoluteError(Loss):
    """loss = mean(|y - p|) over the last axis."""

    def __init__(self, reduction="sum_over_batch_size", name="mean_absolute_error"):
        super().__init__(reduction=reduction, name=name)

    def call(self, y_true, y_pred):
        y_true, y_pred = _same_rank(y_true, y_pred)
        return torch.abs(y_true - y_pred).mean(dim=-1)


def _hinge_labels(y_true):
    """Keras: labels that are all 0/1 become -1/+1; others are used as given."""
    is_binary = ((y_true == 0) | (y_true == 1)).all()
    return torch.where(is_binary, 2.0 * y_true - 1.0, y_true)


class Hinge(Loss):
    """loss = mean(max(1 - y * p, 0)) over the last axis; 0/1 labels are mapped to -1/+1."""

    def __init__(self, reduction="sum_over_batch_size", name="hinge"):
        super().__init__(reduction=reduction, name=name)

    def call(self, y_true, y_pred):
        return torch.clamp(1.0 - _hinge_labels(y_true) * y_pred, min=0.0).mean(dim=-1)


class SquaredHinge(Loss):
    """loss = mean(max(1 - y * p, 0)^2) over the last axis; 0/1 labels are mapped to -1/+1."""

    def __init__(self, reduction="sum_over_batch_size", name="squared_hinge"):
        super().__init__(reduction=reduction, name=name)

    def call(self, y_true, y_pred):
        return torch.square(torch.clamp(1.0 - _hinge_labels(y_true) * y_pred, min=0.0)).mean(dim=-1)


class CategoricalHinge(Loss):
    """loss = max(max((1 - y) * p) - sum(y * p) + 1, 0)."""

    def __init__(self, reduction="sum_over_batch_size", name="categorical_hinge"):
        super().__init__(reduction=reduction, name=name)

    def call(self, y_true, y_pred):
        pos = (y_true * y_pred).sum(dim=-1)
        neg = ((1.0 - y_true) * y_pred).amax(dim=-1)
        return torch.clamp(neg - pos + 1.0, min=0.0)


class KLDivergence(Loss):
    """loss = sum(y * log(y / p)) with y and p clipped to [1e-7, 1]."""

    def __init__(self, reduction="sum_over_batch_size", name="kl_divergence"):
        super().__init__(reduction=reduction, name=name)

    def call(self, y_true, y_pred):
        y_true = torch.clamp(y_true, EPSILON, 1.0)
        y_pred = torch.clamp(y_pred, EPSILON, 1.0)
        return (y_true * torch.log(y_true / y_pred)).sum(dim=-1)


class BinaryFocalCrossentropy(Loss):
    """Binary focal cross-entropy (Lin et al. 2017; Keras `BinaryFocalCrossentropy`).

    loss = mean((1 - p_t)^gamma * bce), p_t = y * p + (1 - y) * (1 - p), p clipped to
    [1e-7, 1 - 1e-7]; with `apply_class_balancing` times alpha * y + (1 - alpha) * (1 - y);
    label smoothing: y <- y * (1 - ls) + 0.5 * ls. With `from_logits`, p = sigmoid(y_pred) and
    bce is computed from the logits (stable; equal to Keras except where its clipping bites)."""

    binary = True

    def __init__(self, apply_class_balancing=False, alpha=0.25, gamma=2.0, from_logits=False,
                 label_smoothing=0.0, axis=-1, reduction="sum_over_batch_size",
                 name="binary_focal_crossentropy"):
        super().__init__(reduction=reduction, name=name)
        self.apply_class_balancing, self.alpha, self.gamma = apply_class_balancing, alpha, gamma
        self.from_logits, self.label_smoothing, self.axis = from_logits, label_smoothing, axis

    def call(self, y_true, y_pred):
        if self.label_smoothing:
            y_true = y_true * (1.0 - self.label_smoothing) + 0.5 * self.label_smoothing
        bce = _bce_elementwise(y_true, y_pred, self.from_logits)
        p = torch.sigmoid(y_pred) if self.from_logits else _clip(y_pred)
        p_t = y_true * p + (1.0 - y_true) * (1.0 - p)
        focal = torch.pow(1.0 - p_t, self.gamma) * bce
        if self.apply_class_balancing:
            focal = (y_true * self.alpha + (1.0 - y_true) * (1.0 - self.alpha)) * focal
        return focal.mean(dim=self.axis)

    def get_config(self):
        return {**super().get_config(), "apply_class_balancing": self.apply_class_balancing,
                "alpha": self.alpha, "gamma": self.gamma, "from_logits": self.from_logits,
                "label_smoothing": self.label_smoothing, "axis": self.axis}


class CategoricalFocalCrossentropy(Loss):
    """Categorical focal cross-entropy (Lin et al. 2017; Keras `CategoricalFocalCrossentropy`).

    loss = sum(-alpha * (1 - p)^gamma * y * log(p)) over classes, p = y_pred / sum(y_pred) clipped
    to [1e-7, 1 - 1e-7] (softmax / log_softmax of y_pred with `from_logits`); `alpha` is a scalar
    or one weight per class; label smoothing as in CategoricalCrossentropy."""

    def __init__(self, alpha=0.25, gamma=2.0, from_logits=False, label_smoothing=0.0, axis=-1,
                 reduction="sum_over_batch_size", name="categorical_focal_crossentropy"):
        super().__init__(reduction=reduction, name=name)
        self.alpha, self.gamma = alpha, gamma
        self.from_logits, self.label_smoothing, self.axis = from_logits, label_smoothing, axis

    def call(self, y_true, y_pred):
        y_true = _smooth_one_hot(y_true, self.label_smoothing)
        log_p = _log_probs(y_pred, self.from_logits, self.axis)
        p = torch.exp(log_p) if self.from_logits else _clip(y_pred / y_pred.sum(dim=self.axis, keepdim=True))
        alpha = self.alpha
        if isinstance(alpha, (_list, tuple)):
            alpha = torch.as_tensor(alpha, dtype=y_pred.dtype, device=y_pred.device)
        weight = torch.pow(1.0 - p, self.gamma) * alpha
        return (weight * (-y_true * log_p)).sum(dim=self.axis)

    def get_config(self):
        return {**super().get_config(), "alpha": self.alpha, "gamma": self.gamma,
                "from_logits": self.from_logits, "label_smoothing": self.label_smoothing, "axis": self.axis}


class CategoricalGeneralizedCrossEntropy(Loss):
    """Generalized cross-entropy (Zhang & Sabuncu 2018; Keras `CategoricalGeneralizedCrossEntropy`).

    loss = (1 - p[y]^q) / q on integer labels and probabilities; q -> 0 is CE, q = 1 is MAE."""

    labels = "sparse"

    def __init__(self, q=0.5, reduction="sum_over_batch_size", name="categorical_generalized_cross_entropy"):
        super().__init__(reduction=reduction, name=name)
        if not 0.0 < q <= 1.0:
            raise UserError(f"categorical_generalized_cross_entropy needs 0 < q <= 1, got q={q}")
        self.q = q

    def call(self, y_true, y_pred):
        if y_true.dim() == y_pred.dim() and y_true.shape[-1] == 1:
            y_true = y_true.squeeze(-1)
        p = torch.gather(y_pred, -1, y_true.long().unsqueeze(-1)).squeeze(-1)
        return (1.0 - torch.pow(p, self.q)) / self.q

    def get_config(self):
        return {**super().get_config(), "q": self.q}


class MeanAbsolutePercentageError(Loss):
    """loss = 100 * mean(|y - p| / max(|y|, 1e-7)) over the last axis."""

    def __init__(self, reduction="sum_over_batch_size", name="mean_absolute_percentage_error"):
        super().__init__(reduction=reduction, name=name)

    def call(self, y_true, y_pred):
        y_true, y_pred = _same_rank(y_true, y_pred)
        diff = torch.abs((y_true - y_pred) / torch.clamp(torch.abs(y_true), min=EPSILON))
        return 100.0 * diff.mean(dim=-1)


class MeanSquaredLogarithmicError(Loss):
    """loss = mean((log(max(p, 1e-7) + 1) - log(max(y, 1e-7) + 1))^2) over the last axis."""

    def __init__(self, reduction="sum_over_batch_size", name="mean_squared_logarithmic_error"):
        super().__init__(reduction=reduction, name=name)

    def call(self, y_true, y_pred):
        y_true, y_pred = _same_rank(y_true, y_pred)
        first = torch.log(torch.clamp(y_pred, min=EPSILON) + 1.0)
        second = torch.log(torch.clamp(y_true, min=EPSILON) + 1.0)
        return torch.square(first - second).mean(dim=-1)


class LogCosh(Loss):
    """loss = mean(log(cosh(p - y))) over the last axis, computed as x + softplus(-2x) - log 2."""

    def __init__(self, reduction="sum_over_batch_size", name="log_cosh"):
        super().__init__(reduction=reduction, name=name)

    def call(self, y_true, y_pred):
        y_true, y_pred = _same_rank(y_true, y_pred)
        x = y_pred - y_true
        return (x + F.softplus(-2.0 * x) - math.log(2.0)).mean(dim=-1)


class Huber(Loss):
    """loss = mean(0.5 e^2 if |e| <= delta else delta * |e| - 0.5 delta^2), e = p - y."""

    def __init__(self, delta=1.0, reduction="sum_over_batch_size", name="huber_loss"):
        super().__init__(reduction=reduction, name=name)
        self.delta = delta

    def call(self, y_true, y_pred):
        y_true, y_pred = _same_rank(y_true, y_pred)
        error = y_pred - y_true
        abs_error = torch.abs(error)
        delta = self.delta
        return torch.where(abs_error <= delta, 0.5 * torch.square(error),
                           delta * abs_error - 0.5 * delta * delta).mean(dim=-1)

    def get_config(self):
        return {**super().get_config(), "delta": self.delta}


class Poisson(Loss):
    """loss = mean(p - y * log(p + 1e-7)) over the last axis."""

    def __init__(self, reduction="sum_over_batch_size", name="poisson"):
        super().__init__(reduction=reduction, name=name)

    def call(self, y_true, y_pred):
        return (y_pred - y_true * torch.log(y_pred + EPSILON)).mean(dim=-1)


def _l2_normalize(x, axis):
    inv_norm = torch.rsqrt(torch.square(x).sum(dim=axis, keepdim=True))
    return x * torch.clamp(inv_norm, max=1.0 / EPSILON)


class CosineSimilarity(Loss):
    """loss = -sum(l2_normalize(y) * l2_normalize(p)) along `axis`: -1 is best, 0 orthogonal.

    (Keras' sign: a loss to minimise; the Keras 2 name `cosine_proximity` is the same thing.)"""

    def __init__(self, axis=-1, reduction="sum_over_batch_size", name="cosine_similarity"):
        super().__init__(reduction=reduction, name=name)
        self.axis = axis

    def call(self, y_true, y_pred):
        y_true, y_pred = _same_rank(y_true, y_pred)
        return -(_l2_normalize(y_true, self.axis) * _l2_normalize(y_pred, self.axis)).sum(dim=self.axis)

    def get_config(self):
        return {**super().get_config(), "axis": self.axis}


def _sum(x, axis):
    if axis is None:
        return x.sum()
    return x.sum(dim=tuple(axis) if isinstance(axis, (_list, tuple)) else axis)


class Dice(Loss):
    """loss = 1 - 2 * sum(y * p) / (sum(y) + sum(p) + 1e-7), summed over `axis`
    (None, the Keras default: the whole batch, giving one scalar)."""

    def __init__(self, reduction="sum_over_batch_size", name="dice", axis=None):
        super().__init__(reduction=reduction, name=name)
        self.axis = axis

    def call(self, y_true, y_pred):
        intersection = _sum(y_true * y_pred, self.axis)
        return 1.0 - 2.0 * intersection / (_sum(y_true, self.axis) + _sum(y_pred, self.axis) + EPSILON)

    def get_config(self):
        return {**super().get_config(), "axis": self.axis}


class Tversky(Loss):
    """loss = 1 - TP / (TP + alpha * FP + beta * FN + 1e-7) with TP = sum(y * p),
    FP = sum((1 - p) * y), FN = sum(p * (1 - y)) over `axis` (Keras' definitions; None: whole
    batch). alpha = beta = 0.5 is Dice (Salehi et al. 2017)."""

    def __init__(self, alpha=0.5, beta=0.5, reduction="sum_over_batch_size", name="tversky", axis=None):
        super().__init__(reduction=reduction, name=name)
        self.alpha, self.beta, self.axis = alpha, beta, axis

    def call(self, y_true, y_pred):
        tp = _sum(y_true * y_pred, self.axis)
        fp = _sum((1.0 - y_pred) * y_true, self.axis)
        fn = _sum(y_pred * (1.0 - y_true), self.axis)
        return 1.0 - tp / (tp + fp * self.alpha + fn * self.beta + EPSILON)

    def get_config(self):
        return {**super().get_config(), "alpha": self.alpha, "beta": self.beta, "axis": self.axis}


# --------------------------------------------------------------------------------------------------
# Losses from the classification literature (not in Keras)
# --------------------------------------------------------------------------------------------------
def _probs(y_pred, from_logits, axis=-1):
    return torch.softmax(y_pred, dim=axis) if from_logits else y_pred


class _LogitsOption(Loss):
    """A loss on class probabilities with a Keras-style `from_logits` option."""

    def __init__(self, from_logits=False, reduction="sum_over_batch_size", name=None):
        super().__init__(reduction=reduction, name=name)
        self.from_logits = from_logits

    def get_config(self):
        return {**super().get_config(), "from_logits": self.from_logits}


class ExpectationL1(_LogitsOption):
    """L1 expectation loss (Janocha & Czarnecki 2017, "On Loss Functions for Deep Neural Networks
    in Classification", Schedae Informaticae 25): loss = sum_j |y_j - p_j|, p = softmax(o).
    It is twice the expected misclassification of a classifier that samples from p."""

    def __init__(self, from_logits=False, reduction="sum_over_batch_size", name="expectation_l1"):
        super().__init__(from_logits=from_logits, reduction=reduction, name=name)

    def call(self, y_true, y_pred):
        return torch.abs(y_true - _probs(y_pred, self.from_logits)).sum(dim=-1)


class ExpectationL2(_LogitsOption):
    """Regularised L2 expectation loss (Janocha & Czarnecki 2017): loss = sum_j (y_j - p_j)^2,
    p = softmax(o) (the multi-class Brier score)."""

    def __init__(self, from_logits=False, reduction="sum_over_batch_size", name="expectation_l2"):
        super().__init__(from_logits=from_logits, reduction=reduction, name=name)

    def call(self, y_true, y_pred):
        return torch.square(y_true - _probs(y_pred, self.from_logits)).sum(dim=-1)


class ChebyshevExpectation(_LogitsOption):
    """Chebyshev (L-infinity) expectation loss (Janocha & Czarnecki 2017):
    loss = max_j |y_j - p_j|, p = softmax(o)."""

    def __init__(self, from_logits=False, reduction="sum_over_batch_size", name="chebyshev_expectation"):
        super().__init__(from_logits=from_logits, reduction=reduction, name=name)

    def call(self, y_true, y_pred):
        return torch.abs(y_true - _probs(y_pred, self.from_logits)).amax(dim=-1)


class CubedHinge(Loss):
    """Cubed hinge (Janocha & Czarnecki 2017): loss = sum_j max(0, margin - t_j * o_j)^3 on raw
    scores o (logits, not probabilities), t = 2y - 1 for 0/1 labels; the paper's margin is 1/2.
    `power` = 1 or 2 gives the paper's hinge and squared hinge on raw scores."""

    inputs = "logits"

    def __init__(self, margin=0.5, power=3, reduction="sum_over_batch_size", name="cubed_hinge"):
        super().__init__(reduction=reduction, name=name)
        self.margin, self.power = margin, power

    def call(self, y_true, y_pred):
        t = _hinge_labels(y_true)
        return torch.pow(torch.clamp(self.margin - t * y_pred, min=0.0), self.power).sum(dim=-1)

    def get_config(self):
        return {**super().get_config(), "margin": self.margin, "power": self.power}


class SquaredLog(_LogitsOption):
    """Squared log loss (log^2 of Janocha & Czarnecki 2017): loss = sum_j (y_j log p_j)^2,
    p = softmax(o) (renormalised and clipped to [1e-7, 1 - 1e-7] on probabilities, as Keras' CE).
    The paper prints the formula with a leading minus; the minimised quantity is the square."""

    def __init__(self, from_logits=False, reduction="sum_over_batch_size", name="squared_log"):
        super().__init__(from_logits=from_logits, reduction=reduction, name=name)

    def call(self, y_true, y_pred):
        return torch.square(y_true * _log_probs(y_pred, self.from_logits)).sum(dim=-1)


class Tanimoto(_LogitsOption):
    """Tanimoto loss (Janocha & Czarnecki 2017):
    loss = -sum(p * y) / (||p||^2 + ||y||^2 - sum(p * y)), p = softmax(o); in [-1, 0]."""

    def __init__(self, from_logits=False, reduction="sum_over_batch_size", name="tanimoto"):
        super().__init__(from_logits=from_logits, reduction=reduction, name=name)

    def call(self, y_true, y_pred):
        p = _probs(y_pred, self.from_logits)
        dot = (p * y_true).sum(dim=-1)
        return -dot / (torch.square(p).sum(dim=-1) + torch.square(y_true).sum(dim=-1) - dot)


class CauchySchwarzDivergence(_LogitsOption):
    """Cauchy-Schwarz divergence (Janocha & Czarnecki 2017):
    loss = -log(sum(p * y) / (||p||_2 ||y||_2)), p = softmax(o); 0 when p = y. On probabilities the
    ratio is clipped to >= 1e-7; from logits it is computed in log space (stable)."""

    def __init__(self, from_logits=False, reduction="sum_over_batch_size", name="cauchy_schwarz_divergence"):
        super().__init__(from_logits=from_logits, reduction=reduction, name=name)

    def call(self, y_true, y_pred):
        if self.from_logits:
            log_p = F.log_softmax(y_pred, dim=-1)
            log_dot = torch.logsumexp(log_p + torch.log(y_true), dim=-1)
            log_norm_p = 0.5 * torch.logsumexp(2.0 * log_p, dim=-1)
            log_norm_y = 0.5 * torch.log(torch.square(y_true).sum(dim=-1))
            return -(log_dot - log_norm_p - log_norm_y)
        dot = (y_pred * y_true).sum(dim=-1)
        norms = torch.linalg.vector_norm(y_pred, dim=-1) * torch.linalg.vector_norm(y_true, dim=-1)
        return -torch.log(torch.clamp(_divide_no_nan(dot, norms), min=EPSILON))


class SymmetricCrossentropy(_LogitsOption):
    """Symmetric cross-entropy (Wang et al. 2019, "Symmetric Cross Entropy for Robust Learning with
    Noisy Labels", ICCV): loss = alpha * CE(y, p) + beta * RCE(y, p),
    RCE = -sum_j p_j log y_j with log 0 := A (y clipped to [exp(A), 1]); for one-hot y,
    RCE = -A (1 - p[y]). Defaults alpha=0.1, beta=1.0, A=-4 (the paper's CIFAR-10 setting)."""

    def __init__(self, alpha=0.1, beta=1.0, A=-4.0, from_logits=False, reduction="sum_over_batch_size",
                 name="symmetric_crossentropy"):
        super().__init__(from_logits=from_logits, reduction=reduction, name=name)
        self.alpha, self.beta, self.A = alpha, beta, A

    def call(self, y_true, y_pred):
        log_p = _log_probs(y_pred, self.from_logits)
        ce = -(y_true * log_p).sum(dim=-1)
        p = torch.softmax(y_pred, dim=-1) if self.from_logits else _clip(y_pred / y_pred.sum(dim=-1, keepdim=True))
        rce = -(p * torch.log(torch.clamp(y_true, min=math.exp(self.A), max=1.0))).sum(dim=-1)
        return self.alpha * ce + self.beta * rce

    def get_config(self):
        return {**super().get_config(), "alpha": self.alpha, "beta": self.beta, "A": self.A}


class PolyLoss(_LogitsOption):
    """Poly-1 loss (Leng et al. 2022, "PolyLoss: A Polynomial Expansion Perspective of
    Classification Loss Functions", ICLR): loss = CE(y', p) + epsilon * (1 - sum(y' * p)),
    y' = y * (1 - ls) + ls / C. epsilon=0 is (label-smoothed) CE; the paper's default is 1."""

    def __init__(self, epsilon=1.0, label_smoothing=0.0, from_logits=False, reduction="sum_over_batch_size",
                 name="poly_loss"):
        super().__init__(from_logits=from_logits, reduction=reduction, name=name)
        self.epsilon, self.label_smoothing = epsilon, label_smoothing

    def call(self, y_true, y_pred):
        y_true = _smooth_one_hot(y_true, self.label_smoothing)
        log_p = _log_probs(y_pred, self.from_logits)
        p = torch.exp(log_p) if self.from_logits else _clip(y_pred / y_pred.sum(dim=-1, keepdim=True))
        ce = -(y_true * log_p).sum(dim=-1)
        return ce + self.epsilon * (1.0 - (y_true * p).sum(dim=-1))

    def get_config(self):
        return {**super().get_config(), "epsilon": self.epsilon, "label_smoothing": self.label_smoothing}


class BiTemperedLogistic(Loss):
    """Bi-tempered logistic loss (Amid et al. 2019, "Robust Bi-Tempered Logistic Loss Based on
    Bregman Divergences", NeurIPS), via `pytorch_optimizer.loss.bi_tempered_logistic_loss`:
    loss = sum_j [y_j (log_t1 y_j - log_t1 p_j) - (y_j^(2-t1) - p_j^(2-t1)) / (2 - t1)],
    p = tempered_softmax_t2(o), log_t(x) = (x^(1-t) - 1) / (1 - t). `y_pred` are logits
    (activations). t1 < 1 bounds the loss, t2 > 1 gives heavy tails; t1 = t2 = 1 is CE.
    Label smoothing follows the paper's code: y' = (1 - ls * C / (C - 1)) y + ls / (C - 1)."""

    inputs = "logits"

    def __init__(self, t1=0.8, t2=1.2, label_smoothing=0.0, num_iters=5, reduction="sum_over_batch_size",
                 name="bi_tempered_logistic"):
        super().__init__(reduction=reduction, name=name)
        self.t1, self.t2, self.label_smoothing, self.num_iters = t1, t2, label_smoothing, num_iters

    def call(self, y_true, y_pred):
        from pytorch_optimizer.loss.bi_tempered import bi_tempered_logistic_loss

        return bi_tempered_logistic_loss(y_pred, y_true, t1=self.t1, t2=self.t2, label_smooth=self.label_smoothing,
                                         num_iters=self.num_iters, reduction="none")

    def get_config(self):
        return {**super().get_config(), "t1": self.t1, "t2": self.t2, "label_smoothing": self.label_smoothing,
                "num_iters": self.num_iters}


class LabelSmoothedCrossentropy(CategoricalCrossentropy):
    """Label-smoothed cross-entropy (Szegedy et al. 2016, "Rethinking the Inception Architecture",
    CVPR): CE with y' = (1 - ls) y + ls / C; the same as categorical_crossentropy with
    label_smoothing, with the paper's ls = 0.1 as default. From logits it runs
    `torch.nn.functional.cross_entropy(label_smoothing=ls)`."""

    def __init__(self, label_smoothing=0.1, from_logits=False, axis=-1, reduction="sum_over_batch_size",
                 name="label_smoothed_crossentropy"):
        super().__init__(from_logits=from_logits, label_smoothing=label_smoothing, axis=axis,
                         reduction=reduction, name=name)

    def call(self, y_true, y_pred):
        if self.from_logits and y_pred.dim() == 2 and self.axis in (-1, 1):
            return F.cross_entropy(y_pred, y_true, label_smoothing=float(self.label_smoothing), reduction="none")
        return super().call(y_true, y_pred)


# --------------------------------------------------------------------------------------------------
# Registration
# --------------------------------------------------------------------------------------------------
def _class_factory(cls):
    """A factory whose signature is the Loss class's constructor (what Registry reads)."""

    def factory(**options):
        return cls(**options)

    factory.__signature__ = inspect.signature(cls)
    factory.__name__ = cls.__name__
    factory.__doc__ = cls.__doc__
    return factory


def _explicit(factory, options) -> dict[str, Any]:
    """Every option of `factory` made explicit, without `name` (display only, not part of a run)."""
    return {k: v for k, v in with_defaults(_defaults(factory), options).items() if k != "name"}


def _register_class(cls, name, aliases=(), summary=""):
    """Register a Loss class: its constructor's keyword arguments are the options."""
    factory = _class_factory(cls)
    factory.__name__ = name
    REGISTRY.register(name, aliases=aliases, summary=summary, loss_class=cls,
                      resolve=lambda **options: _explicit(factory, options))(factory)
    return cls


_KERAS = [
    (BinaryCrossentropy, "binary_crossentropy", ["bce"],
     "Use it when the task has two classes (one sigmoid output); on more classes it is one-vs-rest."),
    (CategoricalCrossentropy, "categorical_crossentropy", ["cce", "crossentropy"],
     "Use it when you want the standard multi-class baseline (softmax + log-loss, one-hot labels)."),
    (SparseCategoricalCrossentropy, "sparse_categorical_crossentropy", ["scce", "sparse_cce"],
     "Use it when you want categorical cross-entropy on integer labels, or to ignore a class."),
    (MeanSquaredError, "mean_squared_error", ["mse"],
     "Use it when you want the Brier-score-like L2 loss on softmax probabilities (robust, slow)."),
    (MeanAbsoluteError, "mean_absolute_error", ["mae"],
     "Use it when labels are noisy and you accept slow training (bounded, noise-robust L1 loss)."),
    (Hinge, "hinge", [],
     "Use it when you want an SVM-style margin loss on probabilities (Keras' classic hinge)."),
    (SquaredHinge, "squared_hinge", [],
     "Use it when you want a smooth SVM-style margin loss (squared hinge on probabilities)."),
    (CategoricalHinge, "categorical_hinge", [],
     "Use it when you want a Crammer-Singer multi-class margin between the true and best other class."),
    (KLDivergence, "kl_divergence", ["kld", "kullback_leibler_divergence"],
     "Use it when targets are distributions (soft labels); on one-hot labels it equals CE."),
    (BinaryFocalCrossentropy, "binary_focal_crossentropy", ["binary_focal_loss", "bfce"],
     "Use it when a 2-class task is imbalanced and easy examples dominate the gradient."),
    (CategoricalFocalCrossentropy, "categorical_focal_crossentropy", ["focal_loss", "cfce"],
     "Use it when classes are imbalanced or easy examples dominate (down-weights confident ones)."),
    (CategoricalGeneralizedCrossEntropy, "categorical_generalized_cross_entropy", ["gce", "generalized_cross_entropy"],
     "Use it when labels are noisy: q interpolates between CE (q->0) and noise-robust MAE (q=1)."),
    (MeanAbsolutePercentageError, "mean_absolute_percentage_error", ["mape"],
     "Use it when reproducing Keras-catalogue studies; on one-hot labels it is dominated by 1/eps."),
    (MeanSquaredLogarithmicError, "mean_squared_logarithmic_error", ["msle"],
     "Use it when reproducing Keras-catalogue studies; a damped L2 on log(1 + p)."),
    (LogCosh, "log_cosh", ["logcosh"],
     "Use it when you want an L2-like loss that grows only linearly for large errors."),
    (Huber, "huber", ["huber_loss"],
     "Use it when you want L2 near the target and L1 beyond delta (robust to outliers)."),
    (Poisson, "poisson", [],
     "Use it when reproducing Keras-catalogue studies; targets are counts/rates (p - y log p)."),
    (CosineSimilarity, "cosine_similarity", ["cosine_proximity", "cosine"],
     "Use it when only the direction of the probability vector matters (scale-free)."),
    (Dice, "dice", ["dice_loss"],
     "Use it when classes are imbalanced and you want an F1-like overlap objective over the batch."),
    (Tversky, "tversky", ["tversky_loss"],
     "Use it when you want Dice with separate false-positive (alpha) / false-negative (beta) costs."),
]

_LITERATURE = [
    (ExpectationL1, "expectation_l1", ["l1_expectation", "l1_softmax"],
     "Use it when labels are noisy: the bounded L1 expectation loss of Janocha & Czarnecki (2017)."),
    (ExpectationL2, "expectation_l2", ["l2_expectation", "l2_softmax", "brier"],
     "Use it when you want the multi-class Brier score: robust, calibrated, slower than CE."),
    (ChebyshevExpectation, "chebyshev_expectation", ["linf_expectation"],
     "Use it when you want to penalise only the worst class error (Janocha & Czarnecki 2017)."),
    (CubedHinge, "cubed_hinge", ["hinge3", "hinge_cubed"],
     "Use it when you want a margin loss on raw scores that trains fast (best hinge in Janocha 2017)."),
    (SquaredLog, "squared_log", ["log_squared", "log2_loss"],
     "Use it when you want CE that punishes confident mistakes harder, (log p_y)^2."),
    (Tanimoto, "tanimoto", ["tanimoto_loss"],
     "Use it when you want a bounded overlap (Jaccard-like) loss that resists label noise."),
    (CauchySchwarzDivergence, "cauchy_schwarz_divergence", ["dcs", "cs_divergence"],
     "Use it when you want a CE-like loss normalised by ||p|| (Janocha & Czarnecki 2017)."),
    (SymmetricCrossentropy, "symmetric_crossentropy", ["sce", "symmetric_cross_entropy"],
     "Use it when labels are noisy: CE plus reverse CE (Wang et al. 2019)."),
    (PolyLoss, "poly_loss", ["poly1", "poly1_loss", "polyloss"],
     "Use it when you want to tune CE's leading polynomial term (Poly-1, Leng et al. 2022)."),
    (BiTemperedLogistic, "bi_tempered_logistic", ["bi_tempered", "bitempered", "bi_tempered_logistic_loss"],
     "Use it when labels are noisy or there are outliers: bounded, heavy-tailed CE (Amid et al. 2019)."),
    (LabelSmoothedCrossentropy, "label_smoothed_crossentropy", ["label_smoothing_ce", "ls_ce", "lsce"],
     "Use it when the model gets over-confident: CE on smoothed targets (Szegedy et al. 2016)."),
]
for _cls, _name, _aliases, _summary in _LITERATURE:
    _register_class(_cls, _name, _aliases, _summary)
for _cls, _name, _aliases, _summary in _KERAS:
    _register_class(_cls, _name, _aliases, _summary)


def register(name: str | None = None, *, aliases=(), summary: str = "", labels: str = "one_hot",
             inputs: str = "probabilities", binary: bool = False, binary_only: bool = False):
    """Decorator: register a custom loss, a function or a `Loss` subclass.

        @cnnbench.losses.register("my_loss", summary="Use it when ...")
        def my_loss(y_true, y_pred, margin=0.5):      # -> per-sample tensor [N]
            ...

    A function gets one-hot `y_true` and softmax `y_pred` during training unless
    `labels="sparse"` / `inputs="logits"` say otherwise; its keyword parameters become options.
    A `Loss` subclass declares the same with class attributes."""

    def decorator(obj):
        canonical = name or (obj.__name__ if inspect.isfunction(obj) else _snake(obj.__name__))
        if inspect.isclass(obj):
            if not issubclass(obj, Loss):
                raise TypeError(f"{obj!r} is not a cnnbench.losses.Loss subclass")
            _register_class(obj, canonical, aliases, summary)
        else:
            factory = _function_factory(obj, canonical, labels, inputs, binary, binary_only)
            REGISTRY.register(canonical, aliases=aliases, summary=summary, loss_fn=obj)(factory)
        return obj

    return decorator


def _function_factory(fn, name, labels="one_hot", inputs="probabilities", binary=False,
                      binary_only=False):
    params = _function_options(fn)

    def factory(reduction="sum_over_batch_size", **options):
        return FunctionLoss(fn, reduction=reduction, name=name, labels=labels, inputs=inputs,
                            binary=binary, binary_only=binary_only, **options)

    factory.__signature__ = inspect.Signature(
        [inspect.Parameter("reduction", inspect.Parameter.KEYWORD_ONLY, default="sum_over_batch_size")]
        + params
    )
    factory.__name__ = name
    factory.__doc__ = fn.__doc__
    return factory


def _function_options(fn) -> _list[inspect.Parameter]:
    """Keyword parameters of a loss function after (y_true, y_pred)."""
    try:
        params = _list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):
        return []
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    if len(positional) < 2:
        raise UserError(f"a loss function takes (y_true, y_pred, ...); {fn!r} takes {len(positional)} arguments")
    out = []
    for p in params[2:]:
        if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and p.name != "reduction":
            out.append(inspect.Parameter(p.name, inspect.Parameter.KEYWORD_ONLY, default=p.default))
        elif p.kind is p.VAR_KEYWORD:
            out.append(inspect.Parameter(p.name, inspect.Parameter.VAR_KEYWORD))
    return out


# --------------------------------------------------------------------------------------------------
# get / resolve / list
# --------------------------------------------------------------------------------------------------
def list() -> _list[str]:  # noqa: A001  (the registry API name)
    """Canonical names of every registered loss, sorted."""
    return REGISTRY.list()


def get(spec_or_obj, /, **options) -> Loss:
    """A `Loss` from a name, a spec dict, a `Loss` (returned as is), a `Loss` subclass, a function
    `(y_true, y_pred) -> per-sample tensor`, or a `"package.module:attr"` reference."""
    spec = spec_or_obj
    if isinstance(spec, Loss):
        if options:
            raise UserError(f"options {sorted(options)} given with a ready loss object {spec!r}; "
                            "pass a name or a class instead")
        return spec
    if isinstance(spec, dict):
        name, opts = split_spec(spec)
        return get(name, **{**opts, **options})
    if isinstance(spec, str):
        if ":" in spec:
            return _build(_import_reference(spec), options, spec)
        return REGISTRY.get(spec, **options)
    if inspect.isclass(spec) or callable(spec):
        return _build(spec, options, _reference_of(spec, strict=False))
    raise UserError(f"a loss is a name, a table with a 'name' key, a Loss or a function; got {spec!r}")


def resolve(spec) -> dict[str, Any]:
    """`{"name": canonical_or_reference, **every option made explicit}`, JSON-safe.

    Registered losses resolve to their canonical name; anything else to its importable
    `"package.module:attr"` reference, so that a resumed study or a saved model finds it again."""
    if isinstance(spec, Loss):
        config = {k: v for k, v in spec.get_config().items() if k != "name"}
        target = spec.fn if isinstance(spec, FunctionLoss) else type(spec)
        name = _registered_name(target) or _reference_of(target, strict=True)
        return _jsonable({"name": name, **config})
    if isinstance(spec, dict):
        name, options = split_spec(spec)
    elif isinstance(spec, str):
        name, options = spec, {}
    elif inspect.isclass(spec) or callable(spec):
        name = _registered_name(spec) or _reference_of(spec, strict=True)
        options = {}
    else:
        raise UserError(f"a loss is a name, a table with a 'name' key, a Loss or a function; got {spec!r}")
    if ":" in name:
        factory = _factory_of(_import_reference(name), name)
        _check_options(factory, options, name)
        return _jsonable({"name": name, **_explicit(factory, options)})
    return _jsonable(REGISTRY.resolve(name, **options))


def _registered_name(obj) -> str | None:
    for entry in REGISTRY:
        if entry.info.get("loss_class") is obj or entry.info.get("loss_fn") is obj:
            return entry.name
    return None


def _reference_of(obj, strict: bool) -> str:
    module = getattr(obj, "__module__", None)
    qualname = getattr(obj, "__qualname__", None) or getattr(obj, "__name__", None)
    if not module or not qualname or "<" in qualname:
        if strict:
            raise UserError(f"cannot record loss {obj!r}: it has no importable name; define it at module "
                            "level, or register it with @cnnbench.losses.register(...)")
        return repr(obj)
    return f"{module}:{qualname}"


def _import_reference(ref: str):
    module_name, _, attr = ref.partition(":")
    if not module_name or not attr:
        raise UserError(f"loss reference {ref!r} must look like 'package.module:attr'")
    check_reference(ref, "loss")  # refused while loading a file the user did not trust (saving.load)
    try:
        obj = importlib.import_module(module_name)
    except ImportError as exc:
        raise UserError(f"cannot import module {module_name!r} for loss {ref!r} ({exc}); "
                        "check the spelling and that the package is on PYTHONPATH") from None
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise UserError(f"module {module_name!r} has no attribute {attr!r} (loss {ref!r}); "
                            "check the name after ':'") from None
    return obj


def _factory_of(obj, label: str):
    if inspect.isclass(obj):
        if not issubclass(obj, Loss):
            raise UserError(f"loss {label!r} is a class but not a cnnbench.losses.Loss subclass")
        return _class_factory(obj)
    if isinstance(obj, Loss):
        def factory():
            return obj
        return factory
    if callable(obj):
        name = getattr(obj, "__name__", "loss")
        return _function_factory(obj, name)
    raise UserError(f"loss {label!r} is neither a Loss nor a function (got {type(obj).__name__})")


def _check_options(factory, options, label):
    params = inspect.signature(factory).parameters.values()
    if any(p.kind is p.VAR_KEYWORD for p in params):
        return
    accepted = {p.name for p in params}
    for key in options:
        if key not in accepted:
            allowed = ", ".join(sorted(accepted)) or "none"
            raise UserError(f"loss {label!r} has no option {key!r}; allowed: {allowed}")
    missing = [p.name for p in params if p.default is p.empty and p.kind is not p.VAR_KEYWORD
               and p.name not in options]
    if missing:
        raise UserError(f"loss {label!r} needs option(s) {', '.join(missing)}")


def _defaults(factory) -> dict[str, Any]:
    return {p.name: p.default for p in inspect.signature(factory).parameters.values()
            if p.default is not p.empty and p.kind is not p.VAR_KEYWORD}


def _build(obj, options, label) -> Loss:
    factory = _factory_of(obj, label)
    _check_options(factory, options, label)
    return factory(**options)


def _jsonable(config: dict[str, Any]) -> dict[str, Any]:
    def convert(v):
        if isinstance(v, tuple):
            return [convert(x) for x in v]
        if isinstance(v, _list):
            return [convert(x) for x in v]
        if isinstance(v, dict):
            return {str(k): convert(x) for k, x in v.items()}
        if v is None or isinstance(v, (bool, int, float, str)):
            return v
        raise UserError(f"loss option value {v!r} is not JSON-serialisable; use numbers, strings or lists")

    return {k: convert(v) for k, v in config.items()}


# --------------------------------------------------------------------------------------------------
# Training adapter
# --------------------------------------------------------------------------------------------------
class TrainingLoss:
    """A loss bound to a classification task: raw model outputs + int64 labels -> scalar.

    * `.out_features`: number of model output units (1 for a binary loss on a 2-class task).
    * `__call__(outputs, labels, sample_weight=None)`: the loss with its reduction (Keras default
      `sum_over_batch_size`: weighted per-sample losses summed and divided by N).
    * `.probabilities(outputs)`: [N, num_classes] class probabilities."""

    def __init__(self, loss: Loss, num_classes: int):
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
            raise UserError(f"a classification loss needs num_classes >= 2, got {num_classes!r}")
        if loss.reduction in (None, "none"):
            raise UserError(f"loss {loss.name!r} has reduction='none', which gives no scalar to train on; "
                            "use the default 'sum_over_batch_size'")
        if loss.labels not in ("one_hot", "sparse"):
            raise UserError(f"loss {loss.name!r}: labels must be 'one_hot' or 'sparse', got {loss.labels!r}")
        if loss.inputs not in ("probabilities", "logits"):
            raise UserError(f"loss {loss.name!r}: inputs must be 'probabilities' or 'logits', got {loss.inputs!r}")
        if loss.binary_only and num_classes > 2:
            raise UserError(f"loss {loss.name!r} is binary-only and cannot train a {num_classes}-class task; "
                            "use it on 2-class datasets, or pick a multi-class loss such as categorical_crossentropy")
        self.num_classes = num_classes
        self.binary_output = bool(loss.binary) and num_classes == 2
        self.one_vs_rest = bool(loss.binary) and num_classes > 2
        self.out_features = 1 if self.binary_output else num_classes
        self.user_loss = loss  # as given (the copy below feeds logits): what a saved model records
        if hasattr(loss, "from_logits"):
            if not loss.from_logits:
                loss = copy.copy(loss)
                loss.from_logits = True
            self.feeds_logits = True
        else:
            self.feeds_logits = loss.inputs == "logits"
        self.loss = loss
        self.name = loss.name

    def targets(self, labels: torch.Tensor, dtype=torch.float32) -> torch.Tensor:
        """The `y_true` this loss takes for int64 `labels` [N]."""
        labels = labels.reshape(-1)
        if self.binary_output:
            return labels.to(dtype).unsqueeze(-1)
        if self.loss.labels == "sparse":
            return labels
        # scatter instead of F.one_hot: no host-side range check (no device sync)
        one_hot = torch.zeros(labels.shape[0], self.num_classes, dtype=dtype, device=labels.device)
        return one_hot.scatter_(-1, labels.long().unsqueeze(-1), 1.0)

    def predictions(self, outputs: torch.Tensor) -> torch.Tensor:
        """The `y_pred` this loss takes for raw model `outputs`."""
        if self.feeds_logits:
            return outputs
        if self.binary_output or self.one_vs_rest:
            return torch.sigmoid(outputs)
        return torch.softmax(outputs, dim=-1)

    def __call__(self, outputs: torch.Tensor, labels: torch.Tensor, sample_weight=None) -> torch.Tensor:
        outputs = _float32(outputs)
        self._check_outputs(outputs)
        return self.loss(self.targets(labels, outputs.dtype), self.predictions(outputs), sample_weight)

    def probabilities(self, outputs: torch.Tensor) -> torch.Tensor:
        """[N, num_classes] class probabilities from raw outputs."""
        outputs = _float32(outputs)
        if self.binary_output:
            p = torch.sigmoid(outputs.reshape(-1))
            return torch.stack([1.0 - p, p], dim=-1)
        if self.one_vs_rest:
            p = torch.sigmoid(outputs)
            return p / p.sum(dim=-1, keepdim=True)
        return torch.softmax(outputs, dim=-1)

    def _check_outputs(self, outputs):
        if outputs.dim() != 2 or outputs.shape[-1] != self.out_features:
            raise UserError(f"loss {self.name!r} expects model outputs of shape [N, {self.out_features}], "
                            f"got {tuple(outputs.shape)}; build the model with num_outputs=loss.out_features")

    def __repr__(self) -> str:
        return f"TrainingLoss({self.loss!r}, num_classes={self.num_classes}, out_features={self.out_features})"


def _float32(x: torch.Tensor) -> torch.Tensor:
    # Keras computes losses in float32 even under mixed precision.
    return x.float() if x.dtype in (torch.float16, torch.bfloat16) else x


def adapt(loss, num_classes: int) -> TrainingLoss:
    """Bind a loss (anything `get` accepts) to a `num_classes` classification task.

    Raises UserError before training if the loss cannot apply to the task."""
    return TrainingLoss(get(loss), num_classes)


# --------------------------------------------------------------------------------------------------
# Class weights and label noise
# --------------------------------------------------------------------------------------------------
def class_weights_to_sample_weights(labels: torch.Tensor, class_weight, num_classes: int) -> torch.Tensor:
    """Per-sample weights [N] (float32) from `class_weight`, with Keras' semantics.

    `class_weight` is a dict `{class_index: weight}` (classes not listed weigh 1.0; TOML string
    keys like `"3"` are accepted), a list of `num_classes` weights, `"balanced"`
    (n_samples / (n_classes * bincount(labels)), as scikit-learn; compute it on the whole training
    set), or None (all ones). The weights multiply the per-sample losses; with the default
    reduction the sum is divided by N, not by the weight sum."""
    labels = torch.as_tensor(labels).reshape(-1).long()
    if class_weight is None:
        return torch.ones(labels.shape[0], dtype=torch.float32, device=labels.device)
    if isinstance(class_weight, str):
        if class_weight.lower() != "balanced":
            raise UserError(f"class_weight {class_weight!r} is not understood; use 'balanced' or a "
                            "table {class_index = weight}")
        counts = torch.bincount(labels, minlength=num_classes)[:num_classes].to(torch.float32)
        n = float(labels.shape[0])
        table = torch.where(counts > 0, n / (num_classes * counts.clamp(min=1.0)), torch.zeros_like(counts))
    elif isinstance(class_weight, dict):
        table = torch.ones(num_classes, dtype=torch.float32)
        for key, value in class_weight.items():
            try:
                index = int(key)
            except (TypeError, ValueError):
                raise UserError(f"class_weight key {key!r} is not a class index; "
                                f"use integers 0..{num_classes - 1}") from None
            if not 0 <= index < num_classes:
                raise UserError(f"class_weight key {key!r} is out of range for {num_classes} classes")
            if not float(value) >= 0:
                raise UserError(f"class_weight for class {key!r} is {value!r}; weights must be >= 0")
            table[index] = float(value)
        table = table.to(labels.device)
    elif isinstance(class_weight, (_list, tuple, torch.Tensor)):
        table = torch.as_tensor(class_weight, dtype=torch.float32).reshape(-1)
        if table.shape[0] != num_classes:
            raise UserError(f"class_weight has {table.shape[0]} weights for {num_classes} classes")
        table = table.to(labels.device)
    else:
        raise UserError(f"class_weight must be a table, a list, 'balanced' or None; got {class_weight!r}")
    return table.to(labels.device)[labels]


def add_label_noise(labels: torch.Tensor, rate: float, num_classes: int, seed: int = 0) -> torch.Tensor:
    """Symmetric label noise: each label, with probability `rate`, becomes a uniformly drawn
    *different* class. Deterministic for a given `seed`; returns a new tensor."""
    labels = torch.as_tensor(labels)
    rate = float(rate)
    if not 0.0 <= rate <= 1.0:
        raise UserError(f"label noise rate must be in [0, 1], got {rate}")
    if rate == 0.0:
        return labels.clone()
    if num_classes < 2:
        raise UserError("label noise needs at least 2 classes")
    generator = torch.Generator().manual_seed(int(seed))
    n = labels.numel()
    flip = torch.rand(n, generator=generator) < rate
    offset = torch.randint(1, num_classes, (n,), generator=generator)
    flat = labels.reshape(-1).cpu().long()
    noisy = torch.where(flip, (flat + offset) % num_classes, flat)
    return noisy.to(dtype=labels.dtype, device=labels.device).reshape(labels.shape)
