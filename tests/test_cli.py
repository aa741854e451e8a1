"""End to end through the `cnnbench` command: run, resume after SIGKILL, report, bad input."""

import csv
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cnnbench.cli import main

TINY = """
name = "tiny"
seeds = [0, 1]
epochs = 2
batch_size = 64
dataset = "digits"
model = "digits_cnn"
[grid]
loss = ["categorical_crossentropy", "mse"]
optimizer = ["adam", { name = "sgd", learning_rate = 0.1 }]
"""


def _write(tmp_path, text, name="study.toml"):
    p = tmp_path / name
    p.write_text(text)
    return p


def _runs(study_dir):
    con = sqlite3.connect(Path(study_dir) / "study.db")
    try:
        return con.execute("SELECT key, status, test_acc, epochs_done FROM runs ORDER BY key").fetchall()
    finally:
        con.close()


def test_run_end_to_end_writes_store_and_report(tmp_path, capsys):
    spec = _write(tmp_path, TINY)
    out = tmp_path / "out"
    assert main(["run", str(spec), "-o", str(out), "--workers", "1"]) == 0
    printed = capsys.readouterr().out
    assert "Configurations ranked by test accuracy" in printed and "Marginal ranking: loss" in printed
    assert printed.index("Verdict: Best by highest mean test accuracy") < printed.index("Configurations ranked")
    runs = _runs(out)
    assert len(runs) == 8 and {r[1] for r in runs} == {"done"}
    assert all(0.0 <= r[2] <= 1.0 and r[3] == 2 for r in runs)
    con = sqlite3.connect(out / "study.db")
    assert con.execute("SELECT COUNT(*) FROM history").fetchone()[0] == 16
    report = out / "report"
    for f in ("report.html", "summary.md", "runs.csv", "history.csv", "learning_curves.png", "learning_curves.svg",
              "test_acc_per_run.png", "ranking.tex", "ranking.csv", "loss_x_optimizer.md"):
        assert (report / f).stat().st_size > 0, f
    with open(report / "runs.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 8 and "config.optimizer.learning_rate" in rows[0]
    html = (report / "report.html").read_text()
    assert "data:image/png;base64," in html and "http" not in html.replace("http-equiv", "")
    assert (report / "learning_curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # Rerunning runs nothing new and duplicates nothing.
    assert main(["run", str(spec), "-o", str(out), "--workers", "1", "--no-report"]) == 0
    assert _runs(out) == runs
    assert "0 to run" in capsys.readouterr().out
    # -q: the verdict and the report's path, nothing else
    assert main(["run", str(spec), "-o", str(out), "--workers", "1", "-q"]) == 0
    quiet = capsys.readouterr().out
    assert quiet.startswith("Verdict: Best by highest mean test accuracy") and "Configurations" not in quiet
    assert quiet.strip().splitlines()[-1] == f"report: {out / 'report' / 'report.html'}"

    # A changed spec adds its new runs and keeps the old ones.
    _write(tmp_path, TINY.replace('"mse"]', '"mse", "categorical_hinge"]'))
    assert main(["run", str(spec), "-o", str(out), "--workers", "1", "-q", "--no-report"]) == 0
    after = _runs(out)
    assert len(after) == 12 and set(runs) <= set(after)


def test_report_escapes_user_names(tmp_path):
    spec = _write(tmp_path, 'name = "esc"\nepochs = 1\nseeds = [0]\n'
                            '[grid]\noptimizer = [{ name = "sgd", learning_rate = 0.1 }, "adam"]\n'
                            'loss = ["mse"]\n')
    out = tmp_path / "o"
    assert main(["run", str(spec), "-o", str(out), "-q", "--workers", "1"]) == 0
    from cnnbench.store.db import Store
    s = Store.open_existing(out)  # the names in the report come from the runs' axes
    s.conn.execute("""UPDATE runs SET label = '<script>alert(1)</script>', axes = json_set(axes, '$.optimizer',
                      '<script>alert(1)</script>' || json_extract(axes, '$.optimizer'))""")
    s.close()
    assert main(["report", str(out)]) == 0
    html = (out / "report" / "report.html").read_text()
    assert "<script>alert" not in html and "&lt;script&gt;alert(1)" in html
    assert html.count("<script>") == 1  # the report's own sorting script


def test_dry_run_writes_nothing(tmp_path, capsys):
    spec = _write(tmp_path, TINY)
    out = tmp_path / "dry"
    assert main(["run", str(spec), "-o", str(out), "--dry-run"]) == 0
    assert "8 to run" in capsys.readouterr().out
    assert not out.exists()


def _cnnbench(*args, **kw):
    return subprocess.run([sys.executable, "-m", "cnnbench.cli", *args], capture_output=True, text=True, **kw)


def test_sigkill_then_rerun_completes_without_duplicates_and_same_metrics(tmp_path):
    text = TINY.replace("epochs = 2", "epochs = 6")
    spec = _write(tmp_path, text)
    killed, fresh = tmp_path / "killed", tmp_path / "fresh"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "cnnbench.cli", "run", str(spec), "-o", str(killed),
                             "--workers", "1", "-q", "--no-report"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    db = killed / "study.db"
    deadline = time.time() + 120
    while time.time() < deadline:  # wait until the study is mid-way: some epochs written, not all runs done
        if db.exists():
            try:
                con = sqlite3.connect(db)
                n = con.execute("SELECT COUNT(*) FROM history").fetchone()[0]
                con.close()
            except sqlite3.OperationalError:
                n = 0
            if n >= 9:
                break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    statuses = [r[1] for r in _runs(killed)]
    assert statuses.count("done") < 8, "the study finished before it could be killed"

    r = _cnnbench("run", str(spec), "-o", str(killed), "--workers", "1", "-q", "--no-report", env=env)
    assert r.returncode == 0, r.stderr
    r = _cnnbench("run", str(spec), "-o", str(fresh), "--workers", "1", "-q", "--no-report", env=env)
    assert r.returncode == 0, r.stderr
    assert _runs(killed) == _runs(fresh)
    con = sqlite3.connect(db)
    assert con.execute("SELECT COUNT(*) FROM history").fetchone()[0] == 8 * 6
    assert con.execute("SELECT COUNT(DISTINCT key) FROM runs").fetchone()[0] == 8
    assert not list((killed / "checkpoints").glob("*.pt"))


def test_worker_processes_give_the_same_results_as_inline(tmp_path):
    spec = _write(tmp_path, TINY)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    a = _cnnbench("run", str(spec), "-o", str(tmp_path / "a"), "--workers", "2", "-q", "--no-report", env=env)
    assert a.returncode == 0, a.stderr
    assert {r[1] for r in _runs(tmp_path / "a")} == {"done"}
    assert len(_runs(tmp_path / "a")) == 8
    b = _cnnbench("run", str(spec), "-o", str(tmp_path / "b"), "--workers", "1", "-q", "--no-report", env=env)
    assert b.returncode == 0, b.stderr
    assert _runs(tmp_path / "a") == _runs(tmp_path / "b")  # same keys, statuses and test accuracies


BAD = [
    ("bad_toml", 'name = "x"\nepochs = = 2\n', [], "invalid TOML"),
    ("unknown_loss", 'name = "x"\nloss = "categorical_crossentrpy"\n', [], "did you mean 'categorical_crossentropy'"),
    ("unknown_optimizer", 'name = "x"\noptimizer = "adamw2"\n', [], "unknown optimizer 'adamw2'"),
    ("unknown_model", 'name = "x"\nmodel = "resnet9000"\n', [], "unknown model 'resnet9000'"),
    ("unknown_dataset", 'name = "x"\ndataset = "imagenet22k"\n', [], "unknown dataset 'imagenet22k'"),
    ("negative_epochs", 'name = "x"\nepochs = -3\n', [], "epochs: Input should be greater than or equal to 1"),
    ("batch_too_large", 'name = "x"\nbatch_size = 100000\n', [], "batch_size 100000 is larger than the"),
    ("missing_file", None, [], "does not exist"),
    ("bad_device", 'name = "x"\n', ["--device", "tpu"], "unknown device"),
    ("missing_data_dir", 'name = "x"\n', ["--data-dir", "/nonexistent/dir"],
     "data directory /nonexistent/dir does not exist"),
    ("bad_workers", 'name = "x"\n', ["--workers", "zero"], "--workers must be a positive integer"),
]


@pytest.mark.parametrize("name, text, extra, message", BAD, ids=[b[0] for b in BAD])
def test_bad_input_one_line_exit_2_nothing_written(tmp_path, capsys, name, text, extra, message):
    spec = tmp_path / "missing.toml" if text is None else _write(tmp_path, text)
    out = tmp_path / "out"
    assert main(["run", str(spec), "-o", str(out), *extra]) == 2
    err = capsys.readouterr().err
    assert err.startswith("cnnbench: error: ") and err.count("\n") == 1 and message in err, err
    assert not out.exists()


def test_data_dir_that_is_a_file(tmp_path, capsys):
    f = tmp_path / "data"
    f.write_text("not a directory")
    out = tmp_path / "o"
    assert main(["run", str(_write(tmp_path, 'name = "x"\n')), "-o", str(out), "--data-dir", str(f)]) == 2
    assert "is a file, not a directory" in capsys.readouterr().err and not out.exists()


def test_unreadable_data_dir(tmp_path, capsys):
    if os.geteuid() == 0:
        pytest.skip("root reads every directory")
    d = tmp_path / "data"
    d.mkdir(mode=0)
    assert main(["run", str(_write(tmp_path, 'name = "x"\n')), "-o", str(tmp_path / "o"), "--data-dir", str(d)]) == 2
    assert "not readable" in capsys.readouterr().err


def test_study_dir_of_another_study_is_refused(tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["run", str(_write(tmp_path, 'name = "first"\nepochs = 1\nseeds = [0]\n', "a.toml")), "-o", str(out),
                 "-q", "--workers", "1", "--no-report"]) == 0
    before = sorted(p.name for p in out.iterdir())
    assert main(["run", str(_write(tmp_path, 'name = "second"\nepochs = 1\n', "b.toml")), "-o", str(out)]) == 2
    assert "holds study 'first', not 'second'" in capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == before


def test_dry_run_never_downloads(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("CNNBENCH_OFFLINE", raising=False)
    import cnnbench.data.datasets as datasets

    def no_download(name):
        raise AssertionError("a dry run tried to download")

    monkeypatch.setattr(datasets, "_tv", no_download)
    spec = _write(tmp_path, 'name = "x"\ndataset = "mnist"\nskip_missing_datasets = true\n')
    assert main(["run", str(spec), "-o", str(tmp_path / "o"), "--data-dir", str(tmp_path), "--dry-run"]) == 0
    assert "skipped" in capsys.readouterr().out


def test_a_traceback_never_reaches_the_user_for_bad_input(tmp_path):
    r = _cnnbench("run", str(_write(tmp_path, 'name = "x"\nloss = "nope"\n')), "-o", str(tmp_path / "o"))
    assert r.returncode == 2 and "Traceback" not in r.stderr and r.stderr.count("\n") == 1


def test_list_commands(capsys):
    for kind in ("losses", "optimizers", "models", "datasets", "studies"):
        assert main(["list", kind]) == 0
    out = capsys.readouterr().out
    for name in ("categorical_crossentropy", "nesterov", "keras_mnist_cnn", "digits", "default"):
        assert name in out


def test_summary_command(capsys):
    assert main(["summary", "keras_mnist_cnn", "--input", "1x28x28"]) == 0
    assert "1,199,882" in capsys.readouterr().out
    assert main(["summary", "keras_mnist_cnn", "--input", "28x28"]) == 2


def test_ray_executor_runs_a_study_into_the_drivers_store(tmp_path):
    pytest.importorskip("ray")
    spec = _write(tmp_path, TINY.replace("seeds = [0, 1]", "seeds = [0]"))
    out = tmp_path / "ray"
    r = _cnnbench("run", str(spec), "-o", str(out), "--executor", "ray", "-q", "--no-report",
                  env={**os.environ, "RAY_ADDRESS": "", "OMP_NUM_THREADS": "1"}, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    runs = _runs(out)
    assert len(runs) == 4 and {x[1] for x in runs} == {"done"}
    inline = tmp_path / "inline"
    assert _cnnbench("run", str(spec), "-o", str(inline), "--workers", "1", "-q", "--no-report",
                     env={**os.environ, "OMP_NUM_THREADS": "1"}).returncode == 0
    assert _runs(out) == _runs(inline)  # one thread per run either way: the same numbers


def test_learning_rate_search_then_final_runs_with_all_seeds(tmp_path, capsys):
    spec = _write(tmp_path, 'name = "tune"\nepochs = 2\nbatch_size = 64\nseeds = [0, 1]\n'
                            '[grid]\noptimizer = ["sgd", "adam"]\n'
                            '[tuning]\nlearning_rates = { start = 1e-3, stop = 1e-1, num = 3 }\n')
    out = tmp_path / "out"
    assert main(["run", str(spec), "-o", str(out), "--workers", "1", "-q"]) == 0
    con = sqlite3.connect(out / "study.db")
    rows = con.execute("SELECT label, json_extract(config, '$.optimizer.learning_rate'), "
                       "json_extract(config, '$.seed'), final, tuning, val_acc, status FROM runs").fetchall()
    search = [r for r in rows if r[4]]
    finals = [r for r in rows if r[3]]
    assert len(search) == 6 and {r[2] for r in search} == {0}  # 2 configs × 3 rates × search seed 0
    assert len(finals) == 4 and len(rows) == 8  # the chosen rate's seed-0 run is reused, not retrained
    for label in ("optimizer=sgd", "optimizer=adam"):
        best = max((r for r in search if r[0] == label), key=lambda r: r[5])
        assert {r[1] for r in finals if r[0] == label} == {best[1]}
        assert {r[2] for r in finals if r[0] == label} == {0, 1}
    md = (out / "report" / "summary.md").read_text()
    assert "## Learning-rate search" in md and "Search budget: 6 runs" in md
    assert (out / "report" / "learning_rate_search.png").stat().st_size > 0
    # the ranked table holds the 2 configurations, each with 2 seeds
    assert "| 2 |" in md.split("## Configurations ranked by test accuracy")[1].split("##")[0]
    # rerun: nothing to do
    assert main(["run", str(spec), "-o", str(out), "--workers", "1", "-q", "--no-report"]) == 0
    assert con.execute("SELECT COUNT(*) FROM runs").fetchone()[0] == 8


def test_a_changed_spec_ranks_only_its_own_runs(tmp_path):
    spec = _write(tmp_path, TINY)
    out = tmp_path / "out"
    assert main(["run", str(spec), "-o", str(out), "--workers", "1", "-q", "--no-report"]) == 0
    _write(tmp_path, TINY.replace("epochs = 2", "epochs = 3"))  # same labels, different runs
    assert main(["run", str(spec), "-o", str(out), "--workers", "1", "-q"]) == 0
    md = (out / "report" / "summary.md").read_text()
    table = md.split("## Configurations ranked by test accuracy")[1].split("##")[0]
    rows = [line for line in table.splitlines() if line.startswith("| ") and "configuration" not in line]
    assert len(rows) == 4 and all(line.split(" | ")[2] == "2" for line in rows)  # 2 seeds each, not 4
    assert "8 kept from earlier versions of the spec" in md
    with open(out / "report" / "runs.csv") as fh:
        assert len(list(csv.DictReader(fh))) == 16


def test_output_path_through_a_file_is_refused(tmp_path, capsys):
    f = tmp_path / "afile"
    f.write_text("x")
    for out in (f, f / "sub"):
        assert main(["run", str(_write(tmp_path, 'name = "x"\nepochs = 1\n')), "-o", str(out)]) == 2
        err = capsys.readouterr().err
        assert "is a file; choose another directory" in err and err.count("\n") == 1


@pytest.mark.parametrize("text, message", [
    ('name = "x"\nvalidation_split = 0\nearly_stopping = { patience = 1 }\n',
     "monitors 'val_loss' but validation_split is 0"),
    ('name = "x"\nearly_stopping = { monitor = "val_acuracy" }\n', "did you mean 'val_accuracy'"),
    ('name = "x"\nclass_weight = { "x" = 1.0 }\n', "class_weight: class_weight key 'x' is not a class index"),
    ('name = "x"\nclass_weight = { "0" = -1.0 }\n', "class_weight: Input should be greater than or equal to 0"),
    ('name = "x"\nvalidation_split = 0.9999\n', "leaves an empty part"),
    ('name = "x"\nvalidation_split = 0.1234\nbatch_size = 1261\n',
     "batch_size 1261 is larger than the 1260 training images"),
])
def test_settings_that_cannot_work_are_refused_before_training(tmp_path, capsys, text, message):
    out = tmp_path / "out"
    assert main(["run", str(_write(tmp_path, text)), "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1, err
    assert not out.exists()


def test_diverging_runs_with_early_stopping_are_recorded_as_diverged(tmp_path):
    rows = None
    spec = _write(tmp_path, 'name = "div"\nepochs = 4\nseeds = [0]\nearly_stopping = { patience = 1 }\n'
                            'optimizer = { name = "sgd", learning_rate = 1e30 }\n')
    out = tmp_path / "out"
    assert main(["run", str(spec), "-o", str(out), "--workers", "1", "-q", "--no-report"]) == 0
    con = sqlite3.connect(out / "study.db")
    rows = con.execute("SELECT status, epochs_done FROM runs").fetchall()
    assert rows[0][0] == "diverged" and rows[0][1] >= 1
    assert con.execute("SELECT COUNT(*) FROM history").fetchone()[0] == rows[0][1]


def test_exit_status_is_1_when_a_run_fails(tmp_path, capsys, monkeypatch):
    import cnnbench.runs.one_run as ex

    def broken_prepare(*a, **k):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(ex, "prepare", broken_prepare)
    spec = _write(tmp_path, 'name = "f"\nepochs = 1\nseeds = [0]\n')
    assert main(["run", str(spec), "-o", str(tmp_path / "o"), "--workers", "1", "-q", "--no-report"]) == 1
    assert "1 run(s) failed" in capsys.readouterr().err


def test_a_study_whose_every_run_failed_still_gets_its_report(tmp_path, capsys, monkeypatch):
    import cnnbench.runs.one_run as ex

    def broken_prepare(*a, **k):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(ex, "prepare", broken_prepare)
    spec = _write(tmp_path, 'name = "f"\nepochs = 1\nseeds = [0]\n')
    out = tmp_path / "o"
    assert main(["run", str(spec), "-o", str(out), "--workers", "1", "-q"]) == 1  # no history: no curves
    err = capsys.readouterr().err
    assert "1 run(s) failed" in err and "Traceback" not in err
    html = (out / "report" / "report.html").read_text()
    assert "No results to compare yet" in html and "disk on fire" in (out / "report" / "runs.csv").read_text()


def test_sample_weight_file_in_a_study(tmp_path, capsys):
    import numpy as np

    from cnnbench import data

    n = data.load("digits").x_train.shape[0]
    ones, zeros = tmp_path / "ones.npy", tmp_path / "short.npy"
    np.save(ones, np.ones(n, np.float32))
    np.save(zeros, np.zeros(n - 1, np.float32))
    base = 'name = "sw"\nepochs = 2\nseeds = [0]\nvalidation_mode = "stratified"\n'
    plain = _write(tmp_path, base, "plain.toml")
    weighted = _write(tmp_path, base + f'sample_weight = "{ones}"\n', "weighted.toml")
    assert main(["run", str(plain), "-o", str(tmp_path / "a"), "--workers", "1", "-q", "--no-report"]) == 0
    assert main(["run", str(weighted), "-o", str(tmp_path / "b"), "--workers", "1", "-q", "--no-report"]) == 0
    # all-ones weights train exactly like no weights (different keys, same numbers)
    assert [r[1:] for r in _runs(tmp_path / "a")] == [r[1:] for r in _runs(tmp_path / "b")]
    bad = _write(tmp_path, base + f'sample_weight = "{zeros}"\n', "bad.toml")
    assert main(["run", str(bad), "-o", str(tmp_path / "c")]) == 2
    assert f"holds {n - 1} weights but the training set has {n} images" in capsys.readouterr().err
    assert not (tmp_path / "c").exists()


def test_sample_weights_follow_their_images_through_the_stratified_split(tmp_path):
    import numpy as np

    from cnnbench import data
    from cnnbench import spec as study
    from cnnbench.runs.one_run import prepare

    ds = data.load("digits")
    idx = tmp_path / "idx.npy"
    np.save(idx, np.arange(ds.x_train.shape[0], dtype=np.float32))  # weight = the image's position
    cfg = study.parse_text(f'name = "x"\nvalidation_mode = "stratified"\nsample_weight = "{idx}"\n').runs[0].config
    x, y, _val, *_, sw = prepare(cfg, None)
    assert len(sw) == len(x) < ds.x_train.shape[0]
    assert torch_equal(x, ds.x_train[sw.long()]) and torch_equal(y, ds.y_train[sw.long()])


def torch_equal(a, b):
    import torch
    return torch.equal(a, b)


def test_tensorboard_logs_every_epoch(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    spec = _write(tmp_path, 'name = "tb"\nepochs = 3\nseeds = [0]\n[grid]\noptimizer = ["adam", "sgd"]\n')
    out = tmp_path / "out"
    assert main(["run", str(spec), "-o", str(out), "--workers", "1", "-q", "--no-report", "--tensorboard"]) == 0
    dirs = sorted(p for p in (out / "tensorboard").glob("*/*") if p.is_dir())
    assert len(dirs) == 2 and {d.parent.name for d in dirs} == {"optimizer=adam", "optimizer=sgd"}
    acc = EventAccumulator(str(dirs[0]))
    acc.Reload()
    assert [e.step for e in acc.Scalars("val_accuracy")] == [1, 2, 3]


def test_roles_follow_the_latest_spec(tmp_path):
    # Regression: a run's "final" and "tuning" roles used to stick from earlier versions of the spec.
    plain = 'name = "roles"\nepochs = 1\nbatch_size = 128\nseeds = [0]\n'
    spec, out = _write(tmp_path, plain), tmp_path / "out"
    assert main(["run", str(spec), "-o", str(out), "--workers", "1", "-q", "--no-report"]) == 0
    # Adam's default rate 0.001 is one of the search rates: that run is reused, now as a search run.
    _write(tmp_path, plain + "[tuning]\nlearning_rates = [0.001, 0.01]\n")
    assert main(["run", str(spec), "-o", str(out), "--workers", "1", "-q", "--no-report"]) == 0
    con = sqlite3.connect(out / "study.db")
    rows = con.execute("SELECT json_extract(config, '$.optimizer.learning_rate'), final, tuning FROM runs").fetchall()
    assert len(rows) == 2 and sorted(r[2] for r in rows) == [1, 1] and sum(r[1] for r in rows) == 1
    # back to the plain spec: one final run, no search, and the report says nothing of a search
    _write(tmp_path, plain)
    assert main(["run", str(spec), "-o", str(out), "--workers", "1", "-q"]) == 0
    rows = con.execute("SELECT json_extract(config, '$.optimizer.learning_rate'), final, tuning, current "
                       "FROM runs").fetchall()
    assert sorted(rows) == [(0.001, 1, 0, 1), (0.01, 0, 0, 0)]
    assert "Learning-rate search" not in (out / "report" / "summary.md").read_text()


def test_runs_of_a_dataset_gone_missing_stay_ranked(tmp_path):
    import numpy as np

    rng = np.random.default_rng(0)
    npz = tmp_path / "tiny.npz"
    np.savez(npz, x_train=rng.integers(0, 256, (64, 8, 8), dtype=np.uint8), y_train=np.arange(64) % 4,
             x_test=rng.integers(0, 256, (16, 8, 8), dtype=np.uint8), y_test=np.arange(16) % 4)
    spec = _write(tmp_path, f'name = "gone"\nepochs = 1\nskip_missing_datasets = true\nseeds = [0]\n'
                            f'[grid]\ndataset = ["digits", "{npz}"]\n')
    out = tmp_path / "out"
    assert main(["run", str(spec), "-o", str(out), "--workers", "1", "-q", "--no-report"]) == 0
    npz.rename(tmp_path / "elsewhere.npz")
    r = _cnnbench("run", str(spec), "-o", str(out), "--workers", "1", "-q")  # a new process: nothing in memory
    assert r.returncode == 0 and "skipped" in r.stdout, r.stderr
    md = (out / "report" / "summary.md").read_text()
    cells = [section.splitlines()[0] for section in md.split("\n## Cell: ")[1:]]  # one ranked table per dataset
    assert len(cells) == 2 and any("tiny.npz" in c for c in cells) and "kept from earlier versions" not in md


def test_ray_executor_without_ray_writes_nothing(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    spec, out = _write(tmp_path, 'name = "x"\nepochs = 1\n'), tmp_path / "out"
    assert main(["run", str(spec), "-o", str(out), "--executor", "ray"]) == 2
    assert "--executor ray needs Ray" in capsys.readouterr().err and not out.exists()


def test_a_study_db_that_is_not_a_database(tmp_path, capsys):
    (tmp_path / "study.db").write_bytes(b"not a database, just text" * 100)
    assert main(["report", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("cnnbench: error: ") and err.count("\n") == 1 and "cannot use it as the study database" in err


@pytest.mark.parametrize("args, started", [
    ([], True), (["--workers", "2"], True), (["--workers", "1"], False), (["--executor", "ray"], False),
    (["--device", "cuda"], False), (["--dry-run"], False)])
def test_run_starts_the_forkserver_early_only_where_a_pool_is_likely(tmp_path, monkeypatch, args, started):
    """`cnnbench run` starts the local executor's forkserver before planning (its torch import overlaps
    the main process'), but not for a dry run, one worker, Ray or a GPU."""
    from cnnbench.api import Study
    from cnnbench.runs.executors import forkserver

    calls = []
    monkeypatch.setattr(forkserver, "start", lambda: calls.append("start"))
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)

    def fake_run(self, *a, **kw):
        raise KeyboardInterrupt  # stop before anything is trained; the CLI exits 130

    monkeypatch.setattr(Study, "run", fake_run)
    code = main(["run", str(_write(tmp_path, TINY)), "-o", str(tmp_path / "out"), *args])
    assert code == (0 if "--dry-run" in args else 130)
    assert calls == (["start"] if started else [])
    assert forkserver.PRELOAD[:2] == ["cnnbench.runs.one_run", "cnnbench.runs.executors.local"]


@pytest.fixture
def python_sigint():
    """Python's own SIGINT handler for the test, as an interactive session has it: a suite started in the
    background (`pytest &`) inherits SIGINT ignored, and Python then installs no handler."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


def test_main_called_from_python_puts_its_sigint_handler_back(tmp_path, monkeypatch, capsys, python_sigint):
    """A test suite or a notebook kernel that called main() still stops on Ctrl-C afterwards."""
    from cnnbench import cli
    from cnnbench.cli import listing

    ours = signal.getsignal(signal.SIGINT)
    assert main(["list", "schedules"]) == 0
    assert signal.getsignal(signal.SIGINT) is ours

    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(listing, "cmd_list", interrupted)
    assert main(["list", "losses"]) == 130
    assert capsys.readouterr().err.strip().splitlines() == [cli.INTERRUPTED]
    assert signal.getsignal(signal.SIGINT) is ours
    with pytest.raises(KeyboardInterrupt):  # and Ctrl-C works again
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(1)


def test_version(capsys):
    from importlib import metadata

    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0
    line = capsys.readouterr().out.strip()
    assert line.startswith(f"cnnbench {metadata.version('cnnbench')}") and f"torch {metadata.version('torch')}" in line
    import cnnbench

    assert cnnbench.__version__ == metadata.version("cnnbench")


@pytest.mark.parametrize("name", ["out[/]x", "res [v2]", "[bold]x[/bold]"])
def test_paths_and_labels_are_printed_as_they_are_not_as_markup(tmp_path, capsys, name):
    spec = _write(tmp_path, TINY)
    out = tmp_path / name
    assert main(["run", str(spec), "-o", str(out), "--dry-run"]) == 0
    printed = capsys.readouterr().out
    assert str(out) in printed.replace("\n", "")


RANKING = [["#", "configuration", "n", "test accuracy (%): mean ± std", "95% CI", "p vs best (Holm)", "vs best"],
           [["1", "loss=kl_divergence · optimizer=sgd(learning_rate=0.1, momentum=0.9)", "3", "58.31 ± 15.52",
             "[19.74, 96.88]", "–", "best"],
            ["2", "loss=categorical_crossentropy · optimizer=adam", "3", "44.01 ± 10.03", "[19.09, 68.93]", "0.75",
             "not testable (too few seeds)"]]]


@pytest.mark.parametrize("width", [40, 80, 100, 200])
def test_tables_keep_every_token_whole_at_any_width(width):
    """Wrapped at whole words (a number or an interval in one piece), never wider than the console;
    a compact block per row when the columns cannot fit."""
    import io

    from rich.console import Console

    from cnnbench.cli import print_table

    console = Console(file=io.StringIO(), width=width, highlight=False, markup=False)
    header, rows = RANKING
    print_table(console, "Configurations ranked by test accuracy", header, rows, key_columns=2)
    text = console.file.getvalue()
    lines = text.splitlines()
    assert max(map(len, lines)) <= width
    cells = [re.sub(r"[│┃]", " ", line) for line in lines]
    words = {w for line in cells for w in line.split()}
    for row in rows:
        for cell in row:
            if any(c.isalpha() for c in cell):
                assert set(cell.split()) <= words, (cell, text)
            else:
                assert any(cell in line for line in cells), (cell, text)
    assert ("┃" in text) == (width >= 100)  # the table where it fits, else the compact layout
    if width == 80:
        assert lines[1] == "1 loss=kl_divergence · optimizer=sgd(learning_rate=0.1, momentum=0.9)"


@pytest.mark.parametrize("columns", ["80", "100", "200"])
def test_list_optimizers_honours_columns_and_keeps_tokens_whole(columns, monkeypatch, capsys):
    monkeypatch.setenv("COLUMNS", columns)
    assert main(["list", "optimizers"]) == 0
    out = capsys.readouterr().out
    assert max(len(line) for line in out.splitlines()) <= int(columns)
    words = {w.strip("│┃") for line in out.splitlines() for w in line.split()}
    from cnnbench import optim

    keras_adam = optim.resolve({"name": "adam", "flavor": "keras"})
    assert f"beta_2={keras_adam['beta_2']}," in words and "epsilon=1e-07," in words


def test_the_paths_subcommand_declares_its_arguments_from_its_module(capsys):
    """`cnnbench paths` imports its module (report/optimizer_paths.py) only when asked, for its arguments."""
    with pytest.raises(SystemExit) as e:
        main(["paths", "--help"])
    assert e.value.code == 0 and "--surface" in capsys.readouterr().out


def test_list_executors_and_their_declared_options(capsys):
    assert main(["list", "executors"]) == 0
    out = capsys.readouterr().out
    assert "local" in out and "address=null, cpus_per_run=1, gpus_per_run=0" in out
    assert main(["list", "executors", "ray"]) == 0
    out = capsys.readouterr().out
    assert "cpus_per_run" in out and "a number > 0" in out and "a number >= 0" in out
    assert main(["list", "executors", "slurm"]) == 2
    assert capsys.readouterr().err.strip() == "cnnbench: error: unknown executor 'slurm'; see `cnnbench list executors`"
