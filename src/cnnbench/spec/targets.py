"""A run with several outputs: its `targets` (each output's labels, from a label column of the dataset)
in canonical form, and the per-output labels of a dataset's class labels."""

from __future__ import annotations

import re
from typing import Any

from ..errors import UserError, did_you_mean


def resolve_targets(value: Any) -> dict[str, dict[str, Any]]:
    """`targets = { digit = "label", big = { from = "label", map = [0, 0, 1, ...] } }` in canonical form
    (`{"digit": {"from": "label"}, "big": {"from": "label", "map": [...]}}`): each output's labels are a
    label column of the dataset — its class label `"label"`, or another column it has (CIFAR-100's
    `coarse_label`, a .npz's `y_train_NAME`: `data/columns.py`; checked when the study is planned) —,
    as they are or looked up in `map` (one entry per class of that column; no code runs)."""
    if not isinstance(value, dict) or not value:
        raise UserError('targets must be a table { output = "label" | { from = "label", map = [...] } }, '
                        f"got {value!r}")
    out = {}
    for name, spec in value.items():
        if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_]*", name) or name == "name":
            raise UserError(f"output name {name!r} must be an identifier (letters, digits, _) other than 'name'; "
                            "rename it")
        if isinstance(spec, str):
            spec = {"from": spec}
        column = spec.get("from") if isinstance(spec, dict) else None
        if (not isinstance(column, str) or not re.fullmatch(r"[A-Za-z][A-Za-z0-9_]*", column)
                or set(spec) - {"from", "map"}):
            raise UserError(f"output {name!r}: give a label column (\"label\", or another the dataset has, e.g. "
                            f"\"coarse_label\") or {{ from = \"label\", map = [class -> label, ...] }}, got {spec!r}")
        mapping = spec.get("map")
        if mapping is not None and (not isinstance(mapping, list) or not mapping or not all(
                isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in mapping)):
            raise UserError(f"output {name!r}: map must be a non-empty list of labels >= 0, one per class of the "
                            f"dataset (e.g. [0, 0, 1, 1]), got {mapping!r}")
        out[name] = {"from": column, **({"map": list(mapping)} if mapping is not None else {})}
    return out


def target_labels(targets: dict[str, dict[str, Any]], y, num_classes: int, columns=None,
                  dataset: str = "the dataset") -> tuple[dict[str, Any], dict[str, int]]:
    """The per-output labels of class labels `y` (a tensor) and each output's number of classes.
    `columns`: the dataset's other label columns for the same images, `{name: (labels, classes)}`."""
    import torch

    from ..data.columns import available

    columns = columns or {}
    labels, classes = {}, {}
    for name, spec in targets.items():
        column = spec.get("from", "label")
        if column == "label":
            source, k = y, num_classes
        elif column in columns:
            source, k = columns[column]
        else:
            hint = did_you_mean(column, ["label", *columns])
            raise UserError(f"targets.{name}: {dataset} has no label column {column!r}; {hint}its columns: "
                            f"{available(columns)} (a .npz adds one with arrays y_train_NAME and y_test_NAME)")
        mapping = spec.get("map")
        if mapping is None:
            labels[name], classes[name] = source, k
            continue
        if len(mapping) != k:
            what = "the dataset has" if column == "label" else f"its column {column!r} has"
            raise UserError(f"targets.{name}.map has {len(mapping)} entries but {what} {k} "
                            f"classes; give one label per class (map[i] = the label of class i)")
        table = torch.tensor(mapping, dtype=torch.long)
        labels[name] = table[source.long()]
        classes[name] = max(max(mapping) + 1, 2)
    return labels, classes
