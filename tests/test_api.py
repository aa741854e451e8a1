"""The Python API for studies (cnnbench.Study): the same studies, checks, runs and report as the CLI."""

import sqlite3
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

import cnnbench
from cnnbench import UserError
from cnnbench.api import RunResult, Study

TINY = """
name = "api-tiny"
seeds = [0]
epochs = 1
batch_size = 64
dataset = "digits"
model = "digits_cnn"
[grid]
loss = ["categorical_crossentropy", "mse"]
"""

TINY_DICT = {"name": "api-tiny", "seeds": [0], "epochs": 1, "batch_size": 64, "dataset": "digits",
             "model": "digits_cnn", "grid": {"loss": ["categorical_crossentropy", "mse"]}}


def _files(path: Path) -> dict[str, tuple[int, int]]:
    """Every file under `path` with its size and modification time."""
    return {str(p.relative_to(path)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in sorted(path.rglob("*")) if p.is_file()}


def _finished_at(study_dir: Path) -> dict[str, float]:
    con = sqlite3.connect(study_dir / "study.db")
    try:
        return dict(con.execute("SELECT key, finished_at FROM runs"))
    finally:
        con.close()


@pytest.fixture(scope="module")
def ran(tmp_path_factory):
    """The tiny study, run once through the API (2 runs, 1 epoch each on the embedded digits)."""
    root = tmp_path_factory.mktemp("api")
    spec = root / "tiny.toml"
    spec.write_text(TINY)
    study = Study.from_toml(spec)
    result = study.run(root / "out", workers=1)
    return study, result, root


def test_study_is_exported_lazily_without_torch():
    assert "Study" in cnnbench.__all__ and cnnbench.Study is Study
    code = ("import sys, cnnbench; s = cnnbench.Study; assert s.__name__ == 'Study'; "
            "assert 'torch' not in sys.modules, 'cnnbench.Study imported torch'")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


def test_from_toml_and_from_dict_give_the_same_runs(tmp_path):
    spec = tmp_path / "tiny.toml"
    spec.write_text(TINY)
    a, b = Study.from_toml(spec), Study.from_dict(TINY_DICT)
    assert [r.key for r in a.runs] == [r.key for r in b.runs] and len(a.runs) == 2
    assert a.name == b.name == "api-tiny" and a.source == str(spec) and b.source == "<dict>"
    assert tomllib.loads(b.text) == TINY_DICT  # what the study directory keeps as study.toml
    assert b.study_dir == (Path("runs") / "api-tiny").absolute()
    assert Study.from_dict(TINY_DICT, output=tmp_path / "x").study_dir == tmp_path / "x"
    # a built-in study by name, and the default study
    assert Study.from_toml("default").name == "default" and len(Study.from_toml().runs) == 48
    assert "default" in cnnbench.api.builtin_studies()


def test_from_dict_takes_tuples_and_refuses_what_a_study_file_cannot_hold():
    s = Study.from_dict({**TINY_DICT, "grid": {"loss": ("categorical_crossentropy", "mse"),
                                               "early_stopping": [False, {"patience": 1}]}})
    assert len(s.runs) == 4 and tomllib.loads(s.text)["grid"]["early_stopping"] == [False, {"patience": 1}]
    # None has no TOML form: the study.toml kept in the study directory could not be read back
    with pytest.raises(UserError, match=r"^<dict>: grid.early_stopping\[0\] is None, which a study file cannot "
                       r"hold .*leave the key out for its default"):
        Study.from_dict({**TINY_DICT, "grid": {"early_stopping": [None, {"patience": 1}]}})
    nested = Study.from_dict({**TINY_DICT, "runs": [{"optimizer": {"name": "sgd", "learning_rate": 0.1}},
                                                    {"optimizer": "adam"}],
                              "tuning": {"learning_rates": [1e-3, 1e-2]}, "analysis": {"alpha": 0.1}})
    assert tomllib.loads(nested.text)["runs"][0]["optimizer"] == {"name": "sgd", "learning_rate": 0.1}


@pytest.mark.parametrize("data, message", [
    ({**TINY_DICT, "grid": {"loss": ["mse", "categorical_crossentrpy"]}},
     "<dict>: grid.loss[1]: unknown loss 'categorical_crossentrpy'; did you mean 'categorical_crossentropy'"),
    ({**TINY_DICT, "epochs": -1}, "<dict>: epochs: Input should be greater than or equal to 1"),
    ({**TINY_DICT, "grid": {"optimiser": ["adam"]}}, "grid.optimiser: unknown key 'optimiser'"),
    ({"epochs": 2}, "name"),
    (["not", "a", "dict"], "a study is a dict of its keys"),
])
def test_a_bad_dict_raises_one_line_user_error(data, message):
    with pytest.raises(UserError) as e:
        Study.from_dict(data)
    assert message in str(e.value) and "\n" not in str(e.value), str(e.value)


def test_bad_run_options_raise_user_error_and_write_nothing(tmp_path):
    study = Study.from_dict(TINY_DICT)
    out = tmp_path / "out"
    for options, message in [({"workers": 0}, "--workers must be a positive integer"),
                             ({"workers": "many"}, "--workers must be a positive integer"),
                             ({"device": "tpu"}, "unknown device"),
                             ({"executor": "slurm"}, "unknown executor 'slurm'"),
                             ({"data_dir": tmp_path / "nope"}, "does not exist")]:
        for call in (study.plan, study.run):
            with pytest.raises(UserError, match=message):
                call(out, **options)
    with pytest.raises(UserError, match="batch_size 100000 is larger"):
        Study.from_dict({**TINY_DICT, "batch_size": 100000}).run(out)
    assert not out.exists()


@pytest.mark.parametrize("options, message", [
    ({"executor": "loacl"}, "unknown executor 'loacl'; did you mean 'local'? see `cnnbench list executors`"),
    ({"executor": "ray", "cpus_per_run": 0}, "executor 'ray' option 'cpus_per_run' must be a number > 0, got 0"),
    ({"executor": "ray", "gpus_per_run": -1}, "executor 'ray' option 'gpus_per_run' must be a number >= 0, got -1"),
])
def test_the_executor_is_a_registry_entry_checked_by_its_declared_options(tmp_path, options, message):
    study = Study.from_dict(TINY_DICT)
    for call in (study.plan, study.run):
        with pytest.raises(UserError) as e:
            call(tmp_path / "out", **options)
        assert str(e.value) == message
    assert not (tmp_path / "out").exists()


def test_the_executor_registry_lists_local_and_ray_with_their_options():
    from cnnbench.runs import executors

    assert executors.REGISTRY.list() == ["local", "ray"]
    assert list(executors.REGISTRY.entry("local").options) == []
    ray = executors.REGISTRY.entry("ray").options
    assert {k: d.default for k, d in ray.items()} == {"address": None, "cpus_per_run": 1, "gpus_per_run": 0}
    assert executors.get("local").streams  # a race hands the local workers runs as they free up
    pytest.importorskip("ray")
    assert not executors.get("ray", cpus_per_run=2).streams  # Ray races round by round


def test_plan_says_what_would_run_and_writes_nothing(tmp_path):
    study = Study.from_dict(TINY_DICT)
    out = tmp_path / "out"
    plan = study.plan(out)
    assert plan.study_dir == out and len(plan.runs) == len(plan.todo) == 2 and not plan.done
    frame = plan.frame()
    assert list(frame["status"]) == ["new", "new"] and set(frame["axis.loss"]) == {"categorical_crossentropy", "mse"}
    assert not out.exists()


def test_run_results_report(ran):
    study, result, root = ran
    out = root / "out"
    assert isinstance(result, RunResult) and result.ok
    assert (result.study_dir, result.runs, result.already_finished, result.ran) == (out, 2, 0, 2)
    assert result.report == out / "report" / "report.html" and result.report.stat().st_size > 0
    assert study.study_dir == out  # run(output=...) is where later calls look
    assert tomllib.loads((out / "study.toml").read_text())["name"] == "api-tiny"

    df = study.results()
    assert len(df) == 2 and set(df["status"]) == {"done"}
    for column in ("key", "label", "status", "seed", "axis.loss", "test_acc", "test_nll", "val_acc", "epochs_done",
                   "seconds", "config.loss.name"):
        assert column in df, column
    assert set(df["key"]) == {r.key for r in study.runs}
    assert df["test_acc"].between(0, 1).all()

    sc = study.compare()
    assert sc.verdict and len(sc.cells) == 1
    html = study.report(report_dir=root / "elsewhere")
    assert html == root / "elsewhere" / "report.html"
    for name in ("report.html", "summary.md", "runs.csv", "history.csv", "ranking.csv", "ranking.tex"):
        assert (root / "elsewhere" / name).stat().st_size > 0, name


def test_plan_of_a_study_that_ran_reads_without_writing(ran):
    study, _, root = ran
    out = root / "out"
    before = _files(out)
    plan = study.plan()
    assert len(plan.done) == 2 and not plan.todo
    assert set(plan.frame()["status"]) == {"done"}
    assert _files(out) == before


def test_plan_of_a_closed_store_creates_no_sqlite_files(ran, tmp_path):
    # SQLite's read-only mode would create (and leave) study.db-wal and -shm beside a WAL database
    study, _, root = ran
    copy = tmp_path / "copy"
    copy.mkdir()
    src, dst = sqlite3.connect(root / "out" / "study.db"), sqlite3.connect(copy / "study.db")
    src.backup(dst)
    src.close(), dst.close()
    con = sqlite3.connect(copy / "study.db")
    assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    con.close()
    before = _files(copy)
    assert before == {"study.db": before["study.db"]}
    plan = study.plan(copy)
    assert len(plan.done) == 2 and _files(copy) == before


def test_a_resume_through_the_api_reruns_nothing_done(ran):
    _study, _, root = ran
    out = root / "out"
    stamps = _finished_at(out)
    events = []
    again = Study.from_toml(root / "tiny.toml").run(out, workers=1, report=False, progress=events.append)
    assert (again.runs, again.already_finished, again.ran, again.failed) == (2, 2, 0, [])
    assert events == [{"event": "queued", "runs": []}]
    assert again.report is None
    assert _finished_at(out) == stamps


def test_open_a_study_directory(ran):
    _, _, root = ran
    opened = Study.open(root / "out")
    assert opened.name == "api-tiny" and opened.study_dir == root / "out"
    assert len(opened.results()) == 2
    with pytest.raises(UserError, match=r"no study\.toml"):
        Study.open(root)


def test_results_of_a_directory_without_this_study(ran, tmp_path):
    _, _, root = ran
    with pytest.raises(UserError, match=r"no study\.db"):
        Study.from_dict(TINY_DICT).results(tmp_path)
    other = Study.from_dict({**TINY_DICT, "name": "other"})
    for call in (other.results, other.report, other.plan):
        with pytest.raises(UserError, match="holds study 'api-tiny', not 'other'"):
            call(root / "out")


def test_cli_dry_run_is_the_api_plan_and_reads_only(ran, capsys):
    from cnnbench.cli import main

    _, _, root = ran
    out = root / "out"
    before = _files(out)
    assert main(["run", str(root / "tiny.toml"), "-o", str(out), "--dry-run"]) == 0
    assert "0 to run, 2 finished" in capsys.readouterr().out
    assert _files(out) == before


def test_run_shows_its_progress_unless_verbose_0(tmp_path, capsys):
    study = Study.from_dict(TINY_DICT)
    study.run(tmp_path / "a", workers=1, report=False)
    out = capsys.readouterr().out.splitlines()  # captured: not a terminal, so a line per finished run
    assert out[0] == f"study api-tiny: 2 runs, 0 already finished, 2 to run → {tmp_path / 'a'}"
    assert [line.split("]")[0] for line in out[1:3]] == ["[1/2", "[2/2"] and "done: loss=" in out[1]
    assert out[3].startswith("finished in ")
    study.run(tmp_path / "b", workers=1, report=False, verbose=2)  # and a line per epoch
    assert any(line.startswith("epoch 1/1 loss=mse seed=0: loss ") for line in capsys.readouterr().out.splitlines())
    study.run(tmp_path / "c", workers=1, report=False, verbose=0)
    assert capsys.readouterr().out == ""
    with pytest.raises(UserError, match="verbose must be"):
        study.run(tmp_path / "d", verbose=3)


def test_progress_counts_the_runs_queued_so_far_and_a_search_s_bound():
    """A [tuning] study queues its final runs after the search: the count says how many may come
    (never "6/6" while final runs are still to come), search runs are labelled with their rate."""
    import io
    from types import SimpleNamespace

    from rich.console import Console

    from cnnbench.api import StudyProgress

    study = Study.from_dict({**TINY_DICT, "seeds": [0, 1], "grid": {"optimizer": ["sgd", "adam"]},
                             "tuning": {"learning_rates": [0.01, 0.1]}})
    plan = SimpleNamespace(study=study.spec, runs=list(study.runs))
    console = Console(file=io.StringIO(), width=120)
    shown = StudyProgress(console, live=False, plan=plan)
    runs = [{"key": r.key, "label": r.label, "seed": r.seed, "epochs": 1} for r in study.runs]
    shown.update({"event": "queued", "runs": runs})
    for r in runs:
        shown.update({"event": "done", "key": r["key"], "label": r["label"], "status": "done"})
    finals = [{"key": f"final{i}", "label": "optimizer=adam", "seed": i, "epochs": 1} for i in range(3)]
    shown.update({"event": "queued", "runs": finals})
    shown.update({"event": "done", "key": "final0", "label": "optimizer=adam", "status": "done"})
    lines = console.file.getvalue().splitlines()
    assert len(runs) == 4  # 2 optimizers × 2 rates, search seed 0
    assert lines[:4] == [f"[{i}/4 of at most 8] done: {r['label']} lr={lr:g} seed=0"
                         for i, (r, lr) in enumerate(zip(runs, [_lr(r) for r in study.runs]), 1)]
    assert lines[4] == "[5/7] done: optimizer=adam seed=0"


def _lr(run) -> float:
    return run.config["optimizer"]["learning_rate"]
