"""One registry pattern for losses, optimizers, models and datasets.

    REG = Registry("loss")

    @REG.register("categorical_crossentropy", aliases=["cce"], summary="...")
    def categorical_crossentropy(from_logits=False, label_smoothing=0.0): ...

    REG.get("CategoricalCrossentropy", label_smoothing=0.1)   # calls the factory
    REG.resolve("cce", label_smoothing=0.1)  # {"name": "categorical_crossentropy", "from_logits": False, ...}

Names are matched case-insensitively and without underscores, dashes or spaces, so Keras class names
(`CategoricalCrossentropy`) and function names (`categorical_crossentropy`) find the same entry.
"""

from __future__ import annotations

import contextvars
import difflib
import inspect
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from .errors import UnknownNameError, UserError, did_you_mean


def normalize(name: str) -> str:
    """The lookup key of a name: lower case, without `_`, `-`, spaces or dots."""
    return re.sub(r"[\s_\-.]", "", name.lower())


@dataclass
class Entry:
    name: str
    factory: Callable[..., Any]
    aliases: tuple[str, ...] = ()
    summary: str = ""
    info: dict[str, Any] = field(default_factory=dict)

    def defaults(self) -> dict[str, Any]:
        """Keyword defaults of the factory (what `resolve` makes explicit)."""
        out = {}
        for p in inspect.signature(self.factory).parameters.values():
            if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD) and p.default is not p.empty:
                out[p.name] = p.default
        return out

    def accepts(self) -> set[str] | None:
        """Option names the factory takes, or None if it takes **kwargs."""
        params = inspect.signature(self.factory).parameters.values()
        if any(p.kind is p.VAR_KEYWORD for p in params):
            return None
        return {p.name for p in params if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)}


class Registry:
    def __init__(self, kind: str, plural: str | None = None):
        self.kind = kind
        self.plural = plural or (kind + "es" if kind.endswith("s") else kind + "s")
        self._entries: dict[str, Entry] = {}
        self._keys: dict[str, str] = {}  # normalized name or alias -> canonical name

    # --- building -------------------------------------------------------------------------------
    def register(self, name: str | None = None, *, aliases=(), summary: str = "", **info):
        """Decorator: register a factory under `name` (default: the function's name)."""

        def decorator(factory):
            canonical = name or factory.__name__
            doc = (inspect.getdoc(factory) or "").strip().splitlines()
            entry = Entry(canonical, factory, tuple(aliases), summary or (doc[0] if doc else ""), info)
            for key in (canonical, *aliases):
                k = normalize(key)
                if k in self._keys and self._keys[k] != canonical:
                    raise ValueError(f"{self.kind} name {key!r} is already registered for {self._keys[k]!r}")
                self._keys[k] = canonical
            self._entries[canonical] = entry
            return factory

        return decorator

    # --- looking up -----------------------------------------------------------------------------
    def __contains__(self, name: str) -> bool:
        return normalize(name) in self._keys

    def __iter__(self) -> Iterator[Entry]:
        return iter(self._entries[n] for n in self.list())

    def list(self) -> list[str]:
        """Canonical names, sorted."""
        return sorted(self._entries)

    def entry(self, name: str) -> Entry:
        key = normalize(name)
        if key not in self._keys:
            raise UnknownNameError(self.unknown_message(name))
        return self._entries[self._keys[key]]

    def unknown_message(self, name: str) -> str:
        candidates = list(self._entries) + [a for e in self._entries.values() for a in e.aliases]
        close = difflib.get_close_matches(name, candidates, n=1, cutoff=0.6)
        if not close:
            by_key = {normalize(c): c for c in candidates}
            close = [by_key[k] for k in difflib.get_close_matches(normalize(name), list(by_key), n=1, cutoff=0.6)]
        hint = f"did you mean {close[0]!r}? " if close else ""
        return f"unknown {self.kind} {name!r}; {hint}see `cnnbench list {self.plural}`"

    def check_options(self, name: str, options: dict[str, Any]) -> Entry:
        entry = self.entry(name)
        accepted = entry.accepts()
        if accepted is not None:
            for key in options:
                if key not in accepted:
                    hint = did_you_mean(key, sorted(accepted))
                    allowed = ", ".join(sorted(accepted)) or "none"
                    raise UserError(
                        f"{self.kind} {entry.name!r} has no option {key!r}; {hint}allowed: {allowed}"
                    )
        return entry

    def get(self, name: str, /, **options):
        """Build the object registered under `name` with `options`."""
        entry = self.check_options(name, options)
        return entry.factory(**options)

    def resolve(self, name: str, /, **options) -> dict[str, Any]:
        """The fully explicit config: canonical name plus every default, overridden by `options`.

        An entry may register `resolve=callable(**options) -> dict` in its info when its defaults
        depend on other options (e.g. an optimizer's flavor)."""
        entry = self.check_options(name, options)
        if "resolve" in entry.info:
            resolved = entry.info["resolve"](**options)
        else:
            resolved = with_defaults(entry.defaults(), options)
        return {"name": entry.name, **resolved}


