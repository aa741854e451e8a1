"""What a study shows while it runs: `StudyProgress` takes the progress events of `study_run.run_plan`
(queued, started, epoch, batch, evaluating, done) and draws them live (a terminal, a notebook with
ipywidgets) or as lines (a log); `show_plan` prints what a run will do and starts the display.
"""

from __future__ import annotations

import time
from typing import Any


def show_plan(p, live: bool | None) -> StudyProgress:
    """Print what `run` will do and start the progress display (Study.run's verbose)."""
    todo = p.todo
    what = "learning-rate search runs" if p.study.meta.tuning else "runs"
    display = StudyProgress(live=live, epochs=live is False, plan=p)
    display.console.print(f"study {p.study.name}: {len(p.runs)} {what}, {len(p.runs) - len(todo)} already "
                          f"finished, {len(todo)} to run → {p.study_dir}", soft_wrap=True)
    return display.__enter__()


def plain_console():
    """A console for progress and tables: user text printed as it is (no rich markup)."""
    from rich.console import Console

    return Console(highlight=False, markup=False)


def _live_possible(console) -> bool:
    """Whether a live (redrawn) display works here: a terminal, or a notebook with ipywidgets (rich's
    Jupyter display needs it)."""
    if console.is_jupyter:
        import importlib.util

        return importlib.util.find_spec("ipywidgets") is not None
    return bool(console.is_terminal) and not console.is_dumb_terminal


