"""The `cnnbench` command. A user's mistake prints one line and exits with status 2."""

from __future__ import annotations

import argparse
import importlib
import json
import os
import signal
import sys
import threading
from contextlib import contextmanager

from .errors import UserError


def main(argv: list[str] | None = None) -> int:
    """Run the command line; return the exit status. `argv` None: the `cnnbench` program itself (the
    process ends after this); a list: a call from Python (a test, a notebook), whose SIGINT handler is
    put back as it was.

    Ctrl-C at any moment prints one line and exits 130: while modules import it takes effect once they
    have (an import of torch or numpy interrupted halfway fails on its next use with a traceback); once
    the command is over, the program ignores SIGINT (SIG_IGN, which Python's shutdown keeps, unlike a
    handler of its own), so a late Ctrl-C cannot turn the exit status into −2 or print a traceback."""
    program = argv is None
    argv = sys.argv[1:] if argv is None else list(argv)
    in_main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.getsignal(signal.SIGINT) if in_main_thread else None
    said = []
    try:
        try:
            return _main(argv, said)
        finally:
            if in_main_thread:
                if program:
                    ignore_sigint()
                elif previous is not None:
                    signal.signal(signal.SIGINT, previous)
    except KeyboardInterrupt:  # in the instant between the command's end and the lines above
        if in_main_thread and program:
            ignore_sigint()
        if not said:
            print(INTERRUPTED, file=sys.stderr)
        return 130


INTERRUPTED = "cnnbench: interrupted; run the same command again to resume"


def _main(argv: list[str], said: list) -> int:
    try:
        with sigint_deferred():  # `cnnbench paths` imports torch to declare its arguments
            args = build_parser(argv).parse_args(argv)
        if args.command != "run":  # `run` starts its forkserver first
            _import_for(args.command)
        return args.func(args) or 0
    except UserError as e:
        print(f"cnnbench: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        said.append(True)
        print(INTERRUPTED, file=sys.stderr)
        return 130
    except OSError as e:  # a path we cannot write, a full disk: one line, not a traceback
        from .errors import environment_fault

        fault = environment_fault(e, e.filename or "")
        print(f"cnnbench: error: {fault or e}", file=sys.stderr)
        return 2 if fault else 1


def _noop(signum, frame) -> None:
    """A SIGINT handler that does nothing (see `ignore_sigint`)."""


def _run_pending() -> None:
    """Calling a Python function lets the interpreter run the signal handlers it has pending."""


def ignore_sigint() -> None:
    """Ignore SIGINT (SIG_IGN, which survives the interpreter's shutdown), without Python's "Signal 2
    ignored due to race condition" for a Ctrl-C that arrived but whose handler has not run yet: a
    no-op handler first, SIGINT blocked, pending handlers run, then SIG_IGN (which discards a blocked
    SIGINT), then unblocked."""
    signal.signal(signal.SIGINT, _noop)
    blocked = hasattr(signal, "pthread_sigmask")
    if blocked:
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        _run_pending()
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    finally:
        if blocked:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})


