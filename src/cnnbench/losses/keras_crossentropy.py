"""The Keras 3 cross-entropy losses (binary, categorical, sparse, focal, generalized): the same names,
options, defaults and numbers as `keras.losses` (to 1e-5; tests/test_losses.py holds values computed
by Keras itself). Registered with the other Keras losses in `keras.py`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated

import torch
import torch.nn.functional as F

from ..errors import UserError
from ..registry import Option
from .base import Loss
from .ops import clip, log_probs, smooth_one_hot

ClassBalancing = Annotated[bool, Option("weight the classes by alpha (class 1) and 1 - alpha (class 0)")]
BinaryAlpha = Annotated[float, Option("the weight of class 1 when apply_class_balancing", ge=0, le=1)]
CategoricalAlpha = Annotated[float | Sequence[float], Option("a weight for every class, or one per class", ge=0)]
Gamma = Annotated[float, Option("the focusing exponent: (1 - p)^gamma down-weights easy samples", ge=0)]
IgnoreClass = Annotated[int | None, Option("a label value whose samples do not count (masked out)")]
Q = Annotated[float, Option("the exponent: q -> 0 is cross-entropy, q = 1 is MAE", gt=0, le=1)]


def _bce_elementwise(y_true, y_pred, from_logits):
    if from_logits:
        return F.binary_cross_entropy_with_logits(y_pred, y_true, reduction="none")
    return F.binary_cross_entropy(clip(y_pred), y_true, reduction="none")


class BinaryCrossentropy(Loss):
    """Binary cross-entropy, mean over the last axis (Keras `BinaryCrossentropy`).

    loss = -mean(y * log(p) + (1 - y) * log(1 - p)), p clipped to [1e-7, 1 - 1e-7];
    label smoothing: y <- y * (1 - ls) + 0.5 * ls.

    >>> y_true = [[0, 1], [0, 0]]
    >>> y_pred = [[0.6, 0.4], [0.4, 0.6]]
    >>> round(float(BinaryCrossentropy()(y_true, y_pred)), 4)
    0.8149
    """

    binary = True

    def __init__(self, from_logits=False, label_smoothing=0.0, axis=-1,
                 reduction="sum_over_batch_size", name="binary_crossentropy"):
        super().__init__(reduction=reduction, name=name)
        self.from_logits, self.label_smoothing, self.axis = from_logits, label_smoothing, axis

    def call(self, y_true, y_pred):
        if self.label_smoothing:
            y_true = y_true * (1.0 - self.label_smoothing) + 0.5 * self.label_smoothing
        return _bce_elementwise(y_true, y_pred, self.from_logits).mean(dim=self.axis)


class CategoricalCrossentropy(Loss):
    """Categorical cross-entropy on one-hot labels (Keras `CategoricalCrossentropy`).

    loss = -sum(y * log(p)) with p = y_pred / sum(y_pred) clipped to [1e-7, 1 - 1e-7]
    (or log_softmax(y_pred) when from_logits); label smoothing: y <- y * (1 - ls) + ls / C.

    >>> y_true = [[0, 1, 0], [0, 0, 1]]
    >>> y_pred = [[0.05, 0.95, 0.0], [0.1, 0.8, 0.1]]
    >>> round(float(CategoricalCrossentropy()(y_true, y_pred)), 4)
    1.1769
    """

    def __init__(self, from_logits=False, label_smoothing=0.0, axis=-1,
                 reduction="sum_over_batch_size", name="categorical_crossentropy"):
        super().__init__(reduction=reduction, name=name)
        self.from_logits, self.label_smoothing, self.axis = from_logits, label_smoothing, axis

    def call(self, y_true, y_pred):
        y_true = smooth_one_hot(y_true, self.label_smoothing)
        return -(y_true * log_probs(y_pred, self.from_logits, self.axis)).sum(dim=self.axis)


class SparseCategoricalCrossentropy(Loss):
    """Categorical cross-entropy on integer labels (Keras `SparseCategoricalCrossentropy`).

    loss = -log(p[y]) with p renormalised and clipped as in CategoricalCrossentropy;
    labels equal to `ignore_class` do not count (masked out of the reduction).

    >>> y_true = [1, 2]
    >>> y_pred = [[0.05, 0.95, 0.0], [0.1, 0.8, 0.1]]
    >>> round(float(SparseCategoricalCrossentropy()(y_true, y_pred)), 4)
    1.1769
    """

    labels = "sparse"

    def __init__(self, from_logits=False, ignore_class: IgnoreClass = None, reduction="sum_over_batch_size",
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
        log_p = log_probs(y_pred, self.from_logits, axis)
        res = -torch.gather(log_p, axis, y_true.unsqueeze(axis)).squeeze(axis)
        if self.ignore_class is not None:
            res = torch.where(valid, res, torch.zeros_like(res))
        return res

    def mask(self, y_true, y_pred):
        if self.ignore_class is None:
            return None
        return self._labels(y_true, y_pred) != self.ignore_class


class BinaryFocalCrossentropy(Loss):
    """Binary focal cross-entropy (Lin et al. 2017; Keras `BinaryFocalCrossentropy`).

    loss = mean((1 - p_t)^gamma * bce), p_t = y * p + (1 - y) * (1 - p), p clipped to
    [1e-7, 1 - 1e-7]; with `apply_class_balancing` times alpha * y + (1 - alpha) * (1 - y);
    label smoothing: y <- y * (1 - ls) + 0.5 * ls. With `from_logits`, p = sigmoid(y_pred) and
    bce is computed from the logits (stable; equal to Keras except where its clipping bites).

    >>> y_true = [[0, 1], [0, 0]]
    >>> y_pred = [[0.6, 0.4], [0.4, 0.6]]
    >>> round(float(BinaryFocalCrossentropy()(y_true, y_pred)), 4)
    0.2678
    """

    binary = True

    def __init__(self, apply_class_balancing: ClassBalancing = False, alpha: BinaryAlpha = 0.25,
                 gamma: Gamma = 2.0, from_logits=False, label_smoothing=0.0, axis=-1,
                 reduction="sum_over_batch_size", name="binary_focal_crossentropy"):
        super().__init__(reduction=reduction, name=name)
        self.apply_class_balancing, self.alpha, self.gamma = apply_class_balancing, alpha, gamma
        self.from_logits, self.label_smoothing, self.axis = from_logits, label_smoothing, axis

    def call(self, y_true, y_pred):
        if self.label_smoothing:
            y_true = y_true * (1.0 - self.label_smoothing) + 0.5 * self.label_smoothing
        bce = _bce_elementwise(y_true, y_pred, self.from_logits)
        p = torch.sigmoid(y_pred) if self.from_logits else clip(y_pred)
        p_t = y_true * p + (1.0 - y_true) * (1.0 - p)
        focal = torch.pow(1.0 - p_t, self.gamma) * bce
        if self.apply_class_balancing:
            focal = (y_true * self.alpha + (1.0 - y_true) * (1.0 - self.alpha)) * focal
        return focal.mean(dim=self.axis)


class CategoricalFocalCrossentropy(Loss):
    """Categorical focal cross-entropy (Lin et al. 2017; Keras `CategoricalFocalCrossentropy`).

    loss = sum(-alpha * (1 - p)^gamma * y * log(p)) over classes, p = y_pred / sum(y_pred) clipped
    to [1e-7, 1 - 1e-7] (softmax / log_softmax of y_pred with `from_logits`); `alpha` is a scalar
    or one weight per class; label smoothing as in CategoricalCrossentropy.

    >>> y_true = [[0, 1, 0], [0, 0, 1]]
    >>> y_pred = [[0.05, 0.95, 0.0], [0.1, 0.8, 0.1]]
    >>> round(float(CategoricalFocalCrossentropy()(y_true, y_pred)), 4)
    0.2332
    """

    def __init__(self, alpha: CategoricalAlpha = 0.25, gamma: Gamma = 2.0, from_logits=False, label_smoothing=0.0,
                 axis=-1, reduction="sum_over_batch_size", name="categorical_focal_crossentropy"):
        super().__init__(reduction=reduction, name=name)
        self.alpha, self.gamma = alpha, gamma
        self.from_logits, self.label_smoothing, self.axis = from_logits, label_smoothing, axis

    def call(self, y_true, y_pred):
        y_true = smooth_one_hot(y_true, self.label_smoothing)
        log_p = log_probs(y_pred, self.from_logits, self.axis)
        p = torch.exp(log_p) if self.from_logits else clip(y_pred / y_pred.sum(dim=self.axis, keepdim=True))
        alpha = self.alpha
        if isinstance(alpha, (list, tuple)):
            alpha = torch.as_tensor(alpha, dtype=y_pred.dtype, device=y_pred.device)
        weight = torch.pow(1.0 - p, self.gamma) * alpha
        return (weight * (-y_true * log_p)).sum(dim=self.axis)


class CategoricalGeneralizedCrossEntropy(Loss):
    """Generalized cross-entropy (Zhang & Sabuncu 2018; Keras `CategoricalGeneralizedCrossEntropy`).

    loss = (1 - p[y]^q) / q on integer labels and probabilities; q -> 0 is CE, q = 1 is MAE.

    >>> y_true = [1, 2]
    >>> y_pred = [[0.05, 0.95, 0.0], [0.1, 0.8, 0.1]]
    >>> round(float(CategoricalGeneralizedCrossEntropy()(y_true, y_pred)), 4)
    0.7091
    """

    labels = "sparse"

    def __init__(self, q: Q = 0.5, reduction="sum_over_batch_size", name="categorical_generalized_cross_entropy"):
        super().__init__(reduction=reduction, name=name)
        if not 0.0 < q <= 1.0:
            raise UserError(f"categorical_generalized_cross_entropy needs 0 < q <= 1, got q={q}")
        self.q = q

    def call(self, y_true, y_pred):
        if y_true.dim() == y_pred.dim() and y_true.shape[-1] == 1:
            y_true = y_true.squeeze(-1)
        p = torch.gather(y_pred, -1, y_true.long().unsqueeze(-1)).squeeze(-1)
        return (1.0 - torch.pow(p, self.q)) / self.q
