"""study.db faults (issue 22): another study's or an older cnnbench's store is identified before any
migration touches it; a store locked by another process is one line, exit 2, after a bounded wait, and
the runs in progress stay resumable (not marked failed)."""

from __future__ import annotations

import hashlib
import sqlite3
import subprocess
import sys

import pytest
from test_store import _SCHEMA_V1

from cnnbench.cli import main
from cnnbench.errors import EnvironmentFault, UserError
from cnnbench.store import db as store_mod
from cnnbench.store.db import SCHEMA_VERSION, Store


def _v1_store(directory, study):
    directory.mkdir(parents=True, exist_ok=True)
    con = sqlite3.connect(directory / "study.db")
    con.executescript(_SCHEMA_V1 + f"""
        INSERT INTO meta VALUES ('study', '{study}'), ('schema_version', '1');
        INSERT INTO runs (key, label, axes, config, status, added_at)
        VALUES ('k', 'l', '{{}}', '{{"seed": 0}}', 'done', 0);
    """)
    con.commit()
    con.close()
    return directory / "study.db"


def _digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_an_older_store_of_another_study_is_refused_untouched(tmp_path):
    db = _v1_store(tmp_path, "other")
    before = _digest(db)
    with pytest.raises(UserError, match=r"holds study 'other', not 'mine'"):
        Store.open(tmp_path, "mine")
    assert _digest(db) == before  # no column added, no table created, WAL not switched on
    assert sorted(p.name for p in tmp_path.iterdir()) == ["study.db"]  # no -wal, no -shm


def test_a_current_store_of_another_study_is_refused_untouched(tmp_path):
    Store.open(tmp_path, "other").close()
    before = _digest(tmp_path / "study.db")
    with pytest.raises(UserError, match=r"holds study 'other', not 'mine'"):
        Store.open(tmp_path, "mine")
    assert _digest(tmp_path / "study.db") == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["study.db"]


def test_an_older_store_of_the_same_study_is_migrated_and_opens(tmp_path):
    _v1_store(tmp_path, "mine")
    store = Store.open(tmp_path, "mine")
    assert store.get_meta("schema_version") == str(SCHEMA_VERSION) and store.run("k")["status"] == "done"
    assert "test_nll" in store.run("k")
    store.close()


