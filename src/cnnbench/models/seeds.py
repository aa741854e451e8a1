"""The seed studies' hand-written CNNs and MLP, rebuilt layer for layer in PyTorch.

Every model takes `(C, H, W)` float input in [0, 1] and returns raw outputs (logits) of shape
`[N, num_outputs]`; the final Keras softmax/sigmoid lives in the loss. Layer names follow Keras'
defaults (`conv2d`, `conv2d_1`, `max_pooling2d`, `dense`, ...) so `summary` and `freeze_until` read
like the seeds' `model.summary()`.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from typing import Annotated, Literal

from torch import nn

from ..errors import UserError
from ..registry import Option
from ._base import (
    REGISTRY,
    Activation,
    Conv2D,
    Dense,
    Dropout,
    DropoutRate,
    DropoutRates,
    Filters,
    Flatten,
    HiddenUnits,
    HiddenUnitsList,
    KernelSize,
    check_input_shape,
    check_num_outputs,
    output_features,
)

Pooling = Annotated[Literal["avg", "max"], Option("the subsampling layers: average (the paper's) or max pooling")]
FirstPadding = Annotated[Literal["same", "valid"], Option("the first convolution's padding: 'same' for 28x28 "
                                                          "input, 'valid' for the paper's 32x32")]


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

    def __init__(self, model_name: str, layers: OrderedDict[str, nn.Module]):
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
        filters = _positive_whole(filters, "filters", self.model_name)
        return self._add("conv2d", Conv2D(self._shape[0], filters, kernel_size, strides, padding, activation))

    def max_pool(self, pool_size=2):
        # Keras MaxPooling2D: pool 2, stride = pool, "valid" padding (floor)
        return self._add("max_pooling2d", nn.MaxPool2d(pool_size))

    def avg_pool(self, pool_size=2):
        return self._add("average_pooling2d", nn.AvgPool2d(pool_size))

    def dropout(self, rate):
        if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0 <= rate < 1:
            raise UserError(f"model {self.model_name!r}: dropout rate must be a number in [0, 1), got {rate!r}")
        return self._add("dropout", Dropout(float(rate)))

    def flatten(self):
        # keep_layout: the layers before are convolutions, pooling, dropout and activations (_base.Flatten)
        return self._add("flatten", Flatten(keep_layout=True))

    def dense(self, units, activation=None):
        units = _positive_whole(units, "hidden_units", self.model_name)
        if len(self._shape) != 1:
            self.flatten()
        return self._add("dense", Dense(self._shape[0], units, activation))


def _positive_whole(value, what: str, model: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise UserError(f"model {model!r}: {what} must be a positive whole number, got {value!r}")
    return value


def _values(value, name: str, model: str, count: int | None = None) -> list:
    """An option that is one value or a list: a list, of `count` values when given (one value repeats)."""
    if isinstance(value, (list, tuple)):
        if not value or (count is not None and len(value) != count):
            size = f"{count} values" if count is not None else "a non-empty list"
            raise UserError(f"model {model!r}: {name} must be one value or {size}, got {value!r}")
        return list(value)
    return [value] * (count or 1)


def _pair(value, name, model):
    return _values(value, name, model, 2)


# --- digits_cnn ----------------------------------------------------------------------------------
@REGISTRY.register("digits_cnn", aliases=["digits"], min_input=(1, 6, 6), paper="small CNN for sklearn's 8x8 digits")
def digits_cnn(input_shape, num_outputs, *, filters: Filters = (16, 32), hidden_units: HiddenUnits = 64,
               dropout: DropoutRates = (0.25, 0.5)):
    """Small fast CNN for 8x8 grey digits: Conv16-Conv32 (3x3 relu) - MaxPool - Dense64 - Dense."""
    name = "digits_cnn"
    check_input_shape(name, input_shape, min_hw=6)
    check_num_outputs(name, num_outputs)
    f1, f2 = _pair(filters, "filters", name)
    d1, d2 = _pair(dropout, "dropout", name)
    m = Builder(name, input_shape)
    m.conv(f1, 3, "relu").conv(f2, 3, "relu").max_pool(2).dropout(d1)
    m.flatten().dense(hidden_units, "relu").dropout(d2).dense(num_outputs)
    return m.build()


# --- keras_mnist_cnn -----------------------------------------------------------------------------
@REGISTRY.register(
    "keras_mnist_cnn", aliases=["mnist_cnn"], min_input=(1, 6, 6),
    paper="Keras examples/mnist_cnn.py (1,199,882 params at 28x28x1, 10 classes)",
)
def keras_mnist_cnn(input_shape, num_outputs, *, filters: Filters = (32, 64), kernel_size: KernelSize = 3,
                    hidden_units: HiddenUnits = 128, dropout: DropoutRates = (0.25, 0.5)):
    """Keras mnist_cnn.py: Conv32-Conv64 (3x3 relu) - MaxPool2 - Dropout.25 - Dense128 - Dropout.5 - Dense."""
    name = "keras_mnist_cnn"
    k = _positive_whole(kernel_size, "kernel_size", name)
    check_input_shape(name, input_shape, min_hw=2 * (k - 1) + 2)
    check_num_outputs(name, num_outputs)
    f1, f2 = _pair(filters, "filters", name)
    d1, d2 = _pair(dropout, "dropout", name)
    m = Builder(name, input_shape)
    m.conv(f1, k, "relu").conv(f2, k, "relu").max_pool(2).dropout(d1)
    m.flatten().dense(hidden_units, "relu").dropout(d2).dense(num_outputs)
    return m.build()


# --- keras_mnist_mlp -----------------------------------------------------------------------------
@REGISTRY.register(
    "keras_mnist_mlp", aliases=["mnist_mlp"], min_input=(1, 1, 1),
    paper="Keras examples/mnist_mlp.py (669,706 params at 28x28x1, 10 classes)",
)
def keras_mnist_mlp(input_shape, num_outputs, *, hidden_units: HiddenUnitsList = (512, 512),
                    dropout: DropoutRate = 0.2, activation: Activation = "relu"):
    """Keras mnist_mlp.py: Flatten - Dense512 relu - Dropout.2 - Dense512 relu - Dropout.2 - Dense."""
    name = "keras_mnist_mlp"
    check_input_shape(name, input_shape)
    check_num_outputs(name, num_outputs)
    units = _values(hidden_units, "hidden_units", name)
    m = Builder(name, input_shape).flatten()
    for u in units:
        m.dense(u, activation).dropout(dropout)
    m.dense(num_outputs)
    return m.build()


# --- krutov_cnn ----------------------------------------------------------------------------------
@REGISTRY.register(
    "krutov_cnn", aliases=["dlwp_cats_dogs_cnn"], min_input=(3, 46, 46),
    paper="Chollet, Deep Learning with Python (2017) 5.2, cats vs dogs CNN at 150x150x3 (3,453,121 params, 1 output)",
)
def krutov_cnn(input_shape, num_outputs, *, filters: Filters = (32, 64, 128, 128), hidden_units: HiddenUnits = 512,
               dropout: DropoutRate = 0.5):
    """Cats-vs-dogs CNN: 4 x (Conv 3x3 relu + MaxPool2) - Flatten - Dropout.5 - Dense512 relu - Dense.

    The head `Dropout(0.5) - Dense(512, relu) - Dense(1, sigmoid)` is the one Krutov et al. give for both
    their networks (the VGG19 one: `vgg19` with `dropout_first = true`); the convolutions are Chollet's."""
    name = "krutov_cnn"
    filters = _values(filters, "filters", name)
    smallest = 1
    for _ in filters:  # each 3x3 valid conv + 2x2 pool: size -> (size - 2) // 2
        smallest = 2 * smallest + 2
    check_input_shape(name, input_shape, min_hw=smallest)
    check_num_outputs(name, num_outputs)
    m = Builder(name, input_shape)
    for f in filters:
        m.conv(f, 3, "relu").max_pool(2)
    m.flatten().dropout(dropout).dense(hidden_units, "relu").dense(num_outputs)
    return m.build()


