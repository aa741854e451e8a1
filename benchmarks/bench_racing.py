"""The race against the full grid, side by side: `racing_demo` raced, then the same study without its
[racing] table, each in a fresh `cnnbench run` process and a fresh directory on this machine.

Prints, for each: runs, epochs, wall time and the run-seconds (the runs' own seconds added up: their
ratio to the wall time is how many runs trained at once on average), and the top group:
for the race, the configurations still racing at the end; for the full grid, the configurations not
significantly worse than the best on all the seeds by the race's own test (paired t-test against the
best, Holm, α of the study) and by the report's analysis (`tied_with_best`).

    python benchmarks/bench_racing.py [--study racing_demo] [--workers 2] [--rounds 2] [--keep DIR]

With several rounds the two alternate (race, full grid, race, full grid, ...), each in a fresh directory;
the epochs and decisions are the same every round, the wall times are printed per round.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from cnnbench import spec as study
from cnnbench.analysis import compare_study, racing
from cnnbench.analysis.stat_tests import holm


def run(spec: Path, out: Path, workers: str) -> float:
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "cnnbench.cli", "run", str(spec), "-o", str(out), "--workers", workers,
                    "-q"], check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t0


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
    ap.add_argument("--rounds", type=int, default=1)
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
    for round_ in range(1, args.rounds + 1):
        for name, path in (("race", raced), ("full grid", full)):
            out = root / f"{name.replace(' ', '_')}_{round_}"
            wall = run(path, out, args.workers)
            sc = compare_study(out)
            done = sc.runs[sc.runs["status"].isin(["done", "diverged"])]
            top = sc.race.cells[0].alive if sc.race is not None else t_top_group(sc, alpha)
            tied = list(sc.cells[0].comparison.ranking.query("tied_with_best == True")["config"])
            rows.append((round_, name, len(done), int(done["epochs_done"].sum()), wall, float(done["seconds"].sum()),
                         top, tied))
    full_epochs = rows[1][3]
    for round_, name, runs, epochs, wall, run_s, top, tied in rows:
        print(f"round {round_} {name:9s}  runs {runs:4d}  epochs {epochs:5d} ({100 * epochs / full_epochs:.0f}% of "
              f"the full grid)  wall {wall:6.1f} s  run-seconds {run_s:6.1f} ({run_s / wall:.2f} at once)")
        print(f"           top group ({'survivors' if name == 'race' else 'paired t vs best, Holm'}): {top}")
        print(f"           the report's tied-with-best: {tied}")
    for i in range(0, len(rows), 2):
        race, grid = rows[i], rows[i + 1]
        print(f"round {race[0]}: wall time race / full grid {race[4] / grid[4]:.2f}; same top group: "
              f"{sorted(race[6]) == sorted(grid[6])}")


if __name__ == "__main__":
    main()
