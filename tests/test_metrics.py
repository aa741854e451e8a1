"""Loss-independent metrics: each function against an independent computation; `evaluate`'s keys and
batch-size independence; the row a finished (or diverged) run leaves in the store."""

import itertools
import math

import numpy as np
import pytest
import torch
from sklearn import metrics as skm
from torch import nn

import cnnbench
from cnnbench import metrics
from cnnbench import spec as study
from cnnbench.engine.callbacks import History
from cnnbench.engine.flops import forward_flops, parameter_count
from cnnbench.errors import UserError
from cnnbench.runs.one_run import epoch_metrics, run_task, summary_epoch, validation_summary
from cnnbench.runs.task import Task
from cnnbench.store.db import COUNTS, METRICS, Store


def _random_probabilities(n=300, k=10, seed=0):
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(n, k)) * 2
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    y = rng.integers(0, k, n)
    return p, y


def test_top5_accuracy_matches_sklearn_and_is_none_with_five_classes_or_fewer():
    p, y = _random_probabilities()
    assert metrics.top_k_accuracy(p, y, 5) == pytest.approx(
        skm.top_k_accuracy_score(y, p, k=5, labels=np.arange(10)), abs=1e-15)
    assert metrics.top_k_accuracy(torch.from_numpy(p).float(), torch.from_numpy(y), 5) == pytest.approx(
        skm.top_k_accuracy_score(y, p, k=5, labels=np.arange(10)), abs=1e-15)
    p5, y5 = _random_probabilities(k=5)
    assert metrics.top_k_accuracy(p5, y5, 5) is None


def test_top_k_counts_ties_at_the_boundary_as_keras_in_top_k():
    p = np.array([[0.25, 0.25, 0.25, 0.25, 0.0, 0.0]])  # class 3 ties with classes 0-2 at rank 1
    assert metrics.top_k_accuracy(p, [3], k=2) == 1.0
    assert metrics.top_k_accuracy(p, [4], k=2) == 0.0


def test_macro_f1_matches_sklearn_including_classes_never_predicted():
    p, y = _random_probabilities()
    assert metrics.macro_f1(p, y) == pytest.approx(skm.f1_score(y, p.argmax(1), average="macro"), abs=1e-12)
    # a class absent from labels and predictions does not count; one absent from predictions counts as 0
    p = np.eye(4)[[0, 0, 1, 1, 0]]
    y = np.array([0, 1, 1, 1, 2])
    assert metrics.macro_f1(p, y) == pytest.approx(
        skm.f1_score(y, p.argmax(1), average="macro", zero_division=0), abs=1e-12)


def test_nll_matches_sklearn_log_loss_and_clips_like_keras():
    p, y = _random_probabilities()
    assert metrics.negative_log_likelihood(p, y) == pytest.approx(
        skm.log_loss(y, p, labels=np.arange(10)), rel=1e-12)
    # a true class with probability 0 costs -log(1e-7), not inf
    assert metrics.negative_log_likelihood([[1.0, 0.0], [0.5, 0.5]], [1, 0]) == pytest.approx(
        (-math.log(1e-7) - math.log(0.5)) / 2, rel=1e-12)


def test_ece_by_hand():
    p = np.array([[0.90, 0.05, 0.05],   # conf .90, right   bin (13/15, 14/15]
                  [0.10, 0.88, 0.02],   # conf .88, wrong   the same bin
                  [0.10, 0.80, 0.10],   # conf .80, wrong   its own bin
                  [0.60, 0.30, 0.10],   # conf .60, right
                  [0.20, 0.70, 0.10]])  # conf .70, right
    y = np.array([0, 0, 0, 0, 1])
    # bin of .90 and .88: accuracy 1/2, confidence .89 -> 2/5 * .39; the others: 1/5 * (.8 + .4 + .3)
    assert metrics.expected_calibration_error(p, y) == pytest.approx((2 * 0.39 + 0.8 + 0.4 + 0.3) / 5, abs=1e-12)
    perfectly_calibrated = np.array([[0.5, 0.5], [0.5, 0.5]])
    assert metrics.expected_calibration_error(perfectly_calibrated, [0, 1]) == pytest.approx(0.0, abs=1e-15)


