"""The store: schema upgrades (an old study.db gains the new metric columns), transactions, history rows."""

import sqlite3

from cnnbench.store.db import COUNTS, METRICS, SCHEMA_VERSION, Store


def test_a_store_from_an_older_version_gains_new_columns(tmp_path):
    con = sqlite3.connect(tmp_path / "study.db")
    con.executescript("CREATE TABLE runs (key TEXT PRIMARY KEY, label TEXT NOT NULL, axes TEXT NOT NULL, "
                      "config TEXT NOT NULL, status TEXT NOT NULL DEFAULT 'pending', added_at REAL NOT NULL);"
                      "INSERT INTO runs VALUES ('k', 'l', '{}', '{\"seed\": 0}', 'done', 0);")
    con.commit()
    con.close()
    store = Store(tmp_path / "study.db")
    run = store.run("k")
    assert run["final"] == 1 and run["tuning"] == 0 and run["status"] == "done"


def test_record_epoch_replaces_rows_after_a_resume(tmp_path):
    store = Store.open(tmp_path, "s")

    class R:
        key, label, axes, config, role = "k", "l", {}, {"seed": 0}, "final"

    assert store.add_runs([R]) == 1 and store.add_runs([R]) == 0
    for epoch in range(3):
        store.record_epoch("k", epoch, {"loss": float(epoch)})
    store.record_epoch("k", 1, {"loss": 9.0})  # a resumed run rewrites epoch 1: later rows go
    assert [h["train_loss"] for h in store.history("k")] == [0.0, 9.0]
    assert store.run("k")["epochs_done"] == 2


# The runs table as cnnbench wrote it before the loss-independent metrics (schema version 1).
_SCHEMA_V1 = """
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
    train_loss REAL, train_acc REAL, val_loss REAL, val_acc REAL, test_loss REAL, test_acc REAL,
    seconds REAL,
    started_at REAL,
    finished_at REAL,
    environment TEXT,
    num_classes INTEGER,
    added_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS history (
    run_key TEXT NOT NULL REFERENCES runs(key),
    epoch INTEGER NOT NULL,
    train_loss REAL, train_acc REAL, val_loss REAL, val_acc REAL,
    learning_rate REAL, seconds REAL,
    PRIMARY KEY (run_key, epoch)
);
"""


def test_a_study_db_of_schema_version_1_opens_with_null_new_metrics(tmp_path):
    con = sqlite3.connect(tmp_path / "study.db")
    con.executescript(_SCHEMA_V1 + """
        INSERT INTO meta VALUES ('study', 'old'), ('schema_version', '1');
        INSERT INTO runs (key, label, axes, config, status, epochs_done, train_loss, train_acc, val_loss, val_acc,
                          test_loss, test_acc, num_classes, added_at)
        VALUES ('k', 'l', '{}', '{"seed": 0}', 'done', 2, 0.5, 0.8, 0.6, 0.75, 0.65, 0.7, 10, 0);
        INSERT INTO history VALUES ('k', 0, 0.9, 0.6, 0.8, 0.7, 0.001, 1.0), ('k', 1, 0.5, 0.8, 0.6, 0.75, 0.001, 1.0);
    """)
    con.commit()
    con.close()
    store = Store.open(tmp_path, "old")
    run = store.run("k")
    assert (run["test_acc"], run["val_acc"], run["status"]) == (0.7, 0.75, "done")
    for column in (*METRICS, *COUNTS):
        assert column in run
    for column in ("test_nll", "test_ece", "test_top5_acc", "test_macro_f1", "val_nll", "best_val_acc",
                   "last_val_loss", "params", "flops", "metrics_epoch"):
        assert run[column] is None, column
    assert [h["val_acc"] for h in store.history("k")] == [0.7, 0.75]
    assert store.get_meta("schema_version") == str(SCHEMA_VERSION)
    # a new run in the migrated store records the new columns
    store.finish("k", "done", {"test_acc": 0.9, "test_nll": 0.3, "best_val_acc": 0.8}, params=12, flops=340,
                 metrics_epoch=1)
    run = store.run("k")
    assert (run["test_nll"], run["best_val_acc"], run["params"], run["flops"], run["metrics_epoch"]) == \
        (0.3, 0.8, 12, 340, 1)
    store.close()
    # the columns' types: REAL for metrics, INTEGER for counts
    con = sqlite3.connect(tmp_path / "study.db")
    types = {r[1]: r[2] for r in con.execute("PRAGMA table_info(runs)")}
    con.close()
    assert all(types[m] == "REAL" for m in METRICS) and all(types[c] == "INTEGER" for c in COUNTS)


def test_store_metrics_are_names_of_the_metric_table():
    from cnnbench import metrics

    assert set(METRICS) <= set(metrics.METRICS)
    assert {"test_acc", "test_loss", "test_top5_acc", "test_nll", "test_ece", "test_macro_f1", "val_acc",
            "val_loss", "val_top5_acc", "val_nll", "val_ece", "val_macro_f1", "best_val_acc", "last_val_acc",
            "best_val_loss", "last_val_loss"} <= set(METRICS)