@contextmanager
def sigint_deferred():
    """A Ctrl-C inside the block takes effect at its end (KeyboardInterrupt), not inside an import.
    Does nothing where SIGINT is ignored (a background job) or outside the main thread."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.getsignal(signal.SIGINT)
    if previous is signal.SIG_IGN:
        yield
        return
    pressed = []
    signal.signal(signal.SIGINT, lambda *_: pressed.append(True))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous if previous is not None else signal.default_int_handler)
    if pressed:
        raise KeyboardInterrupt


# What each command imports before it starts (under `sigint_deferred`).
STARTUP_IMPORTS = {
    "run": ("torch", "pandas", "cnnbench.api", "cnnbench.runs.runner", "cnnbench.runs.executors.local",
            "cnnbench.engine.train", "cnnbench.analysis", "cnnbench.report"),
    "report": ("pandas", "cnnbench.analysis", "cnnbench.report"),
    "evaluate": ("torch", "cnnbench.store.model_files", "cnnbench.engine.train"),
    "summary": ("torch", "cnnbench.models"),
}


def _import_for(command: str) -> None:
    with sigint_deferred():
        for module in STARTUP_IMPORTS.get(command, ()):
            importlib.import_module(module)


# Subcommands whose modules import torch: their arguments are declared only when that subcommand is
# the one asked for, so that `cnnbench --help` and the other commands start without loading torch.
LAZY_SUBCOMMANDS = {
    "paths": ("paths", "add_arguments", "main", "draw optimizer trajectories on 2-D test surfaces (PNG and GIF)"),
}


def _subcommand(argv: list[str]) -> str | None:
    """The subcommand `argv` asks for: its first word that is not an option."""
    return next((a for a in argv if not a.startswith("-")), None)


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    """The command line; with `argv`, only the subcommand it names gets its torch-importing arguments."""
    p = argparse.ArgumentParser(prog="cnnbench", description="Benchmark losses, optimizers and CNNs on image "
                                "classification: declare a study, run it, get ranked evidence.")
    p.add_argument("--version", action=_VersionAction, help="print cnnbench's version (and git commit in a "
                   "checkout), torch's and Python's, then exit")
    sub = p.add_subparsers(dest="command", required=True)

    r = sub.add_parser("run", help="run a study (default: the built-in study on the embedded digits)")
    r.add_argument("study", nargs="?", help="study .toml file or built-in study name (see `cnnbench list studies`)")
    r.add_argument("-o", "--output", help="study directory (default: output_dir of the spec, or runs/NAME)")
    r.add_argument("--data-dir",
                   help="where datasets are read and cached (default: $CNNBENCH_DATA or ~/.cache/cnnbench)")
    r.add_argument("--device", default="auto", help="cpu, cuda or auto (default)")
    r.add_argument("--workers", default="auto", help="worker processes (default auto: one per core on CPU)")
    from .runs.executors import REGISTRY as EXECUTORS

    r.add_argument("--executor", choices=EXECUTORS.list(), default="local",
                   help='where runs train: local processes (default) or a Ray cluster (needs Ray: pip install -e '
                        '".[ray]" in the checkout, or pip install "ray[default]")')
    r.add_argument("--ray-address", default=None, help="Ray cluster address (default: start a local Ray)")
    r.add_argument("--cpus-per-run", type=float, default=1, help="Ray: CPUs reserved per run (default 1)")
    r.add_argument("--gpus-per-run", type=float, default=0, help="Ray: GPUs reserved per run (default 0)")
    r.add_argument("--tensorboard", action="store_true",
                   help="also log every epoch for TensorBoard under STUDY_DIR/tensorboard (pip install tensorboard)")
    r.add_argument("--mlflow", metavar="URI", default=None,
                   help="also log every run to this MLflow tracking URI (e.g. file:./mlruns, http://host:5000; "
                        "needs pip install mlflow-skinny)")
    r.add_argument("--dry-run", action="store_true", help="print the resolved runs and which are done; run nothing")
    r.add_argument("--no-report", action="store_true", help="do not write the report at the end")
    r.add_argument("-q", "--quiet", action="store_true",
                   help="no progress, no plan and no tables: only the verdict, the report's path and what went "
                        "wrong")
    r.add_argument("-v", "--verbose", action="store_true",
                   help="when the output is not a terminal (a log file), also print a line per epoch")
    r.set_defaults(func=cmd_run)

    rep = sub.add_parser("report", help="write the report: verdict, ranked tables with tests, paper tables "
                         "(CSV, Markdown, LaTeX), figures (PNG, SVG), report.html and summary.md")
    rep.add_argument("study_dirs", nargs="+", metavar="STUDY_DIR",
                     help="study directory; several: the union of their runs (one study run on several machines)")
    rep.add_argument("--metric", help="rank by this metric (default: the study's [analysis] metric, else test_acc); "
                     "e.g. test_nll, test_macro_f1, best_val_acc")
    rep.add_argument("-o", "--output", help="report directory (default STUDY_DIR/report; required with several "
                     "study directories); the study directories themselves are only read")
    rep.set_defaults(func=cmd_report)

    ls = sub.add_parser("list", help="list losses, optimizers, models, datasets, schedules or studies")
    ls.add_argument("kind", choices=["losses", "optimizers", "models", "datasets", "schedules", "studies"])
    ls.add_argument("name", nargs="?", help="one entry: each option's type and limits, default and meaning")
    ls.add_argument("--options", action="store_true", help="every entry's options, as NAME shows one entry's")
    ls.add_argument("--markdown", action="store_true", help="with --options: Markdown (what docs/options.md holds)")
    ls.set_defaults(func=cmd_list)

    ev = sub.add_parser("evaluate", help="evaluate a saved model on a dataset's test set")
    _add_evaluate_arguments(ev)
    ev.set_defaults(func=cmd_evaluate)

    sm = sub.add_parser("summary", help="print a model's layers, output shapes and parameter counts")
    sm.add_argument("model", help="model name, or a JSON spec such as '{\"name\": \"vgg19\", \"weights\": \"none\"}'")
    sm.add_argument("--input", default="1x28x28", help="input shape CxHxW (default 1x28x28)")
    sm.add_argument("--classes", type=int, default=10, help="output units (default 10)")
    sm.set_defaults(func=cmd_summary)

    wanted = None if argv is None else _subcommand(argv)
    for name, (module, add_arguments, func, help_text) in LAZY_SUBCOMMANDS.items():
        sp = sub.add_parser(name, help=help_text)
        if argv is None or wanted == name:
            mod = importlib.import_module(f".{module}", __package__)
            getattr(mod, add_arguments)(sp)
            sp.set_defaults(func=getattr(mod, func))
    return p


class _VersionAction(argparse.Action):
    """`--version`, worked out only when asked (a git call in a checkout)."""

    def __init__(self, option_strings, dest, **kwargs):
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None):
        print(version_line())
        parser.exit()


def version_line() -> str:
    """`cnnbench 0.1.0 (git 1a2b3c4, modified) with torch 2.5.1, Python 3.11.7`: the installed
    distribution's version; the commit when the package is imported from a git checkout; torch's
    version from its metadata (torch itself is not imported)."""
    import platform
    from importlib import metadata
    from pathlib import Path

    from . import __version__

    line = f"cnnbench {__version__}"
    commit = _git_commit(Path(__file__).resolve().parent)
    if commit:
        line += f" (git {commit})"
    try:
        torch = metadata.version("torch")
    except metadata.PackageNotFoundError:
        torch = "not installed"
    return f"{line} with torch {torch}, Python {platform.python_version()}"


def _git_commit(where) -> str | None:
    """The short commit of the git checkout holding `where` (", modified" with uncommitted changes to
    tracked files), or None outside a checkout or without git."""
    import subprocess

    if not any((d / ".git").exists() for d in (where, *where.parents)):
        return None
    try:
        head = subprocess.run(["git", "-C", str(where), "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, timeout=5)
        if head.returncode != 0:
            return None
        dirty = subprocess.run(["git", "-C", str(where), "status", "--porcelain", "--untracked-files=no", "."],
                               capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return head.stdout.strip() + (", modified" if dirty.stdout.strip() else "")


# --- evaluate -----------------------------------------------------------------------------------


def _add_evaluate_arguments(parser) -> None:
    """Arguments of `cnnbench evaluate MODEL_PATH [--dataset SPEC] ...`."""
    parser.add_argument("model_path", help="a model file written by cnnbench (cnnbench.store.model_files.save)")
    parser.add_argument("--dataset", help="dataset name or JSON spec, e.g. mnist or "
                        "'{\"name\": \"imagefolder:data/x\", \"image_size\": 150}' "
                        "(default: the one the model was trained on)")
    parser.add_argument("--data-dir",
                        help="where datasets are read and cached (default: $CNNBENCH_DATA or ~/.cache/cnnbench)")
    parser.add_argument("--batch-size", type=int, default=256, help="images per forward pass (default 256)")
    parser.add_argument("--device", default="auto", help="cpu, cuda or auto (default)")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.add_argument("--trust-code", action="store_true",
                        help="let the file's config import and run the code it names ('package.module:attr' "
                        "models or losses, the module that registered its model); only for files you trust")


def cmd_evaluate(args) -> int:
    """`cnnbench evaluate`: print the test accuracy (and loss) of a saved model."""
    spec = args.dataset
    if spec is not None and spec.lstrip().startswith("{"):
        try:
            spec = json.loads(spec)
        except json.JSONDecodeError as e:
            raise UserError(f"--dataset is not valid JSON: {e}") from None
    from .engine.train import resolve_device
    from .store.model_files import evaluate_on_dataset

    device = resolve_device(args.device) if getattr(args, "device", None) else None
    result = evaluate_on_dataset(args.model_path, spec, data_dir=args.data_dir, batch_size=args.batch_size,
                                 device=device, trust_code=getattr(args, "trust_code", False))
    if args.json:
        print(json.dumps(result))
    else:
        loss = f", {result['loss_name']} {result['loss']:.4f}" if "loss" in result else ""
        top5 = f", top-5 accuracy {result['top5_accuracy']:.4f}" if "top5_accuracy" in result else ""
        print(f"{result['dataset']}: test accuracy {result['accuracy']:.4f}{top5}{loss} ({result['images']:,} images)")
        print(_format_confusion(result["confusion_matrix"], result["class_names"]))
    return 0



def _format_confusion(matrix: list[list[int]], names: list[str]) -> str:
    """The confusion matrix as text: one row per true class, one column per predicted class."""
    names = [str(n)[:10] for n in names]
    width = max(max((len(str(v)) for row in matrix for v in row), default=1), max(map(len, names), default=1)) + 1
    head = "true \\ predicted".ljust(max(map(len, names)) + 2)
    lines = ["confusion matrix (rows: true class, columns: predicted class)",
             head + "".join(n.rjust(width) for n in names)]
    for name, row in zip(names, matrix):
        lines.append(name.ljust(len(head)) + "".join(str(v).rjust(width) for v in row))
    return "\n".join(lines)


# --- run ----------------------------------------------------------------------------------------


def cmd_run(args) -> int:
    from contextlib import ExitStack

    from rich.text import Text

    from .runs.executors import forkserver

    with sigint_deferred():
        if not args.dry_run and forkserver.likely_needed(args.workers, args.executor, args.device):
            # first, without torch: the server imports torch and the engine while this process imports its
            # own and plans, instead of after (the pool finds it running; same preload, same SIGINT handling)
            forkserver.start()
    _import_for("run")
    from .api import Study, StudyProgress

    console = _console()
    study = Study.from_toml(args.study)
    options = dict(data_dir=args.data_dir, device=args.device, workers=args.workers, executor=args.executor,
                   cpus_per_run=args.cpus_per_run, gpus_per_run=args.gpus_per_run, tensorboard=args.tensorboard,
                   mlflow=args.mlflow)
    if args.dry_run:
        plan = study.plan(args.output, **options)
        _print_skipped(console, plan)
        estimate = None if args.executor != "local" else study.estimate(  # this machine's workers, not Ray's
            plan=plan, data_dir=args.data_dir, device=args.device, workers=args.workers)
        _print_dry_run(console, plan, estimate)
        return 0
    with ExitStack() as stack:
        shown = []  # the progress display, started once the plan is printed

        def on_plan(plan) -> None:
            _print_skipped(console, plan)
            if not plan.runs:
                return  # the study refuses to start: nothing more to show
            todo = plan.todo
            what = "learning-rate search runs" if plan.study.meta.tuning else "runs"
            if not args.quiet:
                console.print(Text.assemble("study ", (plan.study.name, "bold"),
                                            f": {len(plan.runs)} {what}, {len(plan.runs) - len(todo)} "
                                            f"already finished, {len(todo)} to run → {plan.study_dir}"))
            if not args.quiet and args.executor == "local":  # a long study says so before it starts
                try:
                    estimate = study.estimate(plan=plan, data_dir=args.data_dir, device=args.device,
                                              workers=args.workers)
                except Exception:  # advice only: never what keeps a study from starting
                    estimate = None
                if estimate is not None and estimate.exceeds_hour:
                    console.print(Text(f"{estimate.line()}: over an hour; Ctrl-C stops the study at any time and "
                                       "the same command resumes it", style="yellow"))
            if not args.quiet:
                shown.append(stack.enter_context(StudyProgress(console, epochs=args.verbose, plan=plan)))

        def progress(event) -> None:
            if shown:
                shown[0].update(event)

        result = study.run(args.output, **options, ray_address=args.ray_address, report=False,
                           progress=progress, on_plan=on_plan, verbose=0)
    sc = study.compare(result.study_dir)
    if args.quiet:  # the answer only
        console.print(Text("Verdict: ", style="bold") + Text(sc.verdict))
    else:
        console.print(f"finished in {result.seconds:.1f} s")
        _print_results(console, sc)
    if not args.no_report:
        from .report import write_report

        console.print(Text(f"report: {write_report(result.study_dir, comparison=sc)}"))
    if result.failed:
        print(f"cnnbench: {len(result.failed)} run(s) failed (errors above and in study.db); fix the cause and run "
              f"the same command again to retry them", file=sys.stderr)
        return 1
    return 0


def _print_skipped(console, plan) -> None:
    from rich.text import Text

    for line in plan.skipped:
        console.print(Text.assemble(("skipped", "yellow"), f" {line}"))


def _console():
    """The console every command prints through. `markup=False`: names, labels and paths are the user's
    text, printed as they are (`-o 'res [v2]'`); styles are given as `Text` styles, never as markup.
    Its width: the terminal's, or $COLUMNS where set (a terminal or a file); a file or a pipe without
    $COLUMNS gets 200 columns, so that a log keeps each table's rows on one line."""
    from rich.console import Console

    console = Console(highlight=False, markup=False)
    if not console.is_terminal and not os.environ.get("COLUMNS", "").strip().isdigit():
        console = Console(highlight=False, markup=False, width=200)
    return console


