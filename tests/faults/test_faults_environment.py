"""The machine fails, not the input: a full disk, a read-only study directory, a study.db that is not
ours, a damaged checkpoint. Each is one line and exit 2 with nothing half-written (or, for a damaged
checkpoint, a line and a run that starts again), and the study resumes once the cause is fixed.

A real full disk is a small tmpfs (mounted where the test may: root on Linux); otherwise those tests
are skipped, and tests/test_train.py and tests/test_store.py simulate ENOSPC in-process."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest


def _one_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in stderr, stderr
    return lines[0]

RESULT_COLUMNS = ("status", "epochs_done", "train_loss", "train_acc", "val_loss", "val_acc", "test_loss",
                  "test_acc", "test_nll", "test_ece", "val_nll", "best_val_acc", "params", "flops")


def _runs(study_dir: Path) -> dict[str, tuple]:
    con = sqlite3.connect(f"file:{study_dir / 'study.db'}?mode=ro", uri=True)
    try:
        return {r[0]: r[1:] for r in con.execute(f"SELECT key, {', '.join(RESULT_COLUMNS)} FROM runs")}
    finally:
        con.close()


@pytest.mark.slow
@pytest.mark.parametrize("size,workers", [("160k", "1"), ("300k", "2")])  # a checkpoint / study.db fills it
def test_a_full_disk_is_one_line_exit_2_and_the_study_resumes_with_the_same_numbers(fault, tmp_path, tmpfs,
                                                                                   size, workers):
    mount, remount = tmpfs
    study = fault.write_study(tmp_path / "s.toml", seeds=2, epochs=2)
    disk = mount(size)
    c = fault.start("run", study, "-o", disk / "st", "--workers", workers, "-q", "--no-report")
    status, _ = c.wait(timeout=120)
    line = _one_line(c.stderr)
    assert status == 2 and line.startswith("cnnbench: error: cannot write ") and "free space" in line, c.stderr
    assert not list(disk.rglob("*.tmp")) and not list(disk.rglob("*.corrupt-*"))
    assert "failed" not in fault.statuses(disk / "st").values()  # the study stopped; no run marked failed
    c.wait_no_processes()
    remount(disk, "size=64m")
    again = fault.start("run", study, "-o", disk / "st", "--workers", workers, "-q", "--no-report")
    status, _ = again.wait(timeout=180)
    assert status == 0, again.stderr
    unhurt = fault.start("run", study, "-o", tmp_path / "unhurt", "--workers", workers, "-q", "--no-report")
    assert unhurt.wait(timeout=180)[0] == 0
    resumed = _runs(disk / "st")
    assert len(resumed) == 2 and {r[0] for r in resumed.values()} == {"done"}
    assert resumed == _runs(tmp_path / "unhurt")  # nothing lost, nothing different
    assert not list(disk.rglob("*.tmp")) and not list((disk / "st" / "checkpoints").iterdir())


def test_a_read_only_study_directory_is_one_line_exit_2_and_unchanged(fault, tmp_path, tmpfs):
    mount, remount = tmpfs
    disk = mount("64m")
    fault.write_study(tmp_path / "s.toml", seeds=1, epochs=1)
    assert fault.start("run", tmp_path / "s.toml", "-o", disk / "st", "-q", "--no-report").wait(timeout=120)[0] == 0
    remount(disk, "ro")
    before = fault.tree_hash(disk)
    more = fault.write_study(tmp_path / "s.toml", seeds=2, epochs=1)  # one more seed: something to write
    c = fault.start("run", more, "-o", disk / "st", "-q", "--no-report")
    status, _ = c.wait(timeout=120)
    line = _one_line(c.stderr)
    assert status == 2 and "writable" in line and str(disk / "st") in line, c.stderr
    assert fault.tree_hash(disk) == before


_FOREIGN = {
    "directory": None,
    "foreign runs table": "CREATE TABLE runs (id INTEGER PRIMARY KEY, name TEXT); INSERT INTO runs VALUES (1, 'x');",
    "foreign history table": "CREATE TABLE history (day TEXT, amount REAL); INSERT INTO history VALUES ('mon', 1);",
    "another application": "CREATE TABLE invoices (id INTEGER); INSERT INTO invoices VALUES (7);",
    "not sqlite": b"this is not a database\n" * 50,
}


@pytest.mark.parametrize("kind", list(_FOREIGN))
def test_a_study_db_that_is_not_ours_is_one_line_exit_2_and_byte_identical(fault, tmp_path, kind):
    study_dir = tmp_path / "st"
    study_dir.mkdir()
    db = study_dir / "study.db"
    content = _FOREIGN[kind]
    if content is None:
        db.mkdir()
        (db / "keep.txt").write_text("mine")
    elif isinstance(content, bytes):
        db.write_bytes(content)
    else:
        con = sqlite3.connect(db)
        con.executescript(content)
        con.commit()
        con.close()
    before = fault.tree_hash(study_dir)
    study = fault.write_study(tmp_path / "s.toml", seeds=1, epochs=1)
    c = fault.start("run", study, "-o", study_dir, "-q", "--no-report")
    status, _ = c.wait(timeout=120)
    line = _one_line(c.stderr)
    assert status == 2 and str(db) in line and ("--output" in line or "move it away" in line), c.stderr
    assert fault.tree_hash(study_dir) == before


@pytest.mark.slow
def test_a_damaged_checkpoint_is_set_aside_and_the_run_completes(fault, tmp_path):
    study = fault.write_study(tmp_path / "s.toml", seeds=1, epochs=2)
    st = tmp_path / "st"
    assert fault.start("run", study, "-o", st, "-q", "--no-report").wait(timeout=120)[0] == 0
    first = _runs(st)
    (key,) = first
    # as if killed mid-run, with a checkpoint that a failing disk truncated
    con = sqlite3.connect(st / "study.db")
    con.execute("UPDATE runs SET status = 'running' WHERE key = ?", (key,))
    con.commit()
    con.close()
    (st / "checkpoints").mkdir(exist_ok=True)
    (st / "checkpoints" / f"{key}.pt").write_bytes(b"PK\x03\x04 truncated")
    c = fault.start("run", study, "-o", st, "-q", "--no-report")
    status, _ = c.wait(timeout=120)
    assert status == 0, c.stderr
    notes = [ln for ln in c.stderr.splitlines() if "could not be loaded" in ln]
    assert len(notes) == 1 and f"{key}.pt.corrupt-" in notes[0] and "weights_only" not in c.stderr, c.stderr
    aside = list((st / "checkpoints").glob(f"{key}.pt.corrupt-*"))
    assert len(aside) == 1 and aside[0].read_bytes() == b"PK\x03\x04 truncated"
    assert _runs(st) == first  # restarted from scratch: the same numbers as the first time
