"""Where runs execute: `local` (worker processes on this machine) and `ray` (a Ray cluster).

An executor only decides where and how many runs train at once; what happens to one run (data ->
engine -> store) is `cnnbench.runs.one_run.run_task`, the same under every executor.

The executors are a registry like the other families (`cnnbench.registry`): `REGISTRY.get("ray",
address="auto", cpus_per_run=2)` checks the options against the factory's declaration (an unknown name
or a bad option is one line) and returns an `Executor`. Building one also checks that it can run here
(Ray installed). `Executor.run(tasks, n_tasks, workers, device, progress)` runs a list of tasks; an
executor that `streams` also takes a `local.TaskSource` handing tasks out as workers free up (a race).
"""

from __future__ import annotations

from typing import Annotated, Any, Protocol

from ...registry import Option, Registry
from ..task import ProgressFn

REGISTRY = Registry("executor")


class Executor(Protocol):
    """Runs tasks somewhere. `streams`: whether `run` takes a task source (tasks decided as it goes)."""

    streams: bool

    def run(self, tasks: Any, n_tasks: int, workers: int | str, device: str,
            progress: ProgressFn | None) -> None: ...


@REGISTRY.register("local", summary="worker processes on this machine: --workers of them (auto: one per core on "
                                    "a CPU, one on a GPU), each run with one intra-op thread on a CPU")
def local() -> Executor:
    from .local import LocalExecutor

    return LocalExecutor()


@REGISTRY.register("ray", summary="each run a Ray task on a Ray cluster (or a local Ray); the study.db stays "
                                  "on this machine (pip install \"ray[default]\")")
def ray(address: Annotated[str | None, Option("the Ray cluster's address, e.g. \"auto\" (absent: start a "
                                              "local Ray)")] = None,
        cpus_per_run: Annotated[float, Option("CPUs Ray reserves for each run", gt=0)] = 1,
        gpus_per_run: Annotated[float, Option("GPUs Ray reserves for each run (a fraction shares one)", ge=0)] = 0,
        ) -> Executor:
    from .ray import RayExecutor

    return RayExecutor(address, cpus_per_run, gpus_per_run)


def get(name: str, /, **options) -> Executor:
    """The executor `name` with `options` (checked: one line for an unknown name or a bad option)."""
    return REGISTRY.get(name, **options)
