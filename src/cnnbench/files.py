"""Writing a file so that no reader ever sees half of it: the one atomic write of cnnbench.

Checkpoints, saved models, the study's copy of its spec, the dataset cache and every report file are
written the same way: into a temporary file in the target's own directory (`.NAME.PID-RANDOM.tmp`,
created exclusively, with the permissions a plain `open` gives under the umask), flushed to the disk
first where asked (`fsync=True`), then renamed over the target with `os.replace`, which is atomic
within a file system. A reader sees the old file or the new one, never a torn one.

On any error, a KeyboardInterrupt included, the temporary file is removed and the error goes on; with
`fault=True` a full disk, a read-only file system or a permission problem becomes one line
(`errors.EnvironmentFault`, naming the target and the fix). A process killed half-way through a write
leaves its temporary file behind: `remove_stale_temps(path)` removes those of `path`.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

Data = bytes | bytearray | memoryview | str | Callable[[BinaryIO], object]


def temp_path(path: str | os.PathLike) -> Path:
    """A fresh temporary name next to `path`: `.NAME.PID-RANDOM.tmp` (hidden, never a second writer's)."""
    path = Path(path)
    return path.with_name(f".{path.name}.{os.getpid()}-{secrets.token_hex(4)}.tmp")


def atomic_write(path: str | os.PathLike, data: Data, *, fsync: bool = False, fault: bool = False) -> Path:
    """Write `data` to `path` atomically (see the module's docstring) and return `path`.

    `data` is bytes (or a buffer), a str (written as UTF-8), or a callable `writer(file)` that writes
    to the open binary temporary file (several writes, `torch.save`). The parent directories are
    created. `fsync`: flush the file to the disk before the rename (saved models, the dataset cache).
    `fault`: raise a full disk, a read-only file system or a permission problem as an `EnvironmentFault`
    (one line) instead of the `OSError`."""
    path = Path(path)
    tmp = temp_path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "xb") as fh:
            if callable(data):
                data(fh)
            else:
                fh.write(data.encode("utf-8") if isinstance(data, str) else data)
            if fsync:
                fh.flush()
                os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        _discard(tmp)
        _raise_fault(e, path, fault)
        raise
    return path


@contextmanager
def atomic_path(path: str | os.PathLike, *, fsync: bool = False, fault: bool = False) -> Iterator[Path]:
    """The same write for a writer that needs a file name (matplotlib's `savefig`): yield a temporary
    path next to `path`; when the block succeeds it becomes `path`, on any error it is removed."""
    path = Path(path)
    tmp = temp_path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        yield tmp
        if fsync:
            fd = os.open(tmp, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        os.replace(tmp, path)
    except BaseException as e:
        _discard(tmp)
        _raise_fault(e, path, fault)
        raise


def remove_stale_temps(path: str | os.PathLike) -> None:
    """Remove the temporary files of `path` that a killed writer left behind (`.NAME.*.tmp`, and
    `NAME.tmp` from cnnbench versions before this module). Only for a file one process writes at a
    time (a run's checkpoint, under the study's lock)."""
    import glob

    path = Path(path)
    stale = glob.glob(glob.escape(str(path.parent / f".{path.name}.")) + "*.tmp")
    for name in [*stale, str(path.with_name(path.name + ".tmp"))]:
        _discard(Path(name))


def _discard(tmp: Path) -> None:
    try:
        tmp.unlink(missing_ok=True)
    except OSError:
        pass


def _raise_fault(error: BaseException, path: Path, fault: bool) -> None:
    if fault and isinstance(error, Exception):
        from .errors import environment_fault

        one_line = environment_fault(error, path)
        if one_line is not None:
            raise one_line from None
