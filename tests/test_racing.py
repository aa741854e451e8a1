"""Racing over seeds (`[racing]`): the decisions against hand-computed tests on fixed numbers, the runs a
race asks for, run keys, bad input, and a real race on the embedded digits (resume after kill -9, the
same decisions with one worker or two)."""

from __future__ import annotations

import math
import os
import signal
import sqlite3
import subprocess
import sys
import time
from types import SimpleNamespace

import numpy as np
import pytest
from scipy import stats

from cnnbench.analysis import racing
from cnnbench.errors import UserError
from cnnbench.runs.racing import RaceSource
from cnnbench.spec import parse

# Four configurations, six seeds: A best, B close to it, C clearly worse, D much worse but noisy.
VALUES = {
    "A": [0.91, 0.93, 0.92, 0.94, 0.92, 0.93],
    "B": [0.90, 0.93, 0.91, 0.95, 0.91, 0.92],
    "C": [0.85, 0.88, 0.86, 0.87, 0.84, 0.86],
    "D": [0.60, 0.75, 0.52, 0.70, 0.66, 0.58],
}
SEEDS = [10, 11, 12, 13, 14, 15]  # round r runs SEEDS[r]: the study's order, not the seeds' values


def spec(**kw):
    return SimpleNamespace(**{"first_test": 3, "alpha": 0.05, "keep": 2, "test": "t", **kw})


def grid(values, seeds=SEEDS, cell="digits"):
    entries = [racing.Entry(f"{cell}/{c}/{s}", cell, c, s) for c in values for s in seeds]
    return entries


def stored(values, seeds=SEEDS, upto=None, cell="digits", status=None):
    """key -> (status, value) for every run of the first `upto` seeds (all by default)."""
    out = {}
    for c, vs in values.items():
        for i, s in enumerate(seeds[:upto]):
            st = (status or {}).get((c, i), "done")
            out[f"{cell}/{c}/{s}"] = (st, math.nan if st == "diverged" else vs[i])
    return out


def holm_by_hand(p):
    order = sorted(range(len(p)), key=lambda i: p[i])
    out, running = [0.0] * len(p), 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, p[i] * (len(p) - rank)))
        out[i] = running
    return out


def test_eliminations_follow_a_hand_computed_sequence_of_paired_t_tests():
    # Independently: scipy's ttest_rel (not the one-sample form the race uses) and Holm written out.
    # Round 3: A vs B p = 0.184, vs C p = 0.00344, vs D p = 0.0433 -> Holm: C 0.0103 (out), D 0.0867, B 0.184.
    # Round 4 (A, B, D): vs B p = 0.638, vs D p = 0.00941 -> Holm: D 0.0188 (out); two left = keep: over.
    alive, expected = ["A", "B", "C", "D"], {}
    for n in range(3, 7):
        if len(alive) <= 2:
            break
        best = max(alive, key=lambda c: np.mean(VALUES[c][:n]))
        others = [c for c in alive if c != best]
        p = [stats.ttest_rel(VALUES[best][:n], VALUES[c][:n]).pvalue for c in others]
        for c, q in zip(others, holm_by_hand(p)):
            if q < 0.05:
                expected[c] = n
        alive = [c for c in alive if c not in expected]
    assert expected == {"C": 3, "D": 4}

    race = racing.replay(spec(), SEEDS, grid(VALUES), stored(VALUES, upto=4), higher_is_better=True)
    (cell,) = race.cells
    assert {c: e.round for c, e in cell.eliminated.items()} == expected
    assert cell.alive == ["A", "B"] and cell.over
    c3 = cell.eliminated["C"]
    ref = stats.ttest_rel(VALUES["A"][:3], VALUES["C"][:3])
    assert c3.test == "t" and c3.best == "A"
    assert c3.statistic == pytest.approx(ref.statistic) and c3.p == pytest.approx(ref.pvalue)
    assert c3.p_holm == pytest.approx(3 * ref.pvalue)  # the smallest of three: × 3
    assert c3.mean_diff == pytest.approx(np.mean(np.subtract(VALUES["A"][:3], VALUES["C"][:3])))
    assert c3.normality_p == pytest.approx(stats.shapiro(np.subtract(VALUES["A"][:3], VALUES["C"][:3])).pvalue)
    # over: the survivors need every seed, the eliminated nothing more
    assert sorted(race.needed) == sorted(f"digits/{c}/{s}" for c in "AB" for s in SEEDS[4:])
    assert race.ahead == []


