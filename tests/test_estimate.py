"""The wall-time estimate (`cnnbench.runs.estimate`, `Study.estimate`, `cnnbench run --dry-run`): the schedule
arithmetic on fixed numbers, the estimate from a study's finished runs against the store's own seconds,
the calibration (a positive estimate, labelled so, nothing written), the dry run's line and the warning
before a study of over an hour. No timing is asserted."""

from __future__ import annotations

import math
import statistics

import pytest
from study_helpers import study_rows

from cnnbench.api import Study
from cnnbench.cli import main
from cnnbench.runs import estimate as E

TINY = {"name": "est", "seeds": [0], "epochs": 1, "batch_size": 64, "dataset": "digits", "model": "digits_cnn",
        "grid": {"loss": ["categorical_crossentropy", "mse"]}}


def _files(root):
    """Every file under `root` with its size and modification time (what a write would change)."""
    return {p.relative_to(root): (p.stat().st_size, p.stat().st_mtime_ns) for p in root.rglob("*")}


# --- the arithmetic --------------------------------------------------------------------------------


@pytest.mark.parametrize("seconds, workers, wall", [
    ([3, 3, 2, 2, 2], 2, 7),        # 3|3, then 2 to each (5|5), the last 2 to the first free: 7
    ([1, 1, 4], 2, 5),              # in queue order: 1|1, then 4 after a 1 (LPT would give 4)
    ([4, 1, 1], 2, 4),              # 4|1, 1 after the 1: 4|2
    ([5, 2, 2, 2], 1, 11),          # one worker: the sum
    ([5, 2], 4, 5),                 # more workers than runs: the longest run
    ([], 2, 0)])
def test_list_schedule_is_the_local_executors_queue(seconds, workers, wall):
    assert E.list_schedule(seconds, workers) == wall


@pytest.mark.parametrize("seconds, text", [(0.44, "0.4 s"), (12.4, "12 s"), (245, "4 min 5 s"), (2880, "48 min"),
                                           (4320, "1 h 12 min"), (93_600, "26 h 0 min")])
def test_duration(seconds, text):
    assert E.duration(seconds) == text


def test_speed_groups_leave_out_loss_optimizer_seed_and_epochs():
    base = {"dataset": {"name": "digits"}, "model": {"name": "digits_cnn"}, "batch_size": 64, "precision": "fp32",
            "validation_split": 0.1, "micro_batch_size": None, "augmentation": None, "loss": {"name": "mse"},
            "optimizer": {"name": "adam"}, "seed": 0, "epochs": 1}
    same = {**base, "loss": {"name": "hinge"}, "optimizer": {"name": "sgd"}, "seed": 3, "epochs": 9}
    assert E.speed_key(same) == E.speed_key(base)
    for change in ({"batch_size": 32}, {"model": {"name": "lenet5"}}, {"precision": "bf16"},
                   {"augmentation": {"horizontal_flip": True}}):
        assert E.speed_key({**base, **change}) != E.speed_key(base)


def test_the_line_says_where_its_numbers_come_from():
    e = E.Estimate(seconds=4320, runs=48, workers=2, finished=12, measured_runs=12, calibrated_groups=0,
                   calibration_s=0.0, unknown_runs=0, worst_case=False)
    assert e.line() == ("Estimated wall time: 1 h 12 min for 48 runs (2 workers; measured from 12 finished runs "
                        "of this study)") and e.exceeds_hour
    e = E.Estimate(seconds=100, runs=36, workers=1, finished=0, measured_runs=0, calibrated_groups=2,
                   calibration_s=6.2, unknown_runs=3, worst_case=True, tuning=True, guessed_final_runs=6)
    assert e.line() == ("Estimated wall time: worst case (full grid; racing usually runs fewer): at least 1 min 40 s "
                        "for 36 search runs and about 6 final runs (configurations × seeds: their rates follow from "
                        "the search) (1 worker; estimate from a 6.2 s calibration of 2 model/dataset/batch-size "
                        "groups)") and not e.exceeds_hour


# --- from a study directory ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A tiny study run once (seed 0: 2 runs of 1 epoch), its directory and its stored seconds."""
    out = tmp_path_factory.mktemp("est") / "out"
    Study.from_dict(TINY).run(out, workers=1, report=False)
    return out


def _stored_run_seconds(out):
    """epochs × mean epoch seconds + mean (run seconds - its epochs' seconds), from the store by hand."""
    epochs = study_rows(out, "SELECT run_key, seconds FROM history")
    runs = study_rows(out, "SELECT key, seconds FROM runs WHERE status = 'done'")
    per_epoch = statistics.fmean(s for _, s in epochs)
    overhead = statistics.fmean(s - sum(e for k, e in epochs if k == key) for key, s in runs)
    return 1 * per_epoch + max(overhead, 0.0)


