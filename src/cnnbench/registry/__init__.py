"""One registry pattern for every family: losses, optimizers and schedules, models, datasets,
augmentations, metrics, callbacks and executors.

    REG = Registry("loss")

    @REG.register("categorical_crossentropy", aliases=["cce"], summary="...")
    def categorical_crossentropy(from_logits=False, label_smoothing=0.0): ...

    REG.get("CategoricalCrossentropy", label_smoothing=0.1)   # calls the factory
    REG.resolve("cce", label_smoothing=0.1)  # {"name": "categorical_crossentropy", "from_logits": False, ...}

Names are matched case-insensitively and without underscores, dashes or spaces, so Keras class names
(`CategoricalCrossentropy`) and function names (`categorical_crossentropy`) find the same entry.

**Options are declared once, in the factory's signature**: a keyword parameter is an option, its default
the default, its annotation the type, and `Annotated[..., Option("doc", ge=0, le=1)]` adds a one-line doc
and limits. `Entry.options` reads the declaration once; `check_options` (called by `get` and `resolve`,
i.e. when a study or a `fit` call is read) refuses unknown names, wrong types and values out of range
with one line; `cnnbench list KIND NAME` and the docs' option tables are printed from it. A parameter
without an annotation is typed by its default (a float default takes numbers, a bool default true/false,
a tuple default a list of the same kind).
"""

from __future__ import annotations

import difflib
import functools
import inspect
import math
import numbers
import os
import re
import types
import typing
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal, NamedTuple, Union

from ..errors import UnknownNameError, UserError, did_you_mean

# references and whether they may run code now (trust.py), re-exported: `registry.import_reference`
from .trust import check_reference as check_reference
from .trust import code_refused as code_refused
from .trust import import_reference as import_reference
from .trust import refusing_code as refusing_code


def normalize(name: str) -> str:
    """The lookup key of a name: lower case, without `_`, `-`, spaces or dots."""
    return re.sub(r"[\s_\-.]", "", name.lower())


@dataclass(frozen=True)
class Option:
    """What an option means beyond its type, for `Annotated[type, Option(...)]` in a factory's signature:
    a one-line `doc`, and limits that every number in the value must keep (a scalar, or each element of a
    list): `ge`/`gt`/`le`/`lt`. `strict`: a whole number must be an integer (not 128.0) and true/false a
    bool (not 1), where the entry's own code refuses the others when it builds (a model's layer sizes):
    refused when the study is read instead of in every run."""

    doc: str = ""
    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    lt: float | None = None
    strict: bool = False

    def limits(self) -> str:
        """The range in words: "in [0, 1]", ">= 0", "in (0, 1)", or ""."""
        # (bracket, comparison, bound) of each side that has one
        low = ("[", ">=", self.ge) if self.ge is not None else ("(", ">", self.gt) if self.gt is not None else None
        high = ("]", "<=", self.le) if self.le is not None else (")", "<", self.lt) if self.lt is not None else None
        if low and high:
            return f"in {low[0]}{_num(low[2])}, {_num(high[2])}{high[0]}"
        bound = low or high
        return f"{bound[1]} {_num(bound[2])}" if bound else ""

    def within(self, value) -> bool:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return all(self.within(v) for v in value) if isinstance(value, (list, tuple)) else True
        return ((self.ge is None or value >= self.ge) and (self.gt is None or value > self.gt)
                and (self.le is None or value <= self.le) and (self.lt is None or value < self.lt))


def declare(tp, doc: str = "", **limits) -> Any:
    """`Annotated[tp, Option(doc, **limits)]`: an option's type, one line of doc and its limits, for a
    family that declares its options by name (optimizers, schedules, augmentation)."""
    return Annotated[tp, Option(doc, **limits)]


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else repr(x)


