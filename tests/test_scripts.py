"""Study.run() wherever Keras' fit runs: a script without `if __name__ == "__main__":`, `python - < script`
and a Jupyter kernel, with worker processes (multiprocessing would run an unguarded script again in
every worker: each would call run() again and find the study locked)."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

FALLBACK = "running the runs one at a time in this process"


def _script(out: Path, *, workers: str = "2", registered: str = "", loss: str = "categorical_crossentropy",
            report: bool = False) -> str:
    return "import cnnbench\n" + registered + textwrap.dedent(f"""
        study = cnnbench.Study.from_dict({{"name": "script", "seeds": [0, 1], "epochs": 1, "batch_size": 64,
                                          "dataset": "digits", "model": "digits_cnn", "grid": {{"loss": ["{loss}"]}}}},
                                         output={str(out)!r})
        result = study.run(workers={workers}, report={report})
        print("ran", result.ran, "failed", len(result.failed))
        """)


def _python(args, tmp_path, stdin=None, env=None):
    full_env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "OMP_NUM_THREADS": "1", **(env or {})}
    return subprocess.run([sys.executable, *args], input=stdin, capture_output=True, text=True, cwd=tmp_path,
                          env=full_env, timeout=300)


def _statuses(out: Path) -> list[str]:
    con = sqlite3.connect(out / "study.db")
    try:
        return [r[0] for r in con.execute("SELECT status FROM runs")]
    finally:
        con.close()


def _check_ran(proc, out: Path, fallback: bool = False) -> None:
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert "another `cnnbench run`" not in proc.stderr
    assert "ran 2 failed 0" in proc.stdout, proc.stdout + proc.stderr[-3000:]
    assert _statuses(out) == ["done", "done"]
    assert (FALLBACK in proc.stderr) == fallback, proc.stderr[-3000:]


@pytest.mark.slow
def test_an_unguarded_script_runs_with_workers(tmp_path):
    out = tmp_path / "out"
    (tmp_path / "script.py").write_text(_script(out))
    _check_ran(_python(["script.py"], tmp_path), out)


@pytest.mark.slow
def test_an_unguarded_script_on_stdin_runs_with_workers(tmp_path):
    out = tmp_path / "out"
    _check_ran(_python(["-"], tmp_path, stdin=_script(out)), out)


@pytest.mark.slow
def test_the_default_workers_from_an_unguarded_script(tmp_path):
    out = tmp_path / "out"
    (tmp_path / "script.py").write_text(_script(out, workers='"auto"'))
    _check_ran(_python(["script.py"], tmp_path), out)


LOSS = """
@cnnbench.losses.register("scripted_mae")
def scripted_mae(y_true, y_pred):
    return (y_true - y_pred).abs().mean(-1)
"""


@pytest.mark.slow
def test_a_loss_registered_by_a_guarded_script_reaches_the_workers(tmp_path):
    out = tmp_path / "out"
    body = _script(out, registered=LOSS, loss="scripted_mae").split("\nstudy = ", 1)
    guarded = body[0] + '\nif __name__ == "__main__":\n' + textwrap.indent("study = " + body[1], "    ")
    (tmp_path / "script.py").write_text(guarded)
    _check_ran(_python(["script.py"], tmp_path), out)


@pytest.mark.slow
def test_a_loss_registered_by_an_imported_module_reaches_the_workers(tmp_path):
    out = tmp_path / "out"
    (tmp_path / "mylosses.py").write_text("import cnnbench\n" + LOSS)
    (tmp_path / "script.py").write_text(_script(out, registered="import mylosses", loss="scripted_mae"))
    _check_ran(_python(["script.py"], tmp_path), out)


@pytest.mark.slow
def test_a_loss_registered_in_an_unguarded_main_runs_in_process_with_one_line(tmp_path):
    out = tmp_path / "out"
    proc = _python(["-"], tmp_path, stdin=_script(out, registered=LOSS, loss="scripted_mae"))
    _check_ran(proc, out, fallback=True)
    assert [line for line in proc.stderr.splitlines() if line.strip()] == [
        line for line in proc.stderr.splitlines() if FALLBACK in line]
    assert "'scripted_mae' is defined in __main__" in proc.stderr


def _text(outputs) -> str:
    """What a cell printed: its streams, and rich's output (display data, shown as HTML and plain text)."""
    return "".join(o.get("text", "") or o.get("data", {}).get("text/plain", "") + "\n" for o in outputs)


@pytest.mark.slow
def test_study_run_in_a_jupyter_kernel(tmp_path):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    out = tmp_path / "out"
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(_script(out)),
                nbformat.v4.new_code_cell(_script(tmp_path / "out2", loss="cell_mae",
                                                  registered=LOSS.replace("scripted_mae", "cell_mae"), report=True)),
                nbformat.v4.new_code_cell("study.compare()"),
                nbformat.v4.new_code_cell("study.show_report()")]
    env = {"PYTHONPATH": os.pathsep.join(sys.path), "OMP_NUM_THREADS": "1"}
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)  # the kernel inherits this process' environment
    try:
        nbclient.NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}},
                                ).execute()
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    first, second, compared, report = (cell.outputs for cell in nb.cells)
    text = _text(first)
    assert not [o for o in first if o.output_type == "error"], first
    assert "ran 2 failed 0" in text and FALLBACK not in text, text
    # progress without ipywidgets: the plan, a line per finished run
    assert "study script: 2 runs, 0 already finished, 2 to run" in text and "[2/2] done: script seed=" in text, text
    assert _statuses(out) == ["done", "done"]
    text = _text(second)
    assert "ran 2 failed 0" in text and "'cell_mae' is defined in __main__" in text, text
    assert _statuses(tmp_path / "out2") == ["done", "done"]
    html = compared[0]["data"]["text/html"]
    assert html.startswith("<p><b>Verdict:</b> ") and "<table><caption" in html and "<td>script</td>" in html
    html = report[0]["data"]["text/html"]
    assert html.startswith("<iframe srcdoc=") and "&lt;html" in html.lower()


def test_where_workers_cannot_start_the_study_runs_in_process_with_one_line(tmp_path, monkeypatch, capsys):
    """No forkserver on the platform, no sockets, no file descriptors: one line, then the runs here."""
    import cnnbench
    from cnnbench.runs.executors import forkserver

    def cannot(*args, **kwargs):
        raise OSError(24, "Too many open files")

    monkeypatch.setattr(forkserver, "start", cannot)
    study = cnnbench.Study.from_dict({"name": "nofork", "seeds": [0, 1], "epochs": 1, "batch_size": 64,
                                      "dataset": "digits", "model": "digits_cnn"}, output=tmp_path / "out")
    result = study.run(workers=2, report=False, verbose=0)
    assert result.ran == 2 and not result.failed
    assert _statuses(tmp_path / "out") == ["done", "done"]
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["cnnbench: worker processes cannot start here (OSError: [Errno 24] Too many open files); "
                   f"{FALLBACK}"]