def test_cli_run_into_an_older_store_of_another_study_leaves_it_untouched(tmp_path, capsys):
    out = tmp_path / "out"
    db = _v1_store(out, "other")
    before = _digest(db)
    spec = tmp_path / "s.toml"
    spec.write_text('name = "mine"\nseeds = [0]\nepochs = 1\n')
    assert main(["run", str(spec), "-o", str(out), "-q", "--workers", "1", "--no-report"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "holds study 'other', not 'mine'" in err, err
    assert _digest(db) == before and sorted(p.name for p in out.iterdir()) == ["study.db"]


# --- a lock held by another process ---------------------------------------------------------------
class LockHolder:
    """Another process holding `BEGIN EXCLUSIVE` on a database until `release()`."""

    def __init__(self, db):
        code = ("import sqlite3, sys\n"
                f"c = sqlite3.connect({str(db)!r}, isolation_level=None)\n"
                "c.execute('BEGIN EXCLUSIVE')\n"
                "print('locked', flush=True)\n"
                "sys.stdin.read()\n")
        self.proc = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     text=True)
        assert self.proc.stdout.readline().strip() == "locked"

    def release(self):
        if self.proc.poll() is None:
            self.proc.stdin.close()
            self.proc.wait(timeout=30)


@pytest.fixture
def short_lock_wait(monkeypatch):
    monkeypatch.setattr(store_mod, "LOCK_TIMEOUT_S", 0.5)  # documented default: 15 s


def _spec(tmp_path, epochs=1):
    spec = tmp_path / "s.toml"
    spec.write_text(f'name = "locked"\nseeds = [0]\nepochs = {epochs}\nbatch_size = 64\n')
    return spec


def test_a_store_locked_by_another_process_is_one_line_and_exit_2(tmp_path, capsys, short_lock_wait):
    out = tmp_path / "out"
    Store.open(out, "locked").close()
    holder = LockHolder(out / "study.db")
    try:
        with pytest.raises(EnvironmentFault, match="is locked by another process"):
            Store.open(out, "locked").add_runs([])
        assert main(["run", str(_spec(tmp_path)), "-o", str(out), "-q", "--workers", "1", "--no-report"]) == 2
    finally:
        holder.release()
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{out / 'study.db'} is locked by another process" in err, err
    assert "fuser" in err and "run the same command again" in err


@pytest.mark.slow  # trains a run, twice
def test_a_lock_taken_mid_run_stops_the_study_and_leaves_the_run_resumable(tmp_path, capsys, short_lock_wait,
                                                                            monkeypatch):
    out = tmp_path / "out"
    holders = []
    original = Store.record_epoch

    def record_epoch(self, key, epoch, logs):
        if epoch == 1 and not holders:  # another process takes the lock while the run trains
            holders.append(LockHolder(self.path))
        return original(self, key, epoch, logs)

    monkeypatch.setattr(Store, "record_epoch", record_epoch)
    try:
        status = main(["run", str(_spec(tmp_path, epochs=3)), "-o", str(out), "-q", "--workers", "1",
                       "--device", "cpu", "--no-report"])
    finally:
        for h in holders:
            h.release()
    err = capsys.readouterr().err
    assert status == 2 and err.count("\n") == 1 and "is locked by another process" in err, err
    con = sqlite3.connect(out / "study.db")
    (run_status, error, epochs_done), = con.execute("SELECT status, error, epochs_done FROM runs")
    con.close()
    assert (run_status, error, epochs_done) == ("running", None, 1)  # not failed: resumable
    assert (out / "checkpoints").is_dir()
    monkeypatch.setattr(Store, "record_epoch", original)
    assert main(["run", str(_spec(tmp_path, epochs=3)), "-o", str(out), "-q", "--workers", "1",
                 "--device", "cpu", "--no-report"]) == 0
    con = sqlite3.connect(out / "study.db")
    assert con.execute("SELECT status, epochs_done FROM runs").fetchall() == [("done", 3)]
    con.close()


def test_a_checkpoint_of_another_run_is_set_aside_and_the_run_starts_over(tmp_path):
    # A checkpoint records its run (the study's run key); one copied under another run's name is not
    # resumed from: it is set aside as KEY.pt.foreign-TIME and the run trains from its first epoch,
    # ending with the same numbers as a run that never saw the foreign file.
    import numpy as np
    import torch

    from cnnbench import fit

    rng = np.random.default_rng(0)
    x, y = rng.integers(0, 255, (64, 8, 8), dtype=np.uint8), rng.integers(0, 3, 64)
    common = dict(loss="sparse_categorical_crossentropy", optimizer="adam", batch_size=16, seed=0, verbose=0)
    ckpt = tmp_path / "checkpoints" / "b.pt"
    ckpt.parent.mkdir()
    fit("keras_mnist_mlp", x, y, epochs=1, checkpoint=tmp_path / "a.pt", checkpoint_tag="run-a", **common)
    (tmp_path / "a.pt").replace(ckpt)  # run a's checkpoint where run b's would be
    from cnnbench.callbacks import LambdaCallback

    def trained_epochs(**kw):
        trained = []
        history = fit("keras_mnist_mlp", x, y, epochs=2, **common, **kw,
                      callbacks=[LambdaCallback(on_epoch_begin=lambda epoch, logs: trained.append(epoch))])
        return history, trained

    resumed, trained = trained_epochs(checkpoint=ckpt, checkpoint_tag="run-b")
    assert trained == [0, 1]  # trained from the start, not on from run a's epoch 1
    assert any("is another run's" in n and "run-a" in n for n in resumed.notes)
    assert len(list(ckpt.parent.glob("b.pt.foreign-*"))) == 1
    clean = fit("keras_mnist_mlp", x, y, epochs=2, **common)
    assert resumed.history["loss"] == clean.history["loss"]
    assert torch.load(ckpt, weights_only=True)["tag"] == "run-b"
    # a checkpoint without a tag (written before tags) is still resumed: existing studies go on
    untagged = tmp_path / "old.pt"
    fit("keras_mnist_mlp", x, y, epochs=1, checkpoint=untagged, **common)
    assert trained_epochs(checkpoint=untagged, checkpoint_tag="run-c")[1] == [1]


def test_a_report_removes_the_temp_files_a_killed_report_left(tmp_path):
    # A report killed while writing leaves `.NAME.PID-RANDOM.tmp` (files.atomic_write); the next report
    # removes those whose writer is gone, and leaves a live writer's alone.
    import os
    import subprocess
    import sys

    from cnnbench.api import Study

    study = Study.from_dict({"name": "tmp", "seeds": [0], "epochs": 1, "batch_size": 64, "dataset": "digits"})
    study.run(tmp_path / "s", workers=1, report=False, verbose=0)
    out = tmp_path / "s" / "report"
    out.mkdir()
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    stale = out / f".report.html.{gone.pid}-abc123.tmp"
    live = out / f".summary.md.{os.getpid()}-def456.tmp"
    stale.write_text("half a report")
    live.write_text("being written")
    study.report()
    assert not stale.exists() and live.exists()
    assert (out / "report.html").stat().st_size > 0
