"""cnnbench.store.files: the one atomic write (checkpoints, saved models, study.toml, the dataset cache, reports)."""

from __future__ import annotations

import errno
import os

import pytest

from cnnbench.errors import EnvironmentFault
from cnnbench.store import files


def test_atomic_write_takes_bytes_text_or_a_writer_and_replaces_the_file(tmp_path):
    path = tmp_path / "sub" / "a.bin"  # parent directories are created
    assert files.atomic_write(path, b"one") == path and path.read_bytes() == b"one"
    files.atomic_write(path, "twö")
    assert path.read_text(encoding="utf-8") == "twö"
    files.atomic_write(path, lambda f: (f.write(b"thr"), f.write(b"ee")), fsync=True)
    assert path.read_bytes() == b"three"
    assert sorted(p.name for p in path.parent.iterdir()) == ["a.bin"]


def test_the_file_gets_the_permissions_of_a_plain_open(tmp_path):
    old = os.umask(0o022)
    try:
        files.atomic_write(tmp_path / "a", b"x", fsync=True)
        with open(tmp_path / "b", "wb") as f:
            f.write(b"x")
    finally:
        os.umask(old)
    assert (tmp_path / "a").stat().st_mode == (tmp_path / "b").stat().st_mode


@pytest.mark.parametrize("error", [OSError("disk full"), KeyboardInterrupt(), ValueError("bad")])
def test_any_error_leaves_the_old_file_and_no_temporary_file(tmp_path, error):
    path = tmp_path / "a.txt"
    files.atomic_write(path, "old")

    def writer(f):
        f.write(b"half")
        raise error

    with pytest.raises(type(error)):
        files.atomic_write(path, writer, fault=True)  # not a machine fault: the error as it was
    assert path.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["a.txt"]
    with pytest.raises(type(error)), files.atomic_path(path) as tmp:
        tmp.write_text("half")
        raise error
    assert path.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["a.txt"]


def test_a_full_disk_is_an_oserror_or_with_fault_one_line(tmp_path, monkeypatch):
    path = tmp_path / "a.txt"

    def broken(src, dst):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(dst))

    monkeypatch.setattr(os, "replace", broken)
    with pytest.raises(OSError) as raw:
        files.atomic_write(path, "x")
    assert raw.value.errno == errno.ENOSPC
    with pytest.raises(EnvironmentFault) as one_line:
        files.atomic_write(path, "x", fault=True)
    message = str(one_line.value)
    assert "\n" not in message and str(path) in message and "free space" in message
    with pytest.raises(EnvironmentFault), files.atomic_path(path, fault=True) as tmp:
        tmp.write_text("x")
    assert list(tmp_path.iterdir()) == []


def test_atomic_path_renames_what_the_block_wrote(tmp_path):
    path = tmp_path / "fig.svg"
    with files.atomic_path(path, fsync=True) as tmp:
        assert tmp.parent == tmp_path and tmp.name.startswith(".fig.svg.") and tmp.name.endswith(".tmp")
        tmp.write_text("<svg/>")
    assert path.read_text() == "<svg/>" and [p.name for p in tmp_path.iterdir()] == ["fig.svg"]


def _dead_pid() -> int:
    import subprocess
    import sys

    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()  # reaped: its PID names no process (until reused, which takes a full PID cycle)
    return child.pid


def test_remove_stale_temps_removes_only_those_of_the_file_whose_writer_is_gone(tmp_path):
    ck = tmp_path / "k.pt"
    ck.write_bytes(b"whole")
    dead = _dead_pid()
    stale = [tmp_path / f".k.pt.{dead}-abcd1234.tmp", tmp_path / "k.pt.tmp"]  # this version's, and before it
    others = [tmp_path / f".k2.pt.{dead}-abcd1234.tmp", tmp_path / "k.pt.corrupt-20240101T000000",
              tmp_path / f".k.pt.{os.getppid()}-abcd1234.tmp",  # a writer still running: its file
              tmp_path / f".k.pt.{os.getpid()}-abcd1234.tmp"]  # this process' own (another thread's)
    for p in stale + others:
        p.write_bytes(b"half")
    files.remove_stale_temps(ck)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in [ck, *others])


def test_the_dataset_cache_removes_a_killed_writer_s_temp_file(tmp_path):
    import numpy as np

    from cnnbench.data import cache

    path = tmp_path / "digits-abc.bin"
    leftover = tmp_path / f".{path.name}.{_dead_pid()}-0123abcd.tmp"
    leftover.write_bytes(b"x" * 1000)
    assert cache.save(path, {"x": np.arange(10, dtype=np.uint8)}, {"name": "digits"})
    assert not leftover.exists() and cache.load(path) is not None


def test_a_checkpoint_write_killed_half_way_is_cleaned_up_on_resume(tiny_images, tmp_path):
    import cnnbench

    x, y = tiny_images
    ck = tmp_path / "checkpoints" / "k.pt"
    kw = dict(batch_size=32, seed=1, verbose=0, checkpoint=ck)
    cnnbench.fit("digits_cnn", x, y, epochs=1, **kw)
    (ck.parent / ".k.pt.4242-deadbeef.tmp").write_bytes(b"torn")  # what a kill -9 mid-write leaves
    cnnbench.fit("digits_cnn", x, y, epochs=2, **kw)
    assert sorted(p.name for p in ck.parent.iterdir()) == ["k.pt"]
