"""Shared pieces of the model zoo: the registry, Keras-style layers and initialisers.

The layers here behave like their Keras namesakes so that models built from them match the seed
studies layer for layer: `Conv2D` and `Dense` carry their activation (one row each in `summary`),
`Conv2D(padding="same")` pads like TensorFlow (the extra row/column goes bottom/right when the
padding is odd, e.g. a stride-2 3x3 convolution on an even size), kernels start glorot-uniform and
biases at zero, and `BatchNorm2d` uses Keras' momentum 0.99 / epsilon 1e-3.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Annotated

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import UserError
from ..registry import Option, Registry

REGISTRY = Registry("model", context=("input_shape", "num_outputs"), references=True)

# The options the models declare in their signatures (`registry.Option`): type, limits, a line of doc.
# (strict: the layers refuse 128.0 when they are built, so a study says so when it is read)
Filters = Annotated[int | Sequence[int], Option("filters of each convolution (one value: every one)", ge=1,
                                                strict=True)]
HiddenUnits = Annotated[int, Option("units of the hidden Dense layer", ge=1, strict=True)]
HiddenUnitsList = Annotated[int | Sequence[int], Option("units of each hidden Dense layer", ge=1, strict=True)]
KernelSize = Annotated[int, Option("the convolutions' kernel size (square)", ge=1, strict=True)]
DropoutRates = Annotated[float | Sequence[float], Option("dropout rate of each Dropout layer (one value: every one)",
                                                         ge=0, lt=1)]
DropoutRate = Annotated[float, Option("the dropout rate", ge=0, lt=1)]
Activation = Annotated[str | None, Option("the hidden layers' activation: relu, tanh, sigmoid, elu, selu, gelu, "
                                          "swish, softplus or linear (None: linear, as in Keras)")]
L2 = Annotated[float, Option("Keras' kernel_regularizer=l2(l2) on every Conv2D kernel", ge=0)]

ACTIVATIONS = {
    None: None,
    "linear": None,
    "relu": F.relu,
    "sigmoid": torch.sigmoid,
    "tanh": torch.tanh,
    "elu": F.elu,
    "selu": F.selu,
    "gelu": F.gelu,
    "swish": F.silu,
    "silu": F.silu,
    "softplus": F.softplus,
}


def activation_fn(name):
    key = name.lower() if isinstance(name, str) else name
    if key not in ACTIVATIONS:
        raise UserError(f"unknown activation {name!r}; use one of: {', '.join(k for k in ACTIVATIONS if k)}")
    return ACTIVATIONS[key]


# --- initialisers (Keras names) ------------------------------------------------------------------
def glorot_uniform_(w: torch.Tensor) -> torch.Tensor:
    return nn.init.xavier_uniform_(w)


# The std of a standard normal truncated at ±2: Keras divides by it so that the truncated draw still
# has the std it asks for (keras.initializers.VarianceScaling, distribution="truncated_normal").
_TRUNCATED_NORMAL_STD = 0.87962566103423978


def he_normal_(w: torch.Tensor) -> torch.Tensor:
    """Keras' he_normal: a normal truncated at ±2 of its std, scaled so that the result has std
    sqrt(2 / fan_in)."""
    fan_in = w.shape[1] * (w[0][0].numel() if w.dim() > 2 else 1)
    std = math.sqrt(2.0 / fan_in) / _TRUNCATED_NORMAL_STD
    return nn.init.trunc_normal_(w, std=std, a=-2 * std, b=2 * std)


INITIALIZERS = {"glorot_uniform": glorot_uniform_, "he_normal": he_normal_}


def keras_init_(module: nn.Module, kernel_initializer: str = "glorot_uniform") -> nn.Module:
    """Initialise every Conv/Linear the Keras way (kernel initialiser, zero bias); BN to 1/0."""
    init = INITIALIZERS[kernel_initializer]
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            init(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
    return module


# --- Keras-like layers ---------------------------------------------------------------------------
def _activate(act, y: torch.Tensor) -> torch.Tensor:
    """`act(y)` for a layer's fresh output `y`; ReLU in place (the same values: `relu_` is `relu`).

    In place saves a pass's worth of new memory on the largest activations; autograd allows it because
    neither the convolution's nor the linear layer's backward reads its output, and ReLU's backward reads
    ReLU's result either way (`threshold_backward`)."""
    if act is None:
        return y
    return F.relu_(y) if act is F.relu else act(y)


