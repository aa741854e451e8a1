"""A run's numbers do not depend on how it was executed: in-process with several threads, in a 1-thread
worker, interrupted and resumed. Each run trains with `execution.RUN_THREADS` intra-op threads on the
CPU whatever the executor, so these are bit-identical (== on floats, not approximately)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
import torch

HISTORY = ("epoch", "train_loss", "train_acc", "val_loss", "val_acc", "learning_rate")
RESULTS = ("status", "epochs_done", "train_loss", "train_acc", "val_loss", "val_acc", "test_loss", "test_acc",
           "test_top5_acc", "test_nll", "test_ece", "test_macro_f1", "val_nll", "val_ece", "val_macro_f1",
           "best_val_acc", "last_val_acc", "best_val_loss", "last_val_loss", "params", "flops", "metrics_epoch")


def _numbers(study_dir: Path) -> dict:
    con = sqlite3.connect(f"file:{study_dir / 'study.db'}?mode=ro", uri=True)
    try:
        runs = {r[0]: r[1:] for r in con.execute(f"SELECT key, {', '.join(RESULTS)} FROM runs")}
        history = {}
        for row in con.execute(f"SELECT run_key, {', '.join(HISTORY)} FROM history ORDER BY run_key, epoch"):
            history.setdefault(row[0], []).append(row[1:])
        return {"runs": runs, "history": history}
    finally:
        con.close()


@pytest.mark.slow
def test_in_process_worker_and_resumed_runs_are_bit_identical(fault, tmp_path, monkeypatch):
    from cnnbench import spec as study
    from cnnbench.runs import plan as planning
    from cnnbench.runs import study_run
    from cnnbench.runs.one_run import RUN_THREADS, run_task
    from cnnbench.runs.task import Task

    path = fault.write_study(tmp_path / "s.toml", seeds=2, epochs=3, extra='optimizer = "sgd"\n')
    # 1. the default: one 1-thread worker process per run
    workers = fault.start("run", path, "-o", tmp_path / "workers", "--workers", "2", "-q", "--no-report")
    assert workers.wait(timeout=180)[0] == 0, workers.stderr
    # 2. in this process, which has 2 threads (what a single remaining run used to get)
    spec = study.load(path)
    plan = planning.plan(spec, tmp_path / "inline")
    torch.set_num_threads(2)
    try:
        study_run.run_plan(plan, data_dir=None, device="cpu", workers=1)
        assert torch.get_num_threads() == 2  # restored after each run
        # 3. interrupted after its 2nd epoch (as a Ctrl-C), then resumed in this process
        plan = planning.plan(spec, tmp_path / "resumed")
        study_run.run_plan(plan, data_dir=None, device="cpu", workers=1)  # stores the runs, trains them
        run = plan.runs[0]
        con = sqlite3.connect(tmp_path / "resumed" / "study.db")
        con.execute("UPDATE runs SET status = 'pending' WHERE key = ?", (run.key,))
        con.execute("DELETE FROM history WHERE run_key = ?", (run.key,))
        con.commit()
        con.close()
        task = Task(run.key, run.label, run.config, str(tmp_path / "resumed"), None, "cpu")

        def stop_after_two(event):
            if event["event"] == "epoch" and event["epoch"] == 2:
                raise KeyboardInterrupt

        with pytest.raises(KeyboardInterrupt):
            run_task(task, progress=stop_after_two)
        assert (tmp_path / "resumed" / "checkpoints" / f"{run.key}.pt").exists()
        assert run_task(task) == "done"
    finally:
        torch.set_num_threads(2)
    expected = _numbers(tmp_path / "workers")
    assert len(expected["runs"]) == 2 and all(len(h) == 3 for h in expected["history"].values())
    assert _numbers(tmp_path / "inline") == expected
    assert _numbers(tmp_path / "resumed") == expected
    con = sqlite3.connect(tmp_path / "inline" / "study.db")
    envs = [r[0] for r in con.execute("SELECT environment FROM runs")]
    con.close()
    assert all(f'"cpu_threads": {RUN_THREADS}' in e for e in envs)
