"""How long a study will take on this machine, before it runs (`cnnbench run --dry-run`).

A run to do takes `epochs × epoch_s + overhead_s`: `epoch_s` is one epoch's training and validation,
`overhead_s` what a run spends outside its epochs (building the model, the final evaluation of the test
and validation sets). Both come, per *speed group*, from

- the finished runs of the same study that ran on this kind of device (the store's per-epoch
  `history.seconds`, and `runs.seconds` less those epochs; a run whose recorded device type or name
  differs from this machine's is not used), read without writing anything; or else
- a short calibration: a few training steps of the group's real model on its real data through the
  engine (`train.fit`, one intra-op thread as `execution.RUN_THREADS`), scaled to the batches of an
  epoch, plus a timed evaluation. It writes nothing to the study directory, takes a few seconds per
  group and at most `TOTAL_BUDGET_S` in all; groups beyond that are left without a number (said so).

A speed group is what decides a run's speed: its dataset, model, batch size, precision,
micro-batching, validation split, outputs, extra metrics and whether it augments. The loss, the
optimizer and the seed are assumed not to change the time per epoch (they change a step by far less
than the model does), so one calibration serves every loss × optimizer × seed of a group.

Runs are placed on the workers as `executors.local` places them: in the order they are queued, each
to the first free worker (`list_schedule`). On a CPU with several workers, a calibrated run (timed
alone) is counted `PARALLEL_SLOWDOWN` times slower: two 1-thread processes train at 0.86–0.99× the
images/s of one each (BENCHMARKS.md, "Engine throughput", the 2×1 rows); numbers measured from
finished runs already include whatever sharing they ran under. Early stopping is not foreseen (every
run counts its full epochs: an upper bound), nor the start-up of the processes and the report (a few
seconds each). With [tuning], the final runs are not known before the search has chosen their
rates: they are estimated as configurations × the study's seeds not already among the search seeds.
With a `[racing]` table the estimate is of the full grid, the worst case.
"""

from __future__ import annotations

import heapq
import math
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..spec import canonical
from .plan import FINISHED

# What decides a run's speed (besides whether it augments); loss, optimizer, seed and epochs do not.
SPEED_KEYS = ("dataset", "model", "batch_size", "precision", "micro_batch_size", "validation_split", "targets",
              "metrics")
PARALLEL_SLOWDOWN = 1.1  # a calibrated run on a CPU beside other workers (BENCHMARKS.md, 2×1 rows)
# A calibration trains one epoch of the real data and stops it once WARMUP_STEPS untimed steps and at
# least TIMED_STEPS timed ones taking MIN_TIMED_S in all are done (a small data set's epoch is timed whole,
# its validation too), or once it has taken GROUP_BUDGET_S (after one step at least).
WARMUP_STEPS, TIMED_STEPS, MIN_TIMED_S = 3, 5, 1.0
GROUP_BUDGET_S = 4.0
TOTAL_BUDGET_S = 20.0  # no group is calibrated after the calibration has taken this long
EVAL_IMAGES = 1024  # images evaluated to time the evaluation
HOUR_S = 3600.0


@dataclass(frozen=True)
class Speed:
    """One speed group's numbers: seconds per epoch (training + validation) and per run beyond its epochs."""

    epoch_s: float
    overhead_s: float
    source: str  # "measured" (finished runs) or "calibrated"
    runs: int = 0  # measured: the finished runs the numbers come from


