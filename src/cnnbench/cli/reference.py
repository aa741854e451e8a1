"""The option reference: every registry entry's declared options (type and limits, default, one line of
doc), as `cnnbench list KIND NAME` / `--options` print them and as docs/options.md holds them.

    python -m cnnbench.cli.reference > docs/options.md     # regenerate the docs page (a test compares)
"""

from __future__ import annotations

import json
from typing import Any

from ..registry import Declared, Entry, Registry

KINDS = ("datasets", "models", "losses", "optimizers", "schedules", "metrics", "callbacks", "executors")

#: What every entry of a kind takes besides its own options (handled outside the entry's factory).
ALSO = {
    "datasets": "Every dataset also takes `limit_train`, `limit_test` (a whole number >= 1: use the first N, or a "
                "stratified N with `limit_mode = \"stratified\"`) and `download` (true or false); see "
                "docs/datasets.md.",
    "models": "A model's `input_shape` and `num_outputs` come from the dataset and the loss, not from options; "
              "`\"package.module:attr\"` names your own model (docs/models.md).",
    "losses": "`\"package.module:attr\"` names your own loss. In Python, `losses.get(NAME, name=...)` also takes "
              "Keras' display-only `name` (not part of a run's key; in a study file `name` is the loss's name).",
    "optimizers": "An optimizer's hyperparameters have Keras' names (torch's `lr`, `betas`, `eps` are accepted); "
                  "the defaults shown are the default flavour's: `cnnbench list optimizers` shows every "
                  "flavour's.",
    "schedules": "A learning-rate schedule is an optimizer's `schedule` option: a name or a table, e.g. `schedule = "
                 "{ name = \"cosine\", warmup_epochs = 2 }`; every schedule takes `per`, `warmup_epochs` and "
                 "`warmup_steps`. The formulas: docs/optimizers.md.",
    "metrics": "A run's `metrics = [...]` (Keras' `metrics=`): these names, or `\"package.module:function\"`, a "
               "function (y_true, probabilities) -> float named by its function; each is logged per epoch as "
               "`val_<name>` and scored on the test set as `test_<name>` (accuracy is always recorded).",
    "callbacks": "A run's `callbacks = [...]` (Keras' `callbacks=`): these names (Keras' class names too), or "
                 "`\"package.module:Class\"`, a subclass of `cnnbench.Callback` with its own options (imported only "
                 "from a file you trust); `early_stopping = { ... }` is the same EarlyStopping, always run first.",
    "executors": "An executor is chosen with --executor NAME (Study.run(executor=NAME)); its options are flags: "
                 "--ray-address, --cpus-per-run, --gpus-per-run (ray_address=, cpus_per_run=, gpus_per_run=). "
                 "--workers sets how many local worker processes run at once.",
}


def common(kind: str) -> list[str]:
    """Options every entry of `kind` takes that the docs list once, not per entry."""
    if kind == "optimizers":
        from ..optim.options import COMMON
        return list(COMMON)
    return []


def hidden(kind: str) -> list[str]:
    """Declared options not listed: the losses' display-only `name`, which a study file cannot set (ALSO)."""
    return ["name"] if kind == "losses" else []


def registry(kind: str) -> Registry:
    """The registry of `kind` (one of KINDS)."""
    if kind == "losses":
        from ..losses import REGISTRY
    elif kind == "optimizers":
        from ..optim import REGISTRY
    elif kind == "models":
        from ..models import REGISTRY
    elif kind == "datasets":
        from ..data import REGISTRY
    elif kind == "schedules":
        from ..optim.schedules import REGISTRY
    elif kind == "metrics":
        from ..metrics import REGISTRY
    elif kind == "callbacks":
        from ..callbacks import REGISTRY
    elif kind == "executors":
        from ..runs.executors import REGISTRY
    else:
        raise ValueError(f"no registry of {kind!r}")
    return REGISTRY


def default_text(d: Declared) -> str:
    """The default as a study file writes it; "required" where there is none, "–" for None (absent)."""
    if d.required:
        return "required"
    value = d.default
    if value is None:
        return "–"
    if isinstance(value, tuple):
        value = list(value)
    return json.dumps(value)


def rows(entry: Entry, leave_out=()) -> list[tuple[str, str, str, str]]:
    """(option, type and limits, default, doc) per declared option of `entry`."""
    return [(d.name, d.describe_type(), default_text(d), d.option.doc) for d in entry.options.values()
            if d.name not in leave_out]


HEADER = ["| option | type | default | what it does |", "|---|---|---|---|"]


def _table(table) -> list[str]:
    return HEADER + [f"| `{name}` | {_cell(tp)} | `{_cell(default)}` | {_cell(doc)} |"
                     for name, tp, default, doc in table]


def markdown(kind: str) -> str:
    """Every entry of `kind` with its options, as Markdown tables."""
    reg = registry(kind)
    shared = common(kind)
    also = ALSO[kind] + (f" Every {reg.kind} also takes these options:" if shared else "")
    out = [f"## {kind.capitalize()}", "", also, ""]
    if shared:
        first = next(iter(reg))
        out += [*_table([r for r in rows(first) if r[0] in shared and r[0] != "flavor"]), ""]
    for entry in reg:
        aliases = f" (aliases: {', '.join(f'`{a}`' for a in entry.aliases)})" if entry.aliases else ""
        out += [f"### `{entry.name}`{aliases}", "", entry.summary.replace("|", "\\|"), ""]
        table = rows(entry, leave_out=[*(s for s in shared if s != "flavor"), *hidden(kind)])
        out += [*_table(table), ""] if table else ["No options.", ""]
    return "\n".join(out)


def _cell(text: Any) -> str:
    return str(text).replace("|", "\\|")


def augmentation_markdown() -> str:
    """The augmentation options: one table (every entry of the augmentation registry, a preset or the
    table itself, takes them all)."""
    from ..data.augment import DEFAULTS, OPTIONS, PRESETS

    table = [(d.name, d.describe_type(), default_text(d), d.option.doc)
             for d in (Declared.of(k, OPTIONS[k], DEFAULTS[k]) for k in DEFAULTS)]
    return "\n".join(["## Augmentation", "", "A study's `augmentation` (Keras' ImageDataGenerator names, on whole "
                      "batches; docs/datasets.md): a table of these options, or a preset: "
                      + ", ".join(f"`{p}`" for p in PRESETS) + " (with options of its own: "
                      "`{ name = \"cifar\", cutout_size = 8 }`).", "", *_table(table), ""])


def document() -> str:
    """docs/options.md."""
    head = ["# Options of every dataset, model, loss, optimizer, schedule, metric, callback and executor", "",
            "Generated from the options each entry declares (in its signature, or once by name for a family: "
            "`cnnbench.registry.Option`): "
            "the same declaration validates a study when it is read, gives the one-line errors and prints "
            "`cnnbench list KIND NAME`. Regenerate with `python -m cnnbench.cli.reference > docs/options.md` "
            "(tests/test_reference.py fails while this page and the code disagree).", ""]
    return "\n".join(head + [markdown(kind) for kind in KINDS] + [augmentation_markdown()]).rstrip() + "\n"


if __name__ == "__main__":
    print(document(), end="")
