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

import re
from dataclasses import dataclass, field

from .errors import UserError, did_you_mean
from .registry import Registry
from .registry.trust import import_reference


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
        if _split == "train" and _base not in ("acc", "loss"):
            continue  # the training set is not re-evaluated: its accuracy and loss are the history's
        _name = f"{_split}_{_base}"
        METRICS[_name] = Metric(_name, f"{_split_label} {_label}", _hib, _pct)
for _which in ("best", "last"):
    METRICS[f"{_which}_val_acc"] = Metric(f"{_which}_val_acc", f"{_which}-epoch validation accuracy", True, True)
    METRICS[f"{_which}_val_loss"] = Metric(f"{_which}_val_loss", f"{_which}-epoch validation loss", False, False)
METRICS["epochs_to_target"] = Metric("epochs_to_target", "epochs to target accuracy", False, False)
METRICS["seconds_to_target"] = Metric("seconds_to_target", "seconds to target accuracy", False, False)

DEFAULT = "test_acc"
# Computed by the analysis from a run's history and the study's `[analysis] target_accuracy`.
FROM_HISTORY = ("epochs_to_target", "seconds_to_target")


# evaluate()'s per-output scores: a run with targets records test_<output>_<score> and val_<output>_<score>
OUTPUT_SCORES = ("accuracy", "loss", "top5_accuracy", "nll", "ece", "macro_f1")
# an output's score (Keras' names, as fit logs them) -> the single-output metric it is, for its label and units
_OUTPUT_SCORE_BASE = {"accuracy": "acc", "top5_accuracy": "top5_acc", "macro_f1": "macro_f1", "nll": "nll",
                      "ece": "ece"}  # an output's loss is its loss (not the "own loss" of a run)

# What every fit logs per epoch (Keras' names), which EarlyStopping and reduce_on_plateau may monitor;
# Keras 2's names are taken for them.
MONITORS = ("val_loss", "val_accuracy", "loss", "accuracy")
MONITOR_ALIASES = {"val_acc": "val_accuracy", "acc": "accuracy"}


@dataclass(frozen=True)
class Catalog:
    """The metrics one study knows, a value built from its runs' configs (never process-wide state): the
    built-ins (`METRICS`) and, for its custom metrics (a run's `metrics = [...]`), `test_<name>` /
    `val_<name>`, and for a run with several outputs `test_<output>_<score>` / `val_<output>_<score>`.
    The spec builds it when a study is parsed (`StudySpec.metrics`), the analysis from the stored configs."""

    custom: dict[str, Metric] = field(default_factory=dict)

    @classmethod
    def of_configs(cls, configs) -> Catalog:
        """The catalog of runs with these (resolved) configs: every output's scores, then each run's metrics
        (a metric of an output is labelled as the output's)."""
        configs = list(configs)
        custom: dict[str, Metric] = {}
        outputs = sorted({o for c in configs for o in c.get("targets") or ()})
        _declare_outputs(custom, outputs, OUTPUT_SCORES)
        for config in configs:
            given = config.get("metrics")
            if isinstance(given, dict):
                for output, specs in given.items():
                    _declare_outputs(custom, [output], [spec_name(s) for s in specs])
            else:
                _declare(custom, log_names(given))
        return cls(custom)

    @classmethod
    def merged(cls, catalogs) -> Catalog:
        """One catalog of several (the stores of one study): a name's first entry wins."""
        custom: dict[str, Metric] = {}
        for catalog in catalogs:
            for name, metric in catalog.custom.items():
                custom.setdefault(name, metric)
        return cls(custom)

    def __contains__(self, name: object) -> bool:
        return name in METRICS or name in self.custom

    def names(self) -> list[str]:
        return [*METRICS, *(n for n in self.custom if n not in METRICS)]

    def get(self, name: str) -> Metric:
        """The metric called `name`; a `UserError` naming the choices for an unknown one."""
        if name in METRICS:
            return METRICS[name]
        if name in self.custom:
            return self.custom[name]
        known = self.names()
        raise UserError(f"unknown metric {name!r}; {did_you_mean(name, known)}"
                        f"choose one of: {', '.join(known)} (a custom metric is test_NAME / val_NAME of a "
                        "name in the study's metrics = [...])")


BUILTINS = Catalog()


