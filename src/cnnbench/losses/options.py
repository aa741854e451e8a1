"""The options Keras' losses share by name, declared once for the whole family (`Registry(shared=...)`):
an entry whose signature does not annotate `from_logits`, `label_smoothing`, `axis`, `reduction` or
`name` gets these. Options of one loss only are annotated in its own signature."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Literal

from ..registry import Option

FromLogits = Annotated[bool, Option("y_pred are raw scores (logits); the loss applies softmax/sigmoid itself")]
LabelSmoothing = Annotated[float, Option("mix the one-hot labels with the uniform distribution by this much",
                                         ge=0, le=1)]
Axis = Annotated[int, Option("the class axis of y_true / y_pred")]
Axes = Annotated[int | Sequence[int] | None, Option("the axes to reduce over (null: all but the batch axis)")]
Reduction = Annotated[Literal["sum_over_batch_size", "sum", "mean", "mean_with_sample_weight", "none"] | None,
                      Option("how the per-sample losses become one number (Keras' reductions)")]
Name = Annotated[str, Option("the name the loss is logged and saved under")]
NonNegative = Annotated[float, Option("", ge=0)]

SHARED = {"from_logits": FromLogits, "label_smoothing": LabelSmoothing, "axis": Axis, "reduction": Reduction,
          "name": Name}
