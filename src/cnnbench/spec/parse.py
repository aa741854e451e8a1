"""Reading a study: a file or a built-in study by name (`load`), TOML text (`parse_text`) or a dict
(`parse`), validated where each value is written, expanded into its runs.

Every value is validated where it is written, so an error names its place in the file
(`grid.loss[1]: unknown loss ...`). A run's config has every default made explicit (the registries'
`resolve`), and its key is the SHA-256 of that config's canonical JSON: the same run in another study
file, or written another way, gets the same key.
"""

from __future__ import annotations

import os
import tomllib
from importlib import resources
from pathlib import Path
from typing import Any, NoReturn

from pydantic import ValidationError

from .. import metrics
from ..errors import UserError, did_you_mean
from . import checks
from .grid import Run, StudySpec, Written, axes_display, combinations, run_key, varying_keys, with_learning_rate
from .messages import unknown_key
from .resolve import Resolver
from .schema import META_KEYS, RUN_KEYS, TOP_KEYS, StudyMeta, check_value, raise_pydantic


def builtin_studies() -> list[str]:
    return sorted(p.name[:-5] for p in resources.files("cnnbench.studies").iterdir() if p.name.endswith(".toml"))


def load(path_or_name: str | os.PathLike | None = None) -> StudySpec:
    """Load a study file, or a built-in study by name (`None`: the default study)."""
    if path_or_name is None:
        path_or_name = "default"
    path = Path(path_or_name)
    if path.is_file():
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            raise UserError(f"cannot read study file {path}: {e}") from None
        return parse_text(text, source=str(path))
    name = str(path_or_name)
    if name.endswith(".toml") or "/" in name:
        raise UserError(f"study file {name} does not exist; give a path to a .toml file "
                        f"or a built-in study ({', '.join(builtin_studies())})")
    if name not in builtin_studies():
        hint = did_you_mean(name, builtin_studies())
        raise UserError(f"no study file or built-in study named {name!r}; {hint}"
                        f"built-in studies: {', '.join(builtin_studies())}")
    text = resources.files("cnnbench.studies").joinpath(name + ".toml").read_text(encoding="utf-8")
    return parse_text(text, source=f"<built-in study {name}>")


def parse_text(text: str, source: str = "<study>") -> StudySpec:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise UserError(f"{source}: invalid TOML: {e}; fix the syntax and retry") from None
    study = parse(data, source)
    study.text = text
    return study


def parse(data: dict[str, Any], source: str = "<study>") -> StudySpec:
    """The study `data` (a TOML document's dict) declares: its settings, its runs and its metrics."""
    def fail(path: str, msg: str) -> NoReturn:
        raise UserError(f"{source}: {path}: {msg}")

    for key in data:
        if key not in TOP_KEYS:
            fail(key, unknown_key(key, TOP_KEYS, "a study"))
    try:
        meta = StudyMeta.model_validate({k: data[k] for k in META_KEYS if k in data})
    except ValidationError as e:
        raise_pydantic(e, source, "")
    checks.check_meta(meta, fail)
    defaults = {key: (check_value(key, data[key], source, key), key) for key in RUN_KEYS if key in data}
    combos = combinations(defaults, _grid_axes(data, source, fail), _explicit_runs(data, source, fail))
    runs = _runs(meta, combos, source, fail)
    configs = [r.config for r in runs]
    catalog = metrics.Catalog.of_configs(configs)
    checks.check_ranking_metric(meta, configs, catalog, fail)
    return StudySpec(meta, runs, source, text="", metrics=catalog)


def _grid_axes(data: dict[str, Any], source: str, fail: checks.Fail) -> list[list[tuple[str, Any, str]]]:
    """`[grid]`: per key, its values as validated, each with its place in the file."""
    grid = data.get("grid", {})
    if not isinstance(grid, dict):
        fail("grid", "must be a table of key = [values]")
    axes = []
    for key, values in grid.items():
        if key not in RUN_KEYS:
            fail(f"grid.{key}", unknown_key(key, RUN_KEYS, "a run"))
        if not isinstance(values, list) or not values:
            fail(f"grid.{key}", "must be a non-empty list of values")
        axes.append([(key, check_value(key, v, source, f"grid.{key}[{i}]"), f"grid.{key}[{i}]")
                     for i, v in enumerate(values)])
    return axes


def _explicit_runs(data: dict[str, Any], source: str, fail: checks.Fail) -> list[Written]:
    """`[[runs]]`: each entry's values as validated (one empty run when there are none)."""
    explicit = data.get("runs", [{}])
    if not isinstance(explicit, list) or not all(isinstance(r, dict) for r in explicit):
        fail("runs", "must be an array of tables ([[runs]])")
    out = []
    for i, entry in enumerate(explicit or [{}]):
        checked = {}
        for key, value in entry.items():
            if key not in RUN_KEYS:
                fail(f"runs[{i}].{key}", unknown_key(key, RUN_KEYS, "a run"))
            checked[key] = (check_value(key, value, source, f"runs[{i}].{key}"), f"runs[{i}].{key}")
        out.append(checked)
    return out


def _runs(meta: StudyMeta, combos: list[Written], source: str, fail: checks.Fail) -> list[Run]:
    """Every combination resolved and checked, then one run per seed (with [tuning]: per learning rate
    and search seed); a run written twice is one run."""
    resolver = Resolver(source)
    varying = varying_keys(combos)
    runs, seen = [], set()
    tuning = meta.tuning
    for written in combos:
        config = _checked_config(resolver.config(written), written, meta, fail)
        axes = axes_display(written, varying)
        label = " · ".join(f"{k}={v}" for k, v in axes.items()) or meta.name
        variants = [(config, meta.seeds, "final")] if tuning is None else [
            (with_learning_rate(config, lr), tuning.search_seeds(meta.seeds), "tuning") for lr in tuning.grid()]
        for cfg_base, seeds, role in variants:
            for seed in seeds:
                cfg = {**cfg_base, "seed": seed}
                key = run_key(cfg)
                if key not in seen:
                    seen.add(key)
                    runs.append(Run(key, label, axes, cfg, role))
    return runs


def _checked_config(config: dict[str, Any], written: Written, meta: StudyMeta, fail: checks.Fail) -> dict[str, Any]:
    """The rules across a run's keys; the config with its metrics in canonical form."""
    if meta.tuning is not None and config["validation_split"] <= 0:
        fail("tuning", "the learning-rate search picks by validation metric: set validation_split > 0")
    checks.check_optimizer_complete(config["optimizer"], written.get("optimizer", (None, "(default optimizer)"))[1],
                                    meta.tuning is not None, fail)
    checks.check_outputs(config, fail)
    config = checks.metrics_per_output(config, fail)
    checks.check_early_stopping(config, fail)
    return config
