"""Transfer learning on torchvision backbones, the way the seed studies used `keras.applications`.

`vgg16`, `vgg19`, `resnet18`, `resnet50`, `densenet121`, `mobilenet_v3_small` take options:

* `weights`: `"imagenet"` (torchvision's default ImageNet weights, taken from the torch hub cache
  `$TORCH_HOME/hub/checkpoints/` or downloaded; `resolve` records the exact enum member, e.g.
  `"IMAGENET1K_V1"`), a torchvision enum member name, a local `.pth` file with the torchvision model's
  `state_dict`, or `"none"` (random init, Keras-style: glorot-uniform kernels, zero biases).
* `freeze_until`: a layer name; every parameter *before* that layer (in the backbone's order) is frozen
  (`requires_grad = False`) and the BatchNorm layers of the frozen part stay in eval mode, as Keras does
  for non-trainable BN. Keras VGG names work (`block5_conv1`, `block4_pool`), as do torch module names
  from the backbone's `named_modules()` (`layer4`, `features.28`, `features.denseblock4`; a `backbone.`
  prefix is accepted); `"head"` freezes the whole backbone (feature extraction); unset freezes nothing.
* `head`: `"gap"` (GlobalAveragePooling2D + Dense; `hidden_units` > 0 adds Dense(relu) + Dropout first)
  or `"flatten"` (Flatten + Dense(hidden_units, relu) + Dropout(dropout) + Dense; defaults 256 and 0.5).
  With `hidden_units = 0` and `dropout` > 0 the head is pooling + Dropout + Dense.
* `dropout_first`: true puts the Dropout before the hidden Dense, `Flatten/GAP - Dropout - Dense(hidden_units,
  relu) - Dense` (the cats-vs-dogs head of Chollet's book and of Krutov et al.); false (default) after it.
  Left out of `resolve` when false, so the run keys of configs written before it existed do not change.
* `resize`: None (upsize only when the image is smaller than the backbone's minimum, 32x32) or a size
  every input is resized to (e.g. 224, the ImageNet resolution); bilinear.
* `normalize`: ImageNet mean/std normalisation of the [0, 1] input inside `forward` (default true).

Grey input (1 channel) is repeated to RGB inside `forward`.
"""

from __future__ import annotations

import difflib
import os
import re
import socket
from collections import OrderedDict
from typing import Annotated, Literal

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import UserError
from ..registry import Option
from ._base import REGISTRY, Dense, Dropout, Flatten, check_input_shape, check_num_outputs, keras_init_

Weights = Annotated[str | os.PathLike | None, Option("'imagenet' (torchvision's ImageNet weights), 'none' or None "
                                                    "(random), or a .pth file")]
FreezeUntil = Annotated[str | None, Option("freeze every backbone layer before this one (a Keras or torchvision "
                                           "layer name; 'head': the whole backbone; absent: train everything)")]
Head = Annotated[Literal["gap", "flatten"], Option("GlobalAveragePooling2D, or Flatten (Keras' include_top=False "
                                                   "+ Flatten) on the backbone's features")]
TransferUnits = Annotated[int | None, Option("units of a hidden Dense layer in the head (0: none; absent: 256 with "
                                             "head='flatten', else 0)", ge=0)]
TransferDropout = Annotated[float | None, Option("dropout rate in the head (absent: 0.5 with head='flatten', else 0)",
                                                 ge=0, lt=1)]
Resize = Annotated[int | None, Option("resize the images to this size first (absent: only up to the backbone's "
                                      "minimum)", ge=1)]
Normalize = Annotated[bool, Option("normalise with the ImageNet mean and std, as the weights expect")]
DropoutFirst = Annotated[bool, Option("Dropout before the hidden Dense (Krutov et al.'s head) instead of after")]


class _LazyTorchvisionModels:
    # torchvision costs ~90 MB per process; import it only when a transfer model is built.
    def __getattr__(self, name):
        import torchvision.models

        return getattr(torchvision.models, name)