@dataclass
class Estimate:
    """What `estimate` found: `seconds` of wall time for the runs still to do (a lower bound when
    `unknown_runs` > 0), on `workers` worker processes."""

    seconds: float
    runs: int  # runs to do (with [tuning]: the search runs), estimated or not
    workers: int
    finished: int  # runs of the study already finished
    measured_runs: int  # finished runs of this study the numbers come from
    calibrated_groups: int
    calibration_s: float
    unknown_runs: int  # runs without a number (calibration off, over its cap, or failed)
    worst_case: bool  # [racing]: the full grid
    tuning: bool = False
    final_runs: int = 0  # [tuning]: final runs to do of configurations whose rate is chosen
    guessed_final_runs: int = 0  # [tuning]: final runs counted as configurations × seeds (search not done)
    notes: list[str] = field(default_factory=list)
    run_seconds: list[float] = field(default_factory=list)  # each run to do, in queue order (search, final)

    @property
    def exceeds_hour(self) -> bool:
        return self.seconds > HOUR_S

    def source(self) -> str:
        """Where the numbers come from, in words."""
        parts = []
        if self.measured_runs:
            parts.append(f"measured from {self.measured_runs} finished run{_s(self.measured_runs)} of this study")
        if self.calibrated_groups:
            what = f"{self.calibrated_groups} model/dataset/batch-size group{_s(self.calibrated_groups)}"
            took = duration(self.calibration_s)
            parts.append(f"{what} from a {took} calibration" if parts else
                         f"estimate from a {took} calibration of {what}")
        return "; ".join(parts) or "nothing measured"

    def line(self) -> str:
        """One line: "Estimated wall time: 1 h 12 min for 48 runs (2 workers; measured from 12 finished
        runs of this study)"."""
        if self.runs + self.final_runs + self.guessed_final_runs == 0:
            return f"Estimated wall time: nothing to run ({self.finished} runs finished)"
        if self.tuning:
            parts = [f"{n} {what} run{_s(n)}" for n, what in ((self.runs, "search"), (self.final_runs, "final"))
                     if n]
            if self.guessed_final_runs:
                parts.append(f"about {self.guessed_final_runs} final runs (configurations × seeds: their rates "
                             "follow from the search)")
            what = " and ".join(parts)
        else:
            what = f"{self.runs} run{_s(self.runs)}"
        bound = "at least " if self.unknown_runs else ""
        worst = "worst case (full grid; racing usually runs fewer): " if self.worst_case else ""
        return (f"Estimated wall time: {worst}{bound}{duration(self.seconds)} for {what} ({self.workers} "
                f"worker{_s(self.workers)}; {self.source()})")


def _s(n: int) -> str:
    return "" if n == 1 else "s"


