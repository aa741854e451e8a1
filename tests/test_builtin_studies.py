"""The built-in studies and the issues' end-to-end promises, run small on the embedded digits."""

import sqlite3

import pytest

from cnnbench import losses, optim, runner, study
from cnnbench.cli import main


def _run(tmp_path, text, name="s.toml"):
    spec = tmp_path / name
    spec.write_text(text)
    out = tmp_path / "out"
    assert main(["run", str(spec), "-o", str(out), "--workers", "1", "-q", "--no-report"]) == 0
    con = sqlite3.connect(out / "study.db")
    try:
        return con.execute("SELECT label, status, error FROM runs").fetchall()
    finally:
        con.close()


def _quoted(names):
    return "[" + ", ".join(f'"{n}"' for n in names) + "]"


@pytest.mark.slow
def test_every_loss_with_adam_on_digits_runs_to_the_end(tmp_path):
    rows = _run(tmp_path, f'name = "all-losses"\nepochs = 1\nbatch_size = 64\nseeds = [0]\n'
                          f'[grid]\nloss = {_quoted(losses.REGISTRY.list())}\n')
    assert len(rows) == len(losses.REGISTRY.list())
    assert all(status in ("done", "diverged") for _, status, _ in rows), [r for r in rows if r[1] == "failed"]


@pytest.mark.slow
def test_every_optimizer_trains_the_keras_mnist_cnn_on_digits(tmp_path):
    names = [n for n in optim.REGISTRY.list()]
    rows = _run(tmp_path, f'name = "all-optimizers"\nepochs = 1\nbatch_size = 64\nseeds = [0]\n'
                          f'model = "keras_mnist_cnn"\n[grid]\noptimizer = {_quoted(names)}\n')
    assert len(rows) == len(names)
    failed = [r for r in rows if r[1] != "done"]
    assert not failed, failed


def test_large_batch_lars_runs_with_small_batch_counts(tmp_path):
    text = study.load("large_batch_lars").text
    text = text.replace('dataset = "mnist"', 'dataset = "digits"').replace("epochs = 20", "epochs = 1")
    text = text.replace("seeds = [0, 1, 2]", "seeds = [0]").replace("micro_batch_size = 2048", "micro_batch_size = 256")
    text = text.replace("batch_size = [128, 256, 512, 1024, 2048, 4096, 8192, 16384, 32768]", "batch_size = [128, 1024]")
    rows = _run(tmp_path, text)
    assert len(rows) == 6 and all(r[1] == "done" for r in rows), rows


@pytest.mark.parametrize("name", study.builtin_studies())
def test_builtin_study_resolves_and_plans_against_what_is_present(name, tmp_path):
    s = study.load(name)
    assert s.runs and s.meta.description
    if name == "default":
        return
    # With an empty data directory every dataset of the seed studies is missing: they say so and skip.
    plan = runner.plan(s, tmp_path / "out", data_dir=str(tmp_path))
    assert plan.skipped or plan.runs
    for line in plan.skipped:
        assert "\n" not in line