class Conv2D(nn.Conv2d):
    """`keras.layers.Conv2D`: convolution + optional activation, "valid" or TF-style "same" padding."""

    def __init__(self, in_channels, filters, kernel_size=3, strides=1, padding="valid",
                 activation=None, use_bias=True, kernel_initializer="glorot_uniform"):
        k = kernel_size if isinstance(kernel_size, int) else kernel_size[0]
        s = strides if isinstance(strides, int) else strides[0]
        if padding not in ("valid", "same"):
            raise UserError(f"padding must be 'valid' or 'same', got {padding!r}")
        sym = padding == "same" and s == 1 and k % 2 == 1
        super().__init__(in_channels, filters, k, stride=s, padding=(k // 2 if sym else 0), bias=use_bias)
        self.keras_padding = padding
        self._asym_same = padding == "same" and not sym
        self.activation_name = activation
        self.act = activation_fn(activation)
        INITIALIZERS[kernel_initializer](self.weight)
        if self.bias is not None:
            nn.init.zeros_(self.bias)

    def forward(self, x):
        if self._asym_same:
            pads = []
            for size, k, s in zip(x.shape[-1:-3:-1], self.kernel_size[::-1], self.stride[::-1]):
                out = -(-size // s)
                total = max((out - 1) * s + k - size, 0)
                pads += [total // 2, total - total // 2]
            x = F.pad(x, pads)
        return _activate(self.act, super().forward(x))

    def extra_repr(self):
        return super().extra_repr() + f", keras_padding={self.keras_padding!r}, activation={self.activation_name!r}"


class Dense(nn.Linear):
    """`keras.layers.Dense`: linear + optional activation, glorot-uniform kernel, zero bias."""

    def __init__(self, in_features, units, activation=None, kernel_initializer="glorot_uniform"):
        super().__init__(in_features, units)
        self.activation_name = activation
        self.act = activation_fn(activation)
        INITIALIZERS[kernel_initializer](self.weight)
        nn.init.zeros_(self.bias)

    def forward(self, x):
        return _activate(self.act, super().forward(x))

    def extra_repr(self):
        return super().extra_repr() + f", activation={self.activation_name!r}"


class Dropout(nn.Dropout):
    """`nn.Dropout` with a mask that is ~10x cheaper to draw on CPU.

    `F.dropout` draws one Bernoulli sample per element, and on a CPU that sampling is most of dropout's
    cost (10 ms a step, 10-20% of a Keras MNIST CNN step; BENCHMARKS.md). Here one 64-bit draw
    gives three 16-bit uniforms (the top 16 bits of `random_()` are not uniform: it draws in
    [0, 2**63)), each compared with a threshold: an element is kept with probability
    1 - round(p * 65536) / 65536 (exact for p = 0.25 and 0.5; within 1e-5 of 1 - p otherwise), and
    scaled by 1 / (1 - p) as usual. It uses the global RNG, so `torch.manual_seed` fixes it. On GPUs,
    where dropout is a fused kernel, it is plain `F.dropout`.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0 or x.device.type != "cpu":
            return F.dropout(x, self.p, self.training, self.inplace)
        n = x.numel()
        words = torch.empty((n + 2) // 3, dtype=torch.int64).random_()
        uniform16 = words.view(torch.int16).view(-1, 4)[:, :3]  # little-endian low words
        keep = (uniform16 >= round(self.p * 65536) - 32768).view(-1)[:n].view(x.shape)  # compared in place
        scale = 1.0 / (1.0 - self.p)
        if x.dtype != torch.float32:  # bf16 under autocast: x * keep, then scaled (in float32, rounded once)
            return x * keep.to(x.dtype) * scale
        # float32: x * (keep * scale) is (x * keep) * scale bit for bit (x * 1 = x and x * 0 = ±0 exactly,
        # scale > 0), in one pass forward and one backward instead of two each
        mask = torch.mul(keep, scale, out=torch.empty(keep.shape, dtype=x.dtype))
        return x * mask


def BatchNormalization(channels: int) -> nn.BatchNorm2d:
    """`keras.layers.BatchNormalization` defaults: momentum 0.99 (torch 0.01), epsilon 1e-3."""
    return nn.BatchNorm2d(channels, eps=1e-3, momentum=0.01)


class _FlattenKeepLayout(torch.autograd.Function):
    """`torch.flatten(x, 1)` of a channels_last `x` (a copy into C, H, W order) whose gradient comes back
    channels_last, as `x` is, instead of `flatten`'s contiguous one."""

    @staticmethod
    def forward(ctx, x):
        ctx.shape = x.shape
        return torch.flatten(x, 1)

    @staticmethod
    def backward(ctx, grad):
        return grad.reshape(ctx.shape).contiguous(memory_format=torch.channels_last)


class Flatten(nn.Module):
    """Flatten all but the batch dimension in C, H, W order, for contiguous and channels_last tensors.

    `keep_layout=True` (the seed models' Builder): the gradient of a channels_last input comes back
    channels_last. `flatten`'s own backward returns it contiguous, and the layers before, trained in
    channels_last, then convert: `max_pool2d`'s backward with a contiguous gradient converts its indices and
    its whole [N, C, H, W] input gradient to contiguous and back (three activation-sized copies, ~10 ms of
    a Keras MNIST CNN step on 2 cores) where this is one copy of the smaller gradient. Only for layers whose
    backward gives the same numbers in either layout (elementwise ones, non-overlapping pooling, oneDNN
    convolutions, which convert the gradient to the input's layout anyway): not for BatchNorm, whose
    backward sums in another order per layout, hence not the default (transfer backbones keep `flatten`)."""

    def __init__(self, keep_layout: bool = False):
        super().__init__()
        self.keep_layout = keep_layout

    def forward(self, x):
        if (self.keep_layout and x.dim() == 4 and torch.is_grad_enabled() and x.requires_grad
                and not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last)):
            return _FlattenKeepLayout.apply(x)
        return torch.flatten(x, 1)


def output_features(module: nn.Module, input_shape: Sequence[int]) -> tuple[int, ...]:
    """Shape (without batch) of `module`'s output for one input of `input_shape` (a dry run)."""
    was_training = module.training
    module.eval()
    try:
        with torch.no_grad():
            out = module(torch.zeros(1, *input_shape))
    finally:
        module.train(was_training)
    return tuple(out.shape[1:])


def check_input_shape(model_name: str, input_shape, *, min_hw: int = 1, channels=None) -> tuple[int, int, int]:
    """Validate `(C, H, W)`; raise a one-line UserError otherwise."""
    try:
        shape = tuple(int(v) for v in input_shape)
    except (TypeError, ValueError):
        raise UserError(f"model {model_name!r}: input_shape must be (C, H, W), got {input_shape!r}") from None
    if len(shape) != 3 or min(shape) < 1:
        raise UserError(f"model {model_name!r}: input_shape must be (C, H, W) with positive sizes, got {input_shape!r}")
    c, h, w = shape
    if channels is not None and c not in channels:
        raise UserError(f"model {model_name!r} takes {' or '.join(map(str, channels))} input channels, got {c}")
    if min(h, w) < min_hw:
        raise UserError(
            f"model {model_name!r} needs images of at least {min_hw}x{min_hw}, got {h}x{w}; "
            f"set the dataset's image_size or pick a model for small images"
        )
    return shape


def check_num_outputs(model_name: str, num_outputs) -> int:
    if isinstance(num_outputs, bool) or not isinstance(num_outputs, int) or num_outputs < 1:
        raise UserError(f"model {model_name!r}: num_outputs must be a positive integer, got {num_outputs!r}")
    return num_outputs