def test_holm_decides_not_the_raw_p():
    # Round 3 alone: D's raw p (0.0433) is below α, its Holm p (0.0867) is not: D must stay.
    race = racing.replay(spec(keep=1), SEEDS, grid(VALUES), stored(VALUES, upto=3), higher_is_better=True)
    assert set(race.cells[0].eliminated) == {"C"}
    assert race.cells[0].eliminated["C"].round == 3


def test_a_round_is_decided_only_when_complete_and_later_results_never_count():
    partial = stored(VALUES, upto=2)
    partial["digits/A/12"] = ("done", 0.92)  # round 3 has begun: A's seed done, the others not yet
    partial["digits/C/13"] = ("done", 0.10)  # a speculative run of round 4 finished early
    race = racing.replay(spec(), SEEDS, grid(VALUES), partial, higher_is_better=True)
    cell = race.cells[0]
    assert cell.rounds == 2 and not cell.eliminated and not cell.over
    assert sorted(race.needed) == sorted(f"digits/{c}/12" for c in "BCD")
    # next round's runs of the racing configurations, best first by mean over the decided rounds
    assert race.ahead == ["digits/A/13", "digits/B/13", "digits/D/13"]  # C's seed 13 is finished


def test_a_lower_is_better_metric_races_the_other_way():
    flipped = {c: [1 - v for v in vs] for c, vs in VALUES.items()}
    race = racing.replay(spec(), SEEDS, grid(flipped), stored(flipped, upto=4), higher_is_better=False)
    assert {c: e.round for c, e in race.cells[0].eliminated.items()} == {"C": 3, "D": 4}


def test_a_diverged_configuration_is_eliminated_at_once():
    got = stored(VALUES, upto=1, status={("B", 0): "diverged"})
    race = racing.replay(spec(), SEEDS, grid(VALUES), got, higher_is_better=True)
    cell = race.cells[0]
    assert cell.eliminated["B"].reason == "diverged" and cell.eliminated["B"].round == 1
    assert cell.eliminated["B"].diverged_seed == SEEDS[0]
    assert "digits/B/11" not in race.needed and "digits/A/11" in race.needed


def test_equivalent_configurations_all_race_to_the_last_seed():
    same = dict.fromkeys("ABCD", VALUES["A"])  # no difference at all: no test can decide anything
    for upto in range(len(SEEDS)):
        race = racing.replay(spec(), SEEDS, grid(same), stored(same, upto=upto), higher_is_better=True)
        assert not race.cells[0].eliminated
        assert sorted(race.needed) == sorted(f"digits/{c}/{SEEDS[upto]}" for c in "ABCD")
    race = racing.replay(spec(), SEEDS, grid(same), stored(same), higher_is_better=True)
    assert race.over and race.needed == [] and race.cells[0].alive == list("ABCD")


def test_cells_race_separately():
    other = {"A": VALUES["D"], "B": VALUES["A"], "C": VALUES["B"], "D": VALUES["C"]}  # who is bad differs
    entries = grid(VALUES) + grid(other, cell="fashion")
    got = {**stored(VALUES, upto=3), **stored(other, upto=3, cell="fashion")}
    race = racing.replay(spec(), SEEDS, entries, got, higher_is_better=True)
    by_name = {c.name: c for c in race.cells}
    assert set(by_name["digits"].eliminated) == {"C"}
    assert set(by_name["fashion"].eliminated) == {"D"}  # VALUES' C under the name D


def test_friedman_race_follows_iraces_conover_rule():
    # 5 configurations, 6 seeds: A, B, C close, E last on every seed, D fourth; Friedman rejects, Conover's bound
    # (irace's aux.friedman) drops those whose rank sum is beyond the critical difference from the best's.
    vals = {"A": [.95, .94, .96, .95, .93, .96], "B": [.94, .95, .95, .96, .94, .95],
            "C": [.93, .96, .94, .94, .95, .94], "D": [.80, .82, .81, .79, .83, .80],
            "E": [.50, .55, .52, .49, .51, .53]}
    seeds = list(range(6))
    race = racing.replay(spec(test="friedman", first_test=6, keep=1), seeds, grid(vals, seeds),
                         stored(vals, seeds), higher_is_better=True)
    # by hand: ranks per seed (1 = best), rank sums R, T and Conover's t as irace computes them
    m = np.column_stack([-np.asarray(vals[c]) for c in vals])
    ranks = np.apply_along_axis(stats.rankdata, 1, m)
    n, k = ranks.shape
    r = ranks.sum(axis=0)
    t_stat = 12 * ((r - n * (k + 1) / 2) ** 2).sum() / (n * k * (k + 1))  # no ties here
    assert stats.chi2.sf(t_stat, k - 1) < 0.05
    crit = stats.t.ppf(0.975, (n - 1) * (k - 1)) * math.sqrt(
        2 * (n * (ranks ** 2).sum() - (r ** 2).sum()) / ((n - 1) * (k - 1)))
    best = int(np.argmin(r))
    expected = {c for i, c in enumerate(vals) if r[i] - r[best] > crit}
    assert expected == {"D", "E"}
    assert set(race.cells[0].eliminated) == expected
    assert race.cells[0].eliminated["E"].statistic == pytest.approx(t_stat)


