"""From what a study or a caller names (a registered name, `{name = ..., options}`, a `Loss`, a
function, or a `"package.module:attr"` reference) to a `Loss` (`get`), or to the JSON-safe config
a run records and hashes (`resolve`)."""

from __future__ import annotations

import inspect
from typing import Any

from .. import registry
from ..errors import UserError
from .base import FunctionLoss, Loss
from .registration import REGISTRY, class_factory, explicit, function_factory, registered_name


def get(spec_or_obj, /, **options) -> Loss:
    """A `Loss` from a name, a spec dict, a `Loss` (returned as is), a `Loss` subclass, a function
    `(y_true, y_pred) -> per-sample tensor`, or a `"package.module:attr"` reference."""
    spec = spec_or_obj
    if isinstance(spec, Loss):
        if options:
            raise UserError(f"options {sorted(options)} given with a ready loss object {spec!r}; "
                            "pass a name or a class instead")
        return spec
    if isinstance(spec, (dict, str)):
        name, opts, reference = REGISTRY.parse(spec)  # the one name grammar (registry.Registry.parse)
        opts = {**opts, **options}
        if reference:
            return _build(import_reference(name), opts, name)
        return REGISTRY.get(name, **opts)
    if inspect.isclass(spec) or callable(spec):
        return _build(spec, options, reference_of(spec, strict=False))
    raise UserError(f"a loss is a name, a table with a 'name' key, a Loss or a function; got {spec!r}")


def resolve(spec) -> dict[str, Any]:
    """`{"name": canonical_or_reference, **every option made explicit}`, JSON-safe.

    Registered losses resolve to their canonical name; anything else to its importable
    `"package.module:attr"` reference, so that a resumed study or a saved model finds it again."""
    if isinstance(spec, Loss):
        config = {k: v for k, v in spec.get_config().items() if k != "name"}
        target = spec.fn if isinstance(spec, FunctionLoss) else type(spec)
        name = registered_name(target) or reference_of(target, strict=True)
        return _jsonable({"name": name, **config})
    if isinstance(spec, (dict, str)):
        name, options, reference = REGISTRY.parse(spec)
    elif inspect.isclass(spec) or callable(spec):
        name = registered_name(spec) or reference_of(spec, strict=True)
        options, reference = {}, ":" in name
    else:
        raise UserError(f"a loss is a name, a table with a 'name' key, a Loss or a function; got {spec!r}")
    if reference:
        factory = _factory_of(import_reference(name), name)
        _check_options(factory, options, name)
        return _jsonable({"name": name, **explicit(factory, options)})
    return _jsonable(REGISTRY.resolve(name, **options))


# --------------------------------------------------------------------------------------------------
# "package.module:attr" references
# --------------------------------------------------------------------------------------------------
def reference_of(obj, strict: bool) -> str:
    """`"module:qualname"` of `obj`; without an importable name, UserError if `strict`, else its repr."""
    module = getattr(obj, "__module__", None)
    qualname = getattr(obj, "__qualname__", None) or getattr(obj, "__name__", None)
    if not module or not qualname or "<" in qualname:
        if strict:
            raise UserError(f"cannot record loss {obj!r}: it has no importable name; define it at module "
                            "level, or register it with @cnnbench.losses.register(...)")
        return repr(obj)
    return f"{module}:{qualname}"


def import_reference(ref: str):
    """The object `ref` ("package.module:attr") names, imported unless a file being loaded refuses code
    (`registry.check_reference`, e.g. while `saving.load` reads a file the user did not trust)."""
    return registry.import_reference(ref, "loss")


# --------------------------------------------------------------------------------------------------
# Building an unregistered loss (a class, a function or an instance), options checked as the registry does
# --------------------------------------------------------------------------------------------------
def _factory_of(obj, label: str):
    if inspect.isclass(obj):
        if not issubclass(obj, Loss):
            raise UserError(f"loss {label!r} is a class but not a cnnbench.losses.Loss subclass")
        return class_factory(obj)
    if isinstance(obj, Loss):
        def factory():
            return obj
        return factory
    if callable(obj):
        name = getattr(obj, "__name__", "loss")
        return function_factory(obj, name)
    raise UserError(f"loss {label!r} is neither a Loss nor a function (got {type(obj).__name__})")


def _check_options(factory, options, label):
    params = inspect.signature(factory).parameters.values()
    if any(p.kind is p.VAR_KEYWORD for p in params):
        return
    accepted = {p.name for p in params}
    for key in options:
        if key not in accepted:
            allowed = ", ".join(sorted(accepted)) or "none"
            raise UserError(f"loss {label!r} has no option {key!r}; allowed: {allowed}")
    missing = [p.name for p in params if p.default is p.empty and p.kind is not p.VAR_KEYWORD
               and p.name not in options]
    if missing:
        raise UserError(f"loss {label!r} needs option(s) {', '.join(missing)}")


def _build(obj, options, label) -> Loss:
    factory = _factory_of(obj, label)
    _check_options(factory, options, label)
    return factory(**options)


def _jsonable(config: dict[str, Any]) -> dict[str, Any]:
    """`config` with tuples as lists and dict keys as strings; UserError for anything JSON cannot hold."""
    def convert(v):
        if isinstance(v, tuple):
            return [convert(x) for x in v]
        if isinstance(v, list):
            return [convert(x) for x in v]
        if isinstance(v, dict):
            return {str(k): convert(x) for k, x in v.items()}
        if v is None or isinstance(v, (bool, int, float, str)):
            return v
        raise UserError(f"loss option value {v!r} is not JSON-serialisable; use numbers, strings or lists")

    return {k: convert(v) for k, v in config.items()}