def _declare(custom: dict[str, Metric], names) -> None:
    """`test_<name>` and `val_<name>` for each custom metric name (a name declared before keeps its entry)."""
    for name in names:
        for split, split_label in (("test", "test"), ("val", "validation")):
            full = f"{split}_{name}"
            if full not in METRICS and full not in custom:
                custom[full] = Metric(full, f"{split_label} {name}", higher_is_better(name), False)


def _declare_outputs(custom: dict[str, Metric], outputs, scores) -> None:
    """`test_<output>_<score>` and `val_<output>_<score>` (a run with several outputs), each with its
    score's direction (a loss is minimised whatever the output is called)."""
    for output in outputs:
        for score in scores:
            for split, split_label in (("test", "test"), ("val", "validation")):
                full = f"{split}_{output}_{score}"
                if full not in METRICS:
                    base = _OUTPUT_SCORE_BASE.get(score)
                    label, pct = (_BASE[base][0], _BASE[base][2]) if base else (score, False)
                    custom[full] = Metric(full, f"{split_label} {output} {label}", higher_is_better(score), pct)


# A custom metric's name (test_NAME / val_NAME): known only to the catalog of a study that declares NAME
_CUSTOM_NAME = re.compile(r"(test|val)_[A-Za-z_][A-Za-z0-9_]*")


def check_name(name: str) -> str:
    """`name` if it is a built-in metric or shaped like a custom one (whose study's catalog decides),
    else the `UserError` of `get`: a check that needs no study."""
    if name in METRICS or _CUSTOM_NAME.fullmatch(name):
        return name
    get(name)
    return name


def get(name: str, catalog: Catalog = BUILTINS) -> Metric:
    """The metric called `name` in `catalog` (a study's; the built-ins by default); a `UserError` naming
    the choices for an unknown one."""
    return catalog.get(name)


# --- which way is better: the one rule ----------------------------------------------------------
# A metric's direction comes from the tables above when it is in them, else from its name: a name that
# contains a word of LOWER_WORDS is minimised (a loss, an error, NLL, calibration error, a time), else
# one that contains a word of HIGHER_WORDS is maximised (the metrics Keras 3 marks `_direction = "up"`:
# accuracies, top-k, AUC, precision, recall, F-scores, IoU, R², cosine similarity, correlations,
# sensitivity/specificity). A name in neither list is the one case
# that depends on the use: ranking a study (`higher_is_better`) maximises it (a user's score), while a
# callback's `mode = "auto"` (`monitor_mode`) minimises it, as Keras does. Words are substrings and the
# minimised ones are looked for first, so a name with both (`top5_error`, or `val_sentiment_accuracy`:
# "time" is in "sentiment") is minimised; give the mode (`mode = "max"`) for such a name.
LOWER_WORDS = ("loss", "error", "nll", "ece", "time", "seconds", "epochs")
HIGHER_WORDS = ("acc", "auc", "precision", "recall", "f1", "iou", "top", "score", "similarity", "correlation",
                "sensitivity", "specificity")


def _direction_from_name(name: str) -> bool | None:
    """True (maximised) / False (minimised) from the words of `name`; None when it names neither."""
    low = name.lower()
    if any(w in low for w in LOWER_WORDS):
        return False
    if any(w in low for w in HIGHER_WORDS):
        return True
    return None


def higher_is_better(name: str, catalog: Catalog = BUILTINS) -> bool:
    """The direction of a metric a study is ranked by: the table's for a known metric (`METRICS`, a
    custom metric of `catalog`), else from its name (see LOWER_WORDS / HIGHER_WORDS); a name that names
    neither is maximised."""
    if name in catalog:
        return catalog.get(name).higher_is_better
    return _direction_from_name(name) is not False


def monitor_mode(monitor: str, mode: str = "auto") -> str:
    """`"min"` or `"max"`: how `EarlyStopping` and the `reduce_on_plateau` schedule compare the epoch-log
    value `monitor` (`val_loss`, `val_accuracy`, `val_macro_f1`, `out_loss`, ...).

    `mode = "min"` / `"max"` is kept. `"auto"` is Keras' rule from the name alone: losses are minimised,
    accuracy-like metrics maximised, and so the same as Keras for every monitor Keras knows (its
    `EarlyStopping` asks the metric object for its direction, its `ReduceLROnPlateau` looks only for
    "acc"; where they disagree, for AUC, precision, recall, F1 and IoU, both follow EarlyStopping). A
    name of neither kind is minimised, as Keras 2's callbacks and Keras 3's ReduceLROnPlateau do
    (Keras 3's EarlyStopping refuses it)."""
    if mode in ("min", "max"):
        return mode
    if mode != "auto":
        raise UserError(f"mode must be 'auto', 'min' or 'max', not {mode!r}")
    return "max" if _direction_from_name(monitor) else "min"


