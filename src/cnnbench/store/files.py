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
    """Remove the temporary files of `path` that a killed writer left behind (`.NAME.PID-RANDOM.tmp`
    whose PID is no longer a process here, and `NAME.tmp` from cnnbench versions before this module).
    A temp file of a writer still alive (another worker writing the same cache file, an earlier attempt
    of a run still finishing) is left to it."""
    import glob

    path = Path(path)
    stale = glob.glob(glob.escape(str(path.parent / f".{path.name}.")) + "*.tmp")
    for name in [*(n for n in stale if not _writer_alive(n)), str(path.with_name(path.name + ".tmp"))]:
        _discard(Path(name))


def remove_stale_temps_in(directory: str | os.PathLike) -> None:
    """`remove_stale_temps` for every file of `directory` (a report's: a killed `cnnbench report` leaves
    the temp file of whatever it was writing)."""
    import glob

    for name in glob.glob(glob.escape(str(Path(directory))) + "/.*.tmp"):
        if not _writer_alive(name):
            _discard(Path(name))


def _writer_alive(name: str) -> bool:
    """Whether the process named in a temp file's name (`.NAME.PID-RANDOM.tmp`) is running on this machine."""
    pid_part = name.rsplit(".", 2)[-2].split("-", 1)[0]  # ".NAME.PID-RANDOM.tmp" -> "PID"
    if not pid_part.isdigit():
        return False
    pid = int(pid_part)
    if pid == os.getpid():
        return True  # this process: another thread's write in progress (a failed one removes its own)
    try:
        os.kill(pid, 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return False
    except OSError:
        return True  # exists, not ours to signal
    return True


def _discard(tmp: Path) -> None:
    try:
        tmp.unlink(missing_ok=True)
    except OSError:
        pass


def _raise_fault(error: BaseException, path: Path, fault: bool) -> None:
    if fault and isinstance(error, Exception):
        from ..errors import environment_fault

        one_line = environment_fault(error, path)
        if one_line is not None:
            raise one_line from None
