"""`cnnbench report` when the disk fills up: one line, exit 2, no temporary file, and every report
file either the previous one or the new one, never a torn one; with room again it completes."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest


def _one_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in stderr, stderr
    return lines[0]


def _digests(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.iterdir() if p.is_file()}


@pytest.mark.slow
def test_a_report_on_a_full_disk_is_one_line_and_leaves_no_torn_file(fault, tmp_path, tmpfs):
    mount, remount = tmpfs
    study = fault.write_study(tmp_path / "s.toml", seeds=3, epochs=2, extra='[grid]\noptimizer = ["adam", "sgd"]\n')
    run = fault.start("run", study, "-o", tmp_path / "st", "-q", "--no-report")
    assert run.wait(timeout=180)[0] == 0, run.stderr
    full = fault.start("report", tmp_path / "st", "-o", tmp_path / "complete")
    assert full.wait(timeout=180)[0] == 0, full.stderr
    complete = _digests(tmp_path / "complete")

    disk = mount("300k")  # room for the tables, not for every figure
    c = fault.start("report", tmp_path / "st", "-o", disk / "report")
    status, _ = c.wait(timeout=180)
    line = _one_line(c.stderr)
    assert status == 2 and line.startswith("cnnbench: error: "), c.stderr
    assert "No space left" in line and "--output" in line, c.stderr
    assert not list(disk.rglob("*.tmp"))
    partial = _digests(disk / "report")
    # whatever got written is whole: byte-identical to the same file of a complete report
    assert partial and all(partial[name] == complete[name] for name in partial if name in complete
                           and not name.endswith((".html", ".md", ".txt", ".svg")))
    remount(disk, "size=64m")
    again = fault.start("report", tmp_path / "st", "-o", disk / "report")
    assert again.wait(timeout=180)[0] == 0, again.stderr
    assert set(_digests(disk / "report")) == set(complete)
