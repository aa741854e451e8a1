"""The one coercion rule for a study's values (docs/CONTRACTS.md), as pydantic field types.

A string is never a number or a bool; a whole float (3.0) is taken for an integer, any other float
refused; 0 or 1 is taken for a bool (and so 0.0 or 1.0). An integer is taken for a float. What ran
before keeps its value, so existing study files keep their run keys: pydantic's lax mode took more
(strings, true for 1) and its strict mode less (10.0 for epochs); both are replaced by these checks.
"""

from __future__ import annotations

import math
import numbers
from typing import Annotated, Any

from pydantic import BeforeValidator, Field


def _kind(value: Any) -> str:
    return "a string" if isinstance(value, str) else "true/false" if isinstance(value, bool) else type(value).__name__


def _unquoted(value: Any, example: str) -> str:
    """The fix for a number written as a string: the same number without quotes."""
    try:
        return f"write {float(value):g} without quotes" if isinstance(value, str) else f"write a number, e.g. {example}"
    except ValueError:
        return f"write a number, e.g. {example}"


def whole_number(value: Any) -> Any:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"must be a whole number, not {_kind(value)}; {_unquoted(value, '3')}")
    if isinstance(value, numbers.Integral):
        return int(value)
    if math.isfinite(value) and float(value).is_integer():
        return int(value)  # 3.0 is 3
    raise ValueError("must be a whole number; a float is taken only when whole (3.0), give an integer")


def real_number(value: Any) -> Any:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"must be a number, not {_kind(value)}; {_unquoted(value, '0.1')}")
    return float(value)


def true_false(value: Any) -> Any:
    if isinstance(value, bool):
        return value
    if isinstance(value, numbers.Real) and not isinstance(value, str) and value in (0, 1):
        return bool(value)  # 0 / 1 (a whole 0.0 / 1.0 too: it is the integer)
    raise ValueError(f"must be true or false, not {_kind(value) if not isinstance(value, numbers.Real) else value}"
                     "; write true or false without quotes")


Int = Annotated[int, BeforeValidator(whole_number), Field(strict=True)]
Float = Annotated[float, BeforeValidator(real_number), Field(strict=True)]
Bool = Annotated[bool, BeforeValidator(true_false), Field(strict=True)]
Seed = Annotated[Int, Field(ge=0, lt=2**63)]


def no_duplicate_seeds(seeds):
    if seeds is not None:
        twice = sorted({s for s in seeds if seeds.count(s) > 1})
        if twice:
            raise ValueError(f"seed {twice[0]} is listed {seeds.count(twice[0])} times; a seed is one run (the "
                             "same seed gives the same numbers): list each seed once")
    return seeds
