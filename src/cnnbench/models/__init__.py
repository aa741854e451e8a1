"""Model zoo: `get(spec, input_shape=..., num_outputs=...)`, `resolve(spec)`, `summary(model, shape)`.

A spec is a registered name (`"keras_mnist_cnn"`), a table with a `name` key plus options
(`{"name": "vgg19", "freeze_until": "block5_conv1"}`), or a `"package.module:attr"` reference to a
custom `nn.Module` subclass or factory called as `attr(input_shape=..., num_outputs=..., **options)`.
Every model takes float input in [0, 1] shaped `[N, C, H, W]` (contiguous or channels_last) and
returns raw outputs (logits) shaped `[N, num_outputs]`.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Sequence
from typing import Any

from torch import nn

from ..errors import UserError
from ..registry import Parsed, import_reference
from . import resnet_cifar, seeds, transfer  # noqa: F401  (registering)
from ._base import REGISTRY
from .record import ModelRecord, attach
from .summary import count_params, summary

__all__ = ["REGISTRY", "get", "resolve", "summary", "count_params", "list_models", "check_input"]

_RESERVED = ("input_shape", "num_outputs")


def _json_safe(value):
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise UserError(f"model option value {value!r} is not JSON-safe; use numbers, strings, lists or tables")


def _import_reference(ref: str):
    obj = import_reference(ref, "model")  # refused while loading a file the user did not trust (saving.load)
    if not callable(obj):
        raise UserError(f"model {ref!r} is not a class or function")
    return obj


def _parse(spec) -> Parsed:
    parsed = REGISTRY.parse(spec)  # the one name grammar (registry.Registry.parse)
    for key in _RESERVED:
        if key in parsed.options:
            raise UserError(
                f"model option {key!r} is set by the run (from the dataset and the loss); remove it from the model spec"
            )
    return parsed


def resolve(spec) -> dict[str, Any]:
    """`{"name": canonical, **every option explicit}` (JSON-safe; what goes into a run's config)."""
    name, options, reference = _parse(spec)
    if reference:
        _import_reference(name)
        return {"name": name, **_json_safe(options)}
    return _json_safe(REGISTRY.resolve(name, **options))


class MultiHead(nn.Module):
    """A registry model with several outputs (Keras' functional model with one Dense head per output on
    the shared features): the model is built with the heads' units side by side in its last layer, and
    `forward` returns `{name: logits[:, its units]}`. The slices are exactly separate Dense heads on the
    same features; only their initial scale differs from separate layers (Glorot's fan-out is the sum)."""

    def __init__(self, base: nn.Module, units: dict[str, int]):
        super().__init__()
        self.base = base
        self.units = dict(units)
        if hasattr(base, "regularization_loss"):  # the base's weight penalty, as evaluate() looks for it
            self.regularization_loss = base.regularization_loss

    def forward(self, x):
        return dict(zip(self.units, self.base(x).split(list(self.units.values()), dim=1)))


def _check_heads(num_outputs) -> dict[str, int]:
    if not num_outputs or not all(isinstance(k, str) and isinstance(v, int) and not isinstance(v, bool) and v >= 1
                                  for k, v in num_outputs.items()):
        raise UserError(f"num_outputs per output must be {{name: units >= 1}}, got {num_outputs!r}")
    return {k: int(v) for k, v in num_outputs.items()}


def get(spec, *, input_shape: Sequence[int], num_outputs: int | dict[str, int]) -> nn.Module:
    """Build the model for `input_shape = (C, H, W)` with `num_outputs` raw output units.

    `num_outputs` a dict `{name: units}` builds a model with several outputs whose `forward` returns a
    dict: a registry model gets one head per output (`MultiHead`); a `"package.module:attr"` factory is
    called with the dict and must return such a model.

    The model remembers how it was built in its record, `model.cnnbench.built` (`models.record`:
    `{"model": resolve(spec), "input_shape": [C, H, W], "num_outputs": n}`), which
    `cnnbench.store.model_files.save` stores."""
    if isinstance(spec, nn.Module):
        return spec
    heads = _check_heads(num_outputs) if isinstance(num_outputs, dict) else None
    name, options, reference = _parse(spec)
    try:
        shape = tuple(int(v) for v in input_shape)
    except (TypeError, ValueError):
        raise UserError(f"input_shape must be (C, H, W), got {input_shape!r}") from None
    if len(shape) != 3:
        raise UserError(f"input_shape must be (C, H, W), got {input_shape!r}")
    if reference:
        factory = _import_reference(name)
        model = factory(input_shape=shape, num_outputs=heads or int(num_outputs), **options)  # type: ignore[arg-type]
        if not isinstance(model, nn.Module):
            raise UserError(f"model {name!r} returned {type(model).__name__}, not a torch.nn.Module")
    elif heads is not None:
        model = MultiHead(REGISTRY.get(name, input_shape=shape, num_outputs=sum(heads.values()), **options), heads)
    else:
        model = REGISTRY.get(name, input_shape=shape, num_outputs=num_outputs, **options)
    attach(model, ModelRecord(built={"model": resolve(spec), "input_shape": list(shape),
                                     "num_outputs": heads or int(num_outputs)}))
    return model


def check_input(spec, input_shape: Sequence[int], where: str = "") -> None:
    """Raise the `UserError` building a registry model for `input_shape` would raise (images smaller
    than the model takes: `digits_cnn` needs 6x6, `lenet5` 12x12, `krutov_cnn` 46x46, ...), without
    building it: the model is made on torch's meta device (no memory, no weights downloaded; a transfer
    model is checked with `weights = "none"`). `runner.plan` calls it for every run, so a dataset too small
    for its model is refused before anything is written. A `"package.module:attr"` model is not built
    here (its code runs in the run). Any other error is left to the run, which reports it. `where`
    (e.g. the study file and the dataset) starts the message."""
    try:
        _check_input(json.dumps(resolve(spec), sort_keys=True), tuple(int(v) for v in input_shape))
    except UserError as e:
        raise UserError(f"{where}: {e}" if where else str(e)) from None


@functools.lru_cache(maxsize=256)  # once per model and image size, not once per seed
def _check_input(spec_json: str, shape: tuple[int, ...]) -> None:
    import torch

    spec = json.loads(spec_json)
    if REGISTRY.parse(spec).reference:
        return
    if REGISTRY.entry(spec["name"]).info.get("transfer"):
        spec = {**spec, "weights": "none"}
    try:
        with torch.device("meta"):
            get(spec, input_shape=shape, num_outputs=2)
    except UserError:
        raise
    except Exception:  # not an input check: the run builds the model and reports it)
        pass


def list_models() -> list[str]:
    return REGISTRY.list()
