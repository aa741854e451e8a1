"""Run tasks on this machine: inline (one process) or in a pool of worker processes.

On a CPU, several 1-thread worker processes train more images per second than one process with
several threads (small CNNs do not scale across cores; see BENCHMARKS.md), so `workers="auto"` uses
one worker per core when there is more than one run to do. On a GPU one process owns the device.

The pool is our own (not `concurrent.futures.ProcessPoolExecutor`) because the study must stay in
control when something stops it (see docs/operations.md):

- Ctrl-C / SIGINT: the main process stops handing out runs, asks every worker to stop (SIGTERM; a
  worker that got the SIGINT itself stops on it too), waits a few seconds, kills what is left and
  re-raises KeyboardInterrupt (the CLI prints one line and exits 130). A run in progress stays
  'running' with its last epoch's checkpoint; the next `cnnbench run` resumes it. Further Ctrl-Cs
  while stopping are ignored, so no process prints a traceback. (ProcessPoolExecutor's workers catch
  KeyboardInterrupt as a task result and go on with the queue; its shutdown then waits forever.)
- kill -9 of the main process: every worker holds the read end of a "lifeline" pipe whose only write
  end is in the main process and is never written to. When the main process dies, the kernel closes
  that end, the read end reports EOF, and a watcher thread in each worker exits the worker at once;
  the store wrapper checks the lifeline again right before every write, so an orphan never records
  'done'. We use a pipe rather than the parent pid or PR_SET_PDEATHSIG because the workers' parent is
  the forkserver, not the main process (so getppid never changes and PDEATHSIG would watch the wrong
  process), and a pipe's EOF is delivered by the kernel however the main process ends, on any POSIX
  system. With the workers gone, the forkserver (whose liveness pipe the workers held) and the
  resource tracker exit by themselves.
- a worker that dies (OOM killer, kill -9): its run is given once more to a fresh worker (it resumes
  from its checkpoint); if that worker dies too, the run is recorded as failed and the study goes on.
- a process that ignores SIGINT (a shell's background job, `nohup`): its workers ignore it too.

Workers never run the user's script again (see `executors.forkserver`): a script without the
`if __name__ == "__main__":` guard, `python - < script` and a notebook work with the default workers.
A worker imports the modules that registered the losses, models or datasets the runs use; one defined
in an unguarded `__main__` (a notebook cell, stdin) cannot reach a worker, so such a study runs in this
process, as it does where worker processes cannot start at all, saying why in one line.
"""

from __future__ import annotations

import importlib
import multiprocessing as mp
import os
import select
import signal
import sys
import threading
import time
import traceback
from collections import deque
from collections.abc import Sequence
from multiprocessing.connection import wait as wait_ready
from typing import Protocol

import torch

from ..one_run import run_task
from ..task import ProgressFn, Task
from . import forkserver

# How long stopped workers get to leave on their own (a SIGTERM interrupts training at once; this only
# covers a worker inside a long C call, e.g. waiting for the SQLite lock) before they are killed.
STOP_GRACE_S = 5.0
# Attempts per run when its worker process dies (not when the run fails: that is recorded by `run_task`).
ATTEMPTS = 2