def test_ece_matches_guo_et_al_reference_loop():
    p, y = _random_probabilities(n=500, k=4, seed=3)
    conf, pred = p.max(1), p.argmax(1)
    edges = np.linspace(0, 1, 16)
    ece = 0.0
    for lo, hi in itertools.pairwise(edges):  # Guo et al.'s code: conf > lower and conf <= upper
        in_bin = (conf > lo) & (conf <= hi)
        if in_bin.any():
            ece += in_bin.mean() * abs((pred[in_bin] == y[in_bin]).mean() - conf[in_bin].mean())
    assert metrics.expected_calibration_error(p, y) == pytest.approx(ece, abs=1e-12)


class _PerSampleModel(nn.Module):
    """Logits from each image's own pixels only (no reduction across the batch): any batching gives
    the same per-sample outputs bit for bit, so only the metrics' sums can depend on the batch size."""

    def __init__(self, k):
        super().__init__()
        self.k = k
        self.scale = nn.Parameter(torch.tensor(0.37))

    def forward(self, x):
        return x.flatten(1)[:, :self.k] * 8.0 * self.scale - 2.0


def test_evaluate_returns_every_metric_independent_of_batch_size():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 255, (1000, 1, 4, 4), dtype=np.uint8)
    y = rng.integers(0, 10, 1000)
    model = _PerSampleModel(10)
    one = cnnbench.evaluate(model, x, y, batch_size=1, return_dict=True)
    big = cnnbench.evaluate(model, x, y, batch_size=1000, return_dict=True)
    odd = cnnbench.evaluate(model, x, y, batch_size=37, return_dict=True)
    assert set(one) >= {"loss", "accuracy", "top5_accuracy", "nll", "ece", "macro_f1"}
    for name in ("accuracy", "top5_accuracy", "nll", "ece", "macro_f1"):
        assert one[name] == big[name] == odd[name], name
    # the own loss is the loss's float32 batch mean (Keras' reduction), summed in float64
    assert one["loss"] == pytest.approx(big["loss"], rel=1e-6)
    # categorical cross-entropy is the NLL of the softmax (the clip does not bite here)
    assert one["nll"] == pytest.approx(one["loss"], rel=1e-6)
    with torch.no_grad():
        p = torch.softmax(model(torch.as_tensor(x).float() / 255), 1).double().numpy()
    assert one["macro_f1"] == pytest.approx(skm.f1_score(y, p.argmax(1), average="macro"), abs=1e-12)
    four = cnnbench.evaluate(_PerSampleModel(4), x, y % 4, return_dict=True)
    assert four["top5_accuracy"] is None


def test_nll_is_comparable_across_losses_while_the_own_loss_is_not():
    rng = np.random.default_rng(1)
    x = rng.integers(0, 255, (200, 1, 4, 4), dtype=np.uint8)
    y = rng.integers(0, 10, 200)
    model = _PerSampleModel(10)
    ce = cnnbench.evaluate(model, x, y, loss="categorical_crossentropy", return_dict=True)
    mse = cnnbench.evaluate(model, x, y, loss="mse", return_dict=True)
    assert ce["nll"] == pytest.approx(mse["nll"], rel=1e-12) and ce["loss"] != pytest.approx(mse["loss"])


def test_parameter_count_and_flops():
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 3))
    assert parameter_count(model) == 16 * 3 + 3
    assert forward_flops(model, torch.zeros(1, 4, 4, dtype=torch.uint8)) == 2 * 16 * 3
    assert model.training  # the mode is put back

    class Broken(nn.Module):
        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(torch.ones(1))

        def forward(self, x):
            raise RuntimeError("cannot run")

    assert forward_flops(Broken(), torch.zeros(1, 4, 4)) is None


# --- the run's row ------------------------------------------------------------------------------


def _history(loss, val_loss, val_acc, status="done", best_epoch=None):
    h = History(status=status, best_epoch=best_epoch)
    for i, lv in enumerate(loss):
        logs = {"loss": lv, "accuracy": 0.1 * i}
        if i < len(val_loss):
            logs.update(val_loss=val_loss[i], val_accuracy=val_acc[i])
        h.append(i, logs)
    return h


