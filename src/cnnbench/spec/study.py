"""Study spec (TOML) -> the list of fully resolved runs, each keyed by a hash of its config.

    name = "losses-mnist"
    seeds = [0, 1, 2]
    epochs = 10
    dataset = "mnist"                 # top-level run keys are defaults for every run
    [grid]                            # any run key may become an axis
    loss = ["categorical_crossentropy", { name = "categorical_focal_crossentropy", gamma = 3.0 }]
    [[runs]]                          # optional explicit runs, each crossed with the grid
    model = "keras_mnist_cnn"

Every value is validated where it is written, so an error names its place in the file
(`grid.loss[1]: unknown loss ...`). A run's config has every default made explicit (the registries'
`resolve`), and its key is the SHA-256 of that config's canonical JSON: the same run in another study
file, or written another way, gets the same key.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import numbers
import os
import re
import tomllib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, field_validator, model_validator

from ..errors import UserError, did_you_mean
from ..registry import split_spec

Named = str | dict[str, Any]


# --- the one coercion rule for a study's values (docs/CONTRACTS.md) ------------------------------
# A string is never a number or a bool; a whole float (3.0) is taken for an integer, any other float
# refused; 0 or 1 is taken for a bool (and so 0.0 or 1.0). An integer is taken for a float. What ran
# before keeps its value, so existing study files keep their run keys: pydantic's lax mode took more
# (strings, true for 1) and its strict mode less (10.0 for epochs); both are replaced by these checks.
def _kind(value: Any) -> str:
    return "a string" if isinstance(value, str) else "true/false" if isinstance(value, bool) else type(value).__name__


def _unquoted(value: Any, example: str) -> str:
    """The fix for a number written as a string: the same number without quotes."""
    try:
        return f"write {float(value):g} without quotes" if isinstance(value, str) else f"write a number, e.g. {example}"
    except ValueError:
        return f"write a number, e.g. {example}"


def _whole_number(value: Any) -> Any:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"must be a whole number, not {_kind(value)}; {_unquoted(value, '3')}")
    if isinstance(value, numbers.Integral):
        return int(value)
    if math.isfinite(value) and float(value).is_integer():
        return int(value)  # 3.0 is 3
    raise ValueError("must be a whole number; a float is taken only when whole (3.0), give an integer")


def _real_number(value: Any) -> Any:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"must be a number, not {_kind(value)}; {_unquoted(value, '0.1')}")
    return float(value)


def _true_false(value: Any) -> Any:
    if isinstance(value, bool):
        return value
    if isinstance(value, numbers.Real) and not isinstance(value, str) and value in (0, 1):
        return bool(value)  # 0 / 1 (a whole 0.0 / 1.0 too: it is the integer)
    raise ValueError(f"must be true or false, not {_kind(value) if not isinstance(value, numbers.Real) else value}"
                     "; write true or false without quotes")


Int = Annotated[int, BeforeValidator(_whole_number), Field(strict=True)]
Float = Annotated[float, BeforeValidator(_real_number), Field(strict=True)]
Bool = Annotated[bool, BeforeValidator(_true_false), Field(strict=True)]
Seed = Annotated[Int, Field(ge=0, lt=2**63)]


class EarlyStoppingSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    monitor: str = "val_loss"

    @field_validator("monitor")
    @classmethod
    def _known_monitor(cls, v: str) -> str:
        from ..engine.train import MONITOR_ALIASES, MONITORS

        v = MONITOR_ALIASES.get(v, v)
        if v not in MONITORS and not re.fullmatch(r"[A-Za-z0-9_]+", v):
            hint = did_you_mean(v, MONITORS)
            raise ValueError(f"unknown metric {v!r}; {hint}use one of {', '.join(MONITORS)}")
        return v  # another name (an output's or a custom metric's) is checked against the run's logs

    min_delta: Float = Field(0.0, ge=0)
    patience: Int = Field(0, ge=0)
    mode: Literal["auto", "min", "max"] = "auto"
    restore_best_weights: Bool = False
    start_from_epoch: Int = Field(0, ge=0)


class RunSpec(BaseModel):
    """The keys a run has; each may be a top-level default, a grid axis or a `[[runs]]` entry."""

    model_config = ConfigDict(extra="forbid")
    dataset: Named = "digits"
    model: Named = "digits_cnn"
    loss: Named = "categorical_crossentropy"
    optimizer: Named = "adam"
    epochs: Int = Field(10, ge=1)
    batch_size: Int = Field(32, ge=1)
    validation_split: Float = Field(0.1, ge=0.0, lt=1.0)
    validation_mode: Literal["keras", "stratified"] = "keras"
    early_stopping: EarlyStoppingSpec | Literal[False] | None = None
    augmentation: dict[str, Any] | Literal[False] | None = None
    class_weight: Literal["balanced"] | dict[str, Annotated[Float, Field(ge=0)]] | None = None
    label_noise: Float = Field(0.0, ge=0.0, lt=1.0)
    sample_weight: str | None = None  # a .npy of one weight per training image, in the dataset's order
    micro_batch_size: Int | None = Field(None, ge=1)
    precision: Literal["fp32", "bf16"] = "fp32"
    # Keys added later: in a run's config (and key) only when given, so older runs keep their keys.
    # Keras' metrics=[...]: built-in names or "package.module:function"; with targets also a table per output
    metrics: list[Any] | dict[str, Any] | None = None
    callbacks: list[dict[str, Any]] | None = None  # [{ name = "package.module:Class", option = ... }]
    # Several outputs (Keras' compile(loss={...}, loss_weights={...})): one labelled target per output,
    # from a label column of the dataset, e.g. { digit = "label", big = { from = "label", map = [...] } },
    # { fine = "label", coarse = "coarse_label" } (CIFAR-100; a .npz's y_train_NAME)
    targets: dict[str, str | dict[str, Any]] | None = None
    loss_weights: dict[str, Annotated[Float, Field(ge=0, allow_inf_nan=False)]] | None = None


class LogGrid(BaseModel):
    model_config = ConfigDict(extra="forbid")
    start: Float = Field(1e-5, gt=0, allow_inf_nan=False)
    stop: Float = Field(1e2, gt=0, allow_inf_nan=False)
    num: Int = Field(36, ge=1)


LearningRate = Annotated[Float, Field(gt=0, allow_inf_nan=False)]


class TuningSpec(BaseModel):
    """Learning-rate search per configuration (DeepOBS' protocol, Schmidt et al. 2021): every
    configuration is trained at each learning rate with the search seeds; the rate with the best
    final validation metric is then run with all the study's seeds."""

    model_config = ConfigDict(extra="forbid")
    learning_rates: Annotated[list[LearningRate], Field(min_length=1)] | LogGrid = Field(default_factory=LogGrid)
    seeds: list[Seed] | None = Field(None, min_length=1)
    metric: Literal["val_acc", "val_loss"] = "val_acc"
    # False: no search run is also a final run. A search run at its chosen rate is optimistically
    # biased (the rate was picked on its own validation result), so the final seeds must be fresh.
    reuse: Bool = True

    @field_validator("seeds")
    @classmethod
    def _seeds_once(cls, v):
        return _no_duplicate_seeds(v)

    def search_seeds(self, study_seeds: list[int]) -> list[int]:
        """The seeds of the search runs: as given; else the first study seed (reused as a final run),
        or with `reuse = false` the seed after the largest study seed."""
        if self.seeds is not None:
            return self.seeds
        return study_seeds[:1] if self.reuse else [max(study_seeds) + 1]

    def grid(self) -> list[float]:
        if isinstance(self.learning_rates, list):
            return sorted(set(self.learning_rates))
        g = self.learning_rates
        if g.num == 1:
            return [g.start]
        ratio = (g.stop / g.start) ** (1 / (g.num - 1))
        return [float(f"{g.start * ratio ** i:.6g}") for i in range(g.num)]  # 6 digits: clean keys


class RacingSpec(BaseModel):
    """Racing over seeds (F-Race, Birattari et al. 2002; irace, López-Ibáñez et al. 2016): seed after
    seed, every configuration still in the race is trained, and from `first_test` seeds on those
    significantly worse than the best are dropped; the survivors get every seed. No part of any run's
    config or key: removing the table completes the full grid, reusing every finished run.

        [racing]
        first_test = 3     # seeds every configuration gets before the first elimination
        alpha = 0.05       # family-wise level of each elimination step
        keep = 2           # stop racing once this many survive
        test = "t"         # "t": paired t-test vs the best, Holm; "friedman": Friedman + Conover post-hoc
    """

    model_config = ConfigDict(extra="forbid")
    first_test: Int = Field(3, ge=2)
    alpha: Float = Field(0.05, gt=0.0, lt=1.0)
    keep: Int = Field(2, ge=1)
    test: Literal["t", "friedman"] = "t"


RUN_DEFAULTS = RunSpec()


def _no_duplicate_seeds(seeds):
    if seeds is not None:
        twice = sorted({s for s in seeds if seeds.count(s) > 1})
        if twice:
            raise ValueError(f"seed {twice[0]} is listed {seeds.count(twice[0])} times; a seed is one run (the "
                             "same seed gives the same numbers): list each seed once")
    return seeds


class AnalysisSpec(BaseModel):
    """How `cnnbench report` ranks the study (no part of any run's config or key):

        [analysis]
        metric = "test_acc"        # ranking metric, a name of cnnbench.metrics.METRICS
        target_accuracy = 0.98     # epochs/seconds to first reach this validation accuracy
        alpha = 0.05               # significance level
        rope = 0.01                # region of practical equivalence, in metric units
        cells = ["dataset"]        # run keys whose values split the study into separately ranked cells
    """

    model_config = ConfigDict(extra="forbid")
    metric: str = "test_acc"
    target_accuracy: Float | None = Field(None, gt=0.0, le=1.0)
    alpha: Float = Field(0.05, gt=0.0, lt=1.0)
    rope: Float | None = Field(None, ge=0.0)
    # Comparing configurations across datasets mixes unlike scales, so each dataset is its own cell.
    cells: list[str] = Field(default_factory=lambda: ["dataset"])

    @field_validator("metric")
    @classmethod
    def _known_metric(cls, v: str) -> str:
        from .. import metrics
        from ..store.db import METRICS as STORED

        try:
            name = metrics.get(v).name
        except UserError as e:  # pydantic reports a ValueError at its place in the file
            import re

            if re.fullmatch(r"(test|val)_[A-Za-z_][A-Za-z0-9_]*", v):
                return v  # perhaps a custom metric: `parse` checks that the runs declare it
            raise ValueError(str(e)) from None
        rankable = (*STORED, *metrics.FROM_HISTORY)
        if name in metrics.CUSTOM:
            return name  # a custom metric declared earlier in this process: `parse` checks this study declares it
        if name not in rankable:  # e.g. train_nll: a run is not evaluated on its training set
            raise ValueError(f"metric {name!r} is not recorded for a run; choose one of: {', '.join(rankable)}")
        return name

    @field_validator("cells")
    @classmethod
    def _run_keys(cls, v: list[str]) -> list[str]:
        for key in v:
            if key not in RUN_KEYS:
                raise ValueError(_unknown_key(key, RUN_KEYS, "a run").replace("unknown key", "unknown cell key", 1))
        if len(set(v)) != len(v):
            raise ValueError("a key is listed twice; list each run key once")
        return v

    @model_validator(mode="after")
    def _target_for_time_metrics(self) -> AnalysisSpec:
        if self.metric in ("epochs_to_target", "seconds_to_target") and self.target_accuracy is None:
            raise ValueError(f"metric {self.metric!r} needs a target: set target_accuracy (e.g. 0.98)")
        return self


class StudyMeta(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")
    description: str = ""
    seeds: list[Seed] = Field(default_factory=lambda: [0], min_length=1)
    output_dir: str | None = None
    skip_missing_datasets: Bool = False
    save_models: Bool = False
    tuning: TuningSpec | None = None
    racing: RacingSpec | None = None
    analysis: AnalysisSpec = Field(default_factory=AnalysisSpec)

    @field_validator("seeds")
    @classmethod
    def _seeds_once(cls, v):
        return _no_duplicate_seeds(v)


RUN_KEYS = tuple(RunSpec.model_fields)
# Run keys left out of a run's config when not given (empty): configs that do not use them keep their keys.
OPTIONAL_KEYS = ("metrics", "callbacks", "targets", "loss_weights")
META_KEYS = tuple(StudyMeta.model_fields)
TOP_KEYS = (*META_KEYS, *RUN_KEYS, "grid", "runs")
NAMED_KEYS = ("dataset", "model", "loss", "optimizer")


@dataclass(frozen=True)
class Run:
    key: str
    label: str  # the configuration without the seed, e.g. "loss=mse · optimizer=adam"
    axes: dict[str, str]  # the study's varying keys -> this run's value, for marginal rankings
    config: dict[str, Any]  # fully resolved; what the key hashes
    role: str = "final"  # "final": ranked; "tuning": a learning-rate search run

    @property
    def seed(self) -> int:
        return self.config["seed"]


@dataclass
class StudySpec:
    """A parsed, validated study file: its settings and its resolved runs. (`cnnbench.Study`, in
    api.py, is the Python API that wraps one.)"""

    meta: StudyMeta
    runs: list[Run]  # with [tuning]: the search runs; the final runs follow from its results
    source: str
    text: str  # the spec file as written (kept in the study directory)

    @property
    def name(self) -> str:
        return self.meta.name

    def final_runs(self, chosen: dict[str, float]) -> list[Run]:
        """With [tuning]: each configuration at its chosen learning rate, with all the study's seeds."""
        out, seen = [], set()
        for run in self.runs:
            if run.label in chosen and run.label not in seen:
                seen.add(run.label)
                base = _with_learning_rate(run.config, chosen[run.label])
                for seed in self.meta.seeds:
                    cfg = {**base, "seed": seed}
                    out.append(Run(run_key(cfg), run.label, run.axes, cfg, "final"))
        return out


# --- loading ------------------------------------------------------------------------------------


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
    def fail(path: str, msg: str):
        raise UserError(f"{source}: {path}: {msg}")

    for key in data:
        if key not in TOP_KEYS:
            fail(key, _unknown_key(key, TOP_KEYS, "a study"))
    try:
        meta = StudyMeta.model_validate({k: data[k] for k in META_KEYS if k in data})
    except ValidationError as e:
        _raise_pydantic(e, source, "")
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
    defaults = {}
    for key in RUN_KEYS:
        if key in data:
            defaults[key] = (_check_value(key, data[key], source, key), key)

    grid = data.get("grid", {})
    if not isinstance(grid, dict):
        fail("grid", "must be a table of key = [values]")
    axes: list[list[tuple[str, Any, str]]] = []
    for key, values in grid.items():
        if key not in RUN_KEYS:
            fail(f"grid.{key}", _unknown_key(key, RUN_KEYS, "a run"))
        if not isinstance(values, list) or not values:
            fail(f"grid.{key}", "must be a non-empty list of values")
        axes.append([(key, _check_value(key, v, source, f"grid.{key}[{i}]"), f"grid.{key}[{i}]")
                     for i, v in enumerate(values)])

    explicit = data.get("runs", [{}])
    if not isinstance(explicit, list) or not all(isinstance(r, dict) for r in explicit):
        fail("runs", "must be an array of tables ([[runs]])")
    explicit_runs = []
    for i, entry in enumerate(explicit or [{}]):
        checked = {}
        for key, value in entry.items():
            if key not in RUN_KEYS:
                fail(f"runs[{i}].{key}", _unknown_key(key, RUN_KEYS, "a run"))
            checked[key] = (_check_value(key, value, source, f"runs[{i}].{key}"), f"runs[{i}].{key}")
        explicit_runs.append(checked)

    # Expand: explicit runs × grid × seeds, later sources overriding earlier ones.
    combos = []
    for entry in explicit_runs:
        for choice in itertools.product(*axes):
            written = dict(defaults)
            written.update(entry)
            written.update({k: (v, path) for k, v, path in choice})
            combos.append(written)

    resolver = _Resolver(source)
    varying = [k for k in RUN_KEYS if len({canonical(c[k][0]) if k in c else None for c in combos}) > 1]
    runs, seen = [], set()
    tuning = meta.tuning
    for written in combos:
        config = resolver.config(written)
        axes_display = {k: _display(written[k][0]) if k in written else _display(getattr(RUN_DEFAULTS, k))
                        for k in varying}
        label = " · ".join(f"{k}={v}" for k, v in axes_display.items()) or meta.name
        if tuning is not None and config["validation_split"] <= 0:
            fail("tuning", "the learning-rate search picks by validation metric: set validation_split > 0")
        _check_optimizer_complete(config["optimizer"], written.get("optimizer", (None, "(default optimizer)"))[1],
                                  tuning is not None, fail)
        _check_outputs(config, fail)
        config = _metrics_per_output(config, fail)
        es = config["early_stopping"]
        if es:
            _check_monitor(es["monitor"], config, fail)
        if es and es["monitor"].startswith("val_") and config["validation_split"] <= 0:
            fail("early_stopping.monitor", f"monitors {es['monitor']!r} but validation_split is 0; "
                 "set validation_split > 0 or monitor 'loss'")
        variants = [(config, meta.seeds, "final")] if tuning is None else [
            (_with_learning_rate(config, lr), tuning.search_seeds(meta.seeds), "tuning") for lr in tuning.grid()]
        for cfg_base, seeds, role in variants:
            for seed in seeds:
                cfg = {**cfg_base, "seed": seed}
                key = run_key(cfg)
                if key not in seen:
                    seen.add(key)
                    runs.append(Run(key, label, axes_display, cfg, role))
    _check_custom_metric(meta, runs, fail)
    return StudySpec(meta, runs, source, text="")


# --- several outputs ----------------------------------------------------------------------------

# evaluate()'s per-output scores: a run with targets records test_<output>_<score> and val_<output>_<score>
OUTPUT_SCORES = ("accuracy", "loss", "top5_accuracy", "nll", "ece", "macro_f1")


def resolve_targets(value: Any) -> dict[str, dict[str, Any]]:
    """`targets = { digit = "label", big = { from = "label", map = [0, 0, 1, ...] } }` in canonical form
    (`{"digit": {"from": "label"}, "big": {"from": "label", "map": [...]}}`): each output's labels are a
    label column of the dataset — its class label `"label"`, or another column it has (CIFAR-100's
    `coarse_label`, a .npz's `y_train_NAME`: `data/columns.py`; checked when the study is planned) —,
    as they are or looked up in `map` (one entry per class of that column; no code runs)."""
    import re

    if not isinstance(value, dict) or not value:
        raise UserError('targets must be a table { output = "label" | { from = "label", map = [...] } }, '
                        f"got {value!r}")
    out = {}
    for name, spec in value.items():
        if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_]*", name) or name == "name":
            raise UserError(f"output name {name!r} must be an identifier (letters, digits, _) other than 'name'; "
                            "rename it")
        if isinstance(spec, str):
            spec = {"from": spec}
        column = spec.get("from") if isinstance(spec, dict) else None
        if (not isinstance(column, str) or not re.fullmatch(r"[A-Za-z][A-Za-z0-9_]*", column)
                or set(spec) - {"from", "map"}):
            raise UserError(f"output {name!r}: give a label column (\"label\", or another the dataset has, e.g. "
                            f"\"coarse_label\") or {{ from = \"label\", map = [class -> label, ...] }}, got {spec!r}")
        mapping = spec.get("map")
        if mapping is not None and (not isinstance(mapping, list) or not mapping or not all(
                isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in mapping)):
            raise UserError(f"output {name!r}: map must be a non-empty list of labels >= 0, one per class of the "
                            f"dataset (e.g. [0, 0, 1, 1]), got {mapping!r}")
        out[name] = {"from": column, **({"map": list(mapping)} if mapping is not None else {})}
    return out


def target_labels(targets: dict[str, dict[str, Any]], y, num_classes: int, columns=None,
                  dataset: str = "the dataset") -> tuple[dict[str, Any], dict[str, int]]:
    """The per-output labels of class labels `y` (a tensor) and each output's number of classes.
    `columns`: the dataset's other label columns for the same images, `{name: (labels, classes)}`."""
    import torch

    from ..data.columns import available

    columns = columns or {}
    labels, classes = {}, {}
    for name, spec in targets.items():
        column = spec.get("from", "label")
        if column == "label":
            source, k = y, num_classes
        elif column in columns:
            source, k = columns[column]
        else:
            hint = did_you_mean(column, ["label", *columns])
            raise UserError(f"targets.{name}: {dataset} has no label column {column!r}; {hint}its columns: "
                            f"{available(columns)} (a .npz adds one with arrays y_train_NAME and y_test_NAME)")
        mapping = spec.get("map")
        if mapping is None:
            labels[name], classes[name] = source, k
            continue
        if len(mapping) != k:
            what = "the dataset has" if column == "label" else f"its column {column!r} has"
            raise UserError(f"targets.{name}.map has {len(mapping)} entries but {what} {k} "
                            f"classes; give one label per class (map[i] = the label of class i)")
        table = torch.tensor(mapping, dtype=torch.long)
        labels[name] = table[source.long()]
        classes[name] = max(max(mapping) + 1, 2)
    return labels, classes


def _check_outputs(config: dict[str, Any], fail) -> None:
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


def _metrics_per_output(config: dict[str, Any], fail) -> dict[str, Any]:
    """A run's `metrics` in canonical form: with targets `{output: [specs]}` (a list given applies to every
    output, Keras' `metrics.per_output`; outputs with none left out), so a list and the table it means are
    one run; without targets the list as given, and a table refused."""
    from .. import metrics

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


def _check_monitor(monitor: str, config: dict[str, Any], fail) -> None:
    """early_stopping's monitor is a value this run logs every epoch (as Keras names it): loss and
    accuracy, each output's `<output>_loss` / `<output>_accuracy`, each custom metric; `val_` each."""
    from .. import metrics
    from ..engine.train import MONITORS

    logged = [m for m in MONITORS if not config.get("targets") or "accuracy" not in m]  # with outputs: per output
    names = [f"{o}_{score}" for o in config.get("targets") or () for score in ("loss", "accuracy")]
    names += metrics.log_names(config.get("metrics"))
    logged += [f"{prefix}{n}" for prefix in ("val_", "") for n in names]
    if monitor not in logged:
        fail("early_stopping.monitor", f"{monitor!r} is not logged by this run; {did_you_mean(monitor, logged)}"
             f"use one of {', '.join(logged)}")


def _check_custom_metric(meta: StudyMeta, runs: list[Run], fail) -> None:
    """`[analysis] metric = "val_NAME"` for a custom metric: NAME must be in some run's metrics = [...]."""
    from .. import metrics

    declared = sorted({n for r in runs for n in metrics.log_names(r.config.get("metrics"))})
    outputs = list(dict.fromkeys(o for r in runs for o in r.config.get("targets") or ()))  # as written
    metrics.declare_outputs(outputs, OUTPUT_SCORES)
    for r in runs:  # after the outputs' own scores: a metric of an output is labelled as the output's
        metrics.declare_config(r.config.get("metrics"))
    declared += [f"{o}_{s}" for o in outputs for s in OUTPUT_SCORES]
    name = meta.analysis.metric
    if outputs and name in metrics.METRICS and "loss" not in name:
        fail("analysis.metric", f"{name!r} is not recorded for a run with several outputs; rank on one output, "
             f"e.g. metric = \"test_{outputs[0]}_accuracy\", or on test_loss (the weighted sum)")
    if outputs and meta.tuning is not None and meta.tuning.metric == "val_acc":
        fail("tuning.metric", "val_acc is not recorded for a run with several outputs; set metric = \"val_loss\"")
    if name in metrics.METRICS:
        return
    base = name.split("_", 1)[1]
    if base not in declared:
        known = [*metrics.METRICS, *(f"{s}_{d}" for d in declared for s in ("test", "val"))]
        hint = did_you_mean(name, known)
        fail("analysis.metric", f"unknown metric {name!r}; {hint}a custom metric is test_NAME or val_NAME of a "
             f"NAME in the runs' metrics = [...] ({', '.join(declared) or 'none declared'})")

def _check_optimizer_complete(optimizer: dict[str, Any], path: str, tuned: bool, fail) -> None:
    """A hyperparameter the optimizer's flavour requires (TF 1.x's learning_rate) must be given, or
    found by the [tuning] search; refused when the study loads, not when the run starts."""
    from .. import optim

    missing = [k for k in optim.missing_required(optimizer) if not (tuned and k == "learning_rate")]
    if missing:
        try:
            optim._check_required(optimizer["name"], {**optimizer, **dict.fromkeys(missing)})
        except UserError as e:
            fix = " or add a [tuning] section to search it" if missing == ["learning_rate"] else ""
            fail(path, f"{e}{fix}")


def _with_learning_rate(config: dict[str, Any], lr: float) -> dict[str, Any]:
    from .. import optim

    spec = {k: v for k, v in config["optimizer"].items() if k not in ("lr", "learning_rate")}
    return {**config, "optimizer": optim.resolve({**spec, "learning_rate": lr})}


def run_key(config: dict[str, Any]) -> str:
    return hashlib.sha256(canonical(config).encode()).hexdigest()[:16]


# --- helpers ------------------------------------------------------------------------------------


def canonical(value: Any) -> str:
    """Sorted, compact JSON: equal configs give equal strings (and keys)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


def _unknown_key(key: str, allowed, where: str) -> str:
    if "optimizer" in allowed and _is_optimizer_option(key):
        lr = key in ("learning_rate", "lr")
        example = "1e-3" if lr else "..."
        return (f"{key!r} is an option of the optimizer, not a key of its own; write optimizer = {{ name = \"adam\", "
                f"{key} = {example} }}, or compare values with [grid] optimizer = [{{ name = \"adam\", {key} = "
                f"{'1e-3' if lr else '...'} }}, {{ name = \"adam\", {key} = {'1e-4' if lr else '...'} }}]"
                + (", or search learning rates with a [tuning] section (learning_rates = [...])" if lr else ""))
    hint = did_you_mean(key, allowed)
    return f"unknown key {key!r} for {where}; {hint}allowed: {', '.join(allowed)}"


def _is_optimizer_option(key: str) -> bool:
    """A hyperparameter some optimizer takes (a user who wrote `learning_rate` as a run key)."""
    from .. import optim
    from ..optim.catalog import SPECS

    names = {"learning_rate", "lr", "schedule", "betas", *optim.COMMON_DEFAULTS}
    for spec in SPECS.values():
        for flavor in spec.flavors.values():
            names.update(flavor.defaults)
    return key in names


def _check_value(key: str, value: Any, source: str, path: str) -> Any:
    """The value as validated: `label_noise = 0` becomes 0.0, so that it gets the same run key as 0.0."""
    try:
        checked = getattr(RunSpec.model_validate({key: value}), key)
    except ValidationError as e:
        _raise_pydantic(e, source, path, skip=1)
    return checked.model_dump() if isinstance(checked, BaseModel) else checked


def _raise_pydantic(e: ValidationError, source: str, path: str, skip: int = 0):
    """One line from pydantic's errors: the most specific one, at its place in the file."""
    err = max(e.errors(), key=lambda er: len(er["loc"]))
    # Keep list indices and field names; drop pydantic's union-branch tags such as 'literal[False]'.
    fields = (set(EarlyStoppingSpec.model_fields) | set(StudyMeta.model_fields) | set(TuningSpec.model_fields)
              | set(LogGrid.model_fields) | set(AnalysisSpec.model_fields) | set(RacingSpec.model_fields))
    parts = [p for p in err["loc"][skip:] if isinstance(p, int) or p in fields]
    msg = err["msg"]
    if err["type"] == "value_error" and "error" in err.get("ctx", {}):  # our own message, without "Value error, "
        msg = str(err["ctx"]["error"])
    if err["type"] == "extra_forbidden":  # the last loc element is the unknown key itself
        parts.append(err["loc"][-1])
        msg = _unknown_key(err["loc"][-1], tuple(EarlyStoppingSpec.model_fields), "early_stopping").replace(
            f"unknown key {err['loc'][-1]!r} for", "unknown key for", 1) if path == "early_stopping" else "unknown key"
    where = path
    for p in parts:
        where += f"[{p}]" if isinstance(p, int) else (f".{p}" if where else p)
    raise UserError(f"{source}: {where or 'study'}: {msg} (got {err.get('input')!r})") from None


def _display(value: Any) -> str:
    """How a written value shows in labels: `adam`, `sgd(learning_rate=0.01)`, `epochs=5`."""
    if isinstance(value, dict) and "name" in value:
        opts = ", ".join(f"{k}={v}" for k, v in value.items() if k != "name")
        return f"{value['name']}({opts})" if opts else str(value["name"])
    if isinstance(value, dict):
        return ", ".join(f"{k}={v}" for k, v in value.items()) or "{}"
    return str(value)


class _Resolver:
    """Resolves each written value once through its registry, naming its path on error."""

    def __init__(self, source: str):
        self.source = source
        self.cache: dict[tuple[str, str], Any] = {}

    def resolve(self, key: str, value: Any, path: str) -> Any:
        ck = (key, canonical(value))
        if ck not in self.cache:
            try:
                self.cache[ck] = self._resolve(key, value)
            except UserError as e:
                raise UserError(f"{self.source}: {path}: {e}") from None
        return self.cache[ck]

    @staticmethod
    def _resolve(key: str, value: Any) -> Any:
        if key == "loss" and isinstance(value, dict) and "name" not in value:
            from .. import losses  # several outputs: one loss spec per output name

            if not value:
                raise UserError("loss is an empty table; give a loss name, or one loss per output of targets")
            return {out: losses.resolve({"name": n, **o}) for out, (n, o) in
                    ((out, split_spec(v)) for out, v in value.items())}
        if key == "targets":
            return resolve_targets(value)
        if key in NAMED_KEYS:
            name, options = split_spec(value)
            spec = {"name": name, **options}
            if key == "dataset":
                from .. import data
                return data.resolve(spec)
            if key == "model":
                from .. import models
                return models.resolve(spec)
            if key == "loss":
                from .. import losses
                return losses.resolve(spec)
            from .. import optim
            return optim.resolve(spec)
        if key == "augmentation":
            if not value:
                return None
            from ..data import augment
            return augment.resolve(value)
        if key == "early_stopping":
            return EarlyStoppingSpec.model_validate(value).model_dump() if value else None
        if key == "metrics":
            from .. import metrics

            if isinstance(value, dict):  # per output; checked against targets by _metrics_per_output
                per = {out: [v] if isinstance(v, str) else v for out, v in value.items()}
                for out, specs in per.items():
                    if not isinstance(specs, list) or not all(isinstance(v, str) for v in specs):
                        raise UserError(f"metrics of output {out!r} must be a metric name or a list of names, "
                                        f"got {specs!r}; e.g. {{ {out} = [\"macro_f1\"] }}")
                    metrics.resolve_metrics(specs)
                return {out: [v for v in specs if v not in metrics.ALWAYS_RECORDED] for out, specs in per.items()}
            if isinstance(value, list) and not all(isinstance(v, str) for v in value):
                raise UserError(f"{value!r} is not a list of names; give one (for every output), or with targets a "
                                "table per output, metrics = { out = [\"macro_f1\"] }")
            metrics.resolve_metrics(value)  # every name known, every reference importable and callable
            return [v for v in value if v not in metrics.ALWAYS_RECORDED]  # accuracy is always recorded
        if key == "callbacks":
            return [resolve_callback(spec) for spec in value]
        return value

    def config(self, written: dict[str, tuple[Any, str]]) -> dict[str, Any]:
        cfg = {}
        for key in RUN_KEYS:
            value, path = written.get(key, (getattr(RUN_DEFAULTS, key), f"(default {key})"))
            if isinstance(value, BaseModel):
                value = value.model_dump()
            if key in OPTIONAL_KEYS and not value:
                continue
            cfg[key] = self.resolve(key, value, path)
            if key in OPTIONAL_KEYS and not cfg[key]:  # e.g. metrics = ["accuracy"]: recorded anyway
                del cfg[key]
        return cfg


def resolve_callback(spec: dict[str, Any]) -> dict[str, Any]:
    """`{"name": "package.module:Class", **options}` checked: the class imports, is a
    `cnnbench.Callback`, and takes the options (it is built once here and discarded)."""

    if not isinstance(spec, dict) or not isinstance(spec.get("name"), str):
        raise UserError(f"a callback is {{ name = \"package.module:Class\", options }}, got {spec!r}")
    name = spec["name"]
    options = {k: v for k, v in spec.items() if k != "name"}
    cls = import_callback(name)
    try:
        cls(**options)
    except TypeError as e:
        raise UserError(f"callback {name!r} does not take these options ({e}); check its __init__") from None
    return {"name": name, **options}


def import_callback(ref: str):
    """The `cnnbench.Callback` subclass `ref` ("package.module:Class") names."""
    from ..engine.train import Callback
    from ..registry import import_reference

    obj = import_reference(ref, "callback", "package.module:Class")
    if not (isinstance(obj, type) and issubclass(obj, Callback)):
        raise UserError(f"callback {ref!r} is not a subclass of cnnbench.Callback; derive it from "
                        "cnnbench.engine.train.Callback (on_epoch_end, state_dict, load_state_dict)")
    return obj


def build_callbacks(specs) -> list:
    """The callbacks of a run's config, instantiated with their options."""
    out = []
    for spec in specs or ():
        options = {k: v for k, v in spec.items() if k != "name"}
        out.append(import_callback(spec["name"])(**options))
    return out
