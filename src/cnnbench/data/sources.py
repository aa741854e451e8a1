"""What a dataset entry is: the registry the entries register into, the `Source` a factory returns,
the `Dataset` a source loads into, and the helpers entries share (decoded arrays, option values).

The limits of an entry's options are their declarations' (`Seed`, `TestFraction`, `Option(ge=...)`):
`Registry.check_options` keeps them before a factory runs, so a factory converts values, never re-checks.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import torch

from ..errors import UserError, did_you_mean
from ..registry import Option, Registry

REGISTRY = Registry("dataset")

# Options the datasets declare in their signatures (`registry.Option`).
Seed = Annotated[int, Option("the seed of the stratified train/test split", ge=0)]
TestFraction = Annotated[float, Option("the share of the images held out as the test set", gt=0, lt=1)]


# --- the dataset object ---------------------------------------------------------------------------
@dataclass
class Dataset:
    """A whole dataset in memory: uint8 images N×C×H×W, int64 labels, the test set as published."""

    name: str
    x_train: torch.Tensor
    x_test: torch.Tensor
    y_train: torch.Tensor
    y_test: torch.Tensor
    num_classes: int
    class_names: list[str]
    spec: dict[str, Any] = field(default_factory=dict)  # the resolved spec it was loaded from
    source: str = ""  # where it came from (files, or the cache file)
    # label columns beside the class label (`columns.py`): name -> (train labels, test labels, classes)
    label_columns: dict[str, tuple[torch.Tensor, torch.Tensor, int]] = field(default_factory=dict)

    def __post_init__(self):
        for part in ("train", "test"):
            x, y = getattr(self, f"x_{part}"), getattr(self, f"y_{part}")
            if x.dtype != torch.uint8 or x.dim() != 4:
                raise ValueError(f"x_{part} must be a uint8 N×C×H×W tensor, got {x.dtype} {tuple(x.shape)}")
            if y.dtype != torch.int64 or y.dim() != 1 or len(y) != len(x):
                raise ValueError(f"y_{part} must be int64 with {len(x)} labels, got {y.dtype} {tuple(y.shape)}")
            if len(y) and (int(y.min()) < 0 or int(y.max()) >= self.num_classes):
                raise ValueError(f"y_{part} spans {int(y.min())}..{int(y.max())}, outside 0..{self.num_classes - 1}")
        if self.x_train.shape[1:] != self.x_test.shape[1:]:
            raise UserError(f"{self.name}: train images are {'×'.join(map(str, self.x_train.shape[1:]))} but test "
                            f"images are {'×'.join(map(str, self.x_test.shape[1:]))} (C×H×W); store both at one size "
                            "(for an image folder, set image_size)")
        if len(self.class_names) != self.num_classes:
            raise ValueError(f"{len(self.class_names)} class names for {self.num_classes} classes")

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """(C, H, W)."""
        return tuple(self.x_train.shape[1:])

    def __repr__(self) -> str:
        c, h, w = self.input_shape
        return (
            f"Dataset({self.name!r}, train={len(self.y_train)}, test={len(self.y_test)}, "
            f"shape={c}x{h}x{w}, classes={self.num_classes})"
        )


def default_data_dir(data_dir: str | os.PathLike | None = None) -> Path:
    """`data_dir` if given (the `--data-dir` flag), else `$CNNBENCH_DATA`, else `~/.cache/cnnbench`."""
    if data_dir is not None and str(data_dir) != "":
        return Path(data_dir).expanduser()
    env = os.environ.get("CNNBENCH_DATA")
    if env:
        return Path(env).expanduser()
    return Path("~/.cache/cnnbench").expanduser()


# --- what a registry factory returns --------------------------------------------------------------
@dataclass
class Source:
    """How to find, download and decode one dataset (what a registry factory returns)."""

    name: str
    options: dict[str, Any]  # the dataset-specific options (part of the cache key)
    locate: Callable[[Path], list[Path] | None]  # source files, or None when incomplete
    decode: Callable[[Path, list[Path]], dict[str, Any]]  # x_train, y_train, x_test, y_test, class_names
    missing: Callable[[Path], str]  # "put ... in ..." (one line)
    download: Callable[[Path], None] | None = None
    cacheable: bool = True
    columns: tuple[str, ...] = ()  # label columns decode returns (`label_columns`); a cache without them is stale


Decoded = dict[str, Any]


def owned(a, dtype) -> np.ndarray:
    """Contiguous, writable (a view of a read-only file buffer is copied once)."""
    a = np.ascontiguousarray(a, dtype=dtype)
    return a if a.flags.writeable else a.copy()


def arrays(x_train, y_train, x_test, y_test, class_names) -> Decoded:
    return {
        "x_train": owned(x_train, np.uint8),
        "y_train": owned(y_train, np.int64),
        "x_test": owned(x_test, np.uint8),
        "y_test": owned(y_test, np.int64),
        "class_names": [str(c) for c in class_names],
    }


def choice(value, allowed, what: str) -> str:
    v = str(value).lower()
    if v not in allowed:
        hint = did_you_mean(v, list(allowed))
        raise UserError(f"{what} {value!r} is unknown; {hint}use one of {', '.join(allowed)}")
    return v


# --- option values -------------------------------------------------------------------------------
# The study's one rule (docs/CONTRACTS.md): a string is never a number or a bool, a whole float is
# taken for a whole number (3.0 is 3), 0 or 1 for false or true.
def whole(value) -> bool:
    return (not isinstance(value, bool) and isinstance(value, (int, float, np.integer, np.floating))
            and math.isfinite(value) and float(value).is_integer())


def flag(value, key: str) -> bool:
    if isinstance(value, bool):
        return value
    if whole(value) and value in (0, 1):
        return bool(value)
    raise UserError(f"{key} must be true or false, got {value!r}")


def find_user_path(path: str, data_dir: Path) -> Path | None:
    p = Path(path).expanduser()
    if p.exists():
        return p
    if not p.is_absolute() and (data_dir / p).exists():
        return data_dir / p
    return None
