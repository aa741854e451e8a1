"""Reading study stores without writing to them.

`Store` creates its tables, migrates old columns and switches on WAL when it opens a database: all
writes. A report needs none of that, and must work on a study directory it cannot write (a read-only
mount, another user's results). `ReadOnlyStore` opens `study.db` with SQLite's `mode=ro` (falling
back to `immutable=1` for a WAL database whose directory cannot be written, where SQLite cannot create
the `-shm` file; nobody can be writing to such a database either) and fills the columns an older
store lacks with NULL as it reads, instead of adding them.
"""

from __future__ import annotations

import sqlite3
from contextlib import contextmanager
from pathlib import Path

from .. import store as store_mod
from ..errors import UserError


def connect(study_dir: str | Path) -> sqlite3.Connection:
    """`study_dir/study.db`, opened read-only; a `UserError` when there is none or it is no database."""
    path = Path(study_dir) / "study.db"
    if not path.is_file():
        raise UserError(f"{study_dir} is not a study directory (no study.db); run `cnnbench run` first")
    uri = path.resolve().as_uri()
    for query in ("?mode=ro", "?immutable=1"):
        conn = sqlite3.connect(uri + query, uri=True)
        conn.row_factory = sqlite3.Row
        try:
            conn.execute("SELECT key FROM runs LIMIT 1").fetchall()
            conn.execute("SELECT key FROM meta LIMIT 1").fetchall()
            return conn
        except sqlite3.OperationalError as e:
            conn.close()
            if "readonly" in str(e) or "unable to open" in str(e):
                continue  # WAL in a directory we cannot write: immutable is the only way in
            raise UserError(f"{path}: not a cnnbench study database ({e}); choose a study directory") from None
        except sqlite3.DatabaseError as e:
            conn.close()
            raise UserError(f"{path}: cannot use it as the study database ({e}); move it away, fix its "
                            "permissions, or choose another study directory") from None
    raise UserError(f"{path}: cannot open it for reading; check its permissions")


def _schema_columns() -> dict[str, list[str]]:
    """The columns each table has in the current schema (what an old store is read as)."""
    mem = sqlite3.connect(":memory:")
    try:
        mem.executescript(store_mod._SCHEMA)
        return {t: [r[1] for r in mem.execute(f"PRAGMA table_info({t})")] for t in ("runs", "history")}
    finally:
        mem.close()


class ReadOnlyStore(store_mod.Store):
    """A `Store` for reading only: `runs()`, `history()`, `get_meta()` (writes fail)."""

    def __init__(self, path: str | Path):  # noqa: D107 - no schema, no migration, no WAL switch
        self.path = Path(path)
        self.conn = connect(self.path.parent)
        self._columns = _schema_columns()

    @classmethod
    def open_existing(cls, study_dir: str | Path) -> "ReadOnlyStore":
        return cls(Path(study_dir) / "study.db")

    def runs(self):
        return [self._complete(r, "runs") for r in super().runs()]

    def run(self, key: str):
        r = super().run(key)
        return None if r is None else self._complete(r, "runs")

    def history(self, key: str | None = None):
        return [self._complete(r, "history") for r in super().history(key)]

    def _complete(self, row: dict, table: str) -> dict:
        for column in self._columns[table]:
            row.setdefault(column, None)
        return row


@contextmanager
def analysis_reads_only():
    """While inside, `cnnbench.analysis` opens study stores read-only.

    Temporary: `analysis.evidence.load_runs` opens stores with `Store.open_existing`, which writes;
    once the store offers a read-only open and `load_runs` uses it, this goes."""
    from ..analysis import evidence

    saved = evidence.Store
    evidence.Store = ReadOnlyStore
    try:
        yield
    finally:
        evidence.Store = saved
