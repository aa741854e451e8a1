"""The shape of a study file: its pydantic models (a run's keys, [tuning], [racing], [analysis], the
study's own settings), the key lists derived from them, and pydantic's errors as one line at their place.

Each model states its limits once (`Field(ge=...)`); values are coerced by the one rule of `coerce`.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal, NoReturn

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .. import metrics
from ..errors import UserError, did_you_mean
from .coerce import Bool, Float, Int, Seed, no_duplicate_seeds
from .messages import unknown_key

Named = str | dict[str, Any]


class EarlyStoppingSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    monitor: str = "val_loss"

    @field_validator("monitor")
    @classmethod
    def _known_monitor(cls, v: str) -> str:
        v = metrics.MONITOR_ALIASES.get(v, v)
        if v not in metrics.MONITORS and not re.fullmatch(r"[A-Za-z0-9_]+", v):
            hint = did_you_mean(v, metrics.MONITORS)
            raise ValueError(f"unknown metric {v!r}; {hint}use one of {', '.join(metrics.MONITORS)}")
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
        return no_duplicate_seeds(v)

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
RUN_KEYS = tuple(RunSpec.model_fields)
# Run keys left out of a run's config when not given (empty): configs that do not use them keep their keys.
OPTIONAL_KEYS = ("metrics", "callbacks", "targets", "loss_weights")
NAMED_KEYS = ("dataset", "model", "loss", "optimizer")


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
        # Every built-in metric is recorded for a run (the store's columns and FROM_HISTORY: tests pin it);
        # a custom metric is checked against this study's runs by `parse` (the study's metric catalog).
        try:
            return metrics.check_name(v)
        except UserError as e:  # pydantic reports a ValueError at its place in the file
            raise ValueError(str(e)) from None

    @field_validator("cells")
    @classmethod
    def _run_keys(cls, v: list[str]) -> list[str]:
        for key in v:
            if key not in RUN_KEYS:
                raise ValueError(unknown_key(key, RUN_KEYS, "a run").replace("unknown key", "unknown cell key", 1))
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
        return no_duplicate_seeds(v)


META_KEYS = tuple(StudyMeta.model_fields)
TOP_KEYS = (*META_KEYS, *RUN_KEYS, "grid", "runs")
# The field names pydantic's error locations may name (the others are union-branch tags)
_FIELDS = (set(EarlyStoppingSpec.model_fields) | set(StudyMeta.model_fields) | set(TuningSpec.model_fields)
           | set(LogGrid.model_fields) | set(AnalysisSpec.model_fields) | set(RacingSpec.model_fields))


def check_value(key: str, value: Any, source: str, path: str) -> Any:
    """The value as validated: `label_noise = 0` becomes 0.0, so that it gets the same run key as 0.0."""
    try:
        checked = getattr(RunSpec.model_validate({key: value}), key)
    except ValidationError as e:
        raise_pydantic(e, source, path, skip=1)
    return checked.model_dump() if isinstance(checked, BaseModel) else checked


def raise_pydantic(e: ValidationError, source: str, path: str, skip: int = 0) -> NoReturn:
    """One line from pydantic's errors: the most specific one, at its place in the file."""
    err = max(e.errors(), key=lambda er: len(er["loc"]))
    # Keep list indices and field names; drop pydantic's union-branch tags such as 'literal[False]'.
    parts = [p for p in err["loc"][skip:] if isinstance(p, int) or p in _FIELDS]
    msg = err["msg"]
    if err["type"] == "value_error" and "error" in err.get("ctx", {}):  # our own message, without "Value error, "
        msg = str(err["ctx"]["error"])
    if err["type"] == "extra_forbidden":  # the last loc element is the unknown key itself
        parts.append(err["loc"][-1])
        msg = unknown_key(err["loc"][-1], tuple(EarlyStoppingSpec.model_fields), "early_stopping").replace(
            f"unknown key {err['loc'][-1]!r} for", "unknown key for", 1) if path == "early_stopping" else "unknown key"
    where = path
    for p in parts:
        where += f"[{p}]" if isinstance(p, int) else (f".{p}" if where else p)
    raise UserError(f"{source}: {where or 'study'}: {msg} (got {err.get('input')!r})") from None