def test_the_estimate_from_finished_runs_is_the_stored_seconds(finished):
    before = _files(finished)
    more_seeds = Study.from_dict({**TINY, "seeds": [0, 1, 2]})  # 4 runs to do, 2 finished, one speed group
    per_run = _stored_run_seconds(finished)
    one = more_seeds.estimate(finished, workers=1, device="cpu", calibrate=False)
    assert one.runs == 4 and one.finished == 2 and one.measured_runs == 2 and one.calibrated_groups == 0
    assert one.seconds == pytest.approx(4 * per_run, rel=1e-9)
    assert one.run_seconds == pytest.approx([per_run] * 4, rel=1e-9)
    two = more_seeds.estimate(finished, workers=2, device="cpu", calibrate=False)
    assert two.workers == 2 and two.seconds == pytest.approx(2 * per_run, rel=1e-9)  # no slowdown: measured
    assert "(2 workers; measured from 2 finished runs of this study)" in two.line()
    assert _files(finished) == before  # read only: not even SQLite's -wal/-shm files


def test_a_group_without_finished_runs_is_calibrated_or_left_out(finished):
    before = _files(finished)
    # batch 64 seed 1: measured (2 runs); batch 32: no finished run (4 runs)
    grid = Study.from_dict({**TINY, "seeds": [0, 1], "grid": {**TINY["grid"], "batch_size": [64, 32]}})
    without = grid.estimate(finished, workers=1, device="cpu", calibrate=False)
    assert without.runs == 6 and without.unknown_runs == 4
    assert without.seconds == pytest.approx(2 * _stored_run_seconds(finished), rel=1e-9)
    assert "at least" in without.line() and "calibration off" in without.notes[0]
    calibrated = grid.estimate(finished, workers=1, device="cpu")
    assert calibrated.unknown_runs == 0 and calibrated.calibrated_groups == 1 and calibrated.measured_runs == 2
    assert calibrated.seconds > without.seconds and math.isfinite(calibrated.seconds)
    assert "measured from 2 finished runs of this study; 1 model/dataset/batch-size group from a" in calibrated.line()
    assert _files(finished) == before


def test_the_calibration_estimates_a_new_study_and_writes_nothing(tmp_path):
    out = tmp_path / "new"
    study = Study.from_dict({**TINY, "grid": {"batch_size": [32, 64]}, "seeds": [0, 1], "epochs": 3})
    e = study.estimate(out, workers=2, device="cpu")
    assert e.calibrated_groups == 2 and e.measured_runs == 0 and e.unknown_runs == 0 and e.runs == 4
    assert e.seconds > 0 and math.isfinite(e.seconds) and len(e.run_seconds) == 4
    assert all(s > 0 for s in e.run_seconds)
    # two workers on a CPU: each calibrated run counted PARALLEL_SLOWDOWN slower, placed in queue order
    assert e.seconds == pytest.approx(E.list_schedule(e.run_seconds, 2))
    assert "estimate from a" in e.line() and "calibration of 2 model/dataset/batch-size groups" in e.line()
    assert not out.exists()


def test_calibration_stops_at_its_budget(tmp_path):
    study = Study.from_dict({**TINY, "grid": {"batch_size": [32, 64]}})
    e = E.estimate(study.plan(tmp_path / "o"), workers=1, device="cpu", budget_s=0.0)
    assert e.calibrated_groups == 0 and e.unknown_runs == 2 and "not calibrated" in e.notes[0]


def test_tuning_counts_the_final_runs_as_configurations_times_seeds(tmp_path):
    study = Study.from_dict({**TINY, "seeds": [0, 1, 2], "tuning": {"learning_rates": [0.001, 0.01]}})
    e = study.estimate(tmp_path / "t", workers=1, device="cpu")
    # 2 losses × 2 rates × search seed 0; then 2 configurations × seeds 1, 2 (seed 0's is a search run)
    assert e.tuning and e.runs == 4 and e.guessed_final_runs == 4 and e.final_runs == 0
    assert len(e.run_seconds) == 8 and "4 search runs and about 4 final runs" in e.line()


# --- the command line ------------------------------------------------------------------------------


