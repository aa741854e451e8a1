"""Rules across the keys of one resolved run (and across the study): each a declared check that names
the place in the file and the fix. `fail(path, message)` raises the study's one-line `UserError`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NoReturn

from .. import metrics
from ..errors import UserError, did_you_mean
from .families import family
from .schema import StudyMeta

Fail = Callable[[str, str], NoReturn]


def check_outputs(config: dict[str, Any], fail: Fail) -> None:
    """The keys of several outputs agree: loss and loss_weights name the outputs of targets."""
    targets, loss = config.get("targets"), config["loss"]
    per_output = isinstance(loss, dict) and "name" not in loss
    if targets is None:
        if per_output:
            example = ", ".join(f'{n} = "label"' for n in loss)
            fail("loss", f"names the outputs {sorted(loss)}, but the run has no targets; add targets = "
                 f"{{ {example} }} (each output's labels) or give one loss")
        if config.get("loss_weights"):
            fail("loss_weights", "weighs the losses of several outputs, but the run has no targets; add targets "
                 "= { ... } or drop loss_weights")
        return
    names = sorted(targets)
    if per_output and sorted(loss) != names:
        fail("loss", f"names the outputs {sorted(loss)}, but targets has {names}; give one loss per output of "
             "targets (or one loss for all)")
    for n in config.get("loss_weights") or {}:
        if n not in targets:
            fail("loss_weights", f"names output {n!r}, which targets does not have; {did_you_mean(n, names)}"
                 f"outputs: {', '.join(names)}")
    if config.get("class_weight") is not None:
        fail("class_weight", "applies to one output; with targets use sample_weight (one weight per image)")


def metrics_per_output(config: dict[str, Any], fail: Fail) -> dict[str, Any]:
    """A run's `metrics` in canonical form: with targets `{output: [specs]}` (a list given applies to every
    output, Keras' `metrics.per_output`; outputs with none left out), so a list and the table it means are
    one run; without targets the list as given, and a table refused."""
    given, targets = config.get("metrics"), config.get("targets")
    if given is None:
        return config
    if targets is None:
        if isinstance(given, dict):
            fail("metrics", f"names the outputs {sorted(given)}, but the run has no targets; give a list "
                 "(metrics = [\"macro_f1\"]) or add targets = { ... }")
        return config
    try:
        per = metrics.per_output(given, list(targets))
    except UserError as e:
        fail("metrics", str(e))
    rest = {k: v for k, v in config.items() if k != "metrics"}
    return {**rest, "metrics": per} if per else rest


def check_early_stopping(config: dict[str, Any], fail: Fail) -> None:
    """early_stopping's monitor is a value this run logs every epoch (as Keras names it): loss and
    accuracy, each output's `<output>_loss` / `<output>_accuracy`, each custom metric; `val_` each,
    which needs a validation split."""
    es = config["early_stopping"]
    if not es:
        return
    monitor = es["monitor"]
    logged = [m for m in metrics.MONITORS if not config.get("targets") or "accuracy" not in m]  # outputs: per output
    names = [f"{o}_{score}" for o in config.get("targets") or () for score in ("loss", "accuracy")]
    names += metrics.log_names(config.get("metrics"))
    logged += [f"{prefix}{n}" for prefix in ("val_", "") for n in names]
    if monitor not in logged:
        fail("early_stopping.monitor", f"{monitor!r} is not logged by this run; {did_you_mean(monitor, logged)}"
             f"use one of {', '.join(logged)}")
    if monitor.startswith("val_") and config["validation_split"] <= 0:
        fail("early_stopping.monitor", f"monitors {monitor!r} but validation_split is 0; "
             "set validation_split > 0 or monitor 'loss'")


def check_optimizer_complete(optimizer: dict[str, Any], path: str, tuned: bool, fail: Fail) -> None:
    """A hyperparameter the optimizer's flavour requires (TF 1.x's learning_rate) must be given, or
    found by the [tuning] search; refused when the study loads, not when the run starts."""
    optim = family("optim")
    missing = [k for k in optim.missing_required(optimizer) if not (tuned and k == "learning_rate")]
    if missing:
        try:
            optim.check_required(optimizer["name"], {**optimizer, **dict.fromkeys(missing)})
        except UserError as e:
            fix = " or add a [tuning] section to search it" if missing == ["learning_rate"] else ""
            fail(path, f"{e}{fix}")


def check_meta(meta: StudyMeta, fail: Fail) -> None:
    """[tuning] and [racing] agree with the study's seeds."""
    if meta.tuning is not None and not meta.tuning.reuse:
        shared = sorted(set(meta.tuning.search_seeds(meta.seeds)) & set(meta.seeds))
        if shared:
            fail("tuning.seeds", f"seeds {shared} are also study seeds; with reuse = false the search seeds must "
                 f"differ from the study's seeds {meta.seeds} (e.g. seeds = [{max(meta.seeds) + 1}]), "
                 "or set reuse = true")
    if meta.racing is not None and len(meta.seeds) < meta.racing.first_test:
        fail("racing.first_test", f"the race tests after {meta.racing.first_test} seeds but the study lists "
             f"{len(meta.seeds)}; list at least {meta.racing.first_test} seeds (e.g. seeds = "
             f"{list(range(max(meta.racing.first_test, 10)))}) or lower first_test")


def check_ranking_metric(meta: StudyMeta, configs: list[dict[str, Any]], catalog: metrics.Catalog,
                         fail: Fail) -> None:
    """`[analysis] metric` is recorded by this study's runs: a built-in one (with several outputs, one
    output's or the weighted loss), or `test_NAME` / `val_NAME` of a NAME in some run's metrics = [...]
    or an output's score; `catalog` is this study's (a metric another study declared is not known)."""
    outputs = list(dict.fromkeys(o for c in configs for o in c.get("targets") or ()))  # as written
    name = meta.analysis.metric
    if outputs and name in metrics.METRICS and "loss" not in name:
        fail("analysis.metric", f"{name!r} is not recorded for a run with several outputs; rank on one output, "
             f"e.g. metric = \"test_{outputs[0]}_accuracy\", or on test_loss (the weighted sum)")
    if outputs and meta.tuning is not None and meta.tuning.metric == "val_acc":
        fail("tuning.metric", "val_acc is not recorded for a run with several outputs; set metric = \"val_loss\"")
    if name not in catalog:
        declared = sorted({n for c in configs for n in metrics.log_names(c.get("metrics"))})
        declared += [f"{o}_{s}" for o in outputs for s in metrics.OUTPUT_SCORES]
        hint = did_you_mean(name, catalog.names())
        fail("analysis.metric", f"unknown metric {name!r}; {hint}a custom metric is test_NAME or val_NAME of a "
             f"NAME in the runs' metrics = [...] ({', '.join(declared) or 'none declared'})")