tvm = _LazyTorchvisionModels()

DOWNLOAD_TIMEOUT_S = 60  # per socket operation while fetching ImageNet weights
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

FAMILIES = {
    "vgg16": dict(kind="vgg", builder="vgg16", enum="VGG16_Weights", cfg="D", min_size=32,
                  paper="Simonyan & Zisserman 2015 (arXiv:1409.1556); keras.applications.VGG16"),
    "vgg19": dict(kind="vgg", builder="vgg19", enum="VGG19_Weights", cfg="E", min_size=32,
                  paper="Simonyan & Zisserman 2015 (arXiv:1409.1556); keras.applications.VGG19"),
    "resnet18": dict(kind="resnet", builder="resnet18", enum="ResNet18_Weights", min_size=32,
                     paper="He et al. 2016 (arXiv:1512.03385); torchvision resnet18"),
    "resnet50": dict(kind="resnet", builder="resnet50", enum="ResNet50_Weights", min_size=32,
                     paper="He et al. 2016 (arXiv:1512.03385); keras.applications.ResNet50 / torchvision"),
    "densenet121": dict(kind="densenet", builder="densenet121", enum="DenseNet121_Weights", min_size=32,
                        paper="Huang et al. 2017 (arXiv:1608.06993); keras.applications.DenseNet121"),
    "mobilenet_v3_small": dict(kind="mobilenet", builder="mobilenet_v3_small", enum="MobileNet_V3_Small_Weights",
                               min_size=32, bn_momentum=0.999,
                               paper="Howard et al. 2019 (arXiv:1905.02244); MobileNetV3Small"),
}

# DenseNet checkpoints use the old 'norm.1' key names (torchvision remaps them the same way)
_DENSENET_KEY = re.compile(r"^(.*denselayer\d+\.(?:norm|relu|conv))\."
                           r"((?:[12])\.(?:weight|bias|running_mean|running_var))$")


# --- weights ------------------------------------------------------------------------------------
def _weights_enum(family: str):
    return getattr(tvm, FAMILIES[family]["enum"])


def _is_path(value: str) -> bool:
    return os.sep in value or "/" in value or value.endswith((".pth", ".pt", ".bin")) or os.path.exists(value)


def resolve_weights(family: str, weights) -> str:
    """The explicit form of a `weights` option: "none", an enum member name, or a file path."""
    if weights is None or (isinstance(weights, str) and weights.lower() in ("none", "", "random", "scratch")):
        return "none"
    if not isinstance(weights, str):
        raise UserError(f"model {family!r}: weights must be 'imagenet', 'none' or a file path, got {weights!r}")
    enum = _weights_enum(family)
    if weights.lower() in ("imagenet", "default"):
        return enum.DEFAULT.name
    if weights.upper() in enum.__members__:
        return enum[weights.upper()].name
    if _is_path(weights):
        return weights
    choices = ", ".join(["imagenet", "none", *enum.__members__])
    raise UserError(f"model {family!r}: unknown weights {weights!r}; use one of {choices}, or a path to a .pth file")


def _cached_file(weights_enum_member) -> str:
    return os.path.join(torch.hub.get_dir(), "checkpoints", os.path.basename(weights_enum_member.url))


def _load_imagenet(family: str, member_name: str) -> nn.Module:
    member = _weights_enum(family)[member_name]
    builder = getattr(tvm, FAMILIES[family]["builder"])
    cached = _cached_file(member)
    previous_timeout = socket.getdefaulttimeout()
    if previous_timeout is None and not os.path.isfile(cached):
        socket.setdefaulttimeout(DOWNLOAD_TIMEOUT_S)  # a silent network must not hang the run forever
    try:
        return builder(weights=member, progress=False)
    except Exception as e:  # offline (URLError, OSError), corrupt or partial file (RuntimeError), ...
        where = os.path.dirname(cached)
        first_line = str(e).splitlines()[0] if str(e) else ""
        raise UserError(
            f"cannot load ImageNet weights for {family!r} ({type(e).__name__}: {first_line}); "
            f"put {os.path.basename(cached)} (from {member.url}) into {where}/ (or set $TORCH_HOME), "
            f"or give weights = \"/path/to/file.pth\", or weights = \"none\" to train from scratch"
        ) from None
    finally:
        socket.setdefaulttimeout(previous_timeout)