def test_a_diverged_runs_row_is_its_last_finite_epoch():
    # epoch 2 diverged: no validation ran, its training loss is NaN
    h = _history([1.0, 0.5, math.nan], [0.9, 0.8], [0.6, 0.7], status="diverged")
    epoch, best = summary_epoch(h, None)
    assert (epoch, best) == (1, None)
    assert epoch_metrics(h, epoch) == {"train_loss": 0.5, "train_acc": 0.1, "val_loss": 0.8, "val_acc": 0.7}
    assert validation_summary(h, epoch) == {"best_val_acc": 0.7, "last_val_acc": 0.7,
                                            "best_val_loss": 0.8, "last_val_loss": 0.8}
    # diverged in its first epoch: no epoch's numbers at all
    h0 = _history([math.nan], [], [], status="diverged")
    assert summary_epoch(h0, None) == (None, None)
    assert set(epoch_metrics(h0, None).values()) == {None}


def test_the_row_is_the_restored_epoch_with_restore_best_weights_else_the_last():
    h = _history([1.0, 0.5, 0.4], [0.9, 0.7, 0.8], [0.6, 0.8, 0.7], best_epoch=1)
    es = {"monitor": "val_loss", "restore_best_weights": True}
    assert summary_epoch(h, es) == (1, 1)
    assert summary_epoch(h, {**es, "restore_best_weights": False}) == (2, 1)
    assert epoch_metrics(h, 1)["train_loss"] == 0.5 and epoch_metrics(h, 1)["val_loss"] == 0.7
    s = validation_summary(h, 2)
    assert (s["best_val_acc"], s["last_val_acc"], s["best_val_loss"], s["last_val_loss"]) == (0.8, 0.7, 0.7, 0.8)


def _one_run(tmp_path, extra=""):
    s = study.parse_text(f'name = "m"\nepochs = 2\nbatch_size = 64\n{extra}\n')
    store = Store.open(tmp_path, s.name)
    store.add_runs(s.runs)
    run = s.runs[0]
    status = run_task(Task(run.key, run.label, run.config, str(tmp_path), None, "cpu"), store=store)
    return status, store.run(run.key), store.history(run.key)


def test_a_finished_run_stores_every_metric_on_test_and_validation(tmp_path):
    status, row, hist = _one_run(tmp_path)
    assert status == "done"
    for column in METRICS + COUNTS:
        assert row[column] is not None, column
    assert row["metrics_epoch"] == 1 and row["params"] > 0 and row["flops"] > 0
    last = hist[-1]
    # one epoch's numbers: the row's val_acc/val_loss and train_* are those of metrics_epoch
    assert (row["train_loss"], row["val_loss"], row["val_acc"]) == (
        last["train_loss"], last["val_loss"], last["val_acc"])
    assert row["last_val_acc"] == last["val_acc"] and row["best_val_acc"] == max(h["val_acc"] for h in hist)
    assert 0 <= row["test_ece"] <= 1 and row["test_top5_acc"] >= row["test_acc"]
    assert 0 <= row["val_macro_f1"] <= 1 and row["val_nll"] > 0


def test_a_diverged_run_stores_its_last_finite_epoch_and_no_test_metrics(tmp_path):
    status, row, hist = _one_run(tmp_path, 'optimizer = { name = "sgd", learning_rate = 1e30 }')
    assert status == "diverged"
    assert row["test_acc"] is None and row["test_nll"] is None
    assert row["params"] > 0 and row["flops"] > 0  # the architecture's, whatever its weights
    finite = [h for h in hist if h["train_loss"] is not None and math.isfinite(h["train_loss"])]
    if finite:
        assert row["metrics_epoch"] == finite[-1]["epoch"] and row["train_loss"] == finite[-1]["train_loss"]
    else:
        assert row["metrics_epoch"] is None and row["train_loss"] is None and row["val_loss"] is None


def test_a_run_without_validation_stores_test_metrics_and_null_validation(tmp_path):
    status, row, _hist = _one_run(tmp_path, "validation_split = 0.0")
    assert status == "done" and row["test_nll"] is not None and row["test_macro_f1"] is not None
    for column in ("val_acc", "val_loss", "val_nll", "val_ece", "best_val_acc", "last_val_loss"):
        assert row[column] is None, column