def test_run_stores_the_analysis_section_in_meta(tmp_path, monkeypatch):
    import json

    from cnnbench import spec as study
    from cnnbench.runs import plan as planning
    from cnnbench.runs import study_run

    s = study.parse_text('name = "a"\nepochs = 1\n[analysis]\nmetric = "test_ece"\nrope = 0.02\n'
                         'cells = ["dataset", "model"]\n')
    p = planning.plan(s, output=tmp_path, download=False)
    monkeypatch.setattr(study_run.StudyRun, "phase", lambda *args, **kwargs: None)  # no training: only what is stored
    study_run.run_plan(p, data_dir=None, device="cpu")
    store = Store.open_existing(tmp_path)
    stored = json.loads(store.get_meta("analysis"))
    assert stored == {"metric": "test_ece", "target_accuracy": None, "alpha": 0.05, "rope": 0.02,
                      "cells": ["dataset", "model"]}
    store.close()


# --- faults: a full disk, a study.db that is not ours -------------------------------------------------
def test_a_full_database_is_one_line_and_the_transaction_is_rolled_back(tmp_path):
    import pytest

    from cnnbench.errors import EnvironmentFault

    store = Store.open(tmp_path, "s")

    class R:
        key, label, axes, config, role = "k", "l", {}, {"seed": 0}, "final"

    store.add_runs([R])
    store.record_epoch("k", 0, {"loss": 1.0})
    pages = store.conn.execute("PRAGMA page_count").fetchone()[0]
    store.conn.execute(f"PRAGMA max_page_count = {pages}")  # SQLite's own SQLITE_FULL, as on a full disk
    with pytest.raises(EnvironmentFault) as err:
        for epoch in range(1, 2000):
            store.record_epoch("k", epoch, {"loss": float(epoch), "accuracy": 0.5, "val_loss": 1.0})
    message = str(err.value)
    assert "\n" not in message and str(tmp_path / "study.db") in message and "free space" in message
    epochs = [h["epoch"] for h in store.history("k")]
    assert store.run("k")["epochs_done"] == len(epochs) == epochs[-1] + 1  # whole transactions only
    assert not store.conn.in_transaction
    store.conn.execute("PRAGMA max_page_count = 1073741823")  # space is back: writes go on
    store.record_epoch("k", len(epochs), {"loss": 0.0})
    store.close()


def test_a_foreign_database_is_refused_before_anything_is_written(tmp_path):
    import hashlib

    import pytest

    from cnnbench.errors import UserError

    db = tmp_path / "study.db"
    con = sqlite3.connect(db)
    con.executescript("CREATE TABLE runs (id INTEGER PRIMARY KEY, name TEXT); INSERT INTO runs VALUES (1, 'x');")
    con.commit()
    con.close()
    before = hashlib.sha256(db.read_bytes()).hexdigest()
    with pytest.raises(UserError, match="not a cnnbench study database: its table 'runs' lacks the columns"):
        Store.open(tmp_path, "s")
    assert hashlib.sha256(db.read_bytes()).hexdigest() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["study.db"]  # no -wal, no -shm


def test_an_old_study_db_gains_the_custom_metrics_table_and_column(tmp_path):
    con = sqlite3.connect(tmp_path / "study.db")
    con.executescript(_SCHEMA_V1 + """
        INSERT INTO meta VALUES ('study', 'old'), ('schema_version', '1');
        INSERT INTO runs (key, label, axes, config, status, added_at) VALUES ('k', 'l', '{}', '{"seed": 0}', 'done', 0);
    """)
    con.commit()
    con.close()
    readonly = Store.open_readonly(tmp_path)  # before the migration: read as empty
    assert readonly.history_metrics() == [] and readonly.run("k")["custom_metrics"] == {}
    readonly.close()
    store = Store.open(tmp_path, "old")
    assert store.run("k")["custom_metrics"] == {}
    store.record_epoch("k", 0, {"loss": 1.0, "accuracy": 0.5, "my_metric": 0.25, "val_my_metric": 0.5,
                                "digit_loss": 0.75, "top5_accuracy": None})
    store.record_epoch("k", 1, {"loss": 0.9, "my_metric": 0.3})
    store.record_epoch("k", 1, {"loss": 0.8, "my_metric": 0.35})  # a resumed epoch replaces its values
    rows = {(r["epoch"], r["name"]): r["value"] for r in store.history_metrics("k")}
    assert rows == {(0, "my_metric"): 0.25, (0, "val_my_metric"): 0.5, (0, "digit_loss"): 0.75,
                    (0, "top5_accuracy"): None, (1, "my_metric"): 0.35}
    store.finish("k", "done", {"test_acc": 0.9}, custom_metrics={"test_my_metric": 0.4, "val_my_metric": float("nan")})
    assert store.run("k")["custom_metrics"] == {"test_my_metric": 0.4, "val_my_metric": None}
    store.close()


def test_checkpoint_and_model_paths_and_a_checkpoint_set_aside(tmp_path):
    import re

    from cnnbench.store import checkpoints

    assert checkpoints.checkpoint_path(tmp_path, "abc") == tmp_path / "checkpoints" / "abc.pt"
    assert checkpoints.model_path(str(tmp_path), "abc") == tmp_path / "models" / "abc.pt"
    path = checkpoints.checkpoint_path(tmp_path, "abc")
    path.parent.mkdir()
    path.write_bytes(b"another run's weights")
    aside = checkpoints.set_aside(path, "foreign")
    assert not path.exists() and aside.parent == path.parent
    assert re.fullmatch(r"abc\.pt\.foreign-\d{8}T\d{6}", aside.name), aside.name
    assert aside.read_bytes() == b"another run's weights"
