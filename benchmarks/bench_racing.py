"""The race against the full grid, side by side: `racing_demo` raced, then the same study without its
[racing] table, each in a fresh `cnnbench run` process and a fresh directory on this machine.

Prints, for each: runs, epochs, wall time and the CPU time of the process tree, and the top group:
for the race, the configurations still racing at the end; for the full grid, the configurations not
significantly worse than the best on all the seeds by the race's own test (paired t-test against the
best, Holm, α of the study) and by the report's analysis (`tied_with_best`).

    python benchmarks/bench_racing.py [--study racing_demo] [--workers 2] [--keep DIR]
"""

from __future__ import annotations

import argparse
import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from cnnbench import racing, study
from cnnbench.analysis import compare_study
from cnnbench.analysis.compare import holm


def run(spec: Path, out: Path, workers: str) -> tuple[float, float]:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "cnnbench.cli", "run", str(spec), "-o", str(out), "--workers", workers,
                    "-q"], check=True, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def t_top_group(sc, alpha: float) -> list[str]:
    """The configurations not significantly worse than the best by the race's test on every seed."""
    cell = sc.cells[0]
    runs = cell.runs[cell.runs["status"].isin(["done", "diverged"])]
    piv = runs.pivot_table(index="seed", columns="config", values=sc.metric.name)
    sign = 1.0 if sc.metric.higher_is_better else -1.0
    means = (sign * piv.mean()).sort_values(ascending=False)
    best = means.index[0]
    others = [c for c in piv.columns if c != best]
    p = [racing.paired_t((sign * (piv[best] - piv[c])).to_numpy())[1] for c in others]
    return [best, *[c for c, q in zip(others, holm(p)) if not q < alpha]]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--study", default="racing_demo")
    ap.add_argument("--workers", default="2")
    ap.add_argument("--keep", type=Path, help="write the two study directories here instead of a temp dir")
    args = ap.parse_args()
    spec = study.load(args.study)
    text = spec.text or Path(args.study).read_text()
    root = args.keep or Path(tempfile.mkdtemp(prefix="bench_racing_"))
    root.mkdir(parents=True, exist_ok=True)
    raced, full = root / "raced.toml", root / "full.toml"
    raced.write_text(text)
    full.write_text(re.sub(r"(?ms)^\[racing\].*?(?=^\[|\Z)", "", text))
    alpha = spec.meta.racing.alpha
    rows = []
    for name, path in (("race", raced), ("full grid", full)):
        wall, cpu = run(path, root / name.replace(" ", "_"), args.workers)
        sc = compare_study(root / name.replace(" ", "_"))
        done = sc.runs[sc.runs["status"].isin(["done", "diverged"])]
        top = sc.race.cells[0].alive if sc.race is not None else t_top_group(sc, alpha)
        tied = list(sc.cells[0].comparison.ranking.query("tied_with_best == True")["config"])
        rows.append((name, len(done), int(done["epochs_done"].sum()), wall, cpu, top, tied))
    full_epochs = rows[1][2]
    for name, runs, epochs, wall, cpu, top, tied in rows:
        print(f"{name:9s}  runs {runs:4d}  epochs {epochs:5d} ({100 * epochs / full_epochs:.0f}% of the full grid)  "
              f"wall {wall:6.1f} s  CPU {cpu:6.1f} s ({cpu / wall:.2f} CPU-s per s)")
        print(f"           top group ({'survivors' if name == 'race' else 'paired t vs best, Holm'}): {top}")
        print(f"           the report's tied-with-best: {tied}")
    print(f"wall time ratio race / full grid: {rows[0][3] / rows[1][3]:.2f}; same top group: "
          f"{sorted(rows[0][5]) == sorted(rows[1][5])}")


if __name__ == "__main__":
    main()
