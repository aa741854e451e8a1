"""The store: schema upgrades, transactions, history rows."""

import sqlite3

from cnnbench.store import Store


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
