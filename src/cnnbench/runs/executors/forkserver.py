"""The local executor's forkserver, startable without importing torch, and its worker processes.

`cnnbench run` starts it first thing (`start_early`), so that the server's import of torch and the
engine overlaps the main process' own imports and planning instead of following them; the pool
(`executors.local`) then finds it running. Both go through `start`, so the server always gets the
same preload list and the same SIGINT handling, whoever starts it.

The user's `__main__`. multiprocessing's forkserver and spawn start methods run the parent's main
script again in every child (as `__mp_main__`), so that what the script defines can be unpickled
there; a script without `if __name__ == "__main__":` then calls `Study.run()` again in every worker.
Our workers need nothing from the script (a task is plain data; the engine is preloaded), except
the losses, models or datasets a script registers itself. So `WorkerProcess` imports `__main__` in
the child only when that is safe: a script file whose top level has the `if __name__ == "__main__":`
guard (what multiprocessing requires). An unguarded script, `python - < script`, a notebook or a
REPL is not run again; a study that uses something registered there runs in-process
(`executors.local`), as multiprocessing could not reach it anyway.
"""

from __future__ import annotations

import ast
import multiprocessing as mp
import os
import signal
import sys
import threading
from contextlib import contextmanager
from multiprocessing.context import ForkServerProcess

# What the server imports before it forks any worker: the engine, once, shared copy-on-write.
PRELOAD = ["cnnbench.runs.one_run", "cnnbench.runs.executors.local", "cnnbench.engine.fit", "cnnbench.models",
           "cnnbench.data"]


def start() -> None:
    """Start the forkserver (once per process) with SIGINT ignored. An ignored signal stays ignored
    across exec, and Python then installs no KeyboardInterrupt handler, so a Ctrl-C while the server
    imports torch (seconds) cannot print its traceback; the server ignores SIGINT afterwards anyway.
    (Blocking the signal instead does not work: the spawn resets the child's signal mask.) A Ctrl-C in
    the few milliseconds of the spawn itself is lost; the next one stops the study."""
    from multiprocessing import forkserver

    mp.get_context("forkserver").set_forkserver_preload(PRELOAD)
    if threading.current_thread() is not threading.main_thread():
        forkserver.ensure_running()
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        forkserver.ensure_running()
    finally:
        signal.signal(signal.SIGINT, previous)


def likely_needed(workers: int | str, executor: str, device: str) -> bool:
    """Whether a `cnnbench run` with these options will most likely train in a pool of worker processes
    (decided before the plan, without torch): the local executor, more than one worker allowed, more
    than one core, not asked for a GPU (where one process owns the device). A wrong guess costs only an
    idle server, which leaves when the main process exits, as it always does."""
    if executor != "local" or device == "cuda":
        return False
    if str(workers) != "auto":
        try:
            if int(workers) <= 1:
                return False
        except ValueError:
            return False  # refused later with the option's own message
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return cores > 1


def main_is_importable() -> bool:
    """Whether a worker may import this process' `__main__` again (as `__mp_main__`): a Python file
    (or a module run with -m) whose top level holds an `if __name__ == "__main__":` block, so that
    importing it defines things and runs nothing."""
    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    path = getattr(spec, "origin", None) or getattr(main, "__file__", None)
    if not isinstance(path, str) or not path.endswith(".py"):
        return False
    try:
        with open(path, "rb") as fh:
            tree = ast.parse(fh.read())
    except (OSError, SyntaxError, ValueError):
        return False
    return any(isinstance(node, ast.If) and _is_main_test(node.test) for node in tree.body)


def _is_main_test(test: ast.expr) -> bool:
    """`__name__ == "__main__"`, either way round."""
    if not (isinstance(test, ast.Compare) and len(test.ops) == 1 and isinstance(test.ops[0], ast.Eq)):
        return False
    sides = [test.left, test.comparators[0]]
    names = [s.id for s in sides if isinstance(s, ast.Name)]
    values = [s.value for s in sides if isinstance(s, ast.Constant)]
    return names == ["__name__"] and values == ["__main__"]


_LAUNCH = threading.Lock()


@contextmanager
def _without_main():
    """While a worker is launched: leave `__main__` out of the preparation data multiprocessing sends
    it (`spawn.get_preparation_data`'s init_main_from_path / init_main_from_name), so that the child
    does not run the user's script again. Only our own launches are affected (held under a lock for
    the few milliseconds of the launch)."""
    from multiprocessing import spawn

    real = spawn.get_preparation_data

    def get_preparation_data(name):
        data = real(name)
        data.pop("init_main_from_path", None)
        data.pop("init_main_from_name", None)
        return data

    with _LAUNCH:
        spawn.get_preparation_data = get_preparation_data
        try:
            yield
        finally:
            spawn.get_preparation_data = real


class WorkerProcess(ForkServerProcess):
    """A forkserver process that runs `__main__` again only when `import_main` (see the module doc)."""

    import_main = False

    @staticmethod
    def _Popen(process_obj):
        from multiprocessing.popen_forkserver import Popen

        if getattr(process_obj, "import_main", False):
            return Popen(process_obj)
        with _without_main():
            return Popen(process_obj)