@dataclass(frozen=True)
class Declared:
    """One option of one entry, as its factory declares it."""

    name: str
    type: Any  # the annotation without Option (Any: not declared, anything goes)
    default: Any = inspect.Parameter.empty
    option: Option = Option()

    @classmethod
    def of(cls, name: str, annotation: Any, default: Any = inspect.Parameter.empty) -> Declared:
        """From an annotation, `Annotated[T, Option(...)]` or a plain type."""
        if typing.get_origin(annotation) is Annotated:
            base, *meta = typing.get_args(annotation)
            return cls(name, base, default, next((m for m in meta if isinstance(m, Option)), Option()))
        return cls(name, annotation, default)

    @property
    def required(self) -> bool:
        return self.default is inspect.Parameter.empty

    def describe_type(self) -> str:
        """"a number in [0, 1]", "a whole number >= 2 (or absent)"."""
        tp, optional = self.type, False
        if typing.get_origin(tp) in (Union, types.UnionType) and type(None) in typing.get_args(tp):
            rest = tuple(a for a in typing.get_args(tp) if a is not type(None))
            tp, optional = (Union[rest] if len(rest) > 1 else rest[0]), True  # noqa: UP007 (a runtime Union)
        words = type_words(tp)
        limits = self.option.limits()
        return (f"{words} {limits}" if limits else words) + (" (or absent)" if optional else "")

    def check(self, value, where: str) -> None:
        """UserError (one line) unless `value` has the declared type and keeps the limits."""
        if self.type is Any:
            return
        if not _matches(self.type, value, self.option.strict) or not self.option.within(value):
            raise UserError(f"{where} option {self.name!r} must be {self.describe_type()}, got {value!r}")


def type_words(tp) -> str:
    """An annotation in a user's words: "a number", "a list of whole numbers", "'max' or 'avg'"."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is Any:
        return "anything"
    if tp is type(None):
        return "null"
    if origin is Annotated:
        return type_words(args[0])
    if origin is Literal:
        return " or ".join(repr(a) for a in args) if len(args) <= 2 else "one of " + ", ".join(map(repr, args))
    if origin in (Union, types.UnionType):
        parts = [type_words(a) for a in args if a is not type(None)]
        return " or ".join(parts) + (" (or absent)" if type(None) in args else "")
    if origin in (list, tuple, Sequence, typing.Sequence) or tp in (list, tuple):
        inner = args[0] if args else Any
        return "a list" if inner is Any else f"a list of {_plural(type_words(inner))}"
    return {bool: "true or false", int: "a whole number", float: "a number", str: "a string",
            dict: "a table", os.PathLike: "a path"}.get(tp, getattr(tp, "__name__", str(tp)))


def _plural(words: str) -> str:
    return {"a whole number": "whole numbers", "a number": "numbers", "a string": "strings",
            "true or false": "true/false values"}.get(words, words)


def _matches(tp, value, strict: bool = False) -> bool:
    """No string for a number, no bool for a number, no 2.5 for a whole number. Taken as before declared
    options existed, so that study files that ran still resume: an int or a numpy number for a number, a
    whole float (3.0) or a numpy integer for a whole number, 0 or 1 for true/false, a path for a string
    declared `str | os.PathLike`."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is Any:
        return True
    if tp is type(None) or tp is None:
        return value is None
    if origin is Annotated:
        return _matches(args[0], value, strict)
    if origin is Literal:
        return any(value == a and (type(value) is type(a) or (_number(value) and _number(a))) for a in args)
    if origin in (Union, types.UnionType):
        return any(_matches(a, value, strict) for a in args)
    if origin in (list, tuple, Sequence, typing.Sequence) or tp in (list, tuple):
        if not isinstance(value, (list, tuple)):
            return False
        if origin is tuple and args and args[-1] is not Ellipsis:
            return len(args) == len(value) and all(_matches(a, v, strict) for a, v in zip(args, value))
        return all(_matches(args[0], v, strict) for v in value) if args else True
    if tp is bool:
        # 0 or 1 for false or true, a whole float being its integer (1.0 is 1)
        return isinstance(value, bool) or (not strict and isinstance(value, numbers.Real) and value in (0, 1))
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return tp not in (int, float) and (not isinstance(tp, type) or isinstance(value, tp))
    if tp is int:
        whole_float = not strict and math.isfinite(value) and float(value).is_integer()
        return isinstance(value, numbers.Integral) or whole_float
    if tp is float:
        return math.isfinite(value)
    if tp is dict:
        return isinstance(value, dict)
    return isinstance(value, tp) if isinstance(tp, type) else True


def _number(x) -> bool:
    return isinstance(x, numbers.Real) and not isinstance(x, bool)


def _fits(annotation, default) -> bool:
    """Whether a family's shared declaration fits a parameter with this default (a user's own loss whose
    `axis=None` is not the Keras losses' whole-number axis)."""
    tp = typing.get_args(annotation)[0] if typing.get_origin(annotation) is Annotated else annotation
    return default is inspect.Parameter.empty or _matches(tp, default)


