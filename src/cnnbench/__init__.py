"""cnnbench: which loss, optimizer or architecture gives your image classifier the best accuracy?

Declare a study (datasets × models × losses × optimizers × seeds), run it resumably, and get ranked
tables with confidence intervals, learning curves, boxplots and a self-contained HTML report.

    import cnnbench
    history = cnnbench.fit("keras_mnist_cnn", x, y, loss="categorical_crossentropy", optimizer="adam",
                           epochs=5, batch_size=128, validation_split=0.1)
    cnnbench.evaluate(history.model, x_test, y_test)

    study = cnnbench.Study.from_toml("study.toml")   # or a built-in study's name, or Study.from_dict({...})
    study.run()                                      # resumable; then study.results(), study.report()
"""

import importlib
from importlib import metadata as _metadata

try:  # the one source is pyproject.toml's version, through the installed distribution's metadata
    __version__ = _metadata.version("cnnbench")
except _metadata.PackageNotFoundError:  # imported from a source tree that was never installed
    __version__ = "0+unknown"

from .errors import UserError

# Everything else is imported on first use: `cnnbench --help` and `cnnbench list` need no torch.
_LAZY = {"fit": "engine.fit", "evaluate": "engine.evaluation", "History": "engine.callbacks",
         "Callback": "callbacks", "EarlyStopping": "callbacks", "LambdaCallback": "callbacks",
         "save": "store.model_files",
         "load": "store.model_files", "predict": "store.model_files", "Study": "api"}
# The pipeline's stages (spec → runs → engine → store → analysis → report), the families of the registry, and the API.
_SUBMODULES = ("spec", "runs", "engine", "store", "analysis", "report", "registry", "losses", "optim", "models",
               "data", "metrics", "api")

__all__ = ["fit", "evaluate", "History", "Callback", "EarlyStopping", "LambdaCallback", "UserError",
           "save", "load", "predict", "Study", "__version__"]


def __getattr__(name):
    if name in _LAZY:
        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    if name in _SUBMODULES:
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'cnnbench' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_LAZY) | set(_SUBMODULES))
