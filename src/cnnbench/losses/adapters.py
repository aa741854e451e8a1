"""The bridge between a loss and a classifier: `adapt(loss, num_classes)` binds a loss to a task whose
model outputs raw logits and whose labels are int64 class indices, and feeds the loss what it expects
(logits, softmax or sigmoid probabilities; one-hot or integer labels), as Keras would."""

from __future__ import annotations

import copy
import numbers
import operator

import torch

from ..errors import UserError
from .base import Loss
from .specs import get


class TrainingLoss:
    """A loss bound to a classification task: raw model outputs + int64 labels -> scalar.

    * `.out_features`: number of model output units (1 for a binary loss on a 2-class task).
    * `__call__(outputs, labels, sample_weight=None)`: the loss with its reduction (Keras default
      `sum_over_batch_size`: weighted per-sample losses summed and divided by N).
    * `.probabilities(outputs)`: [N, num_classes] class probabilities."""

    def __init__(self, loss: Loss, num_classes: int):
        # the one coercion rule (docs/CONTRACTS.md): any integer (numpy's too) is a number of classes, a bool is not
        if isinstance(num_classes, bool) or not isinstance(num_classes, (int, numbers.Integral)) or num_classes < 2:
            raise UserError(f"a classification loss needs num_classes >= 2, got {num_classes!r}")
        num_classes = operator.index(num_classes)  # np.int64(3) -> 3
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


