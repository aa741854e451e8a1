"""Writing report files so that a reader never sees half of one.

Every file goes through `cnnbench.store.files` (a temporary file in its own directory, then `os.replace`,
atomic within a filesystem); on an error the temporary file is removed, so neither a torn file nor a
`*.tmp` is ever left behind. The errors stay `OSError`s: `write_report` turns a full disk or a
read-only output into its own one line.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..store.files import atomic_path, atomic_write

__all__ = ["atomic_path", "write_bytes", "write_text"]


def write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write(path, text)


def write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    return atomic_write(path, data)
