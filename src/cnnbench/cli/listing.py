"""`cnnbench list KIND [NAME]`: the registries' entries, their defaults and declared options."""

from __future__ import annotations

import json

from ..errors import UserError
from .tables import print_table, terminal_console


def kind_registry(kind: str):
    """The registry `cnnbench list KIND` shows."""
    from . import reference

    return reference.registry(kind)


def cmd_list(args) -> int:

    console = terminal_console()
    if args.name or args.options or args.markdown:
        return _list_options(console, args)
    if args.kind == "studies":
        from .. import api

        rows = []
        for name in api.builtin_studies():
            s = api.Study.from_toml(name)
            rows.append([name, str(len(s.runs)), s.description])
        print_table(console, "built-in studies (cnnbench run NAME)", ["name", "runs", "description"], rows)
        return 0
    if args.kind == "optimizers":
        _list_optimizers(console)
        return 0
    registry = kind_registry(args.kind)
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

    from .. import optim

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
    limits, default and meaning (`cnnbench.cli.reference`)."""

    from . import reference

    if args.kind == "studies":
        raise UserError("studies have no options to list; `cnnbench list studies` names them, docs/studies.md "
                        "describes each")
    if args.markdown:
        if args.name:
            raise UserError("--markdown prints every entry (what docs/options.md holds); drop NAME, or drop "
                            "--markdown to see one entry")
        print(reference.markdown(args.kind))
        return 0
    registry = kind_registry(args.kind)
    entries = [registry.entry(args.name)] if args.name else list(registry)
    for entry in entries:
        aliases = f" (aliases: {', '.join(entry.aliases)})" if entry.aliases else ""
        rows = [list(row) for row in reference.rows(entry, leave_out=reference.hidden(args.kind))]
        if not rows:  # an entry without options (a metric): its name and what it is
            console.print(f"{registry.kind} {entry.name}{aliases}: {entry.summary} (no options)", markup=False)
            continue
        print_table(console, f"{registry.kind} {entry.name}{aliases}", ["option", "type", "default", "what it does"],
                    rows, caption=entry.summary)
    console.print(reference.ALSO[args.kind])
    return 0
