"""ResNet v1 / v2 for small images, exactly as in the Keras `cifar10_resnet.py` example.

* v1 (He et al. 2016, "Deep Residual Learning for Image Recognition", arXiv:1512.03385): depth 6n+2,
  stacks of 2 x (3x3 Conv-BN-ReLU), ReLU after the addition, 1x1 projection shortcuts (no BN) where the
  stage halves the size and doubles the filters (16, 32, 64).
* v2 (He et al. 2016, "Identity Mappings in Deep Residual Networks", arXiv:1603.05027): depth 9n+2,
  pre-activation bottleneck units (1x1)-(3x3)-(1x1) BN-ReLU-Conv, 1x1 projection shortcut in the first
  unit of each stage, filters 16 -> 64, 128, 256; BN-ReLU before the pooling.

Like the example: every Conv2D has a bias, he_normal kernels and an L2(1e-4) kernel penalty (exposed as
`model.regularization_loss()`, which the engine adds to the training loss), BatchNorm with Keras'
defaults, and a he_normal Dense classifier. The example's `AveragePooling2D(8)` is a global average
pool at 32x32; here the pool is always global so any input size >= 1 works (the parameter count is the
same for 32x32 input).
"""

from __future__ import annotations

from typing import Annotated, Literal

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import UserError
from ..registry import Option
from ._base import L2, REGISTRY, BatchNormalization, Conv2D, Dense, Flatten, check_input_shape, check_num_outputs

Depth = Annotated[int, Option("layers: 6n+2 for version 1 (20, 32, 44, 56, 110), 9n+2 for version 2 (20, 29, 56, "
                              "110, 164)", ge=8, strict=True)]
Version = Annotated[Literal[1, 2], Option("1: He et al. 2016a (post-activation); 2: 2016b (pre-activation, "
                                          "bottleneck)")]


class ResnetLayer(nn.Module):
    """The example's `resnet_layer`: Conv-BN-Act (conv_first) or BN-Act-Conv."""

    def __init__(self, in_channels, num_filters=16, kernel_size=3, strides=1, activation="relu",
                 batch_normalization=True, conv_first=True):
        super().__init__()
        self.conv_first = conv_first
        self.conv = Conv2D(in_channels, num_filters, kernel_size, strides, "same", kernel_initializer="he_normal")
        bn_channels = num_filters if conv_first else in_channels
        self.bn = BatchNormalization(bn_channels) if batch_normalization else None
        self.relu = activation == "relu"
        if activation not in (None, "relu"):
            raise ValueError(activation)

    def _bn_act(self, x):
        if self.bn is not None:
            x = self.bn(x)
        return F.relu(x) if self.relu else x

    def forward(self, x):
        if self.conv_first:
            return self._bn_act(self.conv(x))
        return self.conv(self._bn_act(x))


class BasicBlockV1(nn.Module):
    def __init__(self, in_channels, filters, strides):
        super().__init__()
        self.conv_a = ResnetLayer(in_channels, filters, strides=strides)
        self.conv_b = ResnetLayer(filters, filters, activation=None)
        self.shortcut = (ResnetLayer(in_channels, filters, 1, strides, None, batch_normalization=False)
                         if strides != 1 or in_channels != filters else None)

    def forward(self, x):
        y = self.conv_b(self.conv_a(x))
        if self.shortcut is not None:
            x = self.shortcut(x)
        return F.relu(x + y)


class BottleneckV2(nn.Module):
    def __init__(self, in_channels, filters_in, filters_out, strides, activation, batch_normalization, project):
        super().__init__()
        self.conv_a = ResnetLayer(in_channels, filters_in, 1, strides, activation, batch_normalization,
                                  conv_first=False)
        self.conv_b = ResnetLayer(filters_in, filters_in, conv_first=False)
        self.conv_c = ResnetLayer(filters_in, filters_out, 1, conv_first=False)
        self.shortcut = (ResnetLayer(in_channels, filters_out, 1, strides, None, batch_normalization=False)
                         if project else None)

    def forward(self, x):
        y = self.conv_c(self.conv_b(self.conv_a(x)))
        if self.shortcut is not None:
            x = self.shortcut(x)
        return x + y


