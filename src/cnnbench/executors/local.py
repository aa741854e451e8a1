"""Run tasks on this machine: inline (one process) or in a pool of worker processes.

On a CPU, several 1-thread worker processes train more images per second than one process with
several threads (small CNNs do not scale across cores; see BENCHMARKS.md), so `workers="auto"` uses
one worker per core when there is more than one run to do. On a GPU one process owns the device.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import queue as queue_mod
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from typing import Sequence

import torch

from . import ProgressFn, Task, execute

_QUEUE = None


def _init_worker(progress_queue, threads: int) -> None:
    global _QUEUE
    _QUEUE = progress_queue
    torch.set_num_threads(threads)


def _execute_in_worker(task: Task) -> str:
    return execute(task, progress=_QUEUE.put)


def plan_workers(workers: int | str, n_tasks: int, device: str) -> tuple[int, int]:
    """(worker processes, threads per worker)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    if workers == "auto":
        on_gpu = device == "cuda" or (device == "auto" and torch.cuda.is_available())
        workers = 1 if on_gpu else min(cores, n_tasks)
    workers = max(1, min(int(workers), max(n_tasks, 1)))
    return workers, max(1, cores // workers)


def run_tasks(tasks: Sequence[Task], workers: int, threads: int, progress: ProgressFn | None = None) -> None:
    if workers <= 1:
        if threads:
            torch.set_num_threads(threads)
        for task in tasks:
            execute(task, progress)
        return
    # forkserver, not fork: forking a process that has started OpenMP threads can deadlock the child.
    # The server imports the engine once; workers fork from it and share those pages copy-on-write
    # (torch's import alone is ~280 MB of private memory per process), which keeps a study's memory low.
    ctx = mp.get_context("forkserver")
    ctx.set_forkserver_preload(["cnnbench.executors", "cnnbench.train", "cnnbench.models", "cnnbench.data"])
    events = ctx.Queue()
    with ProcessPoolExecutor(workers, mp_context=ctx, initializer=_init_worker,
                             initargs=(events, threads)) as pool:
        pending = {pool.submit(_execute_in_worker, t) for t in tasks}
        while pending:
            done, pending = wait(pending, timeout=0.2, return_when=FIRST_COMPLETED)
            for f in done:
                f.result()  # a worker crash surfaces here
            _drain(events, progress)
        _drain(events, progress)


def _drain(events, progress: ProgressFn | None) -> None:
    while True:
        try:
            event = events.get_nowait()
        except queue_mod.Empty:
            return
        if progress:
            progress(event)