# --- the metric functions: class probabilities + labels -> one number ------------------------------
# All work in float64 on the whole set at once (per-sample values, then one mean), so a metric does not
# depend on the batch size the probabilities were computed with.

NLL_EPSILON = 1e-7  # Keras' backend epsilon: probabilities are clipped to [1e-7, 1] before the log
ECE_BINS = 15  # Guo et al. 2017


def _as_arrays(probabilities, labels):
    """(N×K float64 probabilities, N int64 labels) as numpy arrays, from tensors or arrays."""
    import numpy as np

    def to_numpy(a):
        return a.detach().cpu().numpy() if hasattr(a, "detach") else np.asarray(a)

    p = to_numpy(probabilities).astype(np.float64, copy=False)
    y = to_numpy(labels).astype(np.int64, copy=False).reshape(-1)
    if p.ndim != 2 or p.shape[0] != y.shape[0]:
        raise ValueError(f"probabilities must be N×K for N labels; got {p.shape} and {y.shape[0]} labels")
    return p, y


def top_k_accuracy(probabilities, labels, k: int = 5) -> float | None:
    """Fraction of samples whose true class is among the `k` most probable; None when there are no
    more than `k` classes (it would be 1 by construction).

    As Keras' `top_k_categorical_accuracy` (`in_top_k`): sample i counts when fewer than k classes
    have a probability strictly greater than p_i[y_i], so ties at the boundary count as in the top k.
    """
    import numpy as np

    p, y = _as_arrays(probabilities, labels)
    if p.shape[1] <= k:
        return None
    if p.shape[0] == 0:
        return float("nan")
    p_true = p[np.arange(len(y)), y]
    return float(((p > p_true[:, None]).sum(1) < k).mean())


def negative_log_likelihood(probabilities, labels, epsilon: float = NLL_EPSILON) -> float:
    """NLL = (1/N) Σ_i −log clip(p_i[y_i], ε, 1), ε = 1e-7 as Keras clips probabilities (so a
    confidently wrong sample costs at most −log 1e-7 ≈ 16.1). Independent of the training loss: it
    scores the predicted class probabilities of any run on the same scale."""
    import numpy as np

    p, y = _as_arrays(probabilities, labels)
    if p.shape[0] == 0:
        return float("nan")
    p_true = np.clip(p[np.arange(len(y)), y], epsilon, 1.0)
    return float(-np.log(p_true).mean())


def expected_calibration_error(probabilities, labels, n_bins: int = ECE_BINS) -> float:
    """ECE (Guo et al. 2017): with confidence c_i = max_k p_i[k] and prediction ŷ_i = argmax_k p_i[k],
    the samples are put in `n_bins` equal-width bins B_b = {i : c_i ∈ (b/n_bins, (b+1)/n_bins]} and

        ECE = Σ_b |B_b|/N · |acc(B_b) − conf(B_b)|,

    acc(B) the fraction of B with ŷ_i = y_i and conf(B) the mean c_i over B (empty bins add 0)."""
    import numpy as np

    p, y = _as_arrays(probabilities, labels)
    n = p.shape[0]
    if n == 0:
        return float("nan")
    confidence = p.max(1)
    correct = (p.argmax(1) == y).astype(np.float64)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    # side="left": a confidence equal to an edge b/n_bins belongs to the bin that ends there.
    bin_of = np.clip(np.searchsorted(edges, confidence, side="left") - 1, 0, n_bins - 1)
    sum_correct = np.bincount(bin_of, weights=correct, minlength=n_bins)
    sum_confidence = np.bincount(bin_of, weights=confidence, minlength=n_bins)
    # |B| · |acc(B) − conf(B)| = |Σ_B correct − Σ_B confidence|
    return float(np.abs(sum_correct - sum_confidence).sum() / n)


