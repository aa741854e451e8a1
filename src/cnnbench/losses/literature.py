"""Classification losses from the literature that Keras lacks (Janocha & Czarnecki 2017, Wang et
al. 2019, Leng et al. 2022, Amid et al. 2019, Szegedy et al. 2016). Each docstring gives the formula,
its source and an example computed from that formula; the references are listed in docs/losses.md."""

from __future__ import annotations

import math
from typing import Annotated

import torch
import torch.nn.functional as F

from ..registry import Option
from .base import Loss
from .keras_crossentropy import CategoricalCrossentropy
from .ops import EPSILON, clip, divide_no_nan, hinge_labels, log_probs, probs, smooth_one_hot
from .registration import register_class

Margin = Annotated[float, Option("the margin of the hinge: max(0, margin - ...)")]
Power = Annotated[int, Option("the exponent of the hinge", ge=1)]
SceAlpha = Annotated[float, Option("the weight of the cross-entropy term", ge=0)]
SceBeta = Annotated[float, Option("the weight of the reverse cross-entropy term", ge=0)]
SceA = Annotated[float, Option("log(0) in the reverse cross-entropy (Wang et al. use -4)")]
PolyEpsilon = Annotated[float, Option("the weight of the first polynomial term (1 - p_t)")]
T1 = Annotated[float, Option("the loss's temperature: t1 < 1 bounds the loss")]
T2 = Annotated[float, Option("the tempered softmax's temperature: t2 > 1 gives heavy tails")]
NumIters = Annotated[int, Option("fixed-point iterations of the tempered softmax's normaliser", ge=1)]


class _LogitsOption(Loss):
    """A loss on class probabilities with a Keras-style `from_logits` option."""

    def __init__(self, from_logits=False, reduction="sum_over_batch_size", name=None):
        super().__init__(reduction=reduction, name=name)
        self.from_logits = from_logits


class ExpectationL1(_LogitsOption):
    """L1 expectation loss (Janocha & Czarnecki 2017, "On Loss Functions for Deep Neural Networks
    in Classification", Schedae Informaticae 25): loss = sum_j |y_j - p_j|, p = softmax(o).
    It is twice the expected misclassification of a classifier that samples from p.

    >>> y_true = [[0, 1, 0], [0, 0, 1]]
    >>> y_pred = [[0.05, 0.95, 0.0], [0.1, 0.8, 0.1]]
    >>> round(float(ExpectationL1()(y_true, y_pred)), 4)
    0.95
    """

    def __init__(self, from_logits=False, reduction="sum_over_batch_size", name="expectation_l1"):
        super().__init__(from_logits=from_logits, reduction=reduction, name=name)

    def call(self, y_true, y_pred):
        return torch.abs(y_true - probs(y_pred, self.from_logits)).sum(dim=-1)


class ExpectationL2(_LogitsOption):
    """Regularised L2 expectation loss (Janocha & Czarnecki 2017): loss = sum_j (y_j - p_j)^2,
    p = softmax(o) (the multi-class Brier score).

    >>> y_true = [[0, 1, 0], [0, 0, 1]]
    >>> y_pred = [[0.05, 0.95, 0.0], [0.1, 0.8, 0.1]]
    >>> round(float(ExpectationL2()(y_true, y_pred)), 4)
    0.7325
    """

    def __init__(self, from_logits=False, reduction="sum_over_batch_size", name="expectation_l2"):
        super().__init__(from_logits=from_logits, reduction=reduction, name=name)

    def call(self, y_true, y_pred):
        return torch.square(y_true - probs(y_pred, self.from_logits)).sum(dim=-1)


class ChebyshevExpectation(_LogitsOption):
    """Chebyshev (L-infinity) expectation loss (Janocha & Czarnecki 2017):
    loss = max_j |y_j - p_j|, p = softmax(o).

    >>> y_true = [[0, 1, 0], [0, 0, 1]]
    >>> y_pred = [[0.05, 0.95, 0.0], [0.1, 0.8, 0.1]]
    >>> round(float(ChebyshevExpectation()(y_true, y_pred)), 4)
    0.475
    """

    def __init__(self, from_logits=False, reduction="sum_over_batch_size", name="chebyshev_expectation"):
        super().__init__(from_logits=from_logits, reduction=reduction, name=name)

    def call(self, y_true, y_pred):
        return torch.abs(y_true - probs(y_pred, self.from_logits)).amax(dim=-1)


