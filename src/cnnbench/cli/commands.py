"""The commands `cnnbench run`, `report`, `evaluate` and `summary` (list: listing.py)."""

from __future__ import annotations

import json
import sys

from ..errors import UserError
from .signals import import_for, sigint_deferred
from .tables import print_table, terminal_console


def cmd_evaluate(args) -> int:
    """`cnnbench evaluate`: print the test accuracy (and loss) of a saved model."""
    spec = args.dataset
    if spec is not None and spec.lstrip().startswith("{"):
        try:
            spec = json.loads(spec)
        except json.JSONDecodeError as e:
            raise UserError(f"--dataset is not valid JSON: {e}") from None
    from ..engine.inputs import resolve_device
    from ..store.model_files import evaluate_on_dataset

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



def cmd_run(args) -> int:
    from contextlib import ExitStack

    from rich.text import Text

    from ..runs.executors import forkserver

    with sigint_deferred():
        if not args.dry_run and forkserver.likely_needed(args.workers, args.executor, args.device):
            # first, without torch: the server imports torch and the engine while this process imports its
            # own and plans, instead of after (the pool finds it running; same preload, same SIGINT handling)
            forkserver.start()
    import_for("run")
    from ..api import Study, StudyProgress

    console = terminal_console()
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
        from ..report import write_report

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

    from .. import analysis
    from ..report import tables

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
    from ..report import marginal_tables

    for axis, t in marginal_tables(sc):
        show(f"Marginal ranking: {axis}", t)
    if sc.race is not None:  # what the race spent against the full grid (the report has who left when)
        from ..report.race import budget_sentence

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



def cmd_report(args) -> int:
    from ..report import analyse_and_write

    path, sc = analyse_and_write(args.study_dirs, output=args.output, metric=args.metric)  # analysed once
    _print_results(terminal_console(), sc)  # as `run` shows it
    print(path)
    return 0



def cmd_summary(args) -> int:
    from .. import models
    from ..registry import split_spec

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
