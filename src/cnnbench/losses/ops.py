"""Tensor pieces the loss families share: Keras' clipping, renormalisation, label smoothing and label
conventions, and the rank rule of its reductions. Pure tensor functions (no `.item()`, no state)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

#: `keras.backend.epsilon()`: probabilities are clipped to [EPSILON, 1 - EPSILON].
EPSILON = 1e-7


def as_float(x) -> torch.Tensor:
    """`x` as a tensor of a floating dtype (integers become the default float dtype)."""
    x = torch.as_tensor(x)
    if not x.is_floating_point():
        x = x.to(torch.get_default_dtype())
    return x


def clip(p: torch.Tensor) -> torch.Tensor:
    """Probabilities clipped to [EPSILON, 1 - EPSILON], as Keras does before taking a log."""
    return torch.clamp(p, EPSILON, 1.0 - EPSILON)


def same_rank(x1: torch.Tensor, x2: torch.Tensor, expand_rank_1: bool = True):
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


def divide_no_nan(a, b: torch.Tensor) -> torch.Tensor:
    """a / b, and 0 where b == 0 (`a` a tensor or a Python number)."""
    safe = torch.where(b == 0, torch.ones_like(b), b)
    quotient = a / safe
    return torch.where(b == 0, torch.zeros_like(quotient), quotient)


def smooth_one_hot(y_true: torch.Tensor, label_smoothing: float) -> torch.Tensor:
    """Keras' categorical label smoothing: y * (1 - ls) + ls / num_classes."""
    if label_smoothing:
        return y_true * (1.0 - label_smoothing) + label_smoothing / y_true.shape[-1]
    return y_true


def log_probs(y_pred, from_logits, axis=-1):
    """log p: log_softmax of logits, or Keras' log of probabilities renormalised and clipped."""
    if from_logits:
        return F.log_softmax(y_pred, dim=axis)
    return torch.log(clip(y_pred / y_pred.sum(dim=axis, keepdim=True)))


def probs(y_pred, from_logits, axis=-1):
    """p: softmax of logits, or the probabilities as given."""
    return torch.softmax(y_pred, dim=axis) if from_logits else y_pred


def hinge_labels(y_true):
    """Keras: labels that are all 0/1 become -1/+1; others are used as given."""
    is_binary = ((y_true == 0) | (y_true == 1)).all()
    return torch.where(is_binary, 2.0 * y_true - 1.0, y_true)