def _inferred(default) -> Any:
    """The type a default implies when the parameter has no annotation (a user's own loss or model),
    leniently: a number for a number (a `scale=1` default takes 0.5: Python code often writes floats'
    defaults as ints; annotate `int` to refuse it), true/false for a bool, a string for a string, one
    value or a list for a tuple or list; None (absent) always."""
    def scalar(value) -> Any:
        if isinstance(value, bool):
            return bool
        return str if isinstance(value, str) else float if isinstance(value, (int, float)) else None

    if default is inspect.Parameter.empty or default is None:
        return Any
    if isinstance(default, (list, tuple)):
        kinds = {scalar(v) for v in default}
        one = kinds.pop() if len(kinds) == 1 else None
        return Any if one is None else one | Sequence[one] | None  # type: ignore[operator]
    one = scalar(default)
    return Any if one is None else one | None


def declared_options(factory: Callable[..., Any], skip: Sequence[str] = (),
                     shared: dict[str, Any] | None = None) -> dict[str, Declared]:
    """The options `factory` declares: keyword parameters with their annotation (`Annotated[T,
    Option(...)]`, resolved from `factory.__wrapped__`'s module where the factory wraps another
    callable); else the family's `shared` declaration of that name (every Keras loss's `reduction`);
    else the type their default implies. `skip`: parameters the caller fills in (e.g. a model's
    `input_shape`)."""
    source = getattr(factory, "__wrapped__", factory)
    if isinstance(source, type):  # a class registered as it is (a callback): its constructor declares them
        source = source.__init__
    try:
        hints = typing.get_type_hints(source, include_extras=True)
    except Exception:  # an annotation that does not evaluate: the defaults still type the options
        hints = {}
    out = {}
    for p in inspect.signature(factory).parameters.values():
        if p.kind not in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD) or p.name in skip:
            continue
        annotation = hints.get(p.name)
        if annotation is None:
            family = (shared or {}).get(p.name)
            annotation = family if family is not None and _fits(family, p.default) else _inferred(p.default)
        out[p.name] = Declared.of(p.name, annotation, p.default)
    return out


# A rule across an entry's options: None when they keep it, else the problem and its fix (one line)
Rule = Callable[[dict[str, Any]], "str | None"]


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

    @functools.cached_property
    def options(self) -> dict[str, Declared]:
        """The declared options (read once): `declared_options(factory)` less what the caller fills in
        (`info["context"]`, e.g. a model's input_shape), or `info["options"]` where an entry declares
        them apart from its factory (an optimizer's hyperparameters per flavour)."""
        if "options" in self.info:
            return dict(self.info["options"])
        return declared_options(self.factory, skip=self.info.get("context", ()), shared=self.info.get("shared"))