# A table's frame: one space of padding each side of a cell and a rule between columns (rich's default box).
_CELL_FRAME = 3


def _min_width(text: str) -> int:
    """The narrowest a cell may be without splitting a token: its longest word, or the whole cell for
    a number, an interval or a dash (no letters: "78.97 ± 1.45", "[76.67, 81.27]" stay on one line)."""
    if not any(c.isalpha() for c in text):
        return len(text)
    return max((len(w) for w in text.split()), default=0)


def _column_widths(header: list[str], rows: list[list[str]], width: int) -> list[int] | None:
    """Column widths that fit `width` with no token split (the widest columns narrowed first, none below
    its longest token), or None when even that does not fit."""
    columns = list(zip(header, *rows)) if rows else [(h,) for h in header]
    lows = [max(_min_width(c) for c in col) for col in columns]
    widths = [max(max(len(c) for c in col), 1) for col in columns]
    room = width - _CELL_FRAME * len(header) - 1
    if sum(lows) > room:
        return None
    # first wrap long headers over their cells (a header may take several lines), then narrow the widest
    cells = [max([len(c) for c in col[1:]] + [_min_width(col[0])]) for col in columns]
    for floor in (cells, lows):
        while sum(widths) > room and any(w > f for w, f in zip(widths, floor)):
            i = max((i for i in range(len(widths)) if widths[i] > floor[i]), key=lambda i: widths[i])
            widths[i] -= 1
    return widths