def plan_workers(workers: int | str, n_tasks: int, device: str) -> tuple[int, int]:
    """(worker processes, threads per worker)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    if workers == "auto":
        on_gpu = device == "cuda" or (device == "auto" and torch.cuda.is_available())
        workers = 1 if on_gpu else min(cores, n_tasks)
    workers = max(1, min(int(workers), max(n_tasks, 1)))
    return workers, max(1, cores // workers)


class TaskSource(Protocol):
    """Tasks handed out one at a time as workers free up (a race decides what runs next from the results
    so far): `next_task()` returns the next task, or None when nothing is to be started now; `candidates`
    are every task it may hand out (their configs name the user's code the workers must import)."""

    candidates: Sequence

    def next_task(self) -> Task | None: ...


class _ListSource:
    def __init__(self, tasks: Sequence[Task]):
        self.candidates = list(tasks)
        self._tasks = deque(tasks)

    def next_task(self) -> Task | None:
        return self._tasks.popleft() if self._tasks else None


def run_tasks(tasks: Sequence[Task] | TaskSource, workers: int, threads: int,
              progress: ProgressFn | None = None) -> None:
    """Run `tasks` (a list, or a source handing them out as they are needed) in `workers` processes, or
    in this one."""
    source: TaskSource = tasks if hasattr(tasks, "next_task") else _ListSource(tasks)  # type: ignore[assignment]
    if workers > 1:
        modules, from_main = user_code(source.candidates)
        import_main = from_main is not None and forkserver.main_is_importable()
        if from_main is not None and not import_main:
            reason = (f"{from_main} is defined in __main__ (this notebook, stdin or a script without "
                      "`if __name__ == \"__main__\":`), which worker processes cannot import")
        else:
            try:
                _Pool(workers, threads, progress, modules, import_main).run(source)
                return
            except _CannotStart as e:
                reason = f"worker processes cannot start here ({e})"
        print(f"cnnbench: {reason}; running the runs one at a time in this process", file=sys.stderr)
        threads = 0
    if threads:
        torch.set_num_threads(threads)
    while (task := source.next_task()) is not None:
        run_task(task, progress)


class LocalExecutor:
    """Worker processes on this machine (`executors.REGISTRY` entry "local"); takes a task source too."""

    streams = True

    def run(self, tasks: Sequence[Task] | TaskSource, n_tasks: int, workers: int | str, device: str,
            progress: ProgressFn | None = None) -> None:
        from ..one_run import forget_datasets

        n_workers, threads = plan_workers(workers, n_tasks, device)
        if n_workers > 1:
            forget_datasets()  # workers load their own copy; free the parent's
        run_tasks(tasks, n_workers, threads, progress)


def user_code(tasks: Sequence[Task]) -> tuple[list[str], str | None]:
    """(the modules that registered the user's losses, models, datasets, optimizers or schedules the
    tasks use, other than `__main__`; the first such name that `__main__` defines, or None). A worker
    forks from the forkserver, which knows only cnnbench's own entries."""
    from ... import data, losses, models, optim
    from ...optim import schedules
    from ...registry import normalize

    defined: dict[str, tuple[str, str]] = {}  # normalized name -> (module, name)
    for family in (losses, optim, models, data, schedules):
        for entry in family.REGISTRY:
            # a registered loss function or class is wrapped in a factory of cnnbench's: its own module counts
            defined_by = entry.info.get("loss_fn") or entry.info.get("loss_class") or entry.factory
            module = str(getattr(defined_by, "__module__", None) or "")
            if module.split(".")[0] != "cnnbench":
                for name in (entry.name, *entry.aliases):
                    defined[normalize(name)] = (module, entry.name)
    modules: list[str] = []
    from_main = None

    def visit(value) -> None:
        nonlocal from_main
        if isinstance(value, dict):
            for v in value.values():
                visit(v)
        elif isinstance(value, list):
            for v in value:
                visit(v)
        elif isinstance(value, str):
            module, name = defined.get(normalize(value), (None, value))
            if module is None and value.startswith("__main__:"):
                module = "__main__"
            if module == "__main__":
                from_main = from_main or repr(name)
            elif module and module not in modules:
                modules.append(module)

    for task in tasks:
        visit(task.config)
    return modules, from_main


class _CannotStart(Exception):
    """The pool could not start its forkserver or first worker (nothing has run yet)."""


# --- the worker side --------------------------------------------------------------------------------
def _orphaned(lifeline_fd: int) -> bool:
    """True once the main process is gone: nobody ever writes to the lifeline, so readable means EOF."""
    return bool(select.select([lifeline_fd], [], [], 0)[0])


def _watch_lifeline(lifeline_fd: int) -> None:
    def watch():
        select.select([lifeline_fd], [], [])  # returns only at EOF: the main process has exited
        os._exit(1)  # at once, from this thread: the main thread may be deep inside a training step

    threading.Thread(target=watch, name="cnnbench-lifeline", daemon=True).start()


class _GuardedStore:
    """The study's store, refusing to write for an orphan: the watcher thread may need a moment to end
    the process, and a run finished by an orphan would be recorded without the study lock."""

    def __init__(self, store, lifeline_fd: int):
        self._store, self._fd = store, lifeline_fd

    def _check(self) -> None:
        if _orphaned(self._fd):
            os._exit(1)

    def mark_running(self, *args, **kwargs):
        self._check()
        return self._store.mark_running(*args, **kwargs)

    def record_epoch(self, *args, **kwargs):
        self._check()
        return self._store.record_epoch(*args, **kwargs)

    def finish(self, *args, **kwargs):
        self._check()
        return self._store.finish(*args, **kwargs)


def _ignore(signum, frame):
    """Ignore a signal. A Python no-op rather than SIG_IGN: a signal that already arrived but whose
    handler has not run yet would otherwise print 'Signal N ignored due to race condition'."""


def _stop_handler(signum, frame):
    # The first SIGINT/SIGTERM stops the worker (run_task re-raises, leaving the run 'running' with its
    # checkpoint); later ones are ignored so that unwinding is not interrupted into a traceback.
    signal.signal(signal.SIGINT, _ignore)
    signal.signal(signal.SIGTERM, _ignore)
    raise KeyboardInterrupt if signum == signal.SIGINT else SystemExit(128 + signum)


def _worker_main(conn, lifeline, threads: int, modules: Sequence[str] = (), sigint_ignored: bool = False) -> None:
    """A worker: take a task from `conn`, run it, send its progress events and its end; until None.
    `sigint_ignored`: the main process ignores SIGINT (a background job), so the worker does too (it
    starts with SIGINT ignored either way: the forkserver does)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN if sigint_ignored else _stop_handler)
    signal.signal(signal.SIGTERM, _stop_handler)
    fd = lifeline.fileno()
    _watch_lifeline(fd)
    torch.set_num_threads(threads)
    from ..one_run import open_store

    code = 0
    try:
        for module in modules:  # where the user's registered losses, models, datasets come from
            try:
                importlib.import_module(module)
            except Exception as e:
                conn.send(("error", None, _picklable(e)))
                raise SystemExit(1) from None
        while True:
            task = conn.recv()
            if task is None:
                break
            store = _GuardedStore(open_store(task.study_dir), fd)
            try:
                status = run_task(task, progress=lambda event: conn.send(("event", event)), store=store)
            except (KeyboardInterrupt, SystemExit, EOFError, OSError):
                raise
            except BaseException as e:  # outside run_task's own handling (e.g. the store cannot be written)
                conn.send(("error", task.key, _picklable(e)))
                break
            conn.send(("done", task.key, status))
    except KeyboardInterrupt:
        code = 130
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else 1
    except (EOFError, OSError):  # the main process is gone or closed our pipe
        code = 1
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:
            pass
    # Every store write is committed as it happens; skip interpreter teardown (atexit hooks, joining
    # queue threads), which a second signal could interrupt into a traceback.
    os._exit(code)


def _one_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0]}" if text else type(e).__name__


def _picklable(e: BaseException) -> BaseException:
    from ...errors import UserError

    if isinstance(e, UserError):
        return e
    detail = "".join(traceback.format_exception(type(e), e, e.__traceback__, limit=-4)).strip()
    return RuntimeError(f"a worker process failed outside its run:\n{detail}")


# --- the main side ----------------------------------------------------------------------------------
class _Worker:
    def __init__(self, proc, conn):
        self.proc, self.conn, self.task = proc, conn, None
        self.dead = False


def _exit_reason(code: int | None) -> str:
    if code is None:
        return "still running"
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        hint = " (out of memory?)" if -code == signal.SIGKILL else ""
        return f"killed by {name}{hint}"
    return f"exit status {code}"


class _Pool:
    def __init__(self, workers: int, threads: int, progress: ProgressFn | None, modules: Sequence[str] = (),
                 import_main: bool = False):
        self.n, self.threads, self.progress = workers, threads, progress
        self.modules, self.import_main = list(modules), import_main
        self.sigint_ignored = signal.getsignal(signal.SIGINT) is signal.SIG_IGN
        self.workers: list[_Worker] = []

    def _start(self) -> _Worker:
        ours, theirs = mp.Pipe(duplex=True)
        # forkserver, not fork: forking a process that has started OpenMP threads can deadlock the child.
        # The server imports the engine once; workers fork from it and share those pages copy-on-write
        # (torch's import alone is ~280 MB of private memory per process), which keeps a study's memory low.
        proc = forkserver.WorkerProcess(target=_worker_main, name="cnnbench-worker", daemon=True,
                                        args=(theirs, self.lifeline_r, self.threads, self.modules,
                                              self.sigint_ignored))
        proc.import_main = self.import_main
        proc.start()
        theirs.close()  # only the worker holds its end: its death is EOF here
        return _Worker(proc, ours)

    def _emit(self, event) -> None:
        if self.progress:
            self.progress(event)

    def _read(self, w: _Worker, forward: bool = True) -> None:
        """Handle every message `w` has sent; mark it dead at EOF."""
        try:
            while not w.dead and w.conn.poll():
                kind, *rest = w.conn.recv()
                if not forward:
                    continue
                if kind == "event":
                    self._emit(rest[0])
                elif kind == "done":
                    w.task = None
                elif kind == "error":
                    w.task = None
                    raise rest[1]
        except (EOFError, OSError):
            w.dead = True

    def run(self, source: TaskSource) -> None:
        try:
            forkserver.start()  # unless `cnnbench run` already has (see executors.forkserver)
            # The lifeline: workers get the read end; the write end stays here (see the module docstring).
            self.lifeline_r, self.lifeline_w = mp.Pipe(duplex=False)
        except (OSError, ValueError, ImportError) as e:  # no forkserver on this platform, no sockets, no fds
            raise _CannotStart(_one_line(e)) from None
        # `queue` holds runs to give again (their worker died) before the source's next ones
        self.source, queue, attempts = source, deque(), {}
        in_main_thread = threading.current_thread() is threading.main_thread()
        previous = signal.getsignal(signal.SIGINT) if in_main_thread else None
        try:
            try:
                self.workers = [self._start()]
            except (OSError, ValueError, ImportError) as e:
                raise _CannotStart(_one_line(e)) from None
            # only now that a worker runs are tasks taken from the source (the fallback takes them otherwise)
            queue.extend(t for t in (source.next_task() for _ in range(self.n)) if t is not None)
            self.workers += [self._start() for _ in range(min(self.n, len(queue)) - 1)]
            for w in self.workers:
                self._assign(w, queue)
            while any(w.task is not None for w in self.workers):
                busy = [w for w in self.workers if w.task is not None]
                wait_ready([w.conn for w in busy] + [w.proc.sentinel for w in busy], timeout=1.0)
                for i, w in enumerate(self.workers):
                    self._read(w)
                    if not w.dead and w.proc.exitcode is None:
                        if w.task is None:
                            self._assign(w, queue)
                        continue
                    w.proc.join(timeout=1.0)
                    if w.proc.exitcode is None:  # closed its pipe but lingers: it cannot be trusted with a run
                        w.proc.kill()
                        w.proc.join(timeout=5.0)
                    if w.task is not None:
                        self._lost(w, queue, attempts)
                    task = queue.popleft() if queue else self.source.next_task()
                    if task is not None:
                        queue.appendleft(task)
                        self.workers[i] = w = self._start()
                        self._assign(w, queue)
            self._finish()
        except BaseException:
            if in_main_thread:
                signal.signal(signal.SIGINT, _ignore)  # a second Ctrl-C must not interrupt the cleanup
            self._stop()
            raise
        finally:
            if in_main_thread:
                signal.signal(signal.SIGINT, previous)
            for w in self.workers:
                w.conn.close()
            self.lifeline_w.close()
            self.lifeline_r.close()

    def _assign(self, w: _Worker, queue: deque) -> None:
        task = queue.popleft() if queue else self.source.next_task()
        if task is not None:
            w.task = task
            w.conn.send(task)

    def _lost(self, w: _Worker, queue: deque, attempts: dict) -> None:
        """The worker running `w.task` died: run it again from its checkpoint, or record it failed."""
        task, w.task = w.task, None
        attempts[task.key] = attempts.get(task.key, 0) + 1
        reason = _exit_reason(w.proc.exitcode)
        if attempts[task.key] < ATTEMPTS:
            print(f"cnnbench: the worker running {task.label} (seed {task.config.get('seed')}) was {reason}; "
                  "running it again from its last checkpoint", file=sys.stderr)
            queue.appendleft(task)
            return
        from ..one_run import open_store

        error = (f"its worker process was {reason}, {ATTEMPTS} times; if it ran out of memory, use fewer "
                 "--workers or a smaller batch_size, then run the same command again")
        open_store(task.study_dir).finish(task.key, "failed", error=error)
        self._emit({"event": "done", "key": task.key, "label": task.label, "status": "failed"})

    def _finish(self) -> None:
        """No work left: tell the workers to leave, and wait for them."""
        for w in self.workers:
            if not w.dead and w.proc.exitcode is None:
                try:
                    w.conn.send(None)
                except OSError:
                    pass
        self._join(STOP_GRACE_S * 2, forward=True)

    def _stop(self) -> None:
        for w in self.workers:
            if w.proc.exitcode is None:
                try:
                    w.proc.terminate()  # SIGTERM: SystemExit in the worker, its run stays resumable
                except OSError:
                    pass
        self._join(STOP_GRACE_S, forward=False)

    def _join(self, grace: float, forward: bool) -> None:
        deadline = time.monotonic() + grace
        while True:
            alive = [w for w in self.workers if w.proc.exitcode is None]
            if not alive or time.monotonic() >= deadline:
                break
            wait_ready([w.proc.sentinel for w in alive] + [w.conn for w in alive if not w.dead], timeout=0.2)
            for w in alive:  # keep their pipes drained so that no worker blocks on a send
                try:
                    self._read(w, forward=forward)
                except BaseException:
                    if forward:
                        raise
        for w in self.workers:
            if w.proc.exitcode is None:
                w.proc.kill()
            w.proc.join(timeout=5.0)
