"""Hand mutations of cnnbench's statistics and resume path, and whether the tests notice them.

    python tools/mutations.py              # every mutation; prints each outcome and the score
    python tools/mutations.py --list       # the mutations, without running anything
    python tools/mutations.py --only holm-no-cap --only ece-edge-to-upper-bin
    python tools/mutations.py --keep       # keep the temporary trees (to look at a survivor)

Each mutation is a file under src/, an exact snippet in it, its replacement and the test files that
should fail with it. For each, src/, tests/ and pyproject.toml are copied to a temporary directory (the
working tree is never modified), the snippet is replaced there, and
`PYTHONPATH=<tmp>/src python -m pytest -x -q -m "not slow" <tests>` runs in the copy: a failing run is
`killed`, a passing one `survived`. A snippet that is no longer in its file (the code changed since the
mutation was written) is `stale`, not an error: rewrite or drop that mutation. The unmutated tree is run
once first on every named test file (`baseline`); if it fails, the score means nothing and the script
stops. Not part of CI's quick set (it takes minutes; docs/testing.md has today's score).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TIMEOUT_S = 600  # one mutation's test run; a mutation that hangs the tests counts as killed


@dataclass(frozen=True)
class Mutation:
    name: str
    file: str  # under src/cnnbench/
    old: str  # exact snippet, found exactly once
    new: str
    tests: tuple[str, ...]  # test files (relative to the repository root)


COMPARE = ("tests/test_compare.py", "tests/test_compare_small_n.py", "tests/test_analysis.py",
           "tests/test_mutations_killed.py")
RACING = ("tests/test_racing.py",)
TRAIN = ("tests/test_train.py", "tests/test_mutations_killed.py")

MUTATIONS = [
    # --- analysis/compare.py: the corrections and what the tables show --------------------------------
    Mutation("holm-no-cap", "analysis/stat_tests.py",
             "np.minimum(1.0, np.maximum.accumulate(p[idx] * (m - np.arange(m))))",
             "np.maximum.accumulate(p[idx] * (m - np.arange(m)))", COMPARE),
    Mutation("holm-no-running-max", "analysis/stat_tests.py",
             "np.minimum(1.0, np.maximum.accumulate(p[idx] * (m - np.arange(m))))",
             "np.minimum(1.0, p[idx] * (m - np.arange(m)))", COMPARE),
    Mutation("holm-factor-off-by-one", "analysis/stat_tests.py",
             "p[idx] * (m - np.arange(m))", "p[idx] * (m + 1 - np.arange(m))", COMPARE),
    Mutation("significant-on-raw-p", "analysis/compare.py",
             'out["significant"] = out["p_holm"] < alpha', 'out["significant"] = out["p"] < alpha', COMPARE),
    Mutation("significant-at-alpha-inclusive", "analysis/compare.py",
             'out["significant"] = out["p_holm"] < alpha', 'out["significant"] = out["p_holm"] <= alpha', COMPARE),
    Mutation("tied-with-best-on-raw-p", "analysis/compare.py",
             'bool(not (r["p_holm"] < alpha)) if tested', 'bool(not (r["p"] < alpha)) if tested', COMPARE),
    Mutation("displayed-p-vs-best-raw", "analysis/compare.py",
             'ranking.loc[i, "p_holm_vs_best"] = r["p_holm"]', 'ranking.loc[i, "p_holm_vs_best"] = r["p"]', COMPARE),
    Mutation("effect-vs-best-sign", "analysis/compare.py",
             'ranking.loc[i, "effect_vs_best"] = -r["mean_diff"]', 'ranking.loc[i, "effect_vs_best"] = r["mean_diff"]',
             COMPARE),
    Mutation("untested-not-tied", "analysis/compare.py",
             'ranking.loc[i, "tied_with_best"] = bool(not (r["p_holm"] < alpha)) if tested else True',
             'ranking.loc[i, "tied_with_best"] = bool(not (r["p_holm"] < alpha)) if tested else False', COMPARE),
    Mutation("wilcoxon-zeros-dropped", "analysis/stat_tests.py",
             "r_plus = ranks[d > 0].sum() + ranks[~nz].sum() / 2", "r_plus = ranks[d > 0].sum()", COMPARE),
    Mutation("wilcoxon-exact-strict", "analysis/stat_tests.py",
             ">= abs(r_plus - centre) - 1e-9", "> abs(r_plus - centre) + 1e-9", COMPARE),
    Mutation("min-wilcoxon-p-one-sided", "analysis/stat_tests.py",
             "return min(1.0, 2.0 / 2**n)", "return min(1.0, 1.0 / 2**n)", COMPARE),
    Mutation("diff-ci-90-percent", "analysis/compare.py",
             "half = stats().t.ppf(0.975, n - 1) * sd", "half = stats().t.ppf(0.95, n - 1) * sd", COMPARE),
    Mutation("rank-biserial-unoriented", "analysis/compare.py",
             "effect_size=float(sign * rank_biserial(d))", "effect_size=float(rank_biserial(d))", COMPARE),
    Mutation("rank-biserial-zeros-dropped", "analysis/stat_tests.py",
             "r_plus = ranks[d > 0].sum() + ranks[d == 0].sum() / 2\n    return",
             "r_plus = ranks[d > 0].sum()\n    total = ranks[d != 0].sum()\n    return", COMPARE),
    Mutation("too-few-blocks-tested", "analysis/compare.py",
             'if n < MIN_BLOCKS:\n        row["test"] = f"none', 'if n < 2:\n        row["test"] = f"none', COMPARE),
    # --- analysis/racing.py: the race's decisions; runs/racing.py: handing its runs out ---------------------
    Mutation("race-on-raw-p", "analysis/racing.py",
             "if p_adj < alpha and diff > 0:", "if p < alpha and diff > 0:", RACING),
    Mutation("race-diverged-kept", "analysis/racing.py",
             'diverged = [cfg for cfg in c.alive if got[cfg][0] == "diverged"]',
             "diverged = []", RACING),
    Mutation("race-decides-incomplete-rounds", "analysis/racing.py",
             "if any(status not in FINISHED for status, _ in got.values())",
             "if all(status not in FINISHED for status, _ in got.values())", RACING),
    Mutation("race-speculates-when-idle", "runs/racing.py", "        if in_flight:\n", "        if True:\n", RACING),
    # --- analysis/frames.py ---------------------------------------------------------------------------
    Mutation("diverged-not-at-chance", "analysis/frames.py",
             'value = value.where(df["status"] != "diverged", chance.clip(upper=1.0))', "value = value",
             COMPARE),
    # --- metrics and the validation split ---------------------------------------------------------------
    Mutation("ece-edge-to-upper-bin", "metrics.py",
             'np.searchsorted(edges, confidence, side="left")', 'np.searchsorted(edges, confidence, side="right")',
             ("tests/test_metrics.py", "tests/test_mutations_killed.py")),
    Mutation("split-round", "data/splits.py",
             "return math.floor(n * (1.0 - fraction))", "return round(n * (1.0 - fraction))",
             ("tests/test_data.py", "tests/test_mutations_killed.py")),
    Mutation("split-ceil-of-fraction", "data/splits.py",
             "return math.floor(n * (1.0 - fraction))", "return n - math.ceil(n * fraction)",
             ("tests/test_data.py", "tests/test_mutations_killed.py")),
    # --- the resume path --------------------------------------------------------------------------------
    Mutation("resume-diverged-keeps-training", "engine/loop.py",
             'if self.history.status == "diverged" or self.history.stopped_epoch is not None:\n'
             "            self.stop_training = True",
             "if False:\n            self.stop_training = True", TRAIN),
    Mutation("resume-early-stopped-keeps-training", "engine/loop.py",
             'if self.history.status == "diverged" or self.history.stopped_epoch is not None:',
             'if self.history.status == "diverged":', TRAIN),
    Mutation("nan-keeps-training", "engine/loop.py",
             '                self.history.status = "diverged"\n                self.stop_training = True\n',
             '                self.history.status = "diverged"\n', TRAIN),
    Mutation("resume-repeats-last-epoch", "engine/loop.py",
             "return self.history.epoch[-1] + 1 if self.history.epoch else 0",
             "return self.history.epoch[-1] if self.history.epoch else 0", TRAIN),
    Mutation("resume-keeps-stale-temp", "engine/loop.py",
             "remove_stale_temps(self.checkpoint)  #", "(self.checkpoint)  #", (*TRAIN, "tests/test_files.py")),
    Mutation("history-rows-after-resume-kept", "store/db.py",
             'c.execute("DELETE FROM history WHERE run_key = ? AND epoch > ?", (key, epoch))', "pass",
             ("tests/test_store.py",)),
    Mutation("diverged-run-rerun", "store/db.py",
             'FINISHED = ("done", "diverged")  #', 'FINISHED = ("done",)  #', ("tests/test_mutations_killed.py",)),
]


def copy_tree(dest: Path) -> None:
    for part in ("src", "tests"):
        shutil.copytree(ROOT / part, dest / part, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    for name in ("pyproject.toml",):
        if (ROOT / name).exists():
            shutil.copy2(ROOT / name, dest / name)


def run_tests(tree: Path, tests: tuple[str, ...]) -> tuple[int, str, float]:
    env = {**os.environ, "PYTHONPATH": str(tree / "src"), "PYTHONDONTWRITEBYTECODE": "1"}
    t0 = time.monotonic()
    try:
        r = subprocess.run([sys.executable, "-m", "pytest", "-x", "-q", "-m", "not slow", "-p", "no:cacheprovider",
                            *tests], cwd=tree, env=env, capture_output=True, text=True, timeout=TIMEOUT_S)
        return r.returncode, (r.stdout + r.stderr).strip().splitlines()[-1:][0] if (r.stdout + r.stderr).strip() \
            else "", time.monotonic() - t0
    except subprocess.TimeoutExpired:
        return -1, f"timed out after {TIMEOUT_S} s", time.monotonic() - t0


def apply(tree: Path, m: Mutation) -> str | None:
    """Apply `m` in `tree`; None if applied, else why not ('stale': the snippet is gone; 'ambiguous')."""
    path = tree / "src" / "cnnbench" / m.file
    if not path.is_file():
        return "stale"
    text = path.read_text()
    count = text.count(m.old)
    if count == 0:
        return "stale"
    if count > 1:
        return "ambiguous"
    path.write_text(text.replace(m.old, m.new))
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", action="append", default=[], help="run only this mutation (repeatable)")
    parser.add_argument("--list", action="store_true", help="list the mutations and exit")
    parser.add_argument("--keep", action="store_true", help="keep the temporary trees")
    args = parser.parse_args(argv)
    chosen = [m for m in MUTATIONS if not args.only or m.name in args.only]
    unknown = set(args.only) - {m.name for m in MUTATIONS}
    if unknown:
        parser.error(f"unknown mutation(s): {', '.join(sorted(unknown))}")
    if args.list:
        for m in chosen:
            print(f"{m.name:38} {m.file:22} {' '.join(m.tests)}")
        return 0

    t_start = time.monotonic()
    base = Path(tempfile.mkdtemp(prefix="cnnbench-mutations-"))
    try:
        clean = base / "baseline"
        copy_tree(clean)
        every_test = tuple(sorted({t for m in chosen for t in m.tests}))
        code, last, seconds = run_tests(clean, every_test)
        print(f"{'baseline':38} {'passed' if code == 0 else 'FAILED':9} {seconds:6.1f} s  {last}", flush=True)
        if code != 0:
            print("the unmutated tree fails its tests: fix that first; no score", file=sys.stderr)
            return 2
        outcomes: dict[str, str] = {}
        for m in chosen:
            tree = base / m.name
            copy_tree(tree)
            why = apply(tree, m)
            if why is not None:
                outcomes[m.name] = why
                print(f"{m.name:38} {why:9}          snippet not found once in {m.file}", flush=True)
                continue
            code, last, seconds = run_tests(tree, m.tests)
            outcome = "survived" if code == 0 else "killed"
            outcomes[m.name] = outcome
            print(f"{m.name:38} {outcome:9} {seconds:6.1f} s  {last}", flush=True)
            if not args.keep:
                shutil.rmtree(tree, ignore_errors=True)
        killed = sum(o == "killed" for o in outcomes.values())
        survived = [n for n, o in outcomes.items() if o == "survived"]
        stale = [n for n, o in outcomes.items() if o in ("stale", "ambiguous")]
        scored = killed + len(survived)
        score = f"{killed}/{scored} killed ({100 * killed / scored:.0f}%)" if scored else "nothing scored"
        print(f"\nscore: {score}; {len(stale)} stale{': ' + ', '.join(stale) if stale else ''}; "
              f"{(time.monotonic() - t_start) / 60:.1f} min")
        if survived:
            print("survived: " + ", ".join(survived))
        return 0
    finally:
        if args.keep:
            print(f"trees kept under {base}")
        else:
            shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