def _wrap(atoms: list[str], width: int, first: str = "", rest: str = "") -> str:
    """Whole `atoms` filled into lines of `width` (a too-long atom gets a line of its own, unbroken);
    `first`/`rest`: the first line's and the other lines' indent."""
    lines, line = [], first
    for atom in atoms:
        if line.strip() and len(line) + 1 + len(atom) > width:
            lines.append(line)
            line = rest + atom
        else:
            line = f"{line} {atom}" if line.strip() else line + atom
    return "\n".join([*lines, line])


def print_table(console, title: str, header: list[str], rows: list[list[str]], *, caption: str = "",
                key_columns: int = 1) -> None:
    """A table at the console's width, every token whole: a rich table whose columns are narrowed down
    to their longest token; when the console is narrower than that, a compact layout, one block per
    row: its first `key_columns` cells as a heading, then the other columns as "header: value" pieces,
    filled into indented lines (a line each where a value is long)."""
    from rich.table import Table
    from rich.text import Text

    widths = _column_widths(header, rows, console.width)
    if widths is not None:
        t = Table(title=Text(title), caption=Text(caption) if caption else None, title_justify="left",
                  caption_justify="left")
        for name, w in zip(header, widths):
            t.add_column(Text(name), width=w, overflow="fold")
        for row in rows:
            t.add_row(*(Text(c) for c in row))
        console.print(t)
        return
    width = max(console.width, 20)
    console.print(Text(_wrap(title.split(), width), style="bold"), soft_wrap=True)
    for row in rows:
        head = [w for c in row[:key_columns] if c for w in c.split()]
        console.print(Text(_wrap(head or ["–"], width, "", "  "), style="bold"), soft_wrap=True)
        pieces = []  # "header: value", the header's last word kept with the value's first piece
        for name, cell in zip(header[key_columns:], row[key_columns:]):
            if cell:
                value = [cell] if not any(c.isalpha() for c in cell) else cell.split()  # a number stays whole
                words = [name] if len(name) <= 24 else name.split()  # a short header stays whole
                pieces.append([*words[:-1], f"{words[-1] if words else ''}: {value[0]}", *value[1:]])
        if any(len(c) > 40 for c in row[key_columns:]):  # long values: a line each
            for piece in pieces:
                console.print(Text(_wrap(piece, width, "    ", "        ")), soft_wrap=True)
        elif pieces:  # short ones: filled together, "·" between them
            atoms = [a for p in pieces for a in [*p[:-1], p[-1] + " ·"]]
            atoms[-1] = atoms[-1].removesuffix(" ·")
            console.print(Text(_wrap(atoms, width, "    ", "    ")), soft_wrap=True)
    if caption:
        console.print(Text(_wrap(caption.split(), width)), soft_wrap=True)


