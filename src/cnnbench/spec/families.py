"""The registry families a spec resolves its values through (`cnnbench.data`, `.models`, `.losses`,
`.optim`, `.data.augment`), imported when a value is first resolved: they import torch, which
`import cnnbench.spec` (and so `cnnbench.Study`) must not (tests/test_api.py)."""

from __future__ import annotations

import importlib
from types import ModuleType


def family(name: str) -> ModuleType:
    """The registry module `cnnbench.<name>`."""
    return importlib.import_module(f"cnnbench.{name}")