def _load_file(family: str, path: str) -> nn.Module:
    if not os.path.isfile(path):
        raise UserError(f"model {family!r}: weights file {path!r} does not exist; give the path of a torchvision "
                        f"{family} state_dict (.pth), weights = \"imagenet\", or weights = \"none\"")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise UserError(f"model {family!r}: cannot read weights file {path!r} ({type(e).__name__}); "
                        f"it must be a torch state_dict saved with torch.save") from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise UserError(f"model {family!r}: weights file {path!r} does not hold a state_dict")
    state = {k.removeprefix("module."): v for k, v in state.items()}
    if FAMILIES[family]["kind"] == "densenet":
        state = {(_DENSENET_KEY.sub(r"\1\2", k)): v for k, v in state.items()}
    model = getattr(tvm, FAMILIES[family]["builder"])(weights=None)
    result = model.load_state_dict(state, strict=False)
    head_prefixes = ("fc.", "classifier.")
    missing = [k for k in result.missing_keys if not k.startswith(head_prefixes)]
    if missing or result.unexpected_keys:
        bad = (missing or result.unexpected_keys)[:3]
        raise UserError(f"model {family!r}: weights file {path!r} does not match torchvision's {family} "
                        f"({'missing' if missing else 'unexpected'} keys such as {', '.join(bad)})")
    return model


class _VGGBackbone(nn.Module):
    """Holds VGG's `features` only (names `features.N`, like torchvision's VGG)."""

    def __init__(self, features: nn.Sequential):
        super().__init__()
        self.features = features


def _build_backbone(family: str, weights: str) -> nn.Module:
    spec = FAMILIES[family]
    kind = spec["kind"]
    if weights == "none":
        if kind == "vgg":  # skip the 120M-parameter classifier torchvision would build and initialise
            model = _VGGBackbone(tvm.vgg.make_layers(tvm.vgg.cfgs[spec["cfg"]], batch_norm=False))
        else:
            model = getattr(tvm, spec["builder"])(weights=None)
        fresh = True
    elif _is_path(weights):
        model, fresh = _load_file(family, weights), False
    else:
        model, fresh = _load_imagenet(family, weights), False
    if kind == "vgg":
        backbone = model if isinstance(model, _VGGBackbone) else _VGGBackbone(model.features)
    else:
        backbone = model
        for attr in ("fc", "avgpool", "classifier"):
            if attr in backbone._modules:
                del backbone._modules[attr]
    if fresh:
        keras_init_(backbone)
    return backbone


# --- Keras layer names for VGG -------------------------------------------------------------------
def vgg_keras_names(cfg: str) -> dict[str, str]:
    """`{"block1_conv1": "features.0", ..., "block5_pool": "features.36"}` for VGG config D/E."""
    names, block, conv, index = {}, 1, 1, 0
    for v in tvm.vgg.cfgs[cfg]:
        if v == "M":
            names[f"block{block}_pool"] = f"features.{index}"
            index += 1
            block, conv = block + 1, 1
        else:
            names[f"block{block}_conv{conv}"] = f"features.{index}"
            index += 2  # conv + ReLU
            conv += 1
    return names


