"""The engine's names where they were before the engine was split (`cnnbench.engine.train`): kept so that
code importing them from here goes on working. New code imports from `cnnbench.engine` (or the module
that defines the name: inputs, callbacks, outputs, evaluation, loop, fit, flops)."""

from __future__ import annotations

from .callbacks import (
    MONITOR_ALIASES,
    MONITORS,
    VERBOSE,
    Callback,
    EarlyStopping,
    History,
    LambdaCallback,
    ProgressDisplay,
    verbose_mode,
)
from .evaluation import Scores, evaluate, keras_order
from .fit import fit
from .flops import forward_flops, parameter_count
from .inputs import PRECISIONS, as_float01, resolve_device, to_images, to_labels
from .loop import Trainer
from .outputs import MultiOutputLoss, check_micro_batching, output_losses

_multi_losses = output_losses  # runs/runner.py's import of the old private name, until it imports output_losses

__all__ = ["fit", "evaluate", "parameter_count", "forward_flops", "History", "Callback", "EarlyStopping",
           "MultiOutputLoss", "LambdaCallback", "to_images", "to_labels", "MONITORS", "MONITOR_ALIASES", "VERBOSE",
           "PRECISIONS", "ProgressDisplay", "Scores", "Trainer", "as_float01", "check_micro_batching", "keras_order",
           "output_losses", "resolve_device", "verbose_mode"]