def test_dry_run_prints_the_estimate(finished, capsys):
    before = _files(finished)
    spec = finished.parent / "more.toml"
    spec.write_text('name = "est"\nseeds = [0, 1]\nepochs = 1\nbatch_size = 64\ndataset = "digits"\n'
                    'model = "digits_cnn"\n[grid]\nloss = ["categorical_crossentropy", "mse"]\n')
    assert main(["run", str(spec), "-o", str(finished), "--dry-run", "--workers", "1", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "2 to run, 2 finished" in out
    assert "Estimated wall time: " in out
    assert "for 2 runs (1 worker; measured from 2 finished runs of this study)" in out
    assert _files(finished) == before


@pytest.mark.parametrize("quiet", [False, True])
def test_a_study_of_over_an_hour_says_so_before_it_starts(tmp_path, monkeypatch, capsys, quiet):
    long = E.Estimate(seconds=3 * 3600 + 600, runs=2, workers=1, finished=0, measured_runs=0, calibrated_groups=1,
                      calibration_s=1.0, unknown_runs=0, worst_case=False)
    monkeypatch.setattr(E, "estimate", lambda plan, **kw: long)

    def run_until_the_plan(self, output=None, *, on_plan=None, **kw):
        on_plan(self.plan(output))
        raise KeyboardInterrupt  # stop before anything is trained

    monkeypatch.setattr(Study, "run", run_until_the_plan)
    spec = tmp_path / "s.toml"
    spec.write_text('name = "long"\nepochs = 1\n')
    assert main(["run", str(spec), "-o", str(tmp_path / "o"), "--workers", "1", *(["-q"] if quiet else [])]) == 130
    out = capsys.readouterr().out
    said = "Estimated wall time: 3 h 10 min for 2 runs" in out and "over an hour" in out and "resumes" in out
    assert said is not quiet


def test_racing_estimates_the_full_grid_as_the_worst_case(tmp_path):
    plain_spec = {**TINY, "seeds": [0, 1]}
    plain = E.estimate(Study.from_dict(plain_spec).plan(tmp_path / "r"), workers=1, device="cpu")
    raced_spec = {**plain_spec, "racing": {"first_test": 2}}  # a [racing] table
    raced = E.estimate(Study.from_dict(raced_spec).plan(tmp_path / "r"), workers=1, device="cpu")
    assert not plain.worst_case and raced.worst_case and raced.runs == plain.runs == 4
    assert "worst case (full grid; racing usually runs fewer)" in raced.line()


def test_a_calibration_out_of_time_stops_after_one_step(tmp_path, monkeypatch):
    import torch

    steps = []
    clock = E._clock

    def counting(budget_s, sync):
        c = clock(budget_s, sync)
        steps.append(c)
        return c

    monkeypatch.setattr(E, "_clock", counting)
    run = Study.from_dict(TINY).runs[0]
    speed = E.calibrate_run(run, None, torch.device("cpu"), budget_s=0.0)
    assert len(steps[0].marks) == 2 and steps[0].validation_s is None  # one step; the epoch never ended
    assert speed.source == "calibrated" and 0 < speed.epoch_s < math.inf and 0 <= speed.overhead_s < math.inf


def test_an_estimate_that_fails_does_not_keep_a_study_from_starting(tmp_path, monkeypatch, capsys):
    def broken(plan, **kw):
        raise RuntimeError("a bug in the estimate")

    started = []

    def run_until_the_plan(self, output=None, *, on_plan=None, **kw):
        on_plan(self.plan(output))
        started.append(True)
        raise KeyboardInterrupt

    monkeypatch.setattr(E, "estimate", broken)
    monkeypatch.setattr(Study, "run", run_until_the_plan)
    spec = tmp_path / "s.toml"
    spec.write_text('name = "x"\nepochs = 1\n')
    assert main(["run", str(spec), "-o", str(tmp_path / "o"), "--workers", "1"]) == 130
    assert started and "Estimated" not in capsys.readouterr().out


def test_runs_finished_on_another_machine_do_not_measure_this_one(finished, tmp_path):
    import shutil
    import sqlite3

    copied = tmp_path / "copied"
    shutil.copytree(finished, copied)
    con = sqlite3.connect(copied / "study.db")
    con.execute("""UPDATE runs SET environment = json_set(environment, '$.device_name', 'another CPU')""")
    con.commit()
    con.close()
    more_seeds = Study.from_dict({**TINY, "seeds": [0, 1]})
    assert more_seeds.estimate(finished, workers=1, device="cpu", calibrate=False).unknown_runs == 0
    elsewhere = more_seeds.estimate(copied, workers=1, device="cpu", calibrate=False)
    assert elsewhere.unknown_runs == 2 and elsewhere.measured_runs == 0