def duration(seconds: float) -> str:
    """12 s, 4 min 5 s, 48 min, 1 h 12 min."""
    seconds = max(0.0, seconds)
    if seconds < 60:
        return f"{seconds:.1f} s" if seconds < 10 else f"{seconds:.0f} s"
    minutes = round(seconds / 60) if seconds >= 600 else int(seconds // 60)
    if seconds < 600:
        return f"{minutes} min {seconds - 60 * minutes:.0f} s"
    if minutes < 60:
        return f"{minutes} min"
    return f"{minutes // 60} h {minutes % 60} min"


def list_schedule(seconds: Sequence[float], workers: int) -> float:
    """Wall time of jobs taken in order, each by the first free worker (the local executor's queue)."""
    free = [0.0] * max(1, workers)
    for s in seconds:
        heapq.heapreplace(free, free[0] + s)
    return max(free)


def speed_key(config: dict[str, Any]) -> str:
    """The speed group of a run's config (see the module docstring)."""
    return canonical({**{k: config.get(k) for k in SPEED_KEYS}, "augmentation": bool(config.get("augmentation"))})


# --- the stored runs -----------------------------------------------------------------------------


def _open_store(study_dir: Path):
    """The study's store for reading, or None without one; nothing is left beside study.db."""
    from ..store.db import ReadOnlyStore

    path = study_dir / "study.db"
    if not path.is_file() or path.stat().st_size == 0:
        return None
    return ReadOnlyStore.open_untouched(study_dir)


def measured_speeds(runs: list[dict], history: list[dict], machine: tuple[str, str] | None = None
                    ) -> dict[str, Speed]:
    """Per speed group, from finished runs (the store's `runs()` and `history()` rows): the mean of
    their epochs' seconds, and the mean of `runs.seconds` less its epochs' seconds over the done runs.
    `machine` (device type, device name): only runs that ran on such a device (a study directory copied
    from another machine says nothing about this one's speed); a run without a recorded one counts."""
    epochs: dict[str, list[float]] = {}
    for h in history:
        if h["seconds"] is not None:
            epochs.setdefault(h["run_key"], []).append(h["seconds"])
    groups: dict[str, tuple[list[float], list[float], int]] = {}
    for r in runs:
        if r["status"] not in FINISHED or not epochs.get(r["key"]) or not _ran_on(r.get("environment"), machine):
            continue
        per_epoch, overhead, n = groups.get(speed_key(r["config"]), ([], [], 0))
        per_epoch.extend(epochs[r["key"]])
        if r["status"] == "done" and r["seconds"] is not None:
            overhead.append(max(0.0, r["seconds"] - sum(epochs[r["key"]])))
        groups[speed_key(r["config"])] = (per_epoch, overhead, n + 1)
    return {key: Speed(statistics.fmean(e), statistics.fmean(o) if o else 0.0, "measured", n)
            for key, (e, o, n) in groups.items()}


def _ran_on(environment: dict | None, machine: tuple[str, str] | None) -> bool:
    if machine is None or not environment:
        return True
    device = str(environment.get("device", ""))
    return device.split(":")[0] == machine[0] and environment.get("device_name") == machine[1]


def this_machine(device) -> tuple[str, str]:
    """(device type, device name) as `execution.environment` records them for a run on `device`."""
    from .one_run import environment

    return device.type, environment(device)["device_name"]


# --- calibration ---------------------------------------------------------------------------------


class _Enough(Exception):
    """Raised inside `fit` once a calibration has timed enough steps (or used its time)."""


def _clock(budget_s: float, sync):
    from ..callbacks import Callback

    class StepClock(Callback):
        """Times every training step: `fit` calls a callback's `on_batch_progress` after each optimizer
        step. Stops training (`_Enough`) once enough steps are timed or the budget is used."""

        def __init__(self):
            self.marks: list[float] = []
            self.validation_s: float | None = None

        def on_epoch_begin(self, epoch, logs=None):
            self.marks.append(time.perf_counter())

        def on_batch_progress(self, batch, steps, running):
            sync()
            self.marks.append(time.perf_counter())
            n, now = len(self.marks) - 1, self.marks[-1]
            if batch + 1 == steps:
                return  # the epoch ends with its validation, which is timed too
            timed = n - WARMUP_STEPS
            if (timed >= TIMED_STEPS and now - self.marks[WARMUP_STEPS] >= MIN_TIMED_S) or (
                    now - self.marks[0] > budget_s):  # a slow model: its first step (an overestimate) is enough
                raise _Enough

        def on_epoch_end(self, epoch, logs):
            self.validation_s = time.perf_counter() - self.marks[-1]  # the epoch's end: validation

    return StepClock()


def _head(y, k: int):
    return {n: v[:k] for n, v in y.items()} if isinstance(y, dict) else y[:k]


def calibrate_run(run, data_dir: str | None, device, budget_s: float = GROUP_BUDGET_S) -> Speed:
    """A few training steps of `run`'s model on its data (no checkpoint, no callbacks, nothing written
    to the study directory), timed, scaled to one epoch and one run."""
    import torch

    from ..engine.fit import fit
    from . import one_run as execution

    cfg = dict(run.config)
    dataset = {**cfg["dataset"], "download": False}  # the plan has it; use its copy if loaded so
    if execution.dataset_loaded(dataset, data_dir):
        cfg["dataset"] = dataset
    model = cfg["model"]
    if isinstance(model, dict) and model.get("weights") not in (None, "none"):
        model = {**model, "weights": "none"}  # the same layers and speed, and no weights to fetch
    x, y, val, x_test, y_test, num_classes, sample_weight = execution.prepare(cfg, data_dir)
    batch, n_train = cfg["batch_size"], len(x)
    shown = val if val is not None else (x_test, y_test)
    m = min(len(shown[0]), EVAL_IMAGES)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    clock = _clock(budget_s, sync)
    t0 = time.perf_counter()
    # the process' random streams are left as they were (a run in this process seeds its own anyway)
    with execution.run_threads(device), torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        try:
            fit(model, x, y, loss=cfg["loss"], optimizer=cfg["optimizer"], epochs=1, batch_size=batch,
                validation_data=(shown[0][:m], _head(shown[1], m)) if m else None, seed=cfg["seed"], device=device,
                num_classes=num_classes, class_weight=cfg["class_weight"],
                sample_weight=sample_weight,
                augmentation=cfg["augmentation"], micro_batch_size=cfg.get("micro_batch_size"),
                precision=cfg.get("precision", "fp32"), metrics=cfg.get("metrics"),
                loss_weights=cfg.get("loss_weights"), callbacks=[clock], verbose=0)
        except _Enough:
            pass
        finally:
            if device.type == "cuda":
                torch.cuda.empty_cache()  # the calibrated model's memory, before the runs need it
    steps = [b - a for a, b in zip(clock.marks, clock.marks[1:])]
    timed = steps[min(WARMUP_STEPS, len(steps) - 1):]
    step_s = statistics.fmean(timed)  # the mean: an epoch's time is the sum of its steps, slow ones too
    setup_s = (clock.marks[0] - t0) + max(0.0, sum(steps) - sum(timed) - step_s * (len(steps) - len(timed)))
    # the evaluation per image: timed at the epoch's end; when training stopped early, a forward pass
    # taken as a third of a training step (forward + backward + update)
    image_s = clock.validation_s / m if clock.validation_s is not None else step_s / batch / 3
    n_val = 0 if val is None else len(val[0])
    epoch_s = math.ceil(n_train / batch) * step_s + n_val * image_s
    return Speed(epoch_s, setup_s + (len(x_test) + n_val) * image_s, "calibrated")


# --- the estimate --------------------------------------------------------------------------------


def estimate(plan, *, workers: int | str = "auto", device: str = "auto", data_dir: str | None = None,
             calibrate: bool = True, budget_s: float = TOTAL_BUDGET_S) -> Estimate:
    """The wall time `study_run.run_plan(plan, ...)` would take here (see the module docstring); reads
    the study directory only. `calibrate=False`: only the finished runs' numbers (groups without
    any are left out, and the estimate is a lower bound)."""
    from ..engine.inputs import resolve_device
    from .executors.local import plan_workers

    dev = resolve_device(device)
    stored_runs, history, chosen = _stored(plan)
    speeds = measured_speeds(stored_runs, history, this_machine(dev))
    measured_keys = set(speeds)
    stored = {r["key"]: r for r in stored_runs}

    search = plan.todo
    finals, guessed = _final_runs(plan, chosen)
    searched = {r.key for r in plan.runs}
    finished_finals = 0 if plan.study.meta.tuning is None else sum(
        plan.statuses.get(r.key) in FINISHED and r.key not in searched for r in plan.study.final_runs(chosen))
    notes: list[str] = []
    needed: dict[str, Any] = {}
    for run in [*search, *finals]:
        needed.setdefault(speed_key(run.config), run)
    missing = [key for key in needed if key not in speeds]
    calibration_s, calibrated = 0.0, 0
    if missing and calibrate:
        calibration_s, calibrated = _calibrate(needed, missing, speeds, data_dir, dev, budget_s, notes)
    elif missing:
        notes.append(f"{len(missing)} model/dataset/batch-size group{_s(len(missing))} without a finished run to "
                     "measure (calibration off); their runs are not counted")

    total, unknown, per_run, n_workers = 0.0, 0, [], 1
    for phase in (search, finals):
        if not phase:
            continue
        phase_workers, _ = plan_workers(workers, len(phase), str(device))
        n_workers = max(n_workers, phase_workers)
        # runs timed alone (calibrated) train slower side by side with others on the CPU
        slowdown = PARALLEL_SLOWDOWN if dev.type == "cpu" and phase_workers > 1 else 1.0
        times = []
        for run in phase:
            s = _run_seconds(plan, speeds, stored, run)
            if s is None:
                unknown += 1
                continue
            times.append(s if speed_key(run.config) in measured_keys else s * slowdown)
        per_run.extend(times)
        total += list_schedule(times, phase_workers) if times else 0.0
    used = {speed_key(r.config) for r in [*search, *finals]} & measured_keys
    measured_runs = sum(speeds[k].runs for k in used)
    return Estimate(seconds=total, runs=len(search), final_runs=len(finals) - guessed,
                    guessed_final_runs=guessed, workers=n_workers, finished=len(plan.done) + finished_finals,
                    measured_runs=measured_runs,
                    calibrated_groups=calibrated, calibration_s=calibration_s, unknown_runs=unknown,
                    worst_case=getattr(plan.study.meta, "racing", None) is not None,
                    tuning=plan.study.meta.tuning is not None, notes=notes, run_seconds=per_run)


def _stored(plan) -> tuple[list, list, dict[str, float]]:
    """(the stored runs, their history, the learning rates a [tuning] search chose so far)."""
    store = _open_store(plan.study_dir)
    if store is None:
        return [], [], {}
    try:
        stored_runs, history, chosen = store.runs(), store.history(), {}
        if plan.study.meta.tuning is not None and stored_runs:
            from .. import analysis

            chosen = analysis.chosen_learning_rates(analysis.runs_frame(store), plan.study.meta.tuning.metric)
        return stored_runs, history, chosen
    finally:
        store.close()


def _calibrate(needed: dict[str, Any], missing: list[str], speeds: dict, data_dir: str | None, dev,
               budget_s: float, notes: list[str]) -> tuple[float, int]:
    """Time a few steps of one run of each `missing` speed group into `speeds`, within `budget_s` in all;
    what could not be timed is said in `notes`. Returns (seconds spent, groups calibrated)."""
    t0, calibrated = time.perf_counter(), 0
    for i, key in enumerate(missing):
        left = budget_s - (time.perf_counter() - t0)
        if left <= 0:
            notes.append(f"{len(missing) - i} of {len(missing)} model/dataset/batch-size groups not calibrated "
                         f"(the calibration stops after {budget_s:.0f} s); their runs are not counted")
            break
        run = needed[key]
        try:
            speeds[key] = calibrate_run(run, data_dir, dev, min(GROUP_BUDGET_S, left))
            calibrated += 1
        except (KeyboardInterrupt, SystemExit):
            raise
        except Exception as e:  # the run itself will report it; the estimate goes on without it
            first = (str(e).strip().splitlines() or [type(e).__name__])[0]
            notes.append(f"calibrating {run.label} failed ({first[:160]}); its runs are not counted")
    return time.perf_counter() - t0, calibrated


def _run_seconds(plan, speeds: dict, stored: dict[str, dict], run) -> float | None:
    """One run's time alone (None: its group has no speed); an interrupted run resumes from its checkpoint."""
    speed = speeds.get(speed_key(run.config))
    if speed is None:
        return None
    epochs = run.config["epochs"]
    row = stored.get(run.key)
    if row is not None:
        from ..store.checkpoints import checkpoint_path

        if checkpoint_path(plan.study_dir, run.key).exists():
            epochs = max(0, epochs - (row["epochs_done"] or 0))
    return epochs * speed.epoch_s + speed.overhead_s


def _final_runs(plan, chosen: dict[str, float]) -> tuple[list, int]:
    """([tuning]) the final runs still to do after the search, and how many of them are guessed (last): a
    configuration whose rate is chosen has its exact final runs; one still searching counts the
    study's seeds that are not search seeds (a search seed's run at the chosen rate is that search run)."""
    tuning = plan.study.meta.tuning
    if tuning is None:
        return [], 0
    from ..spec import Run

    exact = [r for r in plan.study.final_runs(chosen) if plan.statuses.get(r.key) not in FINISHED]
    search_seeds = set(tuning.search_seeds(plan.study.meta.seeds))
    guessed, seen = [], set(chosen)
    for run in plan.runs:
        if run.label in seen:
            continue
        seen.add(run.label)
        for seed in plan.study.meta.seeds:
            if seed not in search_seeds:
                guessed.append(Run(f"{run.key}-final-{seed}", run.label, run.axes, {**run.config, "seed": seed}))
    return exact + guessed, len(guessed)