class StudyProgress:
    """What `Study.run` and `cnnbench run` show while a study trains; `update` takes the progress events.

    Live (a terminal, or a notebook with ipywidgets): one bar for the study (runs done / runs so far,
    elapsed, an ETA from the epochs this call has trained per second) and a line per run in
    progress: its epoch, its last loss (and accuracy, validation accuracy), its label (and, in a study
    with a learning-rate search, its rate) and seed. Otherwise (a log file, a notebook without
    ipywidgets): a line per finished run, with `epochs=True` a line per epoch too.

    Runs arrive as "queued" events, in several batches for some studies (a [tuning] study queues its
    final runs once the search is done; an event may say `at_most` runs will come in all): the count
    shows the runs announced so far and, while more can come, "of at most N"."""

    def __init__(self, console=None, *, live: bool | None = None, epochs: bool = False, plan=None):
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
        from rich.table import Column

        self.console = console if console is not None else plain_console()
        self.live = _live_possible(self.console) if live is None else live
        self.epochs_lines, self.plan = epochs, plan
        self.runs_total = self.runs_done = 0
        self.at_most: int | None = None
        self.epochs: dict[str, int] = {}
        self.names: dict[str, str] = {}
        self.seen: dict[str, int] = {}
        self.run_tasks: dict[str, Any] = {}
        self.trained = 0  # epochs trained by this call (not those of resumed runs done before)
        self.t0: float | None = None
        self.progress = Progress(TextColumn("{task.fields[runs]}", markup=False, style="bold"),
                                 BarColumn(bar_width=self._bar()), TextColumn("{task.percentage:>3.0f}%"),
                                 TimeElapsedColumn(), _eta_column(),
                                 TextColumn("{task.description}", markup=False,
                                            table_column=Column(no_wrap=True, overflow="ellipsis")),
                                 console=self.console, transient=False, disable=not self.live)
        self.task = self.progress.add_task("", total=0, runs="0/0 runs", eta_at=None)

    def __enter__(self):
        self.progress.__enter__()
        return self

    def __exit__(self, *exc):
        return self.progress.__exit__(*exc)

    def _runs(self) -> str:
        bound = f" of at most {self.at_most}" if self.at_most is not None and self.at_most > self.runs_total else ""
        return f"{self.runs_done}/{self.runs_total}{bound} runs"

    def _name(self, key: str, label: str, seed) -> str:
        """The run's label and seed; in a study with a learning-rate search, also its rate."""
        name = f"{label} seed={seed}"
        study = getattr(self.plan, "study", None)
        if study is not None and study.meta.tuning and "learning_rate" not in label:
            run = next((r for r in self.plan.runs if r.key == key), None)
            optimizer = run.config.get("optimizer") if run is not None else None
            lr = optimizer.get("learning_rate") if isinstance(optimizer, dict) else None
            if isinstance(lr, (int, float)):
                name = f"{label} lr={lr:g} seed={seed}"
        return name

    def _queued(self, event: dict) -> None:
        first = self.t0 is None
        if first:
            self.t0 = time.monotonic()
        for r in event["runs"]:
            self.epochs[r["key"]] = r["epochs"]
            self.names[r["key"]] = self._name(r["key"], r["label"], r.get("seed"))
        self.runs_total += len(event["runs"])
        study = getattr(self.plan, "study", None)
        if "at_most" in event:  # the runner knows a bound
            self.at_most = event["at_most"]
        elif first and study is not None and study.meta.tuning:
            # the search's runs; the final runs follow: at most each configuration × the study's seeds
            self.at_most = self.runs_total + len({r.label for r in self.plan.runs}) * len(study.meta.seeds)
        else:
            self.at_most = None  # the final runs are queued: the count is exact
        self.progress.update(self.task, total=sum(self.epochs.values()), runs=self._runs(), eta_at=self._eta_at())

    def _eta_at(self) -> float | None:
        """When the study should end at the throughput so far (epochs trained per second since the first
        run was queued, workers together); None before the first epoch."""
        if self.t0 is None or not self.trained:
            return None
        now = time.monotonic()
        left = sum(self.epochs.values()) - sum(self.seen.values())
        return now + left * (now - self.t0) / self.trained

    def update(self, event: dict) -> None:
        kind = event["event"]
        if kind == "queued":
            self._queued(event)
            return
        key = event["key"]
        name = self.names.get(key) or event.get("label", key)
        if kind == "epoch":
            # a resumed run reports its first new epoch > 1: count the epochs it had already done
            advance = event["epoch"] - self.seen.get(key, 0)
            self.trained += 1
            self.seen[key] = event["epoch"]
            logs = event.get("logs") or {}
            self.progress.update(self.task, advance=advance, eta_at=self._eta_at())
            line = self._fit(f"{_logs_text(logs, short=True)} · {name}")
            epoch = f"  ↳ epoch {event['epoch']}/{event['epochs']}"
            if key not in self.run_tasks:
                self.run_tasks[key] = self.progress.add_task(line, total=event["epochs"], runs=epoch, eta_at=None)
            self.progress.update(self.run_tasks[key], completed=event["epoch"], description=line, runs=epoch)
            if not self.live and self.epochs_lines:
                self._print(f"epoch {event['epoch']}/{event['epochs']} {name}: {_logs_text(logs)}")
            return
        if kind == "batch":  # within an epoch: how far it is, and the running loss
            if key in self.run_tasks:
                done = event["epoch"] - 1 + event["batch"] / event["steps"]
                line = self._fit(f"{_logs_text(event.get('logs') or {}, short=True)} · {name}")
                self.progress.update(self.run_tasks[key], completed=done, description=line,
                                     runs=f"  ↳ epoch {event['epoch']}/{event['epochs']}")
            return
        if kind == "started":
            if key not in self.run_tasks:
                self.run_tasks[key] = self.progress.add_task(self._fit(f"starting · {name}"), total=event["epochs"],
                                                             runs=f"  ↳ epoch 0/{event['epochs']}", eta_at=None)
            return
        if kind == "evaluating":
            if key in self.run_tasks:
                self.progress.update(self.run_tasks[key], description=self._fit(f"evaluating · {name}"))
            return
        self.runs_done += 1
        rest = self.epochs.get(key, 0) - self.seen.get(key, 0)  # early stopping / divergence
        self.seen[key] = self.epochs.get(key, 0)
        self.progress.update(self.task, advance=max(rest, 0), runs=self._runs())
        if key in self.run_tasks:
            self.progress.remove_task(self.run_tasks.pop(key))
        if not self.live:
            self._print(f"[{self._runs().removesuffix(' runs')}] {event.get('status', 'done')}: {name}")

    def _bar(self) -> int:
        return 20 if self.console.width >= 120 else 10

    def _fit(self, text: str) -> str:
        """`text` cut to what the line has left after the counts, bar and times (rich would squeeze
        the other columns instead): the counts' column, the bar, "100%", "0:00:00", "ETA 0:00:00" and
        the spaces between the six columns."""
        room = self.console.width - max(len(self._runs()), 16) - self._bar() - 4 - 7 - 11 - 5 - 1
        return text if len(text) <= room else text[:max(room - 1, 8)] + "…"

    def _print(self, line: str) -> None:
        from rich.text import Text

        self.console.print(Text(line), soft_wrap=True)  # a label is the user's text, not rich markup
        self.console.file.flush()


def _logs_text(logs: dict, short: bool = False) -> str:
    """An epoch's loss and accuracies: "loss 0.3124 acc 0.912 val_loss 0.3301 val_acc 0.905" (`short`:
    without val_loss, for a live line)."""
    shown = {"loss": "loss", "accuracy": "acc", "val_loss": "val_loss", "val_accuracy": "val_acc"}
    if short:
        del shown["val_loss"]
    return " ".join(f"{short} {logs[k]:.4g}" if "loss" in k else f"{short} {logs[k]:.3f}"
                    for k, short in shown.items() if isinstance(logs.get(k), (int, float)))


def _eta_column():
    """"ETA 0:01:23": the time left at the throughput this call has had so far (epochs trained per
    second since the first run was queued, workers together), counting down between epochs; "ETA –"
    until the first epoch ends."""
    from rich.progress import ProgressColumn
    from rich.text import Text

    class Eta(ProgressColumn):
        max_refresh = 0.5

        def render(self, task):
            eta_at = task.fields.get("eta_at")
            if eta_at is None:
                return Text("" if str(task.fields.get("runs", "")).startswith("  ↳") else "ETA –")
            left = max(0, int(eta_at - time.monotonic()))
            return Text(f"ETA {left // 3600}:{left // 60 % 60:02d}:{left % 60:02d}")

    return Eta()
