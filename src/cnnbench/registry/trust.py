"""Whether a `"package.module:attr"` reference may run code now, and importing what it names.

A reference imports a module and calls one of its attributes: it runs code. Specs the user writes (a study
file, a call from their own Python) are trusted like a Python script; a file read back from disk (a saved
model) may come from someone else, so while it is built references are refused unless the user opted in.
"""

from __future__ import annotations

import contextvars
import importlib
from contextlib import contextmanager

from ..errors import UserError

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
