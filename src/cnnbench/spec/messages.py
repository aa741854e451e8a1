"""The one-line messages for a key a study does not have: which keys it allows, and the fix for an
optimizer's hyperparameter written as a key of its own (`learning_rate = 1e-3`)."""

from __future__ import annotations

from ..errors import did_you_mean
from .families import family


def unknown_key(key: str, allowed, where: str) -> str:
    if "optimizer" in allowed and is_optimizer_option(key):
        lr = key in ("learning_rate", "lr")
        example = "1e-3" if lr else "..."
        return (f"{key!r} is an option of the optimizer, not a key of its own; write optimizer = {{ name = \"adam\", "
                f"{key} = {example} }}, or compare values with [grid] optimizer = [{{ name = \"adam\", {key} = "
                f"{'1e-3' if lr else '...'} }}, {{ name = \"adam\", {key} = {'1e-4' if lr else '...'} }}]"
                + (", or search learning rates with a [tuning] section (learning_rates = [...])" if lr else ""))
    hint = did_you_mean(key, allowed)
    return f"unknown key {key!r} for {where}; {hint}allowed: {', '.join(allowed)}"


def is_optimizer_option(key: str) -> bool:
    """A hyperparameter some optimizer takes (a user who wrote `learning_rate` as a run key)."""
    return key in family("optim").option_names()