class Registry:
    def __init__(self, kind: str, plural: str | None = None, context: Sequence[str] = (),
                 shared: dict[str, Any] | None = None, references: bool = False):
        """`context`: the factory parameters the caller fills in, not options (a model's input_shape);
        `shared`: option declarations (annotations) the entries of this family share by name, used where
        an entry's own signature does not annotate the option; `references`: whether a
        `"package.module:attr"` name may stand for an entry (losses, models)."""
        self.kind = kind
        self.shared = dict(shared or {})
        self.references = references
        self._prefixes: dict[str, str] = {}  # normalized "imagefolder" -> canonical, for "imagefolder:PATH"
        self._suffixes: dict[str, str] = {}  # ".npz" -> "npz", for "data/x.npz"
        self.plural = plural or (kind + "es" if kind.endswith("s") else kind + "s")
        self.context = tuple(context)
        self._entries: dict[str, Entry] = {}
        self._keys: dict[str, str] = {}  # normalized name or alias -> canonical name
        self.rules: list[Rule] = []  # cross-option rules every entry of the family keeps (`rule`)

    # --- building -------------------------------------------------------------------------------
    def register(self, name: str | None = None, *, aliases=(), summary: str = "", path_option: str | None = None,
                 suffixes: Sequence[str] = (), **info):
        """Decorator: register a factory under `name` (default: the function's name). With `path_option`,
        `"NAME:REST"` names this entry with that option set to REST (`"imagefolder:data/cats"`), and so
        does a name ending in one of `suffixes` (`"data/x.npz"`, the whole name)."""

        def decorator(factory):
            canonical = name or factory.__name__
            doc = (inspect.getdoc(factory) or "").strip().splitlines()
            entry = Entry(canonical, factory, tuple(aliases), summary or (doc[0] if doc else ""),
                          {"context": self.context, "shared": self.shared, **info})
            for key in (canonical, *aliases):
                k = normalize(key)
                if k in self._keys and self._keys[k] != canonical:
                    raise ValueError(f"{self.kind} name {key!r} is already registered for {self._keys[k]!r}")
                self._keys[k] = canonical
            self._entries[canonical] = entry
            if path_option:
                entry.info["path_option"] = path_option
                for key in (canonical, *aliases):
                    self._prefixes[normalize(key)] = canonical
                self._suffixes.update({s.lower(): canonical for s in suffixes})
            return factory

        return decorator

    def rule(self, check: Rule) -> Rule:
        """Decorator: declare a rule across options that every entry of this family keeps (the limits of
        one option are its declaration's): `check(options) -> None`, or the problem and its fix in words.
        An entry's own rules are `register(..., rules=[...])`."""
        self.rules.append(check)
        return check

    def check_rules(self, where: str, options: dict[str, Any], entry: Entry | None = None) -> None:
        """A one-line `UserError` for the first rule (the family's, then `entry`'s) that `options` break."""
        for check in (*self.rules, *(entry.info.get("rules", ()) if entry is not None else ())):
            problem = check(options)
            if problem:
                raise UserError(f"{where}: {problem}")

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

    def parse(self, spec: str | dict[str, Any]) -> Parsed:
        """The one name grammar: `spec` (a name, or a table with a `name` key and options) ->
        `Parsed(name, options, reference)`. A name is, in this order: `"PREFIX:REST"` for an entry
        registered with `path_option` (REST goes into that option); a name ending in such an entry's
        suffix (the whole name goes there); a `"package.module:attr"` reference where the registry
        takes them (`reference=True`, the name kept as written); else a registered name or alias
        (returned canonical; UnknownNameError with a "did you mean" otherwise)."""
        name, options = split_spec(spec)
        prefix, sep, rest = name.partition(":")
        canonical = self._prefixes.get(normalize(prefix)) if sep else None
        if canonical is None:
            canonical = next((c for s, c in self._suffixes.items() if name.lower().endswith(s)), None)
            rest = name
        if canonical is not None:
            key = self._entries[canonical].info["path_option"]
            if key in options:
                raise UserError(f"{self.kind} {name!r} names its {key} already; drop the {key!r} option, or name "
                                f"it {canonical!r} with {key} = ...")
            return Parsed(canonical, {key: rest, **options}, False)
        if self.references and is_reference(name):
            return Parsed(name, dict(options), True)
        return Parsed(self.entry(name).name, dict(options), False)

    def check_options(self, name: str, options: dict[str, Any]) -> Entry:
        """The entry, once `options` are names it declares, of the declared types, within the limits."""
        entry = self.entry(name)
        accepted = entry.accepts()
        if accepted is not None:
            for key in options:
                if key not in accepted:
                    hint = did_you_mean(key, sorted(accepted))
                    allowed = ", ".join(sorted(set(accepted) - set(entry.info.get("context", ())))) or "none"
                    raise UserError(
                        f"{self.kind} {entry.name!r} has no option {key!r}; {hint}allowed: {allowed}"
                    )
        where = f"{self.kind} {entry.name!r}"
        for key, declared in entry.options.items():
            if key in options:
                declared.check(options[key], where)
            elif declared.required:
                raise UserError(f"{where} needs option {key!r} ({declared.describe_type()}"
                                f"{': ' + declared.option.doc if declared.option.doc else ''})")
        self.check_rules(where, options, entry)
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


class Parsed(NamedTuple):
    """A spec read by `Registry.parse`: the canonical entry name (or the reference as written), the
    options, and whether the name is a `"package.module:attr"` reference."""

    name: str
    options: dict[str, Any]
    reference: bool


_REFERENCE = re.compile(r"[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*:[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*")


def is_reference(name: str) -> bool:
    """Whether `name` has the shape of a `"package.module:attr"` reference (attr may be dotted)."""
    return isinstance(name, str) and _REFERENCE.fullmatch(name) is not None


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
