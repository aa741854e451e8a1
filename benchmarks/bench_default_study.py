"""The main job from a cold start: wall time and peak memory of `cnnbench run` (the default study).

    python benchmarks/bench_default_study.py [--workers auto] [-- extra cnnbench run args]

Memory is sampled every 0.1 s over the whole process tree (the command and its worker processes):
- peak total PSS: each process' proportional set size summed — shared library pages (libtorch is
  hundreds of MB) are counted once across the processes that share them. This is the memory the
  study really takes from the machine.
- peak total RSS: the same with shared pages counted in every process (an upper bound).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _machine import describe  # benchmarks/ is on sys.path when run as a script


def _children(pid: int) -> list[int]:
    out = []
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/children") as fh:
                out += [int(c) for c in fh.read().split()]
    except OSError:
        pass
    return out


def _tree(pid: int) -> list[int]:
    pids, todo = [], [pid]
    while todo:
        p = todo.pop()
        pids.append(p)
        todo += _children(p)
    return pids


def _mem_kb(pid: int) -> tuple[int, int]:
    pss = rss = 0
    try:
        with open(f"/proc/{pid}/smaps_rollup") as fh:
            for line in fh:
                if line.startswith("Pss:"):
                    pss = int(line.split()[1])
                elif line.startswith("Rss:"):
                    rss = int(line.split()[1])
    except OSError:
        pass
    return pss, rss


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workers", default="auto")
    ap.add_argument("extra", nargs="*")
    args = ap.parse_args()
    out = Path(tempfile.mkdtemp(prefix="cnnbench-default-"))
    cmd = [sys.executable, "-m", "cnnbench.cli", "run", "-o", str(out / "study"), "--workers", args.workers,
           "-q", *args.extra]
    machine = describe()
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    peak_pss = peak_rss = procs = 0
    while proc.poll() is None:
        pids = _tree(proc.pid)
        mem = [_mem_kb(p) for p in pids]
        peak_pss = max(peak_pss, sum(m[0] for m in mem))
        peak_rss = max(peak_rss, sum(m[1] for m in mem))
        procs = max(procs, len(pids))
        time.sleep(0.1)
    wall = time.perf_counter() - t0
    if proc.returncode:
        print(proc.stderr.read(), file=sys.stderr)
        sys.exit(proc.returncode)
    shutil.rmtree(out, ignore_errors=True)
    print(f"# {machine}; workers={args.workers}")
    print(f"wall time {wall:.1f} s; peak total PSS {peak_pss / 1024:.0f} MiB; peak total RSS "
          f"{peak_rss / 1024:.0f} MiB; up to {procs} processes")


if __name__ == "__main__":
    main()
