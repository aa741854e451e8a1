"""Ctrl-C, kill -9 of the main process and of a worker, with the default worker processes."""

from __future__ import annotations

import os
import signal

import pytest

pytestmark = pytest.mark.slow  # each starts a study with worker processes: 10-40 s on 2 busy cores

FINISHED = {"done"}


def _start(fault, tmp_path, seeds=6, epochs=4):
    spec = fault.write_study(tmp_path / "study.toml", seeds=seeds, epochs=epochs)
    out = tmp_path / "out"
    c = fault.start("run", spec, "-o", out, "--data-dir", tmp_path, "--workers", "2", "-q", "--no-report")
    # hurt it in mid-study: a run finished, others running or queued
    fault.wait_for(lambda: "done" in fault.statuses(out).values() or c.proc.poll() is not None, what="a finished run")
    assert c.proc.poll() is None, "the study ended before it could be interrupted: make it longer"
    return c, spec, out


@pytest.mark.parametrize("how", ["ctrl_c", "ctrl_c_twice", "sigint_to_main_only"])
def test_sigint_with_workers_stops_promptly_and_resumes(fault, tmp_path, how):
    c, spec, out = _start(fault, tmp_path)
    if how == "sigint_to_main_only":
        os.kill(c.pid, signal.SIGINT)
    else:
        c.ctrl_c()
        if how == "ctrl_c_twice":
            import time

            time.sleep(0.3)
            if c.proc.poll() is None:
                c.ctrl_c()
    before = fault.statuses(out)
    code, seconds = c.wait()
    assert code == 130, (code, c.stderr)  # never -2 (killed by the second SIGINT): see test_faults_signals
    assert "Traceback" not in c.stderr, c.stderr
    assert c.stderr.strip().splitlines()[-1] == "cnnbench: interrupted; run the same command again to resume"
    print(f"{how}: exit {code} {seconds:.2f} s after the signal")
    assert seconds < fault.LIVENESS_S
    left_after = c.wait_no_processes()
    print(f"{how}: no process left {left_after:.2f} s after the exit")
    after = fault.statuses(out)
    assert {k for k, s in before.items() if s == "done"} <= {k for k, s in after.items() if s == "done"}
    assert set(after.values()) <= {"done", "running", "pending"}  # nothing failed, nothing half-recorded

    if how == "ctrl_c":  # the next run resumes: every run done, each once
        again = fault.start("run", spec, "-o", out, "--data-dir", tmp_path, "--workers", "2", "-q", "--no-report")
        code, _ = again.wait(timeout=300)
        assert code == 0, again.stderr
        final = fault.statuses(out)
        assert len(final) == 6 and set(final.values()) == {"done"}
        assert not list((out / "checkpoints").glob("*")) if (out / "checkpoints").exists() else True


def test_kill_9_of_the_main_process_leaves_no_process_and_no_orphan_result(fault, tmp_path):
    c, _, out = _start(fault, tmp_path)
    assert c.workers(), "no worker processes found"
    os.kill(c.pid, signal.SIGKILL)
    code, _ = c.wait()
    assert code == -signal.SIGKILL
    # read only once main is reaped: SIGKILL is delivered asynchronously, and a main process still
    # running for a moment after os.kill may legitimately commit one more finished run
    done_at_kill = {k for k, s in fault.statuses(out).items() if s == "done"}
    seconds = c.wait_no_processes()  # forkserver, workers and resource tracker all gone
    print(f"kill -9 of main: no process left {seconds:.2f} s later")
    # an orphan worker recorded nothing as done (the store is written only under the study lock)
    assert {k for k, s in fault.statuses(out).items() if s == "done"} == done_at_kill


def test_a_killed_worker_s_run_is_retried_and_the_study_completes(fault, tmp_path):
    c, _, out = _start(fault, tmp_path, seeds=4)
    victim = fault.wait_for(lambda: c.workers(), what="a worker process")[0]
    os.kill(victim["pid"], signal.SIGKILL)
    code, _ = c.wait(timeout=300)
    assert code == 0, c.stderr
    assert "running it again from its last checkpoint" in c.stderr
    final = fault.statuses(out)
    assert len(final) == 4 and set(final.values()) == {"done"}  # every run, each once
    c.wait_no_processes()


def test_a_killed_ray_worker_is_retried_and_the_study_completes(fault, tmp_path):
    pytest.importorskip("ray")
    spec = fault.write_study(tmp_path / "study.toml", seeds=3, epochs=6)
    out = tmp_path / "out"
    c = fault.start("run", spec, "-o", out, "--data-dir", tmp_path, "--executor", "ray", "-q", "--no-report",
                    env={"RAY_USAGE_STATS_ENABLED": "0"})

    def a_ray_worker_mid_run():
        if c.proc.poll() is not None or "running" not in fault.statuses(out).values():
            return None
        return [p for p in c.processes() if "ray::_run_on_worker" in p["cmdline"]]

    victim = fault.wait_for(a_ray_worker_mid_run, timeout=240, what="a Ray worker running a run")[0]
    os.kill(victim["pid"], signal.SIGKILL)
    code, _ = c.wait(timeout=300)
    assert code == 0, c.stderr
    assert "Traceback" not in c.stderr, c.stderr
    final = fault.statuses(out)
    assert len(final) == 3 and set(final.values()) == {"done"}  # retried, each run once
    c.wait_no_processes(timeout=60)