def macro_f1(probabilities, labels) -> float:
    """Macro-F1: the unweighted mean over classes of F1_k = 2 TP_k / (2 TP_k + FP_k + FN_k), the
    prediction being argmax_k p[k]. As scikit-learn's `f1_score(average="macro")`, the classes are
    those that occur in the labels or the predictions (a class absent from both is no evidence)."""
    import numpy as np

    p, y = _as_arrays(probabilities, labels)
    if p.shape[0] == 0:
        return float("nan")
    predicted = p.argmax(1)
    k = max(p.shape[1], int(y.max()) + 1)
    tp = np.bincount(y[predicted == y], minlength=k).astype(np.float64)
    n_true = np.bincount(y, minlength=k).astype(np.float64)
    n_predicted = np.bincount(predicted, minlength=k).astype(np.float64)
    present = (n_true + n_predicted) > 0
    f1 = 2 * tp[present] / (n_true[present] + n_predicted[present])  # 2TP + FP + FN = n_true + n_predicted
    return float(f1.mean())


def classification_metrics(probabilities, labels) -> dict[str, float | None]:
    """The loss-independent metrics of one evaluation: `top5_accuracy` (None with <= 5 classes),
    `nll`, `ece` and `macro_f1`, each as its function above defines it."""
    p, y = _as_arrays(probabilities, labels)
    return {"top5_accuracy": top_k_accuracy(p, y, 5), "nll": negative_log_likelihood(p, y),
            "ece": expected_calibration_error(p, y), "macro_f1": macro_f1(p, y)}


# --- metrics a run records per epoch (Keras' `metrics=[...]`) ---------------------------------------
# A metric function takes (y_true, probabilities) -> float (or None), as a Keras metric takes (y_true,
# y_pred): numpy arrays, int64 labels [N] and float64 class probabilities [N, K] (the loss's
# `.probabilities`); it is computed once over the whole set of an epoch.

def _swap(fn):
    def metric(y_true, probabilities):
        return fn(probabilities, y_true)
    metric.__name__ = fn.__name__
    return metric


# The built-in metric functions, a registry like every other family (`cnnbench list metrics`): the name
# is what the run logs (`val_<name>`, `test_<name>`), the factory returns the (y_true, probabilities)
# function. A user's metric is `"package.module:function"`, named by its function.
REGISTRY = Registry("metric")


@REGISTRY.register("top5_accuracy", summary="the share of samples whose label is among the 5 most probable classes")
def _top5_accuracy():
    return _swap(top_k_accuracy)


@REGISTRY.register("nll", summary="negative log-likelihood of the label (probabilities clipped at 1e-7, as Keras)")
def _nll():
    return _swap(negative_log_likelihood)


@REGISTRY.register("ece", summary="expected calibration error over 15 equal-width confidence bins (Guo et al. 2017)")
def _ece():
    return _swap(expected_calibration_error)


@REGISTRY.register("macro_f1", summary="the F1 score of every class, averaged with equal weights")
def _macro_f1():
    return _swap(macro_f1)


# Names a custom metric may not take: the engine's own log keys
RESERVED = ("loss", "accuracy", "learning_rate", "seconds")
# Keras' names of the accuracy every run records anyway (`accuracy`, per output `<output>_accuracy`):
# accepted in metrics = [...] as Keras users write them, and left out (the same run either way)
ALWAYS_RECORDED = ("accuracy", "acc")
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def resolve_metric(spec: str):
    """`(name, fn)` for a metric spec: a built-in name (`top5_accuracy`, `nll`, `ece`, `macro_f1`) or
    `"package.module:attr"`, a callable `(y_true, probabilities) -> float` named by its attr."""
    if not isinstance(spec, str):
        raise UserError(f"a metric is a name or 'package.module:attr', got {spec!r}")
    if ":" not in spec:
        if spec not in REGISTRY:
            choices = REGISTRY.list()
            raise UserError(f"unknown metric {spec!r}; {did_you_mean(spec, choices)}use one of "
                            f"{', '.join(choices)} or 'package.module:function' (accuracy is always recorded)")
        name = REGISTRY.entry(spec).name
        return name, REGISTRY.get(name)
    obj = import_reference(spec, "metric", "package.module:function")
    attr = spec.partition(":")[2]
    if not callable(obj):
        raise UserError(f"metric {spec!r} is not callable; give a function (y_true, probabilities) -> float")
    name = attr.split(".")[-1]
    if not _NAME.match(name):
        raise UserError(f"metric {spec!r}: its name {name!r} must be a Python identifier")
    return name, obj


