"""What cnnbench knows about a model, in one record on the model (`model.cnnbench`): how `models.get` built it,
the config of the file `load` read it from, the loss and metrics `fit` trained it with, and whether the file's
code references may run; and what follows from it alone (the config, the classes, the built-in metrics, the
trust), so that `evaluate`, `predict` and `save` each ask the record instead of knowing what the others wrote.

    record_of(model).built        # {"model": spec, "input_shape": [C, H, W], "num_outputs": n} (models.get)
    record_of(model).config       # the loaded file's config, else the build info, else {}

It lives with the models (the lowest stage that sets it); the engine rebuilds a recorded loss from it
(`engine.record.recorded_loss`), the store's `save` / `load` write and read it.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any

from torch import nn

from .. import registry

ATTRIBUTE = "cnnbench"  # the one attribute cnnbench sets on a model (torch keeps it as a plain attribute)
TRUST_HINT = "pass trust_code=True (cnnbench evaluate --trust-code)"


@dataclass
class ModelRecord:
    """One model's record. Every field is optional: a model cnnbench did not build has none."""

    built: dict[str, Any] | None = None  # how models.get built it: model (the resolved spec), input_shape, num_outputs
    saved: dict[str, Any] | None = None  # the whole config of the model file `load` read it from
    loss: Any = None  # the losses.TrainingLoss / MultiOutputLoss `fit` trained with
    metrics: Any = None  # fit's `metrics=` (evaluate computes them too, as Keras keeps compiled metrics)
    untrusted_source: str | None = None  # load(trust_code=False): the file whose code references are refused

    @property
    def config(self) -> dict[str, Any]:
        """The loaded file's config, else the build info, else {}."""
        return self.saved or self.built or {}

    def trusting(self):
        """A context in which building what the record names refuses code references from an untrusted file
        (the same trust `load` was given)."""
        if self.untrusted_source is None:
            return contextlib.nullcontext()
        return registry.refusing_code(self.untrusted_source, TRUST_HINT)

    def num_classes(self, num_outputs) -> int:
        """One output's classes: the config's `num_classes`, else its `class_names`, else the output units
        (one unit is a binary sigmoid: 2 classes)."""
        config = self.config
        if config.get("num_classes"):
            return int(config["num_classes"])
        if config.get("class_names"):
            return len(config["class_names"])
        return 2 if num_outputs == 1 else int(num_outputs)

    def evaluation_metrics(self):
        """`evaluate`'s default metrics: those `fit` was given, or a loaded model's built-in ones (never code
        from a file)."""
        if self.metrics is not None:
            return self.metrics
        saved = (self.saved or {}).get("metrics")
        return builtin_metrics(saved) if saved else None


def builtin_metrics(given):
    """fit's `metrics` less those naming code ("package.module:function"): a model file names no code
    but its model's and loss's, so a loaded model evaluates its built-in metrics again without trust."""
    if isinstance(given, dict):
        kept = {o: [v for v in ([specs] if isinstance(specs, str) else specs if isinstance(specs, (list, tuple))
                                else []) if isinstance(v, str) and ":" not in v]
                for o, specs in given.items()}
        return {o: v for o, v in kept.items() if v} or None
    if isinstance(given, (list, tuple)):
        return [v for v in given if isinstance(v, str) and ":" not in v] or None
    return None


def record_of(model: nn.Module) -> ModelRecord:
    """The model's record (an empty one, not attached, for a model cnnbench knows nothing about)."""
    record = getattr(model, ATTRIBUTE, None)
    return record if isinstance(record, ModelRecord) else ModelRecord()


def attach(model: nn.Module, record: ModelRecord) -> ModelRecord:
    """Set `record` as the model's record (`model.cnnbench`) and return it."""
    setattr(model, ATTRIBUTE, record)  # a plain attribute (nn.Module keeps only tensors and modules apart)
    return record


def attached_record(model: nn.Module) -> ModelRecord:
    """The model's record, attaching an empty one first if it has none (for `fit` to fill in)."""
    record = getattr(model, ATTRIBUTE, None)
    return record if isinstance(record, ModelRecord) else attach(model, ModelRecord())
