"""Written values → resolved configs: each run key resolved once through the registry its table names
(`RESOLVERS`), every default made explicit, an error naming the value's place in the file."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pydantic import BaseModel

from .. import metrics
from ..errors import UserError
from ..registry import split_spec
from .callbacks import resolve_callback
from .families import family
from .grid import canonical
from .schema import OPTIONAL_KEYS, RUN_DEFAULTS, RUN_KEYS, EarlyStoppingSpec
from .targets import resolve_targets


def _named(family_name: str) -> Callable[[Any], Any]:
    """A key whose value is an entry of a family's registry: a name, or a table with its name and options."""
    def resolve_named(value: Any) -> Any:
        name, options = split_spec(value)
        return family(family_name).resolve({"name": name, **options})
    return resolve_named


def _loss(value: Any) -> Any:
    """One loss, or with several outputs a table of one loss per output name."""
    if not (isinstance(value, dict) and "name" not in value):
        return _named("losses")(value)
    if not value:
        raise UserError("loss is an empty table; give a loss name, or one loss per output of targets")
    return {out: family("losses").resolve({"name": n, **o}) for out, (n, o) in
            ((out, split_spec(v)) for out, v in value.items())}


def _augmentation(value: Any) -> Any:
    return family("data.augment").resolve(value) if value else None


def _early_stopping(value: Any) -> Any:
    return EarlyStoppingSpec.model_validate(value).model_dump() if value else None


def _metrics(value: Any) -> Any:
    """Every name known, every reference importable and callable; accuracy (always recorded) left out.
    A table (per output) is checked against targets by `checks.metrics_per_output`."""
    if isinstance(value, dict):
        per = {out: [v] if isinstance(v, str) else v for out, v in value.items()}
        for out, specs in per.items():
            if not isinstance(specs, list) or not all(isinstance(v, str) for v in specs):
                raise UserError(f"metrics of output {out!r} must be a metric name or a list of names, "
                                f"got {specs!r}; e.g. {{ {out} = [\"macro_f1\"] }}")
            metrics.resolve_metrics(specs)
        return {out: [v for v in specs if v not in metrics.ALWAYS_RECORDED] for out, specs in per.items()}
    if isinstance(value, list) and not all(isinstance(v, str) for v in value):
        raise UserError(f"{value!r} is not a list of names; give one (for every output), or with targets a "
                        "table per output, metrics = { out = [\"macro_f1\"] }")
    metrics.resolve_metrics(value)
    return [v for v in value if v not in metrics.ALWAYS_RECORDED]


def _callbacks(value: Any) -> Any:
    return [resolve_callback(spec) for spec in value]


# run key -> how its written value is resolved; a key not listed keeps its validated value
RESOLVERS: dict[str, Callable[[Any], Any]] = {
    "dataset": _named("data"),
    "model": _named("models"),
    "loss": _loss,
    "optimizer": _named("optim"),
    "targets": resolve_targets,
    "augmentation": _augmentation,
    "early_stopping": _early_stopping,
    "metrics": _metrics,
    "callbacks": _callbacks,
}


class Resolver:
    """Resolves each written value once through its registry, naming its path on error."""

    def __init__(self, source: str):
        self.source = source
        self.cache: dict[tuple[str, str], Any] = {}

    def resolve(self, key: str, value: Any, path: str) -> Any:
        ck = (key, canonical(value))
        if ck not in self.cache:
            try:
                self.cache[ck] = RESOLVERS.get(key, _as_written)(value)
            except UserError as e:
                raise UserError(f"{self.source}: {path}: {e}") from None
        return self.cache[ck]

    def config(self, written: dict[str, tuple[Any, str]]) -> dict[str, Any]:
        """A run's config from its written values (value, place in the file): every run key, its default
        where not written; an optional key only when given (so configs that do not use it keep their keys)."""
        cfg = {}
        for key in RUN_KEYS:
            value, path = written.get(key, (getattr(RUN_DEFAULTS, key), f"(default {key})"))
            if isinstance(value, BaseModel):
                value = value.model_dump()
            if key in OPTIONAL_KEYS and not value:
                continue
            cfg[key] = self.resolve(key, value, path)
            if key in OPTIONAL_KEYS and not cfg[key]:  # e.g. metrics = ["accuracy"]: recorded anyway
                del cfg[key]
        return cfg


def _as_written(value: Any) -> Any:
    return value
