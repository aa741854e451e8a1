"""The local executor's forkserver, startable without importing torch.

`cnnbench run` starts it first thing (`start_early`), so that the server's import of torch and the
engine overlaps the main process' own imports and planning instead of following them; the pool
(`executors.local`) then finds it running. Both go through `start`, so the server always gets the
same preload list and the same SIGINT handling, whoever starts it.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import threading

# What the server imports before it forks any worker: the engine, once, shared copy-on-write.
PRELOAD = ["cnnbench.execution", "cnnbench.executors.local", "cnnbench.train", "cnnbench.models", "cnnbench.data"]


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
