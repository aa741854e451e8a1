"""The Keras 3 classification losses: the same names, options, defaults and numbers as `keras.losses`
(to 1e-5; tests/test_losses.py holds values computed by Keras itself), and their registration
(`KERAS_LOSSES`). The cross-entropies are in `keras_crossentropy.py`; the squared, absolute, hinge,
divergence and overlap losses here. `y_pred` are probabilities, as in Keras; `adapt` feeds the
cross-entropy-type losses logits with `from_logits=True`. Each docstring gives the per-sample formula
and an example whose value is Keras' on the same input."""

from __future__ import annotations

import math
from typing import Annotated

import torch
import torch.nn.functional as F

from ..registry import Option
from .base import Loss
from .keras_crossentropy import (
    BinaryCrossentropy,
    BinaryFocalCrossentropy,
    CategoricalCrossentropy,
    CategoricalFocalCrossentropy,
    CategoricalGeneralizedCrossEntropy,
    SparseCategoricalCrossentropy,
)
from .ops import EPSILON, hinge_labels, same_rank
from .options import Axes
from .registration import register_class

Delta = Annotated[float, Option("where the loss turns from quadratic to linear", ge=0)]
TverskyWeight = Annotated[float, Option("the weight of false positives (alpha) / false negatives (beta)", ge=0)]


class MeanSquaredError(Loss):
    """loss = mean((y - p)^2) over the last axis.

    >>> y_true = [[0, 1, 0], [0, 0, 1]]
    >>> y_pred = [[0.05, 0.95, 0.0], [0.1, 0.8, 0.1]]
    >>> round(float(MeanSquaredError()(y_true, y_pred)), 4)
    0.2442
    """

    def __init__(self, reduction="sum_over_batch_size", name="mean_squared_error"):
        super().__init__(reduction=reduction, name=name)

    def call(self, y_true, y_pred):
        y_true, y_pred = same_rank(y_true, y_pred)
        return torch.square(y_true - y_pred).mean(dim=-1)


class MeanAbsoluteError(Loss):
    """loss = mean(|y - p|) over the last axis.

    >>> y_true = [[0, 1, 0], [0, 0, 1]]
    >>> y_pred = [[0.05, 0.95, 0.0], [0.1, 0.8, 0.1]]
    >>> round(float(MeanAbsoluteError()(y_true, y_pred)), 4)
    0.3167
    """

    def __init__(self, reduction="sum_over_batch_size", name="mean_absolute_error"):
        super().__init__(reduction=reduction, name=name)

    def call(self, y_true, y_pred):
        y_true, y_pred = same_rank(y_true, y_pred)
        return torch.abs(y_true - y_pred).mean(dim=-1)


class Hinge(Loss):
    """loss = mean(max(1 - y * p, 0)) over the last axis; 0/1 labels are mapped to -1/+1.

    >>> y_true = [[0, 1, 0], [0, 0, 1]]
    >>> y_pred = [[0.05, 0.95, 0.0], [0.1, 0.8, 0.1]]
    >>> round(float(Hinge()(y_true, y_pred)), 4)
    0.9833
    """

    def __init__(self, reduction="sum_over_batch_size", name="hinge"):
        super().__init__(reduction=reduction, name=name)

    def call(self, y_true, y_pred):
        return torch.clamp(1.0 - hinge_labels(y_true) * y_pred, min=0.0).mean(dim=-1)


class SquaredHinge(Loss):
    """loss = mean(max(1 - y * p, 0)^2) over the last axis; 0/1 labels are mapped to -1/+1.

    >>> y_true = [[0, 1, 0], [0, 0, 1]]
    >>> y_pred = [[0.05, 0.95, 0.0], [0.1, 0.8, 0.1]]
    >>> round(float(SquaredHinge()(y_true, y_pred)), 4)
    1.2275
    """

    def __init__(self, reduction="sum_over_batch_size", name="squared_hinge"):
        super().__init__(reduction=reduction, name=name)

    def call(self, y_true, y_pred):
        return torch.square(torch.clamp(1.0 - hinge_labels(y_true) * y_pred, min=0.0)).mean(dim=-1)


class CategoricalHinge(Loss):
    """loss = max(max((1 - y) * p) - sum(y * p) + 1, 0).

    >>> y_true = [[0, 1, 0], [0, 0, 1]]
    >>> y_pred = [[0.05, 0.95, 0.0], [0.1, 0.8, 0.1]]
    >>> round(float(CategoricalHinge()(y_true, y_pred)), 4)
    0.9
    """

    def __init__(self, reduction="sum_over_batch_size", name="categorical_hinge"):
        super().__init__(reduction=reduction, name=name)

    def call(self, y_true, y_pred):
        pos = (y_true * y_pred).sum(dim=-1)
        neg = ((1.0 - y_true) * y_pred).amax(dim=-1)
        return torch.clamp(neg - pos + 1.0, min=0.0)


