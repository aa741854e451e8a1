"""Training and evaluating one model the Keras way: fit, evaluate, callbacks, metrics, the forward pass.

One job a module: `inputs` (images, labels, device), `callbacks` (History, Callback, EarlyStopping, the
progress display), `outputs` (the loss over a model's outputs), `loop` (the Trainer: epochs, steps,
checkpoints), `evaluation` (evaluate, the validation pass, metrics), `fit` (inputs -> callbacks -> loop),
`flops` (parameters and FLOPs), `inference` (the fused forward pass of evaluation).
"""

import importlib

# Imported on first use, as the package's own names (cnnbench/__init__.py): importing one module of the
# engine (inference, flops) does not import the others.
_PUBLIC = {"fit": "fit", "evaluate": "evaluation", "keras_order": "evaluation", "History": "callbacks",

           "MultiOutputLoss": "outputs", "output_losses": "outputs", "check_micro_batching": "outputs",
           "forward_flops": "flops", "parameter_count": "flops", "resolve_device": "inputs", "to_images": "inputs",
           "to_labels": "inputs", "verbose_mode": "callbacks", "ModelRecord": "record", "record_of": "record",
           "recorded_loss": "record"}

__all__ = list(_PUBLIC)


def __getattr__(name):
    if name in _PUBLIC:
        return getattr(importlib.import_module(f".{_PUBLIC[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_PUBLIC))
