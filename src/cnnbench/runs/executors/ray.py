"""Run tasks on a Ray cluster: `pip install -e ".[ray]"` in the checkout (or `pip install "ray[default]"`), then
`cnnbench run STUDY --executor ray [--ray-address auto]`.

Each run is a Ray task (`--cpus-per-run`, `--gpus-per-run`). The study's SQLite store stays on the
driver's machine, owned by a store actor pinned to the driver's node: workers send it their epochs
and results, so the store is never on a network filesystem. Workers read datasets from the same
`--data-dir` path on their own machine and write their per-epoch checkpoints under the study
directory's path there; on a shared filesystem an interrupted run resumes from its checkpoint on any
node, otherwise it restarts.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..one_run import run_task
from ..task import ProgressFn, Task


class _StoreActor:
    """Owns the study's store on the driver's node; collects progress events for the driver."""

    def __init__(self, study_dir: str):
        from pathlib import Path

        from ...store.db import Store

        self.store = Store(Path(study_dir) / "study.db")
        self.events: list[dict] = []

    def mark_running(self, *args):
        self.store.mark_running(*args)

    def record_epoch(self, *args):
        self.store.record_epoch(*args)

    def finish(self, *args, **kwargs):
        self.store.finish(*args, **kwargs)

    def event(self, event: dict) -> None:
        self.events.append(event)

    def drain(self) -> list[dict]:
        events, self.events = self.events, []
        return events


class _RemoteStore:
    """The `Store` methods `run_task` uses, forwarded to the store actor (waiting for each write, so an
    epoch is recorded before the next one starts)."""

    def __init__(self, actor):
        self.actor = actor

    def mark_running(self, *args):
        import ray
        ray.get(self.actor.mark_running.remote(*args))

    def record_epoch(self, *args):
        import ray
        ray.get(self.actor.record_epoch.remote(*args))

    def finish(self, *args, **kwargs):
        import ray
        ray.get(self.actor.finish.remote(*args, **kwargs))


def _run_on_worker(task: Task, actor, threads: int) -> str:
    import torch

    torch.set_num_threads(threads)
    return run_task(task, progress=actor.event.remote, store=_RemoteStore(actor))


# A task whose worker process dies (killed, out of memory, node lost) is run again this many times; it
# resumes from its checkpoint where the study directory is shared. Re-running is safe: every store write
# is idempotent per run key (mark running, one history row per epoch, the final row), so a retried run
# is still one run. An exception raised by the run itself is not retried (`run_task` records it).
TASK_RETRIES = 2


class RayExecutor:
    """Each run a Ray task (`executors.REGISTRY` entry "ray"); runs a list of tasks, round by round."""

    streams = False

    def __init__(self, address: str | None = None, cpus_per_run: float = 1, gpus_per_run: float = 0):
        try:
            import ray  # noqa: F401
        except ImportError:
            from ...errors import UserError

            raise UserError('--executor ray needs Ray: pip install "ray[default]" (or pip install -e ".[ray]" '
                            'in the cnnbench checkout)') from None
        self.address, self.cpus_per_run, self.gpus_per_run = address, cpus_per_run, gpus_per_run

    def run(self, tasks: Sequence[Task], n_tasks: int, workers: int | str, device: str,
            progress: ProgressFn | None = None) -> None:
        """`workers` and `device` are the cluster's to decide (cpus_per_run, gpus_per_run)."""
        run_tasks(list(tasks), progress, address=self.address, cpus_per_run=self.cpus_per_run,
                  gpus_per_run=self.gpus_per_run)


def run_tasks(tasks: Sequence[Task], progress: ProgressFn | None = None, *, address: str | None = None,
              cpus_per_run: float = 1, gpus_per_run: float = 0) -> None:
    try:
        import ray
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy
    except ImportError:
        from ...errors import UserError
        raise UserError('the Ray executor needs Ray: pip install "ray[default]" '
                        '(or pip install -e ".[ray]" in the cnnbench checkout)') from None
    if not tasks:
        return
    import logging

    ray.init(address=address, ignore_reinit_error=True, log_to_driver=False, include_dashboard=False,
             logging_level=logging.ERROR)
    here = NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=False)
    # The actor's state is the SQLite file: a restarted actor reopens it and loses only progress events.
    actor = ray.remote(num_cpus=0, max_restarts=TASK_RETRIES, max_task_retries=TASK_RETRIES)(_StoreActor) \
        .options(scheduling_strategy=here).remote(tasks[0].study_dir)
    remote = ray.remote(num_cpus=cpus_per_run, num_gpus=gpus_per_run, max_retries=TASK_RETRIES,
                        retry_exceptions=False)(_run_on_worker)
    of_ref = {remote.remote(t, actor, max(1, int(cpus_per_run))): t for t in tasks}
    pending = list(of_ref)

    def forward_events():
        try:
            events = ray.get(actor.drain.remote())
        except ray.exceptions.RayActorError:
            return  # being restarted: the events are lost, the store is not
        for event in events:
            if progress:
                progress(event)

    try:
        while pending:
            done, pending = ray.wait(pending, num_returns=len(pending), timeout=0.5)
            for ref in done:
                _collect(ray, ref, of_ref[ref], actor, progress)
            forward_events()
        forward_events()
    finally:
        ray.kill(actor)


def _collect(ray, ref, task: Task, actor, progress: ProgressFn | None) -> None:
    """The end of one task: its status, or, if Ray gave up on it, a failed run and a line, not a traceback."""
    try:
        ray.get(ref)
        return
    except ray.exceptions.RayTaskError as e:  # raised by our code in the worker, outside run_task's handling
        from ...errors import UserError

        if isinstance(e.cause, UserError):
            raise e.cause from None
        raise
    except ray.exceptions.RayError as e:  # the worker or its node died, TASK_RETRIES + 1 times
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        times = "once" if TASK_RETRIES == 0 else f"{TASK_RETRIES + 1} times"
        error = (f"its Ray worker died {times} ({type(e).__name__}: {first[:200]}); if it ran "
                 "out of memory, give each run more (--cpus-per-run) or use a smaller batch_size")
    import sys

    print(f"cnnbench: {task.label} (seed {task.config.get('seed')}) failed: {error}", file=sys.stderr)
    ray.get(actor.finish.remote(task.key, "failed", error=error))
    if progress:
        progress({"event": "done", "key": task.key, "label": task.label, "status": "failed"})
