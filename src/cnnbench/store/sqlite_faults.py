"""SQLite's errors as one line: a full disk, a read-only file, a file that is no database, a lock another
process holds (`EnvironmentFault` / `UserError`, exit 2); anything else is a bug and surfaces."""

from __future__ import annotations

import sqlite3
from contextlib import contextmanager
from pathlib import Path

from ..errors import EnvironmentFault, UserError, fault

# SQLite's primary result codes for a machine problem, not a bug (sqlite3.h)
_SQLITE_PERM, _SQLITE_READONLY, _SQLITE_IOERR, _SQLITE_CORRUPT, _SQLITE_FULL, _SQLITE_CANTOPEN, _SQLITE_NOTADB = \
    3, 8, 10, 11, 13, 14, 26
_SQLITE_BUSY, _SQLITE_LOCKED = 5, 6

# How long a connection waits for a lock another process holds on study.db (SQLite's busy timeout)
# before the run stops with `EnvironmentFault` ("locked by another process"). cnnbench's own writers
# hold the lock for one short transaction (milliseconds, an fsync on a slow disk); a process that
# holds it for this long is something else (an `sqlite3` shell in a transaction, a backup tool).
LOCK_TIMEOUT_S = 15.0


def locked_fault(path: Path) -> EnvironmentFault:
    return EnvironmentFault(
        f"{path} is locked by another process (SQLite waited {LOCK_TIMEOUT_S:g} s for it); wait for that process "
        f"to end or stop it (`fuser {path}` names it), then run the same command again (finished runs are kept)")


def sqlite_fault(error: sqlite3.Error, path: Path) -> UserError | None:
    """The one-line error for an SQLite error caused by the machine or the file (disk full, read-only,
    cannot open, not a database), or None for anything else (a bug: let it surface)."""
    code = getattr(error, "sqlite_errorcode", None)
    code = code & 0xFF if isinstance(code, int) else None
    text = str(error).lower()
    where = path.parent
    if code in (_SQLITE_BUSY, _SQLITE_LOCKED) or "database is locked" in text:
        return locked_fault(path)
    if code == _SQLITE_FULL or "database or disk is full" in text:
        return fault(path, "the disk is full", f"free space on the file system of {where}")
    if code in (_SQLITE_READONLY, _SQLITE_PERM) or "readonly database" in text:
        return fault(path, "it is read-only", f"make {path} and {where} writable")
    if code == _SQLITE_CANTOPEN or "unable to open database file" in text:
        return fault(path, "cannot open it", f"make {where} writable (SQLite also writes {path.name}-wal and "
                     f"{path.name}-shm there)", doing="open")
    if code == _SQLITE_IOERR or "disk i/o error" in text:
        return fault(path, "disk I/O error", f"check free space and the device of {where}")
    if code in (_SQLITE_NOTADB, _SQLITE_CORRUPT) or "not a database" in text or "malformed" in text:
        return UserError(f"{path} is not a cnnbench study database ({error}); move it away or choose another "
                         "study directory with --output")
    return None


@contextmanager
def faults(path: Path):
    """SQLite errors from the machine -> one line (`EnvironmentFault` / `UserError`)."""
    try:
        yield
    except sqlite3.Error as e:
        err = sqlite_fault(e, path)
        if err is None:
            raise
        raise err from None
