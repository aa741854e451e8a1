"""The study's SQLite store: one file, `study.db`, in the study directory.

Tables: `meta` (which study owns the directory), `runs` (one row per run key: resolved config,
status, error, timings, environment, final metrics) and `history` (one row per run and epoch).
WAL mode and one transaction per write, so a process killed at any moment leaves either the old or
the new state, never a torn one; several worker processes may write at once.
"""

from __future__ import annotations

import json
import math
import os
import sqlite3
import time
from collections.abc import Iterable
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ..errors import UserError, fault
from .sqlite_faults import LOCK_TIMEOUT_S, faults, locked_fault, sqlite_fault

SCHEMA_VERSION = 3  # 2: the loss-independent metrics, params, flops, metrics_epoch; 3: custom metrics

STATUSES = ("pending", "running", "done", "diverged", "failed")
FINISHED = ("done", "diverged")  # a run with a result: never run again, ranked (diverged at chance level)
# The metric columns of `runs` (REAL), each a name of `cnnbench.metrics.METRICS`: the row's epoch
# (train_*, val_loss, val_acc), the finished model evaluated on the test and validation sets, and the
# best and last validation values of the history. A store written before a column existed has NULL there.
_EVALUATED = ("top5_acc", "nll", "ece", "macro_f1")
METRICS = ("train_loss", "train_acc", "val_loss", "val_acc", "test_loss", "test_acc",
           *(f"test_{m}" for m in _EVALUATED), *(f"val_{m}" for m in _EVALUATED),
           "best_val_acc", "last_val_acc", "best_val_loss", "last_val_loss")
# Whole-number facts of a finished run: parameter count, forward FLOPs per image (None when they could
# not be counted), and the epoch (0-based) whose history numbers make the row's train_*/val_acc/val_loss.
COUNTS = ("params", "flops", "metrics_epoch")