# --- the one rule for "is this metric minimised" (ranking, EarlyStopping, reduce_on_plateau) ---------
KERAS_AUTO = {  # Keras' mode="auto" for the monitors it knows (EarlyStopping: the metric's direction)
    "loss": "min", "val_loss": "min", "accuracy": "max", "val_accuracy": "max", "acc": "max", "val_acc": "max",
    "sparse_categorical_accuracy": "max", "val_top_k_categorical_accuracy": "max", "auc": "max",
    "val_auc": "max", "precision": "max", "val_recall": "max", "f1_score": "max", "mean_iou": "max",
    "mean_squared_error": "min", "val_mae": "min", "categorical_crossentropy": "min", "kl_divergence": "min",
    "fbeta_score": "max", "val_r2_score": "max", "cosine_similarity": "max", "pearson_correlation": "max",
    "val_concordance_correlation": "max", "sensitivity_at_specificity": "max", "specificity_at_sensitivity": "max",
}


@pytest.mark.parametrize("monitor, expected", sorted(KERAS_AUTO.items()))
def test_monitor_mode_auto_is_keras_for_the_monitors_keras_knows(monitor, expected):
    from cnnbench.metrics import monitor_mode

    assert monitor_mode(monitor) == expected
    assert monitor_mode(monitor, "min") == "min" and monitor_mode(monitor, "max") == "max"


@pytest.mark.parametrize("monitor", ["val_loss", "val_accuracy", "val_top5_accuracy", "val_nll", "val_ece",
                                     "val_macro_f1", "out_loss", "val_out_accuracy", "my_score"])
def test_early_stopping_and_reduce_on_plateau_share_the_rule(monitor):
    """Both callbacks read mode="auto" from metrics.monitor_mode; agreeing with the ranking's direction
    wherever the name says which way is better."""
    from cnnbench import optim
    from cnnbench.callbacks import EarlyStopping
    from cnnbench.metrics import higher_is_better, monitor_mode

    mode = monitor_mode(monitor)
    assert EarlyStopping(monitor=monitor).sign == (1.0 if mode == "min" else -1.0)
    p = torch.zeros(1, requires_grad=True)
    opt = optim.get({"name": "sgd", "learning_rate": 1.0, "schedule": {
        "name": "reduce_on_plateau", "monitor": monitor, "patience": 1, "factor": 0.5, "min_delta": 0.0}}, [p])
    for epoch, value in enumerate([1.0, 2.0]):  # the value rises: an improvement only when maximised
        optim.on_epoch_end(opt, epoch, {monitor: value})
    assert optim.current_lr(opt) == (1.0 if mode == "max" else 0.5)
    if monitor != "my_score":  # a name that names no direction: ranked maximised, monitored minimised (Keras)
        assert higher_is_better(monitor) == (mode == "max")
    with pytest.raises(UserError, match="mode must be"):
        monitor_mode(monitor, "up")


def test_every_built_in_metric_is_recorded_for_a_run():
    """A study may rank by any name of METRICS (the spec checks no more): each is a column of the store or
    computed from the history."""
    from cnnbench.store.db import METRICS as STORED

    assert set(metrics.METRICS) == {*STORED, *metrics.FROM_HISTORY}


def test_built_in_metrics_are_a_registry_matched_like_every_other_family():
    assert metrics.REGISTRY.list() == ["ece", "macro_f1", "nll", "top5_accuracy"]
    name, fn = metrics.resolve_metric("Macro-F1")
    assert name == "macro_f1" == metrics.spec_name("Macro-F1")
    probabilities = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]])
    labels = np.array([0, 1, 1])
    # predicted 0, 1, 0: class 0 has precision 1/2 and recall 1 (F1 2/3), class 1 precision 1, recall 1/2 (2/3)
    assert fn(labels, probabilities) == pytest.approx(2 / 3)
    with pytest.raises(UserError, match="unknown metric 'f2'"):
        metrics.resolve_metric("f2")
