"""The `cnnbench` command's arguments: `build_parser`, and `--version`."""

from __future__ import annotations

import argparse
import importlib

LAZY_SUBCOMMANDS = {
    "paths": ("cnnbench.report.optimizer_paths", "add_arguments", "main",
              "draw optimizer trajectories on 2-D test surfaces (PNG and GIF)"),
}


def _subcommand(argv: list[str]) -> str | None:
    """The subcommand `argv` asks for: its first word that is not an option."""
    return next((a for a in argv if not a.startswith("-")), None)


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    """The command line; with `argv`, only the subcommand it names gets its torch-importing arguments."""
    from . import commands, listing

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
    from ..runs.executors import REGISTRY as EXECUTORS

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
    r.set_defaults(func=commands.cmd_run)

    rep = sub.add_parser("report", help="write the report: verdict, ranked tables with tests, paper tables "
                         "(CSV, Markdown, LaTeX), figures (PNG, SVG), report.html and summary.md")
    rep.add_argument("study_dirs", nargs="+", metavar="STUDY_DIR",
                     help="study directory; several: the union of their runs (one study run on several machines)")
    rep.add_argument("--metric", help="rank by this metric (default: the study's [analysis] metric, else test_acc); "
                     "e.g. test_nll, test_macro_f1, best_val_acc")
    rep.add_argument("-o", "--output", help="report directory (default STUDY_DIR/report; required with several "
                     "study directories); the study directories themselves are only read")
    rep.set_defaults(func=commands.cmd_report)

    ls = sub.add_parser("list", help="list losses, optimizers, models, datasets, schedules, metrics, callbacks, "
                        "executors or studies")
    ls.add_argument("kind", choices=["losses", "optimizers", "models", "datasets", "schedules", "metrics", "callbacks",
                                     "executors", "studies"])
    ls.add_argument("name", nargs="?", help="one entry: each option's type and limits, default and meaning")
    ls.add_argument("--options", action="store_true", help="every entry's options, as NAME shows one entry's")
    ls.add_argument("--markdown", action="store_true", help="with --options: Markdown (what docs/options.md holds)")
    ls.set_defaults(func=listing.cmd_list)

    ev = sub.add_parser("evaluate", help="evaluate a saved model on a dataset's test set")
    _add_evaluate_arguments(ev)
    ev.set_defaults(func=commands.cmd_evaluate)

    sm = sub.add_parser("summary", help="print a model's layers, output shapes and parameter counts")
    sm.add_argument("model", help="model name, or a JSON spec such as '{\"name\": \"vgg19\", \"weights\": \"none\"}'")
    sm.add_argument("--input", default="1x28x28", help="input shape CxHxW (default 1x28x28)")
    sm.add_argument("--classes", type=int, default=10, help="output units (default 10)")
    sm.set_defaults(func=commands.cmd_summary)

    wanted = None if argv is None else _subcommand(argv)
    for name, (module, add_arguments, func, help_text) in LAZY_SUBCOMMANDS.items():
        sp = sub.add_parser(name, help=help_text)
        if argv is None or wanted == name:
            mod = importlib.import_module(module)
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

    from .. import __version__

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