def resolve_metrics(specs) -> list[tuple[str, object]]:
    """`[(name, fn)]` for a list of metric specs; a UserError for a duplicate or reserved name."""
    if specs is None:
        return []
    if isinstance(specs, str) or not isinstance(specs, (list, tuple)):
        raise UserError(f"metrics must be a list of names, got {specs!r}; e.g. metrics=['macro_f1']")
    out, seen = [], {}
    for spec in specs:
        if spec in ALWAYS_RECORDED:
            continue
        name, fn = resolve_metric(spec)
        if name in RESERVED:
            raise UserError(f"metric {spec!r} is named {name!r}, which the engine logs itself; rename the function")
        if name in seen:
            raise UserError(f"metrics {seen[name]!r} and {spec!r} are both named {name!r}; list each metric once")
        seen[name] = spec
        out.append((name, fn))
    return out


def compute(fn, y_true, probabilities) -> float | None:
    """One metric's value over a whole set (None stays None: no evidence)."""
    p, y = _as_arrays(probabilities, y_true)
    value = fn(y, p)
    if value is None:
        return None
    if hasattr(value, "item"):
        value = value.item()
    return float(value)


# --- metrics of a model with several outputs (Keras' metrics={output: [...]}) -------------------------

def per_output(specs, outputs) -> dict[str, list[str]]:
    """`{output: [spec, ...]}` for a model with the outputs `outputs`, Keras' forms of `metrics`:

    - a dict `{output: spec or [specs]}`: those metrics for those outputs (Keras 2 and 3); an output
      it does not name gets none;
    - a list of specs: every output gets them all (tf.keras 2's rule; Keras 3 instead reads a list
      with one entry per output positionally, which cnnbench does not: name the outputs in a dict).

    Logged as `<output>_<name>` and `val_<output>_<name>`. `accuracy` / `acc` are always recorded
    (`<output>_accuracy`) and left out; outputs left with no metric are left out, in `outputs`' order."""
    outputs = list(outputs)
    if isinstance(specs, dict):
        given = {}
        for output, value in specs.items():
            if output not in outputs:
                raise UserError(f"metrics names output {output!r}, which the model does not have; "
                                f"{did_you_mean(str(output), outputs)}outputs: {', '.join(outputs)}")
            value = [value] if isinstance(value, str) else value
            if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
                raise UserError(f"metrics of output {output!r} must be a metric name or a list of names, got "
                                f"{value!r}; e.g. {{ {output} = [\"macro_f1\"] }}")
            given[output] = list(value)
    elif isinstance(specs, (list, tuple)):
        if not all(isinstance(v, str) for v in specs):
            example = ", ".join(f'{o} = ["..."]' for o in outputs)
            raise UserError(f"metrics {list(specs)!r}: a list of names applies to every output; for metrics per "
                            f"output name the outputs in a table, metrics = {{ {example} }} (a list per output "
                            "by position, Keras 3's form, is not taken)")
        given = {o: list(specs) for o in outputs}
    else:
        raise UserError(f"metrics must be a list of names or a dict {{output: [names]}}, got {specs!r}")
    kept = {o: [v for v in given.get(o, ()) if v not in ALWAYS_RECORDED] for o in outputs}
    return {o: v for o, v in kept.items() if v}


def spec_name(spec: str) -> str:
    """The name a metric spec is logged under (`macro_f1`, `Macro-F1` -> `macro_f1`, `pkg.mod:fn` -> `fn`),
    without importing it."""
    if ":" not in spec and spec in REGISTRY:
        return REGISTRY.entry(spec).name
    return spec.rpartition(":")[2].split(".")[-1]


def log_names(config_metrics) -> list[str]:
    """The names a run's `metrics` (its config's: a list, or per output a dict) log per epoch, without
    `val_`: `macro_f1`, or per output `digit_macro_f1`."""
    if isinstance(config_metrics, dict):
        return [f"{o}_{spec_name(s)}" for o, specs in config_metrics.items() for s in specs]
    return [spec_name(s) for s in config_metrics or () if s not in ALWAYS_RECORDED]
