"""`cnnbench run` of one study from several source trees, interleaved, a fresh process per run.

    python benchmarks/bench_run_variants.py STUDY.toml ROUNDS old=/path/to/old/src,new=/path/to/new/src

Each variant runs with PYTHONPATH=its src (so its forkserver and workers import it too), the same output
directory (removed before each run), the order reversed every other round; wall time per run, best and
median per variant. Every variant's stdout and stderr must equal the first's ("finished in N s" aside),
and its report files are compared with the first's: PNGs byte for byte, CSVs without the timing
columns, SVG/HTML/Markdown without matplotlib's random ids, dates and "N s" durations.
"""

from __future__ import annotations

import io
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd


def norm(f: Path):
    """A report file's content, less what differs between two identical runs (timings, dates, random ids)."""
    b = f.read_bytes()
    if f.suffix == ".png":
        return b
    t = b.decode()
    if f.suffix == ".csv":
        d = pd.read_csv(io.StringIO(t))
        return d.drop(columns=[c for c in d.columns if re.search(r"seconds|_at$|time", c)]).to_csv()
    t = re.sub(r'(id|href|clip-path)="[^"]*"', "", t)
    t = re.sub(r"url\(#[^)]*\)", "", t)
    t = re.sub(r"\d{4}-\d\d-\d\d[ T]\d\d:\d\d(:\d\d)?", "DATE", t)
    return re.sub(r"\d+(\.\d+)? s\b", "N s", t)


def up() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def main() -> None:
    study, rounds = sys.argv[1], int(sys.argv[2])
    src = dict(v.split("=", 1) for v in sys.argv[3].split(","))
    variants = list(src)
    res: dict[str, list[float]] = {v: [] for v in variants}
    ref = None
    out = Path(tempfile.gettempdir()) / "cnnbench-run-variants"
    print("start:", up(), flush=True)
    for r in range(rounds):
        for v in variants if r % 2 == 0 else variants[::-1]:
            shutil.rmtree(out, ignore_errors=True)
            env = dict(os.environ, PYTHONPATH=src[v])
            t0 = time.perf_counter()
            p = subprocess.run([sys.executable, "-m", "cnnbench.cli", "run", study, "-o", str(out), "-q"],
                               capture_output=True, text=True, env=env)
            dt = time.perf_counter() - t0
            assert p.returncode == 0, p.stderr[-2000:]
            text = re.sub(r"finished in [\d.]+ s", "finished", p.stdout)
            files = {f.name: norm(f) for f in (out / "report").iterdir()}
            if ref is None:
                ref = (text, files, p.stderr)
            else:
                assert text == ref[0], f"{v}: stdout differs"
                assert p.stderr == ref[2], f"{v}: stderr differs: {p.stderr!r}"
                diff = sorted(n for n in set(files) | set(ref[1]) if files.get(n) != ref[1].get(n))
                if diff:
                    print(f"  {v}: report files differ: {diff}")
            res[v].append(dt)
        print(f"round {r} load {os.getloadavg()[0]:.2f}: " + ", ".join(f"{v} {res[v][-1]:.2f}" for v in variants),
              flush=True)
    print("end:", up())
    shutil.rmtree(out, ignore_errors=True)
    first = min(res[variants[0]])
    for v in variants:
        x = sorted(res[v])
        print(f"{v}: best {x[0]:.2f} s, median {x[len(x) // 2]:.2f}, all {[round(t, 2) for t in res[v]]}, "
              f"best ÷ {variants[0]}'s best {x[0] / first:.2f}")


if __name__ == "__main__":
    main()