def test_the_source_speculates_only_while_a_run_of_this_round_is_training():
    state = {"statuses": {}}
    race = racing.replay(spec(), SEEDS, grid(VALUES), stored(VALUES, upto=3), higher_is_better=True)
    source = RaceSource(lambda: (race, state["statuses"]), lambda key: key)
    needed = [source.next_task() for _ in race.needed]
    assert needed == race.needed
    state["statuses"] = dict.fromkeys(needed, "running")
    assert source.next_task() == race.ahead[0]  # a core is idle while this round trains
    state["statuses"] = dict.fromkeys(source.handed, "done")
    assert source.next_task() is None  # nothing training: wait for the decision instead


def test_budget_counts_spent_against_the_full_grid():
    entries = grid({"A": [0] * 6, "B": [0] * 6})
    finished = {f"digits/A/{s}": {"epochs": 3, "seconds": 2.0} for s in SEEDS}
    finished.update({f"digits/B/{s}": {"epochs": 2, "seconds": 1.0} for s in SEEDS[:3]})
    b = racing.budget(entries, finished, {e.key: 3 for e in entries})
    assert b == {"runs": 9, "full_runs": 12, "epochs": 24, "full_epochs": 33, "seconds": 15.0,
                 "full_seconds": 18.0}


# --- the study file -------------------------------------------------------------------------------------

STUDY = {"name": "r", "seeds": [0, 1, 2, 3], "dataset": "digits", "epochs": 1,
         "grid": {"loss": ["categorical_crossentropy", "mse"], "optimizer": ["adam", "rmsprop"]}}


def test_racing_leaves_every_run_key_as_it_was():
    plain = parse(STUDY)
    raced = parse({**STUDY, "racing": {"first_test": 2, "keep": 1, "test": "friedman", "alpha": 0.1}})
    assert [r.key for r in raced.runs] == [r.key for r in plain.runs]
    assert raced.meta.racing.first_test == 2 and plain.meta.racing is None


@pytest.mark.parametrize("racing_table, where", [
    ({"first_test": 1}, "racing.first_test"),
    ({"keep": 0}, "racing.keep"),
    ({"alpha": 1.0}, "racing.alpha"),
    ({"alpha": 0}, "racing.alpha"),
    ({"test": "anova"}, "racing.test"),
    ({"first_test": 5}, "racing.first_test"),  # more than the study's 4 seeds
    ({"frist_test": 3}, "racing.frist_test"),
    ({"first_test": 2.5}, "racing.first_test"),
])
def test_bad_racing_settings_are_refused_in_one_line(racing_table, where):
    with pytest.raises(UserError) as e:
        parse({**STUDY, "racing": racing_table}, "study.toml")
    msg = str(e.value)
    assert msg.startswith(f"study.toml: {where}") and "\n" not in msg


def test_bad_racing_settings_exit_2_and_write_nothing(tmp_path):
    path = tmp_path / "s.toml"
    path.write_text('name = "r"\nseeds = [0, 1]\n[racing]\nfirst_test = 3\n')
    out = tmp_path / "out"
    res = subprocess.run([sys.executable, "-m", "cnnbench.cli", "run", str(path), "-o", str(out)],
                         capture_output=True, text=True)
    assert res.returncode == 2, res.stderr
    assert "racing.first_test" in res.stderr and len(res.stderr.strip().splitlines()) == 1
    assert not out.exists()