def freeze_target(family: str, backbone: nn.Module, freeze_until) -> str | None:
    """The backbone module name `freeze_until` refers to, "" for the whole backbone, or None."""
    if freeze_until is None or freeze_until == "":
        return None
    if not isinstance(freeze_until, str):
        raise UserError(f"model {family!r}: freeze_until must be a layer name, got {freeze_until!r}")
    if freeze_until.lower() in ("head", "top", "all"):
        return ""
    keras = vgg_keras_names(FAMILIES[family]["cfg"]) if FAMILIES[family]["kind"] == "vgg" else {}
    if freeze_until.lower() in keras:
        return keras[freeze_until.lower()]
    name = freeze_until.removeprefix("backbone.")
    modules = dict(backbone.named_modules())
    if name in modules and name:
        return name
    suffixed = [n for n in modules if n.endswith("." + name)]
    if len(suffixed) == 1:  # "denseblock4" for "features.denseblock4"
        return suffixed[0]
    candidates = list(keras) + [n for n in modules if n]
    close = difflib.get_close_matches(freeze_until, candidates, n=3)
    hint = f"did you mean {', '.join(repr(c) for c in close)}? " if close else ""
    if keras:
        use = ("a Keras VGG layer name (block1_conv1 ... block5_pool), "
               f"a torch module name (features.0 ... {list(keras.values())[-1]})")
    else:
        top = ", ".join(n for n in modules if n and "." not in n)
        use = f"a torch module name from named_modules() (top level: {top})"
    raise UserError(f"model {family!r} has no layer {freeze_until!r} to freeze until; {hint}use {use}, or 'head'")


