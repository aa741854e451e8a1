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

The package, one job per module:
  base             `Loss`, `FunctionLoss`, Keras' reductions
  ops              tensor pieces the losses share (clipping, renormalisation, label smoothing)
  keras            the Keras 3 losses
  literature       losses from papers that Keras lacks
  registration     `REGISTRY`, `register`
  specs            `get`, `resolve`: a name, spec, object or "module:attr" reference -> a Loss / a config
  adapters         `adapt`, `TrainingLoss`: a loss bound to a classifier's logits and int labels
  training_labels  class weights as sample weights, label noise

The formulas of every entry are in `docs/losses.md`.
test suite runs (tests/test_doctests.py).
"""

from __future__ import annotations

# Importing .keras and .literature registers their losses. The classes, helpers and constants are
# re-exported so that every name `cnnbench.losses.X` had before the package was split still works.
from .adapters import TrainingLoss, adapt
from .base import REDUCTIONS, FunctionLoss, Loss, reduce_weighted  # noqa: F401
from .keras import (  # noqa: F401
    BinaryCrossentropy,
    BinaryFocalCrossentropy,
    CategoricalCrossentropy,
    CategoricalFocalCrossentropy,
    CategoricalGeneralizedCrossEntropy,
    CategoricalHinge,
    CosineSimilarity,
    Dice,
    Hinge,
    Huber,
    KLDivergence,
    LogCosh,
    MeanAbsoluteError,
    MeanAbsolutePercentageError,
    MeanSquaredError,
    MeanSquaredLogarithmicError,
    Poisson,
    SparseCategoricalCrossentropy,
    SquaredHinge,
    Tversky,
)
from .literature import (  # noqa: F401
    BiTemperedLogistic,
    CauchySchwarzDivergence,
    ChebyshevExpectation,
    CubedHinge,
    ExpectationL1,
    ExpectationL2,
    LabelSmoothedCrossentropy,
    PolyLoss,
    SquaredLog,
    SymmetricCrossentropy,
    Tanimoto,
)
from .ops import EPSILON
from .registration import REGISTRY, register
from .specs import get, resolve
from .training_labels import add_label_noise, class_weights_to_sample_weights

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

_list = list  # `list` is redefined below as the package's API function


def list() -> _list[str]:  # shadows the builtin: the registry API name
    """Canonical names of every registered loss, sorted."""
    return REGISTRY.list()
