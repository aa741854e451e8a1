"""Numbers as the report prints them, one rule per kind of number.

A value the statistics mark as unsupported (NaN: too few blocks, no test made) is printed as "–",
never as a number. Metric values are in the metric's own units; a fraction metric (accuracy, ECE) is
printed in percent, as the tables' headers say.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import pandas as pd

from ..metrics import Metric

DASH = "–"


class Entry(NamedTuple):
    """One table entry: the text shown, the raw number an HTML table sorts by (None: sort the
    text), and whether it is set in bold (the best value of its column)."""

    text: str
    sort: float | None = None
    strong: bool = False


def missing(x) -> bool:
    if x is None or x is pd.NA:  # pd.NA: a nullable integer column's gap (e.g. the rank of an unscored row)
        return True
    try:
        return math.isnan(float(x))
    except (TypeError, ValueError):
        return False


def number(x) -> float | None:
    """`x` as a float to sort by; None when missing."""
    return None if missing(x) else float(x)


def unit(metric: Metric) -> str:
    return " (%)" if metric.percent else ""


def heading(metric: Metric) -> str:
    """A column heading for the metric: its label and unit."""
    return metric.label + unit(metric)


def value(x, metric: Metric) -> str:
    if missing(x):
        return DASH
    return f"{100 * float(x):.2f}" if metric.percent else f"{float(x):.4g}"


def difference(x, metric: Metric) -> str:
    """A difference of two metric values (percentage points for a percent metric), with its sign."""
    if missing(x):
        return DASH
    shown = f"{100 * float(x):+.2f}" if metric.percent else f"{float(x):+.4g}"
    return shown[1:] if float(shown) == 0 else shown  # no sign on a difference that rounds to zero


def mean_std(mean, std, metric: Metric) -> str:
    if missing(mean):
        return DASH
    return value(mean, metric) if missing(std) else f"{value(mean, metric)} ± {value(std, metric)}"


def interval(low, high, metric: Metric) -> str:
    if missing(low) or missing(high):
        return DASH
    # not clipped to [0, 100] %: an interval of a mean that reaches past it says the sample is too small
    return f"[{value(low, metric)}, {value(high, metric)}]"


def p_value(p) -> str:
    if missing(p):
        return DASH
    p = float(p)
    return "<1e-4" if p < 1e-4 else f"{p:.3g}"


def statistic(x, digits: int = 3) -> str:
    return DASH if missing(x) else f"{float(x):.{digits}g}"


def fixed(x, decimals: int = 2) -> str:
    return DASH if missing(x) else f"{float(x):.{decimals}f}"


def probability(x) -> str:
    return DASH if missing(x) else f"{float(x):.2f}"


def count(x) -> str:
    return DASH if missing(x) else f"{int(x):,}"


def si(x, suffix: str = "") -> str:
    """A large count with an SI prefix (1.23 M, 4.5 G): parameter counts and FLOPs."""
    if missing(x):
        return DASH
    x = float(x)
    for factor, prefix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(x) >= factor:
            return f"{x / factor:.3g} {prefix}{suffix}"
    return f"{x:.0f} {suffix}".rstrip()


def seconds(x) -> str:
    """A duration: seconds, minutes or hours, whichever reads best."""
    if missing(x):
        return DASH
    x = float(x)
    if x < 120:
        return f"{x:.1f} s"
    if x < 7200:
        return f"{x / 60:.1f} min"
    return f"{x / 3600:.2f} h"