def _print_dry_run(console, plan, estimate=None) -> None:
    from rich.text import Text

    print_table(console, f"{plan.study.name}: {len(plan.runs)} runs → {plan.study_dir}",
                ["key", "configuration", "seed", "status"],
                [[r.key, r.label, str(r.seed), plan.statuses.get(r.key, "new")] for r in plan.runs])
    console.print(f"{len(plan.todo)} to run, {len(plan.runs) - len(plan.todo)} finished")
    if plan.study.meta.tuning:
        console.print("these are the learning-rate search runs; the final runs (each configuration at its "
                      f"chosen rate × seeds {plan.study.meta.seeds}) follow from their results")
    racing = plan.study.meta.racing
    if racing is not None:
        console.print(Text(f"the study races: these are the most runs it can take (the full grid); from "
                           f"{racing.first_test} seeds on, configurations significantly worse than the best "
                           f"({'paired t-test, Holm' if racing.test == 't' else 'Friedman test, Conover'}, "
                           f"α = {racing.alpha:g}) leave the race until at most {racing.keep} remain; those still "
                           "racing then run every seed"))
    if estimate is not None:
        console.print(Text(estimate.line() + ("; over an hour" if estimate.exceeds_hour else "")))
        for note in estimate.notes:
            console.print(Text(f"note: {note}", style="yellow"))