# --- the model ----------------------------------------------------------------------------------
class TransferNet(nn.Module):
    """Input adaptation -> torchvision backbone -> Keras-style head. Outputs raw logits."""

    def __init__(self, family, backbone, input_shape, num_outputs, *, head, hidden_units, dropout,
                 resize, normalize, freeze_until, weights, dropout_first=False):
        super().__init__()
        self.model_name = family
        self.family = family
        self.kind = FAMILIES[family]["kind"]
        self.in_channels = input_shape[0]
        self.min_size = FAMILIES[family]["min_size"]
        self.resize = resize
        self.normalize = bool(normalize)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        self.backbone = backbone
        # Keras' BatchNormalization momentum (0.99 in keras.applications' ResNet50 and DenseNet121, 0.999
        # in MobileNetV3) where torchvision uses 0.1 / 0.01 (torch counts momentum the other way round).
        # The epsilons stay torchvision's: the pretrained weights were trained with them.
        keras_momentum = FAMILIES[family].get("bn_momentum", 0.99)
        for module in backbone.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                module.momentum = 1.0 - keras_momentum
        self.frozen_batchnorm: list[str] = []
        self._freeze(freeze_target(family, backbone, freeze_until))

        # size the head with one dry run of the backbone
        was_training = self.training
        self.eval()
        with torch.no_grad():
            feats = self.features(torch.zeros(1, *input_shape))
        self.train(was_training)  # TransferNet.train: the frozen part's BatchNorm stays in eval mode
        channels, h, w = feats.shape[1:]
        layers: OrderedDict[str, nn.Module] = OrderedDict()
        if head == "gap":
            layers["global_average_pooling2d"] = nn.AdaptiveAvgPool2d(1)
            layers["flatten"] = Flatten()
            width = channels
        else:
            layers["flatten"] = Flatten()
            width = channels * h * w
        if dropout and dropout_first:
            layers["dropout"] = Dropout(float(dropout))
        if hidden_units:
            layers["dense"] = Dense(width, int(hidden_units), "relu")
            width = int(hidden_units)
        if dropout and not dropout_first:
            layers["dropout"] = Dropout(float(dropout))
        layers["dense_1" if hidden_units else "dense"] = Dense(width, num_outputs)
        self.head = nn.Sequential(layers)

    def _freeze(self, target: str | None):
        if target is None:
            return
        for name, module in self.backbone.named_modules():
            if target and name == target:
                break
            for p in module.parameters(recurse=False):
                p.requires_grad_(False)
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                self.frozen_batchnorm.append(name)
        self.train(self.training)

    def train(self, mode: bool = True):
        super().train(mode)
        if mode and self.frozen_batchnorm:
            modules = dict(self.backbone.named_modules())
            for name in self.frozen_batchnorm:
                modules[name].eval()
        return self

    def adapt(self, x: torch.Tensor) -> torch.Tensor:
        """[0, 1] input -> what the backbone expects: RGB, at least min_size, ImageNet-normalised."""
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        h, w = x.shape[-2:]
        size = (int(self.resize), int(self.resize)) if self.resize else (max(h, self.min_size), max(w, self.min_size))
        if size != (h, w):
            x = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
        if self.normalize:
            x = (x - self.mean) / self.std
        return x

    def features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.adapt(x)
        b = self.backbone
        if self.kind == "resnet":
            x = b.maxpool(b.relu(b.bn1(b.conv1(x))))
            return b.layer4(b.layer3(b.layer2(b.layer1(x))))
        if self.kind == "densenet":
            return F.relu(b.features(x))
        return b.features(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def _resolve_options(family):
    def resolve(weights="imagenet", freeze_until=None, head="gap", hidden_units=None, dropout=None,
                resize=None, normalize=True, dropout_first=False):
        if head not in ("gap", "flatten"):
            raise UserError(f"model {family!r}: head must be 'gap' or 'flatten', got {head!r}")
        if hidden_units is None:
            hidden_units = 256 if head == "flatten" else 0
        if dropout is None:
            dropout = 0.5 if head == "flatten" else 0.0
        if isinstance(hidden_units, bool) or not isinstance(hidden_units, int) or hidden_units < 0:
            raise UserError(f"model {family!r}: hidden_units must be an integer >= 0, got {hidden_units!r}")
        if not isinstance(dropout, (int, float)) or not 0 <= dropout < 1:
            raise UserError(f"model {family!r}: dropout must be in [0, 1), got {dropout!r}")
        if resize is not None and (isinstance(resize, bool) or not isinstance(resize, int)
                                   or resize < FAMILIES[family]["min_size"]):
            raise UserError(f"model {family!r}: resize must be an image size >= {FAMILIES[family]['min_size']}, "
                            f"got {resize!r}")
        if not isinstance(dropout_first, bool):
            raise UserError(f"model {family!r}: dropout_first must be true or false, got {dropout_first!r}")
        if dropout_first and not (hidden_units and dropout):
            raise UserError(f"model {family!r}: dropout_first places the Dropout before the hidden Dense; it needs "
                            f"hidden_units > 0 and dropout > 0 (got {hidden_units} and {dropout}), or drop it")
        out = {"weights": resolve_weights(family, weights), "freeze_until": freeze_until, "head": head,
               "hidden_units": hidden_units, "dropout": float(dropout), "resize": resize,
               "normalize": bool(normalize)}
        if dropout_first:  # only when set: configs without it keep their run keys
            out["dropout_first"] = True
        return out

    return resolve


def _register(family):
    resolve = _resolve_options(family)

    def factory(input_shape, num_outputs, *, weights: Weights = "imagenet", freeze_until: FreezeUntil = None,
                head: Head = "gap", hidden_units: TransferUnits = None, dropout: TransferDropout = None,
                resize: Resize = None, normalize: Normalize = True, dropout_first: DropoutFirst = False):
        opts = resolve(weights, freeze_until, head, hidden_units, dropout, resize, normalize, dropout_first)
        check_input_shape(family, input_shape, channels=(1, 3))
        check_num_outputs(family, num_outputs)
        backbone = _build_backbone(family, opts["weights"])
        return TransferNet(family, backbone, tuple(int(v) for v in input_shape), num_outputs, **opts)

    factory.__name__ = family
    factory.__doc__ = f"{family} backbone from torchvision (ImageNet weights optional) with a Keras-style head."
    aliases = {"mobilenet_v3_small": ["mobilenetv3small"]}.get(family, [])
    REGISTRY.register(family, aliases=aliases, resolve=resolve, transfer=True, min_input=(1, 8, 8),
                      paper=FAMILIES[family]["paper"])(factory)


for _family in FAMILIES:
    _register(_family)
