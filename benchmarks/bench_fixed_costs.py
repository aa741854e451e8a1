"""Fixed costs: what `cnnbench` spends outside training, each measured in fresh processes, interleaved.

    python benchmarks/bench_fixed_costs.py [--rounds 3] [--study small.toml]

Per round, each in its own fresh interpreter (the rounds interleave the variants; best round of each):
- `cnnbench --help`: wall time of the whole command;
- `import torch` alone, and `import torch._dynamo` after it (what a process pays on its first
  torch._dynamo import);
- the first optimizer of a process (`cnnbench.optim.get("adam", ...)`, Keras rule) as it is now, and
  with torch._dynamo imported just before it (what torch.optim.Optimizer's `_disable_dynamo` wrappers
  cost it before cnnbench avoided them);
- `cnnbench.engine.flops.forward_flops` of a fresh model as it is now (`cnnbench.engine.flops`: FlopCounterMode's
  count without importing torch._dynamo), and torch's FlopCounterMode on the same model, as
  forward_flops used it before (its __torch_dispatch__ is wrapped by `torch._disable_dynamo`);
- `cnnbench run` on a small study (default: digits, digits_cnn, 1 epoch, 2 losses × 2 optimizers ×
  1 seed, `--workers auto`) from a cold start, split with the store's timestamps into: start-up
  (process start to the first run's start), training (the runs' own epoch seconds, per worker), the
  rest of the runs (evaluation, FLOPs, store writes: start to finish of each run minus its epochs), and
  after training (the last run's end to the process' exit: verdict, tables, report).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve()
SMALL_STUDY = """name = "small"
seeds = [0]
dataset = "digits"
model = "digits_cnn"
epochs = 1
batch_size = 32
[grid]
loss = ["categorical_crossentropy", "mean_squared_error"]
optimizer = ["adam", "rmsprop"]
"""

PROBES = {
    "import torch": "import time; t=time.perf_counter(); import torch; print(time.perf_counter()-t)",
    "import torch._dynamo (after torch)":
        "import time, torch; t=time.perf_counter(); import torch._dynamo; print(time.perf_counter()-t)",
    "first optimizer (now)":
        "import time, sys, torch; from cnnbench import optim; m=torch.nn.Linear(4, 4); t=time.perf_counter();"
        " o=optim.get('adam', m.parameters(), batch_size=32, steps_per_epoch=1, epochs=1);"
        " o.zero_grad(); print(time.perf_counter()-t); assert 'torch._dynamo' not in sys.modules",
    "first optimizer (+ torch._dynamo import, as before)":
        "import time, torch; from cnnbench import optim; m=torch.nn.Linear(4, 4); t=time.perf_counter();"
        " import torch._dynamo; o=optim.get('adam', m.parameters(), batch_size=32, steps_per_epoch=1, epochs=1);"
        " o.zero_grad(); print(time.perf_counter()-t)",
    "forward_flops of a fresh model":
        "import time, sys, torch; from cnnbench import models; from cnnbench.engine.flops import forward_flops;"
        " m=models.get('digits_cnn', input_shape=(1, 8, 8), num_outputs=10); t=time.perf_counter();"
        " forward_flops(m, torch.zeros(1, 8, 8)); print(time.perf_counter()-t);"
        " assert 'torch._dynamo' not in sys.modules",
    "FlopCounterMode of a fresh model (forward_flops before)":
        "import time, torch; from cnnbench import models; m=models.get('digits_cnn', input_shape=(1, 8, 8),"
        " num_outputs=10).eval(); t=time.perf_counter(); from torch.utils.flop_counter import FlopCounterMode;"
        " c=FlopCounterMode(display=False)\nwith torch.no_grad(), c: m(torch.zeros(1, 1, 8, 8))\n"
        "print(time.perf_counter()-t)",
}


def probe(code: str) -> float:
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    if p.returncode:
        raise SystemExit(f"probe failed:\n{code}\n{p.stderr[-2000:]}")
    return float(p.stdout.strip().splitlines()[-1])


def help_seconds() -> float:
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "cnnbench.cli", "--help"], capture_output=True, check=True)
    return time.perf_counter() - t0


def study_run(study: Path) -> dict:
    out = Path(tempfile.mkdtemp(prefix="cnnbench-fixed-"))
    try:
        t0 = time.time()
        p = subprocess.run([sys.executable, "-m", "cnnbench.cli", "run", str(study), "-o", str(out / "s"), "-q",
                            "--workers", "auto"], capture_output=True, text=True)
        t1 = time.time()
        if p.returncode:
            raise SystemExit(f"cnnbench run failed:\n{p.stderr[-2000:]}")
        db = sqlite3.connect(out / "s" / "study.db")
        runs = db.execute("SELECT key, started_at, finished_at FROM runs").fetchall()
        epochs = dict(db.execute("SELECT run_key, SUM(seconds) FROM history GROUP BY run_key").fetchall())
        db.close()
        first, last = min(r[1] for r in runs), max(r[2] for r in runs)
        workers = min(len(os.sched_getaffinity(0)), len(runs))
        train = sum(epochs.values()) / workers
        other = sum((r[2] - r[1]) - epochs[r[0]] for r in runs) / workers
        return {"total": t1 - t0, "start-up (to the first run's start)": first - t0,
                "training (epoch seconds / workers)": train, "rest of the runs (eval, FLOPs, store) / workers": other,
                "after training (verdict, tables, report)": t1 - last}
    finally:
        shutil.rmtree(out, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--study", type=Path, help="a study file (default: the small digits study above)")
    ap.add_argument("--no-study", action="store_true", help="skip the `cnnbench run` measurement")
    a = ap.parse_args()
    sys.path.insert(0, str(HERE.parent))
    from _machine import cpu_name

    tmp = Path(tempfile.mkdtemp(prefix="cnnbench-small-"))
    study = a.study or tmp / "small.toml"
    if not a.study:
        study.write_text(SMALL_STUDY)
    uptime = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    print(f"# {cpu_name()}, nproc {os.cpu_count()}; start: {uptime}")
    results: dict[str, list[float]] = {}
    study_rounds: list[dict] = []
    for r in range(a.rounds):
        load = os.getloadavg()[0]
        results.setdefault("cnnbench --help", []).append(help_seconds())
        for name, code in PROBES.items():
            results.setdefault(name, []).append(probe(code))
        if not a.no_study:
            study_rounds.append(study_run(study))
        print(f"round {r} (load {load:.2f}): " + json.dumps({k: round(v[-1], 3) for k, v in results.items()})
              + (" " + json.dumps({k: round(v, 2) for k, v in study_rounds[-1].items()}) if study_rounds else ""),
              flush=True)
    print(f"# end: {subprocess.run(['uptime'], capture_output=True, text=True).stdout.strip()}")
    print("| what | best of rounds (s) | all rounds (s) |")
    print("|---|---|---|")
    for k, v in results.items():
        print(f"| {k} | {min(v):.2f} | {', '.join(f'{x:.2f}' for x in v)} |")
    if study_rounds:
        best = min(study_rounds, key=lambda s: s["total"])
        print(f"\n`cnnbench run` small study, best round of {len(study_rounds)} (total {best['total']:.1f} s):")
        print("| phase | seconds | share |")
        print("|---|---|---|")
        for k, v in best.items():
            print(f"| {k} | {v:.2f} | {v / best['total']:.0%} |")
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
