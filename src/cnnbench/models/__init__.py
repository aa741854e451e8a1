"""Model zoo: `get(spec, input_shape=..., num_outputs=...)`, `resolve(spec)`, `summary(model, shape)`.

A spec is a registered name (`"keras_mnist_cnn"`), a table with a `name` key plus options
(`{"name": "vgg19", "freeze_until": "block5_conv1"}`), or a `"package.module:attr"` reference to a
custom `nn.Module` subclass or factory called as `attr(input_shape=..., num_outputs=..., **options)`.
Every model takes float input in [0, 1] shaped `[N, C, H, W]` (contiguous or channels_last) and
returns raw outputs (logits) shaped `[N, num_outputs]`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torch import nn

from ..errors import UserError
from ..registry import import_reference, split_spec
from . import resnet_cifar, seeds, transfer  # noqa: F401  (registering)
from ._base import REGISTRY
from .summary import count_params, summary

__all__ = ["REGISTRY", "get", "resolve", "summary", "count_params", "list_models"]

_RESERVED = ("input_shape", "num_outputs")


def _json_safe(value):
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise UserError(f"model option value {value!r} is not JSON-safe; use numbers, strings, lists or tables")


def _is_reference(name: str) -> bool:
    return ":" in name and not name.startswith(("/", ".")) and "/" not in name.split(":", 1)[0]


def _import_reference(ref: str):
    obj = import_reference(ref, "model")  # refused while loading a file the user did not trust (saving.load)
    if not callable(obj):
        raise UserError(f"model {ref!r} is not a class or function")
    return obj


def _split(spec) -> tuple[str, dict[str, Any]]:
    name, options = split_spec(spec)
    for key in _RESERVED:
        if key in options:
            raise UserError(
                f"model option {key!r} is set by the run (from the dataset and the loss); remove it from the model spec"
            )
    return name, options


def resolve(spec) -> dict[str, Any]:
    """`{"name": canonical, **every option explicit}` (JSON-safe; what goes into a run's config)."""
    name, options = _split(spec)
    if _is_reference(name):
        _import_reference(name)
        return {"name": name, **_json_safe(options)}
    return _json_safe(REGISTRY.resolve(name, **options))


def get(spec, *, input_shape: Sequence[int], num_outputs: int) -> nn.Module:
    """Build the model for `input_shape = (C, H, W)` with `num_outputs` raw output units.

    The model remembers how it was built in `model.cnnbench_model` (`{"model": resolve(spec),
    "input_shape": [C, H, W], "num_outputs": n}`), which `cnnbench.saving.save` stores."""
    if isinstance(spec, nn.Module):
        return spec
    name, options = _split(spec)
    try:
        shape = tuple(int(v) for v in input_shape)
    except (TypeError, ValueError):
        raise UserError(f"input_shape must be (C, H, W), got {input_shape!r}") from None
    if len(shape) != 3:
        raise UserError(f"input_shape must be (C, H, W), got {input_shape!r}")
    if _is_reference(name):
        factory = _import_reference(name)
        model = factory(input_shape=shape, num_outputs=int(num_outputs), **options)
        if not isinstance(model, nn.Module):
            raise UserError(f"model {name!r} returned {type(model).__name__}, not a torch.nn.Module")
    else:
        model = REGISTRY.get(name, input_shape=shape, num_outputs=num_outputs, **options)
    model.cnnbench_model = {"model": resolve(spec), "input_shape": list(shape), "num_outputs": int(num_outputs)}
    return model


def list_models() -> list[str]:
    return REGISTRY.list()