class CubedHinge(Loss):
    """Cubed hinge (Janocha & Czarnecki 2017): loss = sum_j max(0, margin - t_j * o_j)^3 on raw
    scores o (logits, not probabilities), t = 2y - 1 for 0/1 labels; the paper's margin is 1/2.
    `power` = 1 or 2 gives the paper's hinge and squared hinge on raw scores.

    >>> y_true = [[0, 1, 0], [0, 0, 1]]
    >>> logits = [[1.0, 2.0, 0.0], [0.5, 1.0, 2.0]]
    >>> round(float(CubedHinge()(y_true, logits)), 4)
    3.9375
    """

    inputs = "logits"

    def __init__(self, margin: Margin = 0.5, power: Power = 3, reduction="sum_over_batch_size", name="cubed_hinge"):
        super().__init__(reduction=reduction, name=name)
        self.margin, self.power = margin, power

    def call(self, y_true, y_pred):
        t = hinge_labels(y_true)
        return torch.pow(torch.clamp(self.margin - t * y_pred, min=0.0), self.power).sum(dim=-1)


class SquaredLog(_LogitsOption):
    """Squared log loss (log^2 of Janocha & Czarnecki 2017): loss = sum_j (y_j log p_j)^2,
    p = softmax(o) (renormalised and clipped to [1e-7, 1 - 1e-7] on probabilities, as Keras' CE).
    The paper prints the formula with a leading minus; the minimised quantity is the square.

    >>> y_true = [[0, 1, 0], [0, 0, 1]]
    >>> y_pred = [[0.05, 0.95, 0.0], [0.1, 0.8, 0.1]]
    >>> round(float(SquaredLog()(y_true, y_pred)), 4)
    2.6523
    """

    def __init__(self, from_logits=False, reduction="sum_over_batch_size", name="squared_log"):
        super().__init__(from_logits=from_logits, reduction=reduction, name=name)

    def call(self, y_true, y_pred):
        return torch.square(y_true * log_probs(y_pred, self.from_logits)).sum(dim=-1)


class Tanimoto(_LogitsOption):
    """Tanimoto loss (Janocha & Czarnecki 2017):
    loss = -sum(p * y) / (||p||^2 + ||y||^2 - sum(p * y)), p = softmax(o); in [-1, 0].

    >>> y_true = [[0, 1, 0], [0, 0, 1]]
    >>> y_pred = [[0.05, 0.95, 0.0], [0.1, 0.8, 0.1]]
    >>> round(float(Tanimoto()(y_true, y_pred)), 4)
    -0.5294
    """

    def __init__(self, from_logits=False, reduction="sum_over_batch_size", name="tanimoto"):
        super().__init__(from_logits=from_logits, reduction=reduction, name=name)

    def call(self, y_true, y_pred):
        p = probs(y_pred, self.from_logits)
        dot = (p * y_true).sum(dim=-1)
        return -dot / (torch.square(p).sum(dim=-1) + torch.square(y_true).sum(dim=-1) - dot)


class CauchySchwarzDivergence(_LogitsOption):
    """Cauchy-Schwarz divergence (Janocha & Czarnecki 2017):
    loss = -log(sum(p * y) / (||p||_2 ||y||_2)), p = softmax(o); 0 when p = y. On probabilities the
    ratio is clipped to >= 1e-7; from logits it is computed in log space (stable).

    >>> y_true = [[0, 1, 0], [0, 0, 1]]
    >>> y_pred = [[0.05, 0.95, 0.0], [0.1, 0.8, 0.1]]
    >>> round(float(CauchySchwarzDivergence()(y_true, y_pred)), 4)
    1.0481
    """

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
        return -torch.log(torch.clamp(divide_no_nan(dot, norms), min=EPSILON))


class SymmetricCrossentropy(_LogitsOption):
    """Symmetric cross-entropy (Wang et al. 2019, "Symmetric Cross Entropy for Robust Learning with
    Noisy Labels", ICCV): loss = alpha * CE(y, p) + beta * RCE(y, p),
    RCE = -sum_j p_j log y_j with log 0 := A (y clipped to [exp(A), 1]); for one-hot y,
    RCE = -A (1 - p[y]). Defaults alpha=0.1, beta=1.0, A=-4 (the paper's CIFAR-10 setting).

    >>> y_true = [[0, 1, 0], [0, 0, 1]]
    >>> y_pred = [[0.05, 0.95, 0.0], [0.1, 0.8, 0.1]]
    >>> round(float(SymmetricCrossentropy()(y_true, y_pred)), 4)
    2.0177
    """

    def __init__(self, alpha: SceAlpha = 0.1, beta: SceBeta = 1.0, A: SceA = -4.0, from_logits=False,
                 reduction="sum_over_batch_size", name="symmetric_crossentropy"):
        super().__init__(from_logits=from_logits, reduction=reduction, name=name)
        self.alpha, self.beta, self.A = alpha, beta, A

    def call(self, y_true, y_pred):
        log_p = log_probs(y_pred, self.from_logits)
        ce = -(y_true * log_p).sum(dim=-1)
        p = torch.softmax(y_pred, dim=-1) if self.from_logits else clip(y_pred / y_pred.sum(dim=-1, keepdim=True))
        rce = -(p * torch.log(torch.clamp(y_true, min=math.exp(self.A), max=1.0))).sum(dim=-1)
        return self.alpha * ce + self.beta * rce


