"""cnnbench: which loss, optimizer or architecture gives your image classifier the best accuracy?

Declare a study (datasets × models × losses × optimizers × seeds), run it resumably, and get ranked
tables with confidence intervals, learning curves, boxplots and a self-contained HTML report.

    import cnnbench
    history = cnnbench.fit("keras_mnist_cnn", x, y, loss="categorical_crossentropy", optimizer="adam",
                           epochs=5, batch_size=128, validation_split=0.1)
    cnnbench.evaluate(history.model, x_test, y_test)
"""

__version__ = "0.1.0"

from .errors import UserError  # noqa: E402
from .train import Callback, EarlyStopping, History, LambdaCallback, evaluate, fit  # noqa: E402

__all__ = ["fit", "evaluate", "History", "Callback", "EarlyStopping", "LambdaCallback", "UserError",
           "save", "load", "predict", "__version__"]


def __getattr__(name):  # save/load/predict live in saving.py; imported on first use
    if name in ("save", "load", "predict"):
        from . import saving
        return getattr(saving, name)
    raise AttributeError(f"module 'cnnbench' has no attribute {name!r}")
