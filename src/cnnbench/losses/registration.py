"""The loss registry and how a loss gets into it: a `Loss` class (its constructor's keyword
arguments are its options) or a function `(y_true, y_pred, **options) -> per-sample tensor`."""

from __future__ import annotations

import inspect
from typing import Any

from ..errors import UserError
from ..registry import Registry, with_defaults
from .base import FunctionLoss, Loss, snake
from .options import SHARED

REGISTRY = Registry("loss", plural="losses", shared=SHARED, references=True)


def register(name: str | None = None, *, aliases=(), summary: str = "", labels: str = "one_hot",
             inputs: str = "probabilities", binary: bool = False, binary_only: bool = False):
    """Decorator: register a custom loss, a function or a `Loss` subclass.

        @cnnbench.losses.register("my_loss", summary="Use it when ...")
        def my_loss(y_true, y_pred, margin=0.5):      # -> per-sample tensor [N]
            ...

    A function gets one-hot `y_true` and softmax `y_pred` during training unless
    `labels="sparse"` / `inputs="logits"` say otherwise; its keyword parameters become options.
    A `Loss` subclass declares the same with class attributes."""

    def decorator(obj):
        canonical = name or (obj.__name__ if inspect.isfunction(obj) else snake(obj.__name__))
        if inspect.isclass(obj):
            if not issubclass(obj, Loss):
                raise TypeError(f"{obj!r} is not a cnnbench.losses.Loss subclass")
            register_class(obj, canonical, aliases, summary)
        else:
            factory = function_factory(obj, canonical, labels, inputs, binary, binary_only)
            REGISTRY.register(canonical, aliases=aliases, summary=summary, loss_fn=obj)(factory)
        return obj

    return decorator


def register_class(cls, name, aliases=(), summary=""):
    """Register a Loss class: its constructor's keyword arguments are the options."""
    factory = class_factory(cls)
    factory.__name__ = name
    REGISTRY.register(name, aliases=aliases, summary=summary, loss_class=cls,
                      resolve=lambda **options: explicit(factory, options))(factory)
    return cls


def registered_name(obj) -> str | None:
    """The canonical name `obj` (a Loss class or a loss function) is registered under, if any."""
    for entry in REGISTRY:
        if entry.info.get("loss_class") is obj or entry.info.get("loss_fn") is obj:
            return entry.name
    return None


def class_factory(cls):
    """A factory whose signature is the Loss class's constructor (what Registry reads)."""

    def factory(**options):
        return cls(**options)

    factory.__signature__ = inspect.signature(cls)
    factory.__wrapped__ = cls.__init__  # where the option annotations are (registry.declared_options)
    factory.__name__ = cls.__name__
    factory.__doc__ = cls.__doc__
    return factory


def function_factory(fn, name, labels="one_hot", inputs="probabilities", binary=False, binary_only=False):
    """A factory of `FunctionLoss(fn)` whose signature is `reduction` plus `fn`'s options."""
    params = _function_options(fn)

    def factory(reduction="sum_over_batch_size", **options):
        return FunctionLoss(fn, reduction=reduction, name=name, labels=labels, inputs=inputs,
                            binary=binary, binary_only=binary_only, **options)

    factory.__signature__ = inspect.Signature(
        [inspect.Parameter("reduction", inspect.Parameter.KEYWORD_ONLY, default="sum_over_batch_size"), *params]
    )
    factory.__wrapped__ = fn  # where the option annotations are (registry.declared_options)
    factory.__name__ = name
    factory.__doc__ = fn.__doc__
    return factory


def _function_options(fn) -> list[inspect.Parameter]:
    """Keyword parameters of a loss function after (y_true, y_pred)."""
    try:
        params = list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):
        return []
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    if len(positional) < 2:
        raise UserError(f"a loss function takes (y_true, y_pred, ...); {fn!r} takes {len(positional)} arguments")
    out = []
    for p in params[2:]:
        if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and p.name != "reduction":
            out.append(inspect.Parameter(p.name, inspect.Parameter.KEYWORD_ONLY, default=p.default))
        elif p.kind is p.VAR_KEYWORD:
            out.append(inspect.Parameter(p.name, inspect.Parameter.VAR_KEYWORD))
    return out


def defaults(factory) -> dict[str, Any]:
    """The keyword defaults of `factory`'s signature."""
    return {p.name: p.default for p in inspect.signature(factory).parameters.values()
            if p.default is not p.empty and p.kind is not p.VAR_KEYWORD}


def explicit(factory, options) -> dict[str, Any]:
    """Every option of `factory` made explicit, without `name` (display only, not part of a run)."""
    return {k: v for k, v in with_defaults(defaults(factory), options).items() if k != "name"}