def test_dry_run_says_the_study_races_and_shows_the_worst_case(tmp_path, capsys):
    from cnnbench.cli import main

    path = tmp_path / "s.toml"
    path.write_text('name = "r"\nseeds = [0, 1, 2, 3]\nepochs = 1\n[grid]\nloss = ["mse", "categorical_hinge"]\n'
                    '[racing]\nkeep = 1\n')
    assert main(["run", str(path), "-o", str(tmp_path / "out"), "--dry-run"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "8 to run" in out and "the study races" in out and "full grid" in out
    assert not (tmp_path / "out").exists()


# --- a real race on the embedded digits ----------------------------------------------------------------

RACE_TOML = """
name = "race"
seeds = [0, 1, 2, 3, 4]
dataset = "digits"
model = "digits_cnn"
epochs = 2
batch_size = 64
[grid]
loss = ["categorical_crossentropy", "categorical_hinge"]
optimizer = ["adam", { name = "sgd", learning_rate = 0.01 }, { name = "sgd", learning_rate = 1e6 }]
[racing]
first_test = 3
keep = 1
"""


def _cnnbench(*args, env=None, **kw):
    env = {**(env or os.environ), "PYTHONUNBUFFERED": "1"}
    return subprocess.run([sys.executable, "-m", "cnnbench.cli", *args], capture_output=True, text=True, env=env,
                          **kw)


def _ranked(study_dir):
    """(eliminations, every ranked run's key and test accuracy) as the report sees the study."""
    from cnnbench.analysis import compare_study

    sc = compare_study(study_dir)
    race = sc.race
    elim = {(c.name, cfg): (e.round, e.reason) for c in race.cells for cfg, e in c.eliminated.items()}
    runs = sc.runs
    done = runs[runs["final"] & runs["status"].isin(["done", "diverged"]) & ~runs["key"].isin(race.beyond)]
    return elim, {k: (s, v) for k, s, v in zip(done["key"], done["status"], done["test_acc"].fillna(-1.0))}


def _done_count(db):
    try:
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
        try:
            return con.execute("SELECT COUNT(*) FROM runs WHERE status IN ('done', 'diverged')").fetchone()[0]
        finally:
            con.close()
    except sqlite3.Error:
        return 0


@pytest.mark.slow
def test_a_race_decides_the_same_with_one_worker_or_two_and_after_kill_9(tmp_path):
    study = tmp_path / "race.toml"
    study.write_text(RACE_TOML)
    one = _cnnbench("run", str(study), "-o", str(tmp_path / "one"), "--workers", "1", "-q")
    assert one.returncode == 0, one.stderr
    two = _cnnbench("run", str(study), "-o", str(tmp_path / "two"), "--workers", "2", "-q")
    assert two.returncode == 0, two.stderr
    elim, results = _ranked(tmp_path / "one")
    assert {reason for _, reason in elim.values()} == {"diverged", "worse"}
    # cross-entropy at a learning rate of 1e6 diverges with the first seed and leaves the race at once
    assert elim[("race", "loss=categorical_crossentropy · optimizer=sgd(learning_rate=1000000.0)")] == (1, "diverged")
    assert len(results) < 6 * 5  # fewer runs than the full grid
    assert _ranked(tmp_path / "two") == (elim, results)

    # kill -9 in the middle of the race, then the same command: the same decisions, the same numbers
    killed = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-m", "cnnbench.cli", "run", str(study), "-o", str(killed),
                             "--workers", "2", "-q"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    deadline = time.monotonic() + 300
    while _done_count(killed / "study.db") < 6 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    again = _cnnbench("run", str(study), "-o", str(killed), "--workers", "2", "-q")
    assert again.returncode == 0, again.stderr
    assert _ranked(killed) == (elim, results)


    # the report's race section: every configuration with when it left, the figure, the budget
    summary = (tmp_path / "one" / "report" / "summary.md").read_text()
    section = summary.split("## The race", 1)[1].split("\n## ", 1)[0]
    assert (tmp_path / "one" / "report" / "race.png").stat().st_size > 0
    rows = [line for line in section.splitlines() if line.startswith("| loss")]
    assert len(rows) == 6
    for (_, config), (round_, _) in elim.items():
        row = next(r for r in rows if r.startswith(f"| {config.replace('_', chr(92) + '_')} |"))
        assert f"round {round_}: worse than" in row or "diverged" in row
    assert f"{len(results)} of the full grid's 30 runs" in section
    not_run = 30 - len(results)
    assert f"{not_run} not run (their configuration left the race)." in summary and "pending" not in summary

    # without the [racing] table the same directory is the full grid, every finished run reused
    full = tmp_path / "full.toml"
    full.write_text(RACE_TOML.split("[racing]")[0])
    dry = _cnnbench("run", str(full), "-o", str(tmp_path / "one"), "--dry-run")
    assert dry.returncode == 0, dry.stderr
    finished = sum(1 for s, _ in results.values())
    assert f"{30 - finished} to run, {finished} finished" in " ".join(dry.stdout.split())


@pytest.mark.slow
def test_a_race_on_ray_decides_as_the_local_pool(tmp_path):
    pytest.importorskip("ray")
    study = tmp_path / "race.toml"
    study.write_text(RACE_TOML)
    env = {**os.environ, "RAY_ADDRESS": "", "OMP_NUM_THREADS": "1"}
    local = _cnnbench("run", str(study), "-o", str(tmp_path / "local"), "--workers", "1", "-q", "--no-report")
    assert local.returncode == 0, local.stderr
    on_ray = _cnnbench("run", str(study), "-o", str(tmp_path / "ray"), "--executor", "ray", "-q", "--no-report",
                       env=env, timeout=600)
    assert on_ray.returncode == 0, on_ray.stderr[-2000:]
    assert _ranked(tmp_path / "ray") == _ranked(tmp_path / "local")


def test_a_race_after_a_learning_rate_search_races_the_chosen_rates(tmp_path):
    from cnnbench.cli import main

    study = tmp_path / "tuned.toml"
    study.write_text('name = "tuned"\nepochs = 1\nbatch_size = 64\nseeds = [0, 1, 2]\n'
                     '[grid]\noptimizer = ["sgd", "adam"]\n'
                     '[tuning]\nlearning_rates = [1e-3, 1e-2]\n'
                     '[racing]\nfirst_test = 2\nkeep = 1\n')
    out = tmp_path / "out"
    assert main(["run", str(study), "-o", str(out), "--workers", "1", "-q", "--no-report"]) == 0
    con = sqlite3.connect(out / "study.db")
    rows = con.execute("SELECT label, json_extract(config, '$.seed'), final, tuning, status FROM runs").fetchall()
    finals = [r for r in rows if r[2]]
    assert len([r for r in rows if r[3]]) == 4  # the search: 2 optimizers × 2 rates × seed 0
    assert {r[4] for r in finals} == {"done"}
    from cnnbench.analysis import compare_study

    race = compare_study(out).race
    assert race is not None and sorted(race.cells[0].configs) == ["optimizer=adam", "optimizer=sgd"]
    # every final run the race asked for is done, and no configuration lacks a seed it still races for
    for cell in race.cells:
        for config in cell.alive:
            assert sum(1 for r in finals if r[0] == config) == 3


def test_a_raced_cell_is_ranked_as_the_race_decided():
    from cnnbench.analysis.raced import compare_raced

    got = stored(VALUES, upto=4)
    got.update({f"digits/{c}/{s}": ("done", VALUES[c][i]) for c in "AB" for i, s in enumerate(SEEDS) if i >= 4})
    race = racing.replay(spec(), SEEDS, grid(VALUES), got, higher_is_better=True)
    assert race.beyond == ["digits/C/13"]  # C's fourth seed ran, but C had left after three: not ranked
    (cell,) = race.cells
    long = [{"config": c, "block": s, "value": v} for key, (st, v) in got.items() if key not in race.beyond
            for _, c, s in [key.split("/")]]
    import pandas as pd

    cmp = compare_raced(pd.DataFrame(long).astype({"block": int}), cell, higher_is_better=True, test="auto",
                        block_name="seeds")
    r = cmp.ranking.set_index("config")
    assert list(cmp.ranking["config"]) == ["A", "B", "D", "C"]  # survivors, then by the round they left
    assert r.loc["B", "left_race"] == "" and r.loc["B", "n"] == 6
    assert r.loc["C", "left_race"] == "out in round 3: worse"  # than A, the best then and now
    assert r.loc["C", "n"] == 3 and r.loc["D", "n"] == 4
    assert r.loc["D", "p_holm_vs_best"] == pytest.approx(cell.eliminated["D"].p_holm)
    assert r.loc["C", "effect_vs_best"] == pytest.approx(-cell.eliminated["C"].mean_diff)
    assert not r.loc["C", "tied_with_best"] and not r.loc["D", "tied_with_best"]
    assert "2 configurations left the race" in cmp.verdict and "after 3 seeds: C" in cmp.verdict
