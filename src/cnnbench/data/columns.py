"""Label columns beside a dataset's class label, for models with several outputs.

A dataset's images have their class label (the column `label`, what `y_train` / `y_test` hold) and may
have more label columns, each an integer label per image with its own number of classes:

- CIFAR-100 has both label sets: with `label_mode = "fine"` the column `coarse_label` (20 superclasses),
  with `label_mode = "coarse"` the column `fine_label` (100 classes) — TensorFlow Datasets' names;
- a `.npz` has a column NAME for each pair of arrays `y_train_NAME`, `y_test_NAME` (integer labels 0..K-1,
  one per image; K = the largest label + 1, or `len(class_names_NAME)` when the file has that array).

A study's `targets = { fine = "label", coarse = "coarse_label" }` trains an output on each. A column is
kept with its images through `limit_train` / `limit_test`, the validation split and the cache. A run's
`label_noise` changes the class label only (and the outputs mapped from it), not another column.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np

from ..errors import UserError

LABEL = "label"  # the class label's column: the dataset's y
_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")

Columns = dict[str, tuple[Any, Any, int]]  # name -> (train labels, test labels, number of classes)


def npz_columns(arrays: dict[str, np.ndarray], n_train: int, n_test: int, where: str) -> Columns:
    """The label columns of a `.npz`: every `y_train_NAME` with its `y_test_NAME` that hold one integer
    label >= 0 per image. Other `y_*` arrays (one-hot or soft labels, an unpaired array, a name that is not
    an identifier) are left alone: a file may hold them for other uses, and a study that does not name a
    column must read the file as it did before columns existed; one that names such a column is told the
    columns the file has."""
    out: Columns = {}
    for key in sorted(arrays):
        name = key[len("y_train_"):]
        if not key.startswith("y_train_") or not _NAME.match(name) or name == LABEL or f"y_test_{name}" not in arrays:
            continue
        parts = []
        for part, n in (("train", n_train), ("test", n_test)):
            y = np.asarray(arrays[f"y_{part}_{name}"])
            if y.ndim == 2 and y.shape[1] == 1:
                y = y[:, 0]
            if y.ndim != 1 or len(y) != n or y.dtype.kind not in "iub" or (len(y) and y.min() < 0):
                break
            parts.append(np.ascontiguousarray(y, dtype=np.int64))
        if len(parts) != 2:
            continue
        highest = max((int(p.max()) for p in parts if len(p)), default=0)
        k = max(highest + 1, 2)
        if f"class_names_{name}" in arrays:
            k = len(arrays[f"class_names_{name}"])
            if highest >= k:
                raise UserError(f"{where}: label column {name!r} has label {highest} but class_names_{name} names "
                                f"{k} classes; make them agree")
        out[name] = (parts[0], parts[1], k)
    return out


def to_cache(columns: Columns) -> tuple[dict[str, np.ndarray], dict[str, int]]:
    """(arrays, meta) to store a dataset's columns in its cache file."""
    arrays = {f"{part}:{name}": np.asarray(col[i]) for name, col in columns.items()
              for i, part in enumerate(("y_train", "y_test"))}
    return arrays, {name: int(col[2]) for name, col in columns.items()}


def from_cache(tensors: dict[str, Any], meta: dict[str, Any]) -> Columns | None:
    """The columns a cache file holds (`to_cache`), or None when one is missing."""
    out: Columns = {}
    for name, k in (meta.get("label_columns") or {}).items():
        if f"y_train:{name}" not in tensors or f"y_test:{name}" not in tensors:
            return None
        out[name] = (tensors[f"y_train:{name}"], tensors[f"y_test:{name}"], int(k))
    return out


def limited(columns: Columns, part: int, y, n: int | None, mode: str) -> dict[str, Any]:
    """Each column's labels of one part (0 train, 1 test) for the images `splits.limit` keeps."""
    import torch

    from .splits import limit

    if not columns:
        return {}
    index = limit(torch.arange(len(y)), y, n, mode)[0]
    return {name: torch.as_tensor(col[part])[index] for name, col in columns.items()}


def available(columns) -> str:
    """The columns a dataset has, for a message: `label, coarse_label`."""
    return ", ".join([LABEL, *columns])