class PolyLoss(_LogitsOption):
    """Poly-1 loss (Leng et al. 2022, "PolyLoss: A Polynomial Expansion Perspective of
    Classification Loss Functions", ICLR): loss = CE(y', p) + epsilon * (1 - sum(y' * p)),
    y' = y * (1 - ls) + ls / C. epsilon=0 is (label-smoothed) CE; the paper's default is 1.

    >>> y_true = [[0, 1, 0], [0, 0, 1]]
    >>> y_pred = [[0.05, 0.95, 0.0], [0.1, 0.8, 0.1]]
    >>> round(float(PolyLoss()(y_true, y_pred)), 4)
    1.6519
    """

    def __init__(self, epsilon: PolyEpsilon = 1.0, label_smoothing=0.0, from_logits=False,
                 reduction="sum_over_batch_size", name="poly_loss"):
        super().__init__(from_logits=from_logits, reduction=reduction, name=name)
        self.epsilon, self.label_smoothing = epsilon, label_smoothing

    def call(self, y_true, y_pred):
        y_true = smooth_one_hot(y_true, self.label_smoothing)
        log_p = log_probs(y_pred, self.from_logits)
        p = torch.exp(log_p) if self.from_logits else clip(y_pred / y_pred.sum(dim=-1, keepdim=True))
        ce = -(y_true * log_p).sum(dim=-1)
        return ce + self.epsilon * (1.0 - (y_true * p).sum(dim=-1))


class BiTemperedLogistic(Loss):
    """Bi-tempered logistic loss (Amid et al. 2019, "Robust Bi-Tempered Logistic Loss Based on
    Bregman Divergences", NeurIPS), via `pytorch_optimizer.loss.bi_tempered_logistic_loss`:
    loss = sum_j [y_j (log_t1 y_j - log_t1 p_j) - (y_j^(2-t1) - p_j^(2-t1)) / (2 - t1)],
    p = tempered_softmax_t2(o), log_t(x) = (x^(1-t) - 1) / (1 - t). `y_pred` are logits
    (activations). t1 < 1 bounds the loss, t2 > 1 gives heavy tails; t1 = t2 = 1 is CE.
    Label smoothing follows the paper's code: y' = (1 - ls * C / (C - 1)) y + ls / (C - 1).

    >>> y_true = [[0, 1, 0], [0, 0, 1]]
    >>> logits = [[1.0, 2.0, 0.0], [0.5, 1.0, 2.0]]
    >>> round(float(BiTemperedLogistic()(y_true, logits)), 4)
    0.3612
    """

    inputs = "logits"

    def __init__(self, t1: T1 = 0.8, t2: T2 = 1.2, label_smoothing=0.0, num_iters: NumIters = 5,
                 reduction="sum_over_batch_size", name="bi_tempered_logistic"):
        super().__init__(reduction=reduction, name=name)
        self.t1, self.t2, self.label_smoothing, self.num_iters = t1, t2, label_smoothing, num_iters

    def call(self, y_true, y_pred):
        from pytorch_optimizer.loss.bi_tempered import bi_tempered_logistic_loss

        return bi_tempered_logistic_loss(y_pred, y_true, t1=self.t1, t2=self.t2, label_smooth=self.label_smoothing,
                                         num_iters=self.num_iters, reduction="none")


class LabelSmoothedCrossentropy(CategoricalCrossentropy):
    """Label-smoothed cross-entropy (Szegedy et al. 2016, "Rethinking the Inception Architecture",
    CVPR): CE with y' = (1 - ls) y + ls / C; the same as categorical_crossentropy with
    label_smoothing, with the paper's ls = 0.1 as default. From logits it runs
    `torch.nn.functional.cross_entropy(label_smoothing=ls)`.

    >>> y_true = [[0, 1, 0], [0, 0, 1]]
    >>> y_pred = [[0.05, 0.95, 0.0], [0.1, 0.8, 0.1]]
    >>> round(float(LabelSmoothedCrossentropy()(y_true, y_pred)), 4)
    1.4591
    """

    def __init__(self, label_smoothing=0.1, from_logits=False, axis=-1, reduction="sum_over_batch_size",
                 name="label_smoothed_crossentropy"):
        super().__init__(from_logits=from_logits, label_smoothing=label_smoothing, axis=axis,
                         reduction=reduction, name=name)

    def call(self, y_true, y_pred):
        if self.from_logits and y_pred.dim() == 2 and self.axis in (-1, 1):
            return F.cross_entropy(y_pred, y_true, label_smoothing=float(self.label_smoothing), reduction="none")
        return super().call(y_true, y_pred)


# (class, canonical name, aliases, the one-line summary `cnnbench list losses` shows)
LITERATURE_LOSSES = [
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
for _cls, _name, _aliases, _summary in LITERATURE_LOSSES:
    register_class(_cls, _name, _aliases, _summary)