def with_defaults(defaults: dict[str, Any], options: dict[str, Any]) -> dict[str, Any]:
    """`defaults` overridden by `options`. A whole number given where the default is a float becomes
    that float, so that `gamma = 3` and `gamma = 3.0` are one configuration (and one run key)."""
    def number(value, default):
        as_float = isinstance(default, float) and isinstance(value, int) and not isinstance(value, bool)
        return float(value) if as_float else value

    return {**defaults, **{k: number(v, defaults.get(k)) for k, v in options.items()}}


def split_spec(spec: str | dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """`"adam"` or `{"name": "adam", "learning_rate": 0.01}` -> `("adam", {"learning_rate": 0.01})`."""
    if isinstance(spec, str):
        return spec, {}
    if isinstance(spec, dict) and isinstance(spec.get("name"), str):
        options = {k: v for k, v in spec.items() if k != "name"}
        return spec["name"], options
    raise UserError(f"expected a name or a table with a 'name' key, got {spec!r}")


# --- "package.module:attr" references: code, allowed unless a file from elsewhere is being loaded ----
# A reference imports a module and calls one of its attributes: it runs code. Specs the user writes
# (a study file, a call from their own Python) are trusted like a Python script. A file read back from
# disk (a saved model) may come from someone else, so `saving.load` refuses references while it
# builds from such a file unless the user opted in; this variable says who refuses, and the fix.
_REFUSING: contextvars.ContextVar[tuple[str, str] | None] = contextvars.ContextVar("cnnbench_refusing_code",
                                                                                 default=None)


@contextmanager
def refusing_code(source: str, how_to_allow: str):
    """While active, `check_reference` refuses every `module:attr` reference: `source` names the file
    being loaded, `how_to_allow` the opt-in (e.g. "pass trust_code=True")."""
    token = _REFUSING.set((source, how_to_allow))
    try:
        yield
    finally:
        _REFUSING.reset(token)


def code_refused() -> tuple[str, str] | None:
    """(source, how to allow) while a file's references are refused, else None."""
    return _REFUSING.get()


def check_reference(ref: str, kind: str) -> None:
    """Raise UserError if `ref` ("package.module:attr", a `kind` such as "model" or "loss") may not be
    imported now; call it before importing anything a spec names."""
    refused = _REFUSING.get()
    if refused is not None:
        source, how = refused
        raise UserError(f"{source} names {kind} {ref!r}, which would import and run code from module "
                        f"{ref.partition(':')[0]!r}; if you trust this file, {how}")


def import_reference(ref: str, kind: str, shape: str = "package.module:attr"):
    """The object `ref` ("package.module:attr", attr may be dotted) names, for a `kind` such as "loss",
    "model", "metric" or "callback": one line naming the problem and the fix when it is malformed,
    cannot be imported, or is refused (`check_reference`: loading a file the user did not trust)."""
    import importlib

    module_name, _, attr = ref.partition(":")
    if not module_name or not attr:
        raise UserError(f"{kind} reference {ref!r} must look like '{shape}'")
    check_reference(ref, kind)
    try:
        obj = importlib.import_module(module_name)
    except ImportError as exc:
        raise UserError(f"cannot import module {module_name!r} for {kind} {ref!r} ({exc}); check the spelling "
                        "and that the package is on PYTHONPATH") from None
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise UserError(f"module {module_name!r} has no attribute {attr!r} ({kind} {ref!r}); check the name "
                            "after ':'") from None
    return obj