def _print_results(console, sc) -> int:
    """The study's verdict (`sc`: its `StudyComparison`), then each cell's ranked table, the marginal
    rankings and the chosen learning rates; return the number of failed runs (listed last)."""
    from rich.text import Text

    from . import analysis
    from .report import tables

    console.print(Text("Verdict: ", style="bold") + Text(sc.verdict))
    for note in sc.notes:
        console.print(Text(f"note: {note}", style="yellow"))

    def show(title: str, t: tables.Table) -> None:
        # the ranking's "#" and configuration head each row's block in the compact layout
        print_table(console, title, t.header, t.text_rows(), key_columns=2 if t.header[:1] == ["#"] else 1)

    for cell in sc.cells:
        where = "" if len(sc.cells) == 1 else f" in {cell.name}"
        show(f"Configurations ranked by {sc.metric.label}{where}", tables.ranking(cell.comparison, sc.metric))
        for note in cell.comparison.notes:
            console.print(Text(f"note: {note}", style="yellow"))
    if sc.across is not None:
        show(f"Across cells ({' × '.join(sc.cell_keys)} as blocks)", tables.ranking(sc.across, sc.metric))
    from .report import marginal_tables

    for axis, t in marginal_tables(sc):
        show(f"Marginal ranking: {axis}", t)
    if sc.race is not None:  # what the race spent against the full grid (the report has who left when)
        from .report.race import budget_sentence

        console.print(Text("The race: ", style="bold") + Text(budget_sentence(sc)))
    chosen = analysis.chosen_learning_rates(sc.runs, complete=False) if not sc.runs.empty else {}
    if chosen:
        show("Learning-rate search: chosen rates", tables.plain(["configuration", "learning rate"],
                                                                [[label, f"{lr:g}"] for label, lr in chosen.items()]))
    failed = analysis.current_runs(sc.runs)
    failed = failed[failed["status"] == "failed"] if not failed.empty else failed
    for r in failed.itertuples():
        console.print(Text(f"failed {r.label} seed={r.seed}: {str(r.error).splitlines()[0]}", style="red"))
    return len(failed)


# --- other commands -----------------------------------------------------------------------------


def cmd_report(args) -> int:
    from .report import analyse_and_write

    path, sc = analyse_and_write(args.study_dirs, output=args.output, metric=args.metric)  # analysed once
    _print_results(_console(), sc)  # as `run` shows it
    print(path)
    return 0