_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS runs (
    key TEXT PRIMARY KEY,
    label TEXT NOT NULL,
    axes TEXT NOT NULL,
    config TEXT NOT NULL,
    current INTEGER NOT NULL DEFAULT 1, -- in the study's latest spec (older runs are kept, not ranked)
    final INTEGER NOT NULL DEFAULT 1,   -- ranked in the report
    tuning INTEGER NOT NULL DEFAULT 0,  -- part of a learning-rate search (may also be final)
    status TEXT NOT NULL DEFAULT 'pending',
    error TEXT,
    epochs_done INTEGER NOT NULL DEFAULT 0,
    best_epoch INTEGER,
    stopped_epoch INTEGER,
    {", ".join(m + " REAL" for m in METRICS)},
    {", ".join(c + " INTEGER" for c in COUNTS)},
    seconds REAL,
    started_at REAL,
    finished_at REAL,
    environment TEXT,
    num_classes INTEGER,
    custom_metrics TEXT,                -- JSON: test_NAME and val_NAME of the run's metrics = [...]
    added_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS history (
    run_key TEXT NOT NULL REFERENCES runs(key),
    epoch INTEGER NOT NULL,
    train_loss REAL, train_acc REAL, val_loss REAL, val_acc REAL,
    learning_rate REAL, seconds REAL,
    PRIMARY KEY (run_key, epoch)
);
CREATE TABLE IF NOT EXISTS history_metrics (
    run_key TEXT NOT NULL REFERENCES runs(key),
    epoch INTEGER NOT NULL,
    name TEXT NOT NULL,                 -- a log key beyond history's columns: my_metric, val_my_metric, digit_loss, ...
    value REAL,
    PRIMARY KEY (run_key, epoch, name)
);
"""
# The log keys `history` has columns for; every other numeric log key of an epoch goes to `history_metrics`.
HISTORY_LOGS = ("loss", "accuracy", "val_loss", "val_accuracy", "learning_rate", "seconds")


# What identifies our tables (in every schema version): a table of that name without these columns is
# someone else's, and the file is refused before anything is written to it.
_OUR_COLUMNS = {"meta": {"key", "value"}, "runs": {"key", "label", "axes", "config", "status", "added_at"},
                "history": {"run_key", "epoch", "train_loss"}}

def _read_uri(path: Path) -> str:
    """A read-only URI for `path` that creates nothing beside it: `immutable=1` when no -wal or -journal
    is there (no connection is writing: the file is complete), else `mode=ro` (which waits for locks)."""
    busy = any(path.with_name(path.name + suffix).exists() for suffix in ("-wal", "-journal"))
    return path.resolve().as_uri() + ("?mode=ro" if busy else "?immutable=1")


def check_ours(path: Path) -> str | None:
    """Refuse, without writing anything, a `study.db` that is a directory or someone else's database
    (tables named like ours without our columns, or only tables of its own). Read-only check; returns
    the name of the study it holds (meta key `study`; None for a new or an early store without it), so
    that a store of another study is refused before `Store` migrates or switches anything in it."""
    if path.is_dir():
        raise UserError(f"{path} is a directory, not a study database; move it away or choose another study "
                        "directory with --output")
    if not path.exists() or path.stat().st_size == 0:
        return None
    try:
        con = sqlite3.connect(_read_uri(path), uri=True, timeout=LOCK_TIMEOUT_S)
    except sqlite3.Error as e:
        raise (sqlite_fault(e, path) or UserError(f"{path}: cannot open it ({e})")) from None
    owner = None
    try:
        with faults(path):
            tables = [r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
            columns = {t: {r[1] for r in con.execute(f'PRAGMA table_info("{t}")')} for t in tables if t in _OUR_COLUMNS}
            if _OUR_COLUMNS["meta"] <= columns.get("meta", set()):
                row = con.execute("SELECT value FROM meta WHERE key = 'study'").fetchone()
                owner = None if row is None else row[0]
    finally:
        con.close()
    for table, have in columns.items():
        missing = _OUR_COLUMNS[table] - have
        if missing:
            raise UserError(f"{path} is not a cnnbench study database: its table {table!r} lacks the columns "
                            f"{', '.join(sorted(missing))}; it was left unchanged; move it away or choose another "
                            "study directory with --output")
    others = [t for t in tables if not t.startswith("sqlite_") and t not in _OUR_COLUMNS]
    if others and not columns:
        raise UserError(f"{path} is not a cnnbench study database (its tables: {', '.join(sorted(others)[:5])}); "
                        "it was left unchanged; move it away or choose another study directory with --output")
    return owner


def check_owner(study_dir: Path, owner: str | None, name: str | None) -> None:
    """Refuse a study directory whose store holds another study than `name` (`owner`: its meta key
    `study`, None for a new store; `name` None: any study will do)."""
    if name is not None and owner is not None and owner != name:
        raise UserError(f"{study_dir} holds study {owner!r}, not {name!r}; "
                        f"choose another output directory with --output")


class Store:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        check_ours(self.path)  # before anything writes: a foreign file stays byte-identical
        directory = self.path.parent
        if directory.is_dir() and not os.access(directory, os.W_OK | os.X_OK):
            raise fault(self.path, "its directory is not writable (SQLite writes its journal there)",
                        f"make {directory} writable")
        if self.path.exists() and not os.access(self.path, os.W_OK):
            raise fault(self.path, "it is read-only", f"make {self.path} writable")
        try:
            self.conn = sqlite3.connect(self.path, timeout=LOCK_TIMEOUT_S, isolation_level=None)
        except sqlite3.Error as e:
            raise (sqlite_fault(e, self.path) or UserError(f"{self.path}: cannot open it ({e})")) from None
        self.conn.row_factory = sqlite3.Row
        try:
            with faults(self.path):
                self.conn.execute("PRAGMA journal_mode=WAL")
                self.conn.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: durable across process kills
                self.conn.executescript(_SCHEMA)
                self._add_missing_columns()
        except UserError:
            self.conn.close()
            raise
        except sqlite3.DatabaseError as e:
            self.conn.close()
            raise UserError(f"{self.path}: cannot use it as the study database ({e}); move it away, fix its "
                            "permissions, or choose another study directory with --output") from None

    def _write(self, sql: str, params=()) -> sqlite3.Cursor:
        with faults(self.path):
            return self.conn.execute(sql, params)

    def _add_missing_columns(self) -> None:
        """A store written by an older cnnbench gains the columns added since, with their defaults
        (NULL for the metrics: an old run was not scored on them)."""
        wanted = sqlite3.connect(":memory:")
        wanted.executescript(_SCHEMA)
        missing = []
        for table in ("runs", "history"):
            have = {r[1] for r in self.conn.execute(f"PRAGMA table_info({table})")}
            for _, name, ctype, notnull, default, _pk in wanted.execute(f"PRAGMA table_info({table})"):
                if name not in have:
                    spec = (f"{ctype}{' NOT NULL' if notnull else ''}"
                            f"{f' DEFAULT {default}' if default is not None else ''}")
                    missing.append(f"ALTER TABLE {table} ADD COLUMN {name} {spec}")
        wanted.close()
        if not missing:
            return
        with self.transaction() as c:  # all the columns or none (a full disk mid-way leaves the old schema)
            for statement in missing:
                c.execute(statement)
            if c.execute("SELECT 1 FROM meta WHERE key = 'schema_version'").fetchone():
                c.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(SCHEMA_VERSION),))

    @classmethod
    def open(cls, study_dir: str | Path, study_name: str | None = None) -> Store:
        """Open (creating if needed) the store of `study_dir`; refuse one that holds another study."""
        study_dir = Path(study_dir)
        try:
            study_dir.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            from ..errors import environment_fault

            raise (environment_fault(e, study_dir / "study.db", "create") or UserError(
                f"cannot create the study directory {study_dir} ({e.strerror}); "
                "choose another with --output")) from None
        # Whose store it is, read before `Store` creates tables, adds columns or switches on WAL: a store
        # of another study (of any cnnbench version) is refused byte-identical; our own older one migrates.
        check_owner(study_dir, check_ours(study_dir / "study.db"), study_name)
        store = cls(study_dir / "study.db")
        owner = store.get_meta("study")
        if study_name is not None:
            if owner is None:
                with store.transaction() as c:
                    c.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('study', ?), ('schema_version', ?)",
                              (study_name, str(SCHEMA_VERSION)))
            elif owner != study_name:
                store.close()
                check_owner(study_dir, owner, study_name)
        return store

    @classmethod
    def open_existing(cls, study_dir: str | Path) -> Store:
        path = Path(study_dir) / "study.db"
        if not path.is_file():
            raise UserError(f"{study_dir} is not a study directory (no study.db); run `cnnbench run` first")
        return cls(path)

    @classmethod
    def open_readonly(cls, study_dir: str | Path) -> Store:
        """The store of `study_dir` for reading only (`runs`, `history`, `get_meta`): nothing is
        written, so a read-only study directory opens; columns newer than the store read as NULL."""
        return ReadOnlyStore(Path(study_dir) / "study.db")

    def close(self) -> None:
        self.conn.close()

    @contextmanager
    def transaction(self):
        """One transaction; a disk-full or read-only error becomes one line, with nothing half-written
        (SQLite rolls the transaction back: the store holds the state before it)."""
        with faults(self.path):
            self.conn.execute("BEGIN IMMEDIATE")
            try:
                yield self.conn
                self.conn.execute("COMMIT")
            except BaseException:
                if self.conn.in_transaction:  # SQLite may already have rolled back (e.g. SQLITE_FULL)
                    try:
                        self.conn.execute("ROLLBACK")
                    except sqlite3.Error:
                        pass
                raise

    # --- meta ---------------------------------------------------------------------------------------
    def get_meta(self, key: str) -> str | None:
        with faults(self.path):  # a lock held elsewhere: one line
            row = self.conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else row[0]

    def set_meta(self, key: str, value: str | None) -> None:
        """Set `key`, or remove it when `value` is None."""
        if value is None:
            self._write("DELETE FROM meta WHERE key = ?", (key,))
        else:
            self._write("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, value))

    # --- runs ---------------------------------------------------------------------------------------
    def add_runs(self, runs: Iterable, *, replace_current: bool = True) -> int:
        """Insert the `study.Run`s that are new (by key); return how many were added.

        These runs become the study's current runs (with `replace_current`, the only ones: a changed
        spec keeps the results of the runs it dropped, but they are no longer ranked). A run already
        stored keeps its results; its label and axes are refreshed (they describe it relative to the
        current spec), and so is its role: with `replace_current` every run first loses its roles, and
        each run gets back the one it has in this spec (a learning-rate search run whose rate is then
        chosen, added again without `replace_current`, is also a final run)."""
        now, added = time.time(), 0
        with self.transaction() as c:
            if replace_current:
                c.execute("UPDATE runs SET current = 0, final = 0, tuning = 0")
            for r in runs:
                final, tuning = int(r.role == "final"), int(r.role == "tuning")
                axes = json.dumps(r.axes)
                cur = c.execute("INSERT OR IGNORE INTO runs (key, label, axes, config, final, tuning, added_at) "
                                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                                (r.key, r.label, axes, json.dumps(r.config, sort_keys=True), final, tuning, now))
                if cur.rowcount:
                    added += 1
                else:
                    c.execute("UPDATE runs SET label = ?, axes = ?, current = 1, final = MAX(final, ?), "
                              "tuning = MAX(tuning, ?) WHERE key = ?", (r.label, axes, final, tuning, r.key))
        return added

    def statuses(self) -> dict[str, str]:
        with faults(self.path):
            return {r[0]: r[1] for r in self.conn.execute("SELECT key, status FROM runs")}

    def run(self, key: str) -> dict[str, Any] | None:
        row = self.conn.execute("SELECT * FROM runs WHERE key = ?", (key,)).fetchone()
        return None if row is None else _run_dict(row)

    def runs(self) -> list[dict[str, Any]]:
        return [_run_dict(r) for r in self.conn.execute("SELECT * FROM runs ORDER BY added_at, key")]

    def mark_running(self, key: str, environment: dict) -> None:
        self._write("UPDATE runs SET status='running', error=NULL, started_at=?, environment=? "
                          "WHERE key=?", (time.time(), json.dumps(environment), key))

    def record_epoch(self, key: str, epoch: int, logs: dict[str, float]) -> None:
        """Write one epoch's history row and the run's progress, in one transaction."""
        with self.transaction() as c:
            c.execute("INSERT OR REPLACE INTO history (run_key, epoch, train_loss, train_acc, val_loss, "
                      "val_acc, learning_rate, seconds) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                      (key, epoch, logs.get("loss"), logs.get("accuracy"), logs.get("val_loss"),
                       logs.get("val_accuracy"), logs.get("learning_rate"), logs.get("seconds")))
            c.execute("DELETE FROM history WHERE run_key = ? AND epoch > ?", (key, epoch))
            extra = [(key, epoch, name, None if value is None else float(value)) for name, value in logs.items()
                     if name not in HISTORY_LOGS and (value is None or isinstance(value, (int, float)))]
            c.execute("DELETE FROM history_metrics WHERE run_key = ? AND epoch >= ?", (key, epoch))
            if extra:
                c.executemany("INSERT INTO history_metrics (run_key, epoch, name, value) VALUES (?, ?, ?, ?)", extra)
            c.execute("UPDATE runs SET epochs_done = ? WHERE key = ?", (epoch + 1, key))

    def finish(self, key: str, status: str, metrics: dict[str, float | None] | None = None,
               error: str | None = None, **extra) -> None:
        """Record a run's outcome: every column of `METRICS` from `metrics` (missing ones NULL; NaN is
        stored as NULL by SQLite), and `extra` columns as given (timings, `COUNTS`, epochs)."""
        assert status in STATUSES, status
        metrics = metrics or {}
        cols = {m: metrics.get(m) for m in METRICS}
        if "custom_metrics" in extra:  # {"test_<name>": value, ...}: JSON (NaN as null)
            custom = extra.pop("custom_metrics")
            cols["custom_metrics"] = None if not custom else json.dumps(
                {k: (None if v is None or not math.isfinite(v) else float(v)) for k, v in custom.items()},
                sort_keys=True)
        cols.update(extra)
        sets = ", ".join(f"{c} = ?" for c in cols)
        self._write(f"UPDATE runs SET status = ?, error = ?, finished_at = ?, {sets} WHERE key = ?",
                          (status, error, time.time(), *cols.values(), key))

    # --- history ------------------------------------------------------------------------------------
    def history(self, key: str | None = None) -> list[dict[str, Any]]:
        if key is None:
            rows = self.conn.execute("SELECT * FROM history ORDER BY run_key, epoch")
        else:
            rows = self.conn.execute("SELECT * FROM history WHERE run_key = ? ORDER BY epoch", (key,))
        return [dict(r) for r in rows]

    def history_metrics(self, key: str | None = None) -> list[dict[str, Any]]:
        """The epochs' other log values (custom metrics, per-output losses): rows run_key, epoch, name,
        value; none for a store written before the table existed."""
        has = self.conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'history_metrics'")
        if not has.fetchone():
            return []
        if key is None:
            rows = self.conn.execute("SELECT * FROM history_metrics ORDER BY run_key, epoch, name")
        else:
            rows = self.conn.execute("SELECT * FROM history_metrics WHERE run_key = ? ORDER BY epoch, name", (key,))
        return [dict(r) for r in rows]


def _run_dict(row: sqlite3.Row) -> dict[str, Any]:
    d = dict(row)
    d["config"] = json.loads(d["config"])
    d["custom_metrics"] = json.loads(d["custom_metrics"]) if d.get("custom_metrics") else {}
    d["axes"] = json.loads(d["axes"])
    d["environment"] = json.loads(d["environment"]) if d["environment"] else None
    return d


# --- reading only ---------------------------------------------------------------------------------
# `Store` creates its tables, migrates old columns and switches on WAL when it opens a database: all
# writes. Analysis and reports need none of that, and must work on a study directory they cannot write
# (a read-only mount, another user's results): they open the store with `Store.open_readonly`, SQLite's
# `mode=ro` (falling back to `immutable=1` for a WAL database whose directory cannot be written, where
# SQLite cannot create the `-shm` file; nobody can be writing to such a database either), and read the
# columns an older store lacks as NULL instead of adding them.


def connect_readonly(study_dir: str | Path) -> sqlite3.Connection:
    """`study_dir/study.db`, opened read-only; a `UserError` when there is none or it is no database."""
    path = Path(study_dir) / "study.db"
    if not path.is_file():
        raise UserError(f"{study_dir} is not a study directory (no study.db); run `cnnbench run` first")
    uri = path.resolve().as_uri()
    for query in ("?mode=ro", "?immutable=1"):
        conn = sqlite3.connect(uri + query, uri=True, timeout=LOCK_TIMEOUT_S)
        conn.row_factory = sqlite3.Row
        try:
            conn.execute("SELECT key FROM runs LIMIT 1").fetchall()
            conn.execute("SELECT key FROM meta LIMIT 1").fetchall()
            return conn
        except sqlite3.OperationalError as e:
            conn.close()
            if "readonly" in str(e) or "unable to open" in str(e):
                continue  # WAL in a directory we cannot write: immutable is the only way in
            if "locked" in str(e):
                raise locked_fault(path) from None
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
        mem.executescript(_SCHEMA)
        return {t: [r[1] for r in mem.execute(f"PRAGMA table_info({t})")] for t in ("runs", "history")}
    finally:
        mem.close()


class ReadOnlyStore(Store):
    """A `Store` for reading only: `runs()`, `history()`, `get_meta()` (writes fail)."""

    def __init__(self, path: str | Path, conn: sqlite3.Connection | None = None):  # no schema, no migration
        self.path = Path(path)
        self.conn = conn if conn is not None else connect_readonly(self.path.parent)
        self._columns = _schema_columns()

    @classmethod
    def open_existing(cls, study_dir: str | Path) -> ReadOnlyStore:
        return cls(Path(study_dir) / "study.db")

    @classmethod
    def open_untouched(cls, study_dir: str | Path) -> ReadOnlyStore:
        """Read leaving nothing beside study.db: SQLite's read-only mode creates the -wal and -shm files of
        a WAL database that has none and leaves them, so a database with neither a -wal nor a -journal
        beside it (no connection has it open) is read with `immutable=1`; else as `open_existing`."""
        path = Path(study_dir) / "study.db"
        if not path.is_file() or any(path.with_name(path.name + x).exists() for x in ("-wal", "-journal")):
            return cls.open_existing(study_dir)
        conn = sqlite3.connect(path.resolve().as_uri() + "?immutable=1", uri=True)
        conn.row_factory = sqlite3.Row
        return cls(path, conn)

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
