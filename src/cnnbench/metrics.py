"""The metrics a run is scored on, and the one rule for which way each is better.

Every finished run is evaluated with the same metrics whatever loss it was trained with, so runs
trained with different losses can be compared: the loss a run reports is its *own* training loss
(`test_loss`), which only compares runs that share a loss; `test_nll` (the negative log-likelihood of
the predicted class probabilities) compares them all.

A metric's name in the store is `{split}_{base}` (`test_acc`, `val_nll`, ...); `best_val_acc` /
`last_val_acc` are the best-epoch and last-epoch validation values of the run's history, and
`epochs_to_target` / `seconds_to_target` (analysis-time, from the history and the study's
`target_accuracy`) how long a run took to first reach the target validation accuracy.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Metric:
    name: str
    label: str  # how tables and figures name it
    higher_is_better: bool
    percent: bool  # a fraction shown in percent (accuracy-like)


_BASE = {
    "acc": ("accuracy", True, True),
    "top5_acc": ("top-5 accuracy", True, True),
    "macro_f1": ("macro-F1", True, True),
    "nll": ("NLL", False, False),
    "ece": ("ECE (15 bins)", False, True),
    "loss": ("own loss", False, False),
}

METRICS: dict[str, Metric] = {}
for _split, _split_label in (("test", "test"), ("val", "validation"), ("train", "training")):
    for _base, (_label, _hib, _pct) in _BASE.items():
        _name = f"{_split}_{_base}"
        METRICS[_name] = Metric(_name, f"{_split_label} {_label}", _hib, _pct)
for _which in ("best", "last"):
    METRICS[f"{_which}_val_acc"] = Metric(f"{_which}_val_acc", f"{_which}-epoch validation accuracy", True, True)
    METRICS[f"{_which}_val_loss"] = Metric(f"{_which}_val_loss", f"{_which}-epoch validation loss", False, False)
METRICS["epochs_to_target"] = Metric("epochs_to_target", "epochs to target accuracy", False, False)
METRICS["seconds_to_target"] = Metric("seconds_to_target", "seconds to target accuracy", False, False)

DEFAULT = "test_acc"


def get(name: str) -> Metric:
    """The metric called `name`; a `UserError` naming the choices for an unknown one."""
    from .errors import UserError, did_you_mean

    if name not in METRICS:
        raise UserError(f"unknown metric {name!r}; {did_you_mean(name, list(METRICS))}"
                        f"choose one of: {', '.join(METRICS)}")
    return METRICS[name]


def higher_is_better(name: str) -> bool:
    """The one rule for a metric's direction: accuracy-like metrics are maximised; losses, NLL,
    calibration error and time are minimised. A name not in the table (e.g. a user's metric) is
    minimised when it names a loss, an error or a time."""
    if name in METRICS:
        return METRICS[name].higher_is_better
    low = name.lower()
    return not any(w in low for w in ("loss", "error", "nll", "ece", "time", "seconds", "epochs"))
