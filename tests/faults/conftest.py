"""Fault injection: run `cnnbench` in a subprocess, hurt it (signals, kills, bad files) and check the
outcome from outside: exit status, stderr, the SQLite store, and which processes are left.

Every subprocess gets a unique marker in its environment, which its children (forkserver, workers,
resource tracker, Ray workers) inherit, so "no process left" means: no live process carries the marker.
"""

from __future__ import annotations

import hashlib
import os
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

LIVENESS_S = 20  # generous bounds: these are liveness checks on a loaded machine, not benchmarks


def _procs_with(marker: str) -> list[dict]:
    """Live (not zombie) processes whose environment holds `marker`: pid, ppid, cmdline."""
    found = []
    try:
        import psutil
    except ImportError:
        psutil = None
    pids = psutil.pids() if psutil else [int(p) for p in os.listdir("/proc") if p.isdigit()]
    for pid in pids:
        if pid == os.getpid():
            continue
        try:
            with open(f"/proc/{pid}/environ", "rb") as f:
                if marker.encode() not in f.read():
                    continue
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            if fields[0] in ("Z", "X"):
                continue
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmdline = f.read().replace(b"\0", b" ").decode(errors="replace")
            found.append({"pid": pid, "ppid": int(fields[1]), "cmdline": cmdline})
        except OSError:  # gone meanwhile, or not ours to read
            continue
    return found


class Cnnbench:
    """One `python -m cnnbench.cli ...` in its own session (so a signal to its group is a Ctrl-C)."""

    def __init__(self, *args, env=None, sigint_ignored=False):
        """`sigint_ignored`: started with SIGINT ignored, as a shell starts a background job (`cmd &`)."""
        self.marker = f"CNNBENCH_FAULT_{uuid.uuid4().hex}"
        full_env = {**os.environ, "OMP_NUM_THREADS": "1", "CNNBENCH_FAULT_MARKER": self.marker, **(env or {})}
        # Otherwise SIGINT as a terminal gives it, whatever this test process inherited (a suite started in
        # the background, `pytest &`, runs with SIGINT ignored, and a child would inherit that)
        disposition = signal.SIG_IGN if sigint_ignored else signal.SIG_DFL
        self.proc = subprocess.Popen([sys.executable, "-m", "cnnbench.cli", *map(str, args)], env=full_env,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                     start_new_session=True,
                                     preexec_fn=lambda: signal.signal(signal.SIGINT, disposition))
        self.stdout = self.stderr = ""

    @property
    def pid(self) -> int:
        return self.proc.pid

    def ctrl_c(self) -> None:
        """SIGINT to the whole process group, as a terminal's Ctrl-C does."""
        os.killpg(self.proc.pid, signal.SIGINT)

    def wait(self, timeout: float = LIVENESS_S) -> tuple[int, float]:
        """(exit status, seconds it took); fails the test if it does not end within `timeout`."""
        t0 = time.monotonic()
        try:
            self.stdout, self.stderr = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill_all()
            self.stdout, self.stderr = self.proc.communicate()
            pytest.fail(f"cnnbench did not exit within {timeout} s; stderr: {self.stderr[-2000:]}")
        return self.proc.returncode, time.monotonic() - t0

    def processes(self) -> list[dict]:
        return _procs_with(self.marker)

    def wait_no_processes(self, timeout: float = LIVENESS_S) -> float:
        """Seconds until no process of this run is left; fails the test after `timeout`."""
        t0 = time.monotonic()
        while (left := self.processes()) and time.monotonic() - t0 < timeout:
            time.sleep(0.1)
        if left:
            self.kill_all()
            pytest.fail(f"processes left {timeout} s after the end: {left}")
        return time.monotonic() - t0

    def kill_all(self) -> None:
        for p in self.processes():
            try:
                os.kill(p["pid"], signal.SIGKILL)
            except OSError:
                pass

    def workers(self) -> list[dict]:
        """The local executor's worker processes: forked by the forkserver, itself a child of main."""
        procs = self.processes()
        servers = {p["pid"] for p in procs if p["ppid"] == self.pid and "forkserver" in p["cmdline"]}
        return [p for p in procs if p["ppid"] in servers]


def statuses(study_dir: Path) -> dict[str, str]:
    """run key -> status, read-only (never changes the store)."""
    db = Path(study_dir) / "study.db"
    if not db.exists():
        return {}
    try:
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
        try:
            return dict(con.execute("SELECT key, status FROM runs"))
        finally:
            con.close()
    except sqlite3.Error:
        return {}


def wait_for(predicate, timeout: float = 120, what: str = "condition"):
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    pytest.fail(f"timed out after {timeout} s waiting for {what}")


def tree_hash(root: Path) -> dict[str, str]:
    """relative path -> SHA-256 of every file under `root` (empty folders count too)."""
    out = {}
    for p in sorted(Path(root).rglob("*")):
        rel = str(p.relative_to(root))
        out[rel] = hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
    return out


def write_study(path: Path, *, name="faults", seeds=4, epochs=4, batch_size=32, dataset='"digits"',
                model='"digits_cnn"', extra="") -> Path:
    path.write_text(f'name = "{name}"\nseeds = {list(range(seeds))}\nepochs = {epochs}\nbatch_size = {batch_size}\n'
                    f'dataset = {dataset}\nmodel = {model}\nvalidation_split = 0.1\n{extra}', encoding="utf-8")
    return path


@pytest.fixture
def fault():
    """The helpers above, for the tests in this folder (conftest modules are not imported by name);
    whatever a test started is killed at its end, passed or failed."""
    import types

    started: list[Cnnbench] = []

    def start(*args, **kw) -> Cnnbench:
        c = Cnnbench(*args, **kw)
        started.append(c)
        return c

    yield types.SimpleNamespace(start=start, statuses=statuses, wait_for=wait_for, tree_hash=tree_hash,
                                write_study=write_study, LIVENESS_S=LIVENESS_S)
    for c in started:
        if c.proc.poll() is None:
            c.proc.kill()
        c.kill_all()
        c.proc.communicate()


@pytest.fixture
def tmpfs(tmp_path):
    """mount(size) -> a fresh tmpfs of that size; remount(path, options); unmounted at the end."""
    mounted = []

    def mount(size: str) -> Path:
        where = tmp_path / f"tmpfs-{uuid.uuid4().hex[:6]}"
        where.mkdir()
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
                              capture_output=True, text=True)
        if done.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here ({done.stderr.strip()})")
        mounted.append(where)
        return where

    def remount(where: Path, options: str) -> None:
        subprocess.run(["mount", "-o", f"remount,{options}", str(where)], check=True)

    yield mount, remount
    for where in mounted:
        subprocess.run(["umount", "-l", str(where)], capture_output=True)
