"""Callbacks a study names (`callbacks = [{ name = "EarlyStopping", patience = 3 }]`, or a class of the
user's, `{ name = "package.module:Class", options }`): checked when the study is parsed, built for each
run. A built-in callback is an entry of the `cnnbench.callbacks` registry (its options declared and
checked as every registry's, the config made explicit); a user's class is any class with the hooks
`fit` calls (duck-typed, as `cnnbench.Callback` defines them), so the spec does not depend on the engine."""

from __future__ import annotations

from typing import Any

from ..errors import UserError
from ..registry import import_reference, is_reference
from .families import family

# The methods fit calls on a callback (cnnbench.Callback has them all)
HOOKS = ("on_train_begin", "on_epoch_begin", "on_epoch_end", "on_train_end", "state_dict", "load_state_dict")


def resolve_callback(spec: dict[str, Any]) -> dict[str, Any]:
    """`{"name": "package.module:Class", **options}` checked: the class imports, is a
    `cnnbench.Callback`, and takes the options (it is built once here and discarded)."""

    if not isinstance(spec, dict) or not isinstance(spec.get("name"), str):
        raise UserError(f"a callback is {{ name = \"package.module:Class\", options }}, got {spec!r}")
    name = spec["name"]
    options = {k: v for k, v in spec.items() if k != "name"}
    if not is_reference(name):  # a built-in callback: its registry entry, every option made explicit
        return family("callbacks").REGISTRY.resolve(name, **options)
    cls = import_callback(name)
    try:
        cls(**options)
    except TypeError as e:
        raise UserError(f"callback {name!r} does not take these options ({e}); check its __init__") from None
    return {"name": name, **options}


def import_callback(ref: str):
    """The callback class `ref` ("package.module:Class") names: a class with every hook of `HOOKS`."""
    obj = import_reference(ref, "callback", "package.module:Class")
    missing = [h for h in HOOKS if not callable(getattr(obj, h, None))] if isinstance(obj, type) else list(HOOKS)
    if missing:
        raise UserError(f"callback {ref!r} is not a subclass of cnnbench.Callback (it has no {', '.join(missing)}); "
                        "derive it from cnnbench.Callback (on_epoch_end, state_dict, load_state_dict)")
    return obj


def build_callbacks(specs) -> list:
    """The callbacks of a run's config, instantiated with their options."""
    out = []
    for spec in specs or ():
        options = {k: v for k, v in spec.items() if k != "name"}
        if is_reference(spec["name"]):
            out.append(import_callback(spec["name"])(**options))
        else:
            out.append(family("callbacks").REGISTRY.get(spec["name"], **options))
    return out
