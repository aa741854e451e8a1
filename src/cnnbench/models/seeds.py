"""The seed studies' hand-written CNNs and MLP, rebuilt layer for layer in PyTorch.

Every model takes `(C, H, W)` float input in [0, 1] and returns raw outputs (logits) of shape
`[N, num_outputs]`; the final Keras softmax/sigmoid lives in the loss. Layer names follow Keras'
defaults (`conv2d`, `conv2d_1`, `max_pooling2d`, `dense`, ...) so `summary` and `freeze_until` read
like the seeds' `model.summary()`.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Sequence

from torch import nn

from ..errors import UserError
from ._base import (
    REGISTRY,
    Conv2D,
    Dense,
    Flatten,
    check_input_shape,
    check_num_outputs,
    output_features,
)


class _Namer:
    """Keras' automatic layer names: conv2d, conv2d_1, conv2d_2, ..."""

    def __init__(self):
        self.counts: dict[str, int] = {}

    def __call__(self, base: str) -> str:
        n = self.counts.get(base, 0)
        self.counts[base] = n + 1
        return base if n == 0 else f"{base}_{n}"


class KerasSequential(nn.Sequential):
    """An `nn.Sequential` with Keras layer names and the model's name (for `summary`)."""

    def __init__(self, model_name: str, layers: "OrderedDict[str, nn.Module]"):
        super().__init__(layers)
        self.model_name = model_name


class Builder:
    """Builds a Keras-style Sequential model: layers are added in order, each sized from the previous
    one's output (a dry run sizes the first Dense after Flatten). `build()` returns the model."""

    def __init__(self, model_name: str, input_shape: Sequence[int]):
        self.model_name = model_name
        self.input_shape = tuple(input_shape)
        self.layers: OrderedDict[str, nn.Module] = OrderedDict()
        self._names = _Namer()
        self._shape = tuple(input_shape)  # current output shape without the batch dimension

    def build(self) -> KerasSequential:
        return KerasSequential(self.model_name, self.layers)

    def _too_small(self, layer_name):
        c, h, w = self.input_shape
        return UserError(
            f"model {self.model_name!r} cannot take {c}x{h}x{w} input (the feature maps shrink to "
            f"nothing at layer {layer_name!r}); use larger images (the dataset's image_size)"
        )

    def _add(self, base: str, layer: nn.Module):
        name = self._names(base)
        self.layers[name] = layer
        try:
            self._shape = output_features(layer, self._shape)
        except RuntimeError as e:
            raise self._too_small(name) from e
        if any(s < 1 for s in self._shape):
            raise self._too_small(name)
        return self

    def conv(self, filters, kernel_size=3, activation="relu", padding="valid", strides=1):
        return self._add("conv2d", Conv2D(self._shape[0], filters, kernel_size, strides, padding, activation))

    def max_pool(self, pool_size=2):
        # Keras MaxPooling2D: pool 2, stride = pool, "valid" padding (floor)
        return self._add("max_pooling2d", nn.MaxPool2d(pool_size))

    def avg_pool(self, pool_size=2):
        return self._add("average_pooling2d", nn.AvgPool2d(pool_size))

    def dropout(self, rate):
        if not 0 <= float(rate) < 1:
            raise UserError(f"model {self.model_name!r}: dropout rate must be in [0, 1), got {rate!r}")
        return self._add("dropout", nn.Dropout(float(rate)))

    def flatten(self):
        return self._add("flatten", Flatten())

    def dense(self, units, activation=None):
        if len(self._shape) != 1:
            self.flatten()
        return self._add("dense", Dense(self._shape[0], units, activation))


def _pair(value, name, model):
    if isinstance(value, (int, float)):
        return (value, value)
    try:
        a, b = value
    except (TypeError, ValueError):
        raise UserError(f"model {model!r}: {name} must be one value or a pair, got {value!r}") from None
    return (a, b)


# --- digits_cnn ----------------------------------------------------------------------------------
@REGISTRY.register("digits_cnn", aliases=["digits"], min_input=(1, 5, 5), paper="small CNN for sklearn's 8x8 digits")
def digits_cnn(input_shape, num_outputs, *, filters=(16, 32), hidden_units=64, dropout=(0.25, 0.5)):
    """Small fast CNN for 8x8 grey digits: Conv16-Conv32 (3x3 relu) - MaxPool - Dense64 - Dense."""
    name = "digits_cnn"
    check_input_shape(name, input_shape, min_hw=5)
    check_num_outputs(name, num_outputs)
    f1, f2 = _pair(filters, "filters", name)
    d1, d2 = _pair(dropout, "dropout", name)
    m = Builder(name, input_shape)
    m.conv(int(f1), 3, "relu").conv(int(f2), 3, "relu").max_pool(2).dropout(d1)
    m.flatten().dense(int(hidden_units), "relu").dropout(d2).dense(num_outputs)
    return m.build()


# --- keras_mnist_cnn -----------------------------------------------------------------------------
@REGISTRY.register(
    "keras_mnist_cnn", aliases=["mnist_cnn"], min_input=(1, 6, 6),
    paper="Keras examples/mnist_cnn.py (1,199,882 params at 28x28x1, 10 classes)",
)
def keras_mnist_cnn(input_shape, num_outputs, *, filters=(32, 64), kernel_size=3,
                    hidden_units=128, dropout=(0.25, 0.5)):
    """Keras mnist_cnn.py: Conv32-Conv64 (3x3 relu) - MaxPool2 - Dropout.25 - Dense128 - Dropout.5 - Dense."""
    name = "keras_mnist_cnn"
    k = int(kernel_size)
    check_input_shape(name, input_shape, min_hw=2 * (k - 1) + 2)
    check_num_outputs(name, num_outputs)
    f1, f2 = _pair(filters, "filters", name)
    d1, d2 = _pair(dropout, "dropout", name)
    m = Builder(name, input_shape)
    m.conv(int(f1), k, "relu").conv(int(f2), k, "relu").max_pool(2).dropout(d1)
    m.flatten().dense(int(hidden_units), "relu").dropout(d2).dense(num_outputs)
    return m.build()