class KLDivergence(Loss):
    """loss = sum(y * log(y / p)) with y and p clipped to [1e-7, 1].

    >>> y_true = [[0, 1, 0], [0, 0, 1]]
    >>> y_pred = [[0.05, 0.95, 0.0], [0.1, 0.8, 0.1]]
    >>> round(float(KLDivergence()(y_true, y_pred)), 4)
    1.1769
    """

    def __init__(self, reduction="sum_over_batch_size", name="kl_divergence"):
        super().__init__(reduction=reduction, name=name)

    def call(self, y_true, y_pred):
        y_true = torch.clamp(y_true, EPSILON, 1.0)
        y_pred = torch.clamp(y_pred, EPSILON, 1.0)
        return (y_true * torch.log(y_true / y_pred)).sum(dim=-1)


class MeanAbsolutePercentageError(Loss):
    """loss = 100 * mean(|y - p| / max(|y|, 1e-7)) over the last axis. The example's targets are
    soft: on one-hot labels every 0 divides by 1e-7 and the loss is of the order of 1e8.

    >>> y_true = [[0.2, 0.7, 0.1], [0.1, 0.3, 0.6]]
    >>> y_pred = [[0.05, 0.95, 0.0], [0.1, 0.8, 0.1]]
    >>> round(float(MeanAbsolutePercentageError()(y_true, y_pred)), 4)
    76.7857
    """

    def __init__(self, reduction="sum_over_batch_size", name="mean_absolute_percentage_error"):
        super().__init__(reduction=reduction, name=name)

    def call(self, y_true, y_pred):
        y_true, y_pred = same_rank(y_true, y_pred)
        diff = torch.abs((y_true - y_pred) / torch.clamp(torch.abs(y_true), min=EPSILON))
        return 100.0 * diff.mean(dim=-1)


class MeanSquaredLogarithmicError(Loss):
    """loss = mean((log(max(p, 1e-7) + 1) - log(max(y, 1e-7) + 1))^2) over the last axis.

    >>> y_true = [[0, 1, 0], [0, 0, 1]]
    >>> y_pred = [[0.05, 0.95, 0.0], [0.1, 0.8, 0.1]]
    >>> round(float(MeanSquaredLogarithmicError()(y_true, y_pred)), 4)
    0.1192
    """

    def __init__(self, reduction="sum_over_batch_size", name="mean_squared_logarithmic_error"):
        super().__init__(reduction=reduction, name=name)

    def call(self, y_true, y_pred):
        y_true, y_pred = same_rank(y_true, y_pred)
        first = torch.log(torch.clamp(y_pred, min=EPSILON) + 1.0)
        second = torch.log(torch.clamp(y_true, min=EPSILON) + 1.0)
        return torch.square(first - second).mean(dim=-1)


class LogCosh(Loss):
    """loss = mean(log(cosh(p - y))) over the last axis, computed as x + softplus(-2x) - log 2.

    >>> y_true = [[0, 1, 0], [0, 0, 1]]
    >>> y_pred = [[0.05, 0.95, 0.0], [0.1, 0.8, 0.1]]
    >>> round(float(LogCosh()(y_true, y_pred)), 4)
    0.1097
    """

    def __init__(self, reduction="sum_over_batch_size", name="log_cosh"):
        super().__init__(reduction=reduction, name=name)

    def call(self, y_true, y_pred):
        y_true, y_pred = same_rank(y_true, y_pred)
        x = y_pred - y_true
        return (x + F.softplus(-2.0 * x) - math.log(2.0)).mean(dim=-1)


class Huber(Loss):
    """loss = mean(0.5 e^2 if |e| <= delta else delta * |e| - 0.5 delta^2), e = p - y.

    >>> y_true = [[0, 1, 0], [0, 0, 1]]
    >>> y_pred = [[0.05, 0.95, 0.0], [0.1, 0.8, 0.1]]
    >>> round(float(Huber()(y_true, y_pred)), 4)
    0.1221
    """

    def __init__(self, delta: Delta = 1.0, reduction="sum_over_batch_size", name="huber_loss"):
        super().__init__(reduction=reduction, name=name)
        self.delta = delta

    def call(self, y_true, y_pred):
        y_true, y_pred = same_rank(y_true, y_pred)
        error = y_pred - y_true
        abs_error = torch.abs(error)
        delta = self.delta
        return torch.where(abs_error <= delta, 0.5 * torch.square(error),
                           delta * abs_error - 0.5 * delta * delta).mean(dim=-1)