class KerasCifarResNet(nn.Module):
    def __init__(self, input_shape, num_outputs, depth=20, version=1, l2=1e-4):
        super().__init__()
        self.model_name = f"resnet{depth}" + ("_v2" if version == 2 else "")
        self.version = version
        self.l2 = float(l2)
        channels = input_shape[0]
        if version == 1:
            num_res_blocks = (depth - 2) // 6
            self.stem = ResnetLayer(channels, 16)
            stages, in_ch, filters = [], 16, 16
            for stage in range(3):
                blocks = []
                for res_block in range(num_res_blocks):
                    strides = 2 if stage > 0 and res_block == 0 else 1
                    blocks.append(BasicBlockV1(in_ch, filters, strides))
                    in_ch = filters
                stages.append(nn.Sequential(*blocks))
                filters *= 2
            self.stages = nn.Sequential(*stages)
            self.final_bn = None
        else:
            num_res_blocks = (depth - 2) // 9
            filters_in = 16
            self.stem = ResnetLayer(channels, filters_in, conv_first=True)
            stages, in_ch = [], filters_in
            for stage in range(3):
                blocks = []
                for res_block in range(num_res_blocks):
                    activation, batch_normalization, strides = "relu", True, 1
                    if stage == 0:
                        filters_out = filters_in * 4
                        if res_block == 0:  # right after the stem's Conv-BN-ReLU
                            activation, batch_normalization = None, False
                    else:
                        filters_out = filters_in * 2
                        if res_block == 0:
                            strides = 2
                    blocks.append(BottleneckV2(in_ch, filters_in, filters_out, strides, activation,
                                               batch_normalization, project=res_block == 0))
                    in_ch = filters_out
                stages.append(nn.Sequential(*blocks))
                filters_in = filters_out
            self.stages = nn.Sequential(*stages)
            self.final_bn = BatchNormalization(in_ch)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = Flatten()
        self.dense = Dense(in_ch, num_outputs, kernel_initializer="he_normal")

    def forward(self, x):
        x = self.stages(self.stem(x))
        if self.final_bn is not None:
            x = F.relu(self.final_bn(x))
        return self.dense(self.flatten(self.pool(x)))

    def regularization_loss(self) -> torch.Tensor:
        """The example's `kernel_regularizer=l2(l2)` on every Conv2D kernel: l2 * sum(w ** 2)."""
        kernels = [m.weight for m in self.modules() if isinstance(m, nn.Conv2d)]
        if self.l2 == 0 or not kernels:
            return torch.zeros((), device=kernels[0].device if kernels else None)
        return self.l2 * sum(w.pow(2).sum() for w in kernels)


def _check_depth(depth, version):
    if version not in (1, 2):
        raise UserError(f"resnet version must be 1 or 2, got {version!r}")
    if isinstance(depth, bool) or not isinstance(depth, int):
        raise UserError(f"resnet depth must be an integer, got {depth!r}")
    if version == 1 and (depth < 8 or (depth - 2) % 6):
        raise UserError(f"ResNet v1 depth must be 6n+2 (20, 32, 44, 56, 110, ...), got {depth}")
    if version == 2 and (depth < 11 or (depth - 2) % 9):
        raise UserError(f"ResNet v2 depth must be 9n+2 (20, 29, 56, 110, 164, ...), got {depth}")


def _build(input_shape, num_outputs, depth, version, l2):
    _check_depth(depth, version)
    name = f"resnet{depth}" + ("_v2" if version == 2 else "")
    check_input_shape(name, input_shape)
    check_num_outputs(name, num_outputs)
    if isinstance(l2, bool) or not isinstance(l2, (int, float)) or not l2 >= 0:
        raise UserError(f"model {name!r}: l2 must be a number >= 0, got {l2!r}")
    return KerasCifarResNet(tuple(input_shape), num_outputs, depth, version, l2)


_PAPER_V1 = "He et al. 2016 (arXiv:1512.03385) via Keras examples/cifar10_resnet.py"
_PAPER_V2 = "He et al. 2016 (arXiv:1603.05027) via Keras examples/cifar10_resnet.py"


@REGISTRY.register("resnet_cifar", aliases=["keras_cifar10_resnet"], min_input=(3, 8, 8), paper=_PAPER_V1)
def resnet_cifar(input_shape, num_outputs, *, depth: Depth = 20, version: Version = 1, l2: L2 = 1e-4):
    """Keras cifar10_resnet example, any depth: v1 depth 6n+2, v2 depth 9n+2."""
    return _build(input_shape, num_outputs, depth, version, l2)


def _register(depth, version):
    name = f"resnet{depth}" + ("_v2" if version == 2 else "")
    aliases = [f"resnet{depth}v{version}", f"resnet{depth}_v{version}"] if version == 1 else [f"resnet{depth}v2"]

    def factory(input_shape, num_outputs, *, l2: L2 = 1e-4):
        return _build(input_shape, num_outputs, depth, version, l2)

    factory.__name__ = name
    factory.__doc__ = (f"ResNet{depth} v{version} of the Keras cifar10_resnet example "
                       f"(n={(depth - 2) // (6 if version == 1 else 9)}).")
    REGISTRY.register(name, aliases=aliases, min_input=(3, 8, 8), depth=depth, version=version,
                      paper=_PAPER_V1 if version == 1 else _PAPER_V2)(factory)


for _d in (20, 32, 44, 56, 110):
    _register(_d, 1)
for _d in (20, 29, 56, 110, 164):
    _register(_d, 2)