def cmd_list(args) -> int:

    console = _console()
    if args.name or args.options or args.markdown:
        return _list_options(console, args)
    if args.kind == "studies":
        from . import api

        rows = []
        for name in api.builtin_studies():
            s = api.Study.from_toml(name)
            rows.append([name, str(len(s.runs)), s.description])
        print_table(console, "built-in studies (cnnbench run NAME)", ["name", "runs", "description"], rows)
        return 0
    if args.kind == "optimizers":
        _list_optimizers(console)
        return 0
    from .registry.reference import registry as _registry
    registry = _registry(args.kind)
    rows = []
    for entry in registry:
        try:
            defaults = {k: v for k, v in registry.resolve(entry.name).items() if k != "name"}
        except Exception:  # an entry that needs options (e.g. an image folder path)
            defaults = entry.defaults()
        opts = ", ".join(f"{k}={json.dumps(v) if not isinstance(v, str) else v}" for k, v in defaults.items())
        rows.append([entry.name, ", ".join(entry.aliases), opts, entry.summary])
    print_table(console, f"{args.kind} ({len(registry.list())})", ["name", "aliases", "options (defaults)", "about"],
                rows)
    return 0


def _format_options(options: dict) -> str:
    return ", ".join(f"{k}={json.dumps(v) if not isinstance(v, str) else v}" for k, v in options.items())


def _list_optimizers(console) -> None:
    """Optimizers with each flavour's defaults (the flavor option picks; "–": no such flavour)."""

    from . import optim

    common = set(optim.COMMON_DEFAULTS) | {"schedule", "flavor"}
    rows = []
    for entry in optim.REGISTRY:
        cells = []
        for flavor in optim.FLAVORS:
            try:
                resolved = optim.resolve({"name": entry.name, "flavor": flavor})
                cells.append(_format_options({k: v for k, v in resolved.items() if k not in common | {"name"}}))
            except Exception:  # the optimizer has no such flavour
                cells.append("–")
        rows.append([entry.name, ", ".join(entry.aliases), *cells, entry.summary])
    print_table(console, f"optimizers ({len(optim.REGISTRY.list())}); flavor = \"keras\" (default where Keras has "
                f"the optimizer), \"torch\" or \"tf1\" (tf.compat.v1.train; learning_rate=null: TF requires it)",
                ["name", "aliases", *(f"{f} flavour defaults" for f in optim.FLAVORS), "about (paper)"], rows)
    console.print("Every optimizer also takes: " + ", ".join(sorted(common - {"flavor"})) +
                  " (gradient clipping as in Keras, learning-rate schedules, batch-size scaling); docs/optimizers.md")


def _list_options(console, args) -> int:
    """`cnnbench list KIND NAME` (one entry) or `--options` (every entry): each declared option's type and
    limits, default and meaning (`cnnbench.registry.reference`)."""

    from .registry import reference

    if args.kind == "studies":
        raise UserError("studies have no options to list; `cnnbench list studies` names them, docs/studies.md "
                        "describes each")
    if args.markdown:
        if args.name:
            raise UserError("--markdown prints every entry (what docs/options.md holds); drop NAME, or drop "
                            "--markdown to see one entry")
        print(reference.markdown(args.kind))
        return 0
    registry = reference.registry(args.kind)
    entries = [registry.entry(args.name)] if args.name else list(registry)
    for entry in entries:
        aliases = f" (aliases: {', '.join(entry.aliases)})" if entry.aliases else ""
        print_table(console, f"{registry.kind} {entry.name}{aliases}", ["option", "type", "default", "what it does"],
                    [list(row) for row in reference.rows(entry, leave_out=reference.hidden(args.kind))],
                    caption=entry.summary)
    console.print(reference.ALSO[args.kind])
    return 0


def cmd_summary(args) -> int:
    from . import models
    from .registry import split_spec

    try:
        shape = tuple(int(s) for s in args.input.lower().split("x"))
    except ValueError:
        shape = ()
    if len(shape) != 3 or min(shape) < 1:
        raise UserError(f"--input must be CxHxW such as 1x28x28, got {args.input!r}")
    spec = args.model
    if spec.lstrip().startswith("{"):
        try:
            spec = json.loads(spec)
        except json.JSONDecodeError as e:
            raise UserError(f"model spec is not valid JSON: {e}") from None
    name, options = split_spec(spec)
    if "weights" in models.REGISTRY.entry(name).defaults() and "weights" not in options:
        options["weights"] = "none"  # the summary needs the architecture, not ImageNet weights
    model = models.get({"name": name, **options}, input_shape=shape, num_outputs=args.classes)
    print(models.summary(model, shape))
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