# --- cifar_simple_cnn ----------------------------------------------------------------------------
@REGISTRY.register(
    "cifar_simple_cnn", aliases=["tf_cifar_cnn"], min_input=(3, 18, 18),
    paper="TensorFlow CNN tutorial (tensorflow.org/tutorials/images/cnn; 122,570 params at 32x32x3, 10 classes)",
)
def cifar_simple_cnn(input_shape, num_outputs, *, filters: Filters = (32, 64, 64), hidden_units: HiddenUnits = 64):
    """TensorFlow tutorial CNN: Conv32-Pool-Conv64-Pool-Conv64 (3x3 relu) - Flatten - Dense64 relu - Dense.

    The CIFAR-100 study's "3 conv + Dense 64 + Dense 100" (128,420 params at 32x32x3 with 100 classes);
    filter counts, 3x3 kernels and the two max-pools are the tutorial's (that paper gives only the layer list)."""
    name = "cifar_simple_cnn"
    check_input_shape(name, input_shape, min_hw=18)
    check_num_outputs(name, num_outputs)
    f1, f2, f3 = _values(filters, "filters", name, 3)
    m = Builder(name, input_shape)
    m.conv(f1, 3, "relu").max_pool(2).conv(f2, 3, "relu").max_pool(2).conv(f3, 3, "relu")
    m.flatten().dense(hidden_units, "relu").dense(num_outputs)
    return m.build()


# --- lenet5 --------------------------------------------------------------------------------------
@REGISTRY.register(
    "lenet5", aliases=["lenet", "lenet_5"], min_input=(1, 12, 12),
    paper="LeCun et al. 1998, Gradient-based learning applied to document recognition "
          "(61,706 params at 28x28x1 with padding='same')",
)
def lenet5(input_shape, num_outputs, *, activation: Activation = "tanh", pooling: Pooling = "avg",
           padding: FirstPadding = "same", filters: Filters = (6, 16), hidden_units: HiddenUnitsList = (120, 84)):
    """LeNet-5: Conv6 5x5 - Pool2 - Conv16 5x5 - Pool2 - Flatten - Dense120 - Dense84 - Dense.

    The first convolution pads 'same' by default (the usual 28x28 MNIST form, equal to the paper's
    32x32 input with 2-pixel borders); `padding = "valid"` gives the paper's 32x32 layout."""
    name = "lenet5"
    if pooling not in ("avg", "max"):
        raise UserError(f"model 'lenet5': pooling must be 'avg' or 'max', got {pooling!r}")
    check_input_shape(name, input_shape, min_hw=12 if padding == "same" else 16)
    check_num_outputs(name, num_outputs)
    f1, f2 = _pair(filters, "filters", name)
    pool = (lambda b: b.avg_pool(2)) if pooling == "avg" else (lambda b: b.max_pool(2))
    m = Builder(name, input_shape)
    pool(m.conv(f1, 5, activation, padding=padding))
    pool(m.conv(f2, 5, activation))
    m.flatten()
    for u in _values(hidden_units, "hidden_units", name):
        m.dense(u, activation)
    m.dense(num_outputs)
    return m.build()