class Poisson(Loss):
    """loss = mean(p - y * log(p + 1e-7)) over the last axis.

    >>> y_true = [[0, 1, 0], [0, 0, 1]]
    >>> y_pred = [[0.05, 0.95, 0.0], [0.1, 0.8, 0.1]]
    >>> round(float(Poisson()(y_true, y_pred)), 4)
    0.7256
    """

    def __init__(self, reduction="sum_over_batch_size", name="poisson"):
        super().__init__(reduction=reduction, name=name)

    def call(self, y_true, y_pred):
        return (y_pred - y_true * torch.log(y_pred + EPSILON)).mean(dim=-1)


def _l2_normalize(x, axis):
    inv_norm = torch.rsqrt(torch.square(x).sum(dim=axis, keepdim=True))
    return x * torch.clamp(inv_norm, max=1.0 / EPSILON)


class CosineSimilarity(Loss):
    """loss = -sum(l2_normalize(y) * l2_normalize(p)) along `axis`: -1 is best, 0 orthogonal.

    (Keras' sign: a loss to minimise; the Keras 2 name `cosine_proximity` is the same thing.)

    >>> y_true = [[0, 1, 0], [0, 0, 1]]
    >>> y_pred = [[0.05, 0.95, 0.0], [0.1, 0.8, 0.1]]
    >>> round(float(CosineSimilarity()(y_true, y_pred)), 4)
    -0.5609
    """

    def __init__(self, axis=-1, reduction="sum_over_batch_size", name="cosine_similarity"):
        super().__init__(reduction=reduction, name=name)
        self.axis = axis

    def call(self, y_true, y_pred):
        y_true, y_pred = same_rank(y_true, y_pred)
        return -(_l2_normalize(y_true, self.axis) * _l2_normalize(y_pred, self.axis)).sum(dim=self.axis)


def _sum(x, axis):
    if axis is None:
        return x.sum()
    return x.sum(dim=tuple(axis) if isinstance(axis, (list, tuple)) else axis)


class Dice(Loss):
    """loss = 1 - 2 * sum(y * p) / (sum(y) + sum(p) + 1e-7), summed over `axis`
    (None, the Keras default: the whole batch, giving one scalar).

    >>> y_true = [[0, 1, 0], [0, 0, 1]]
    >>> y_pred = [[0.05, 0.95, 0.0], [0.1, 0.8, 0.1]]
    >>> round(float(Dice()(y_true, y_pred)), 4)
    0.475
    """

    def __init__(self, reduction="sum_over_batch_size", name="dice", axis: Axes = None):
        super().__init__(reduction=reduction, name=name)
        self.axis = axis

    def call(self, y_true, y_pred):
        intersection = _sum(y_true * y_pred, self.axis)
        return 1.0 - 2.0 * intersection / (_sum(y_true, self.axis) + _sum(y_pred, self.axis) + EPSILON)


class Tversky(Loss):
    """loss = 1 - TP / (TP + alpha * FP + beta * FN + 1e-7) with TP = sum(y * p),
    FP = sum((1 - p) * y), FN = sum(p * (1 - y)) over `axis` (Keras' definitions; None: whole
    batch). alpha = beta = 0.5 is Dice (Salehi et al. 2017).

    >>> y_true = [[0, 1, 0], [0, 0, 1]]
    >>> y_pred = [[0.05, 0.95, 0.0], [0.1, 0.8, 0.1]]
    >>> round(float(Tversky()(y_true, y_pred)), 4)
    0.475
    """

    def __init__(self, alpha: TverskyWeight = 0.5, beta: TverskyWeight = 0.5, reduction="sum_over_batch_size",
                 name="tversky", axis: Axes = None):
        super().__init__(reduction=reduction, name=name)
        self.alpha, self.beta, self.axis = alpha, beta, axis

    def call(self, y_true, y_pred):
        tp = _sum(y_true * y_pred, self.axis)
        fp = _sum((1.0 - y_pred) * y_true, self.axis)
        fn = _sum(y_pred * (1.0 - y_true), self.axis)
        return 1.0 - tp / (tp + fp * self.alpha + fn * self.beta + EPSILON)


# (class, canonical name, aliases, the one-line summary `cnnbench list losses` shows)
KERAS_LOSSES = [
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
for _cls, _name, _aliases, _summary in KERAS_LOSSES:
    register_class(_cls, _name, _aliases, _summary)
