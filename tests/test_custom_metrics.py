"""Custom metrics (Keras' metrics=[...]) and user callbacks from a study file: their values, their
storage, ranking by them, a callback's state across a resume, and run keys left as they were."""

import json
import textwrap

import numpy as np
import pytest
import torch
from torch import nn

import cnnbench
from cnnbench import analysis
from cnnbench import spec as study
from cnnbench.errors import UserError
from cnnbench.runs import one_run as execution
from cnnbench.runs import plan as planning
from cnnbench.runs import study_run
from cnnbench.store.db import Store

USER_MODULE = textwrap.dedent('''
    import numpy as np
    from cnnbench.callbacks import Callback

    def mean_confidence(y_true, probabilities):
        return float(np.asarray(probabilities).max(1).mean())

    def worst_class_error(y_true, probabilities):
        predicted = np.asarray(probabilities).argmax(1)
        return float(max(np.mean(predicted[y_true == k] != k) for k in np.unique(y_true)))

    class Counter(Callback):
        """Adds `step` per epoch; logs the running count as `counter`."""
        def __init__(self, step=1):
            self.step, self.count, self.seen = step, 0, []
        def on_epoch_end(self, epoch, logs):
            self.count += self.step
            self.seen.append(epoch)
            logs["counter"] = float(self.count)
        def state_dict(self):
            return {"count": self.count, "seen": list(self.seen)}
        def load_state_dict(self, state):
            self.count, self.seen = state["count"], list(state["seen"])

    class InterruptOnce(Callback):
        """Raises KeyboardInterrupt at the end of epoch `at`, once (a marker file remembers it)."""
        def __init__(self, at=1, marker=""):
            self.at, self.marker = at, marker
        def on_epoch_end(self, epoch, logs):
            import os
            if epoch == self.at and not os.path.exists(self.marker):
                open(self.marker, "w").close()
                raise KeyboardInterrupt

    class NotACallback:
        pass
''')


@pytest.fixture
def user_module(tmp_path, monkeypatch):
    (tmp_path / "cm_user_mod.py").write_text(USER_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    return "cm_user_mod"


@pytest.fixture
def tiny():
    rng = np.random.default_rng(1)
    return rng.integers(0, 256, (80, 8, 8), dtype=np.uint8), rng.integers(0, 4, 80)


def _macro_f1_by_hand(p, y):
    predicted = p.argmax(1)
    f1 = []
    for k in sorted(set(y) | set(predicted)):
        tp = np.sum((predicted == k) & (y == k))
        fp = np.sum((predicted == k) & (y != k))
        fn = np.sum((predicted != k) & (y == k))
        f1.append(2 * tp / (2 * tp + fp + fn))
    return float(np.mean(f1))


def test_metric_values_against_an_independent_computation(tiny, user_module):
    x, y = tiny
    xv, yv = x[:40], y[:40]
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 4))
    # learning rate 0, one batch: the epoch's training metrics are those of the initial weights
    h = cnnbench.fit(model, x, y, optimizer=torch.optim.SGD(model.parameters(), lr=0.0), epochs=1, batch_size=80,
                     validation_data=(xv, yv), metrics=["macro_f1", f"{user_module}:mean_confidence"], verbose=0,
                     device="cpu")
    assert list(h.history) == ["loss", "accuracy", "macro_f1", "mean_confidence", "val_loss", "val_accuracy",
                               "val_macro_f1", "val_mean_confidence", "learning_rate", "seconds"]
    with torch.no_grad():
        p = torch.softmax(model(torch.as_tensor(x).float().unsqueeze(1) / 255.0), 1).double().numpy()
    assert h.history["macro_f1"][0] == pytest.approx(_macro_f1_by_hand(p, y), abs=1e-12)
    assert h.history["mean_confidence"][0] == pytest.approx(p.max(1).mean(), rel=1e-6)
    assert h.history["val_macro_f1"][0] == pytest.approx(_macro_f1_by_hand(p[:40], yv), abs=1e-12)
    assert h.history["val_mean_confidence"][0] == pytest.approx(p[:40].max(1).mean(), rel=1e-6)
    scores = cnnbench.evaluate(model, xv, yv, return_dict=True)  # the metrics fit was given
    assert scores["mean_confidence"] == pytest.approx(h.history["val_mean_confidence"][0], rel=1e-12)


def test_metrics_do_not_change_the_training_numbers(tiny):
    x, y = tiny
    kw = dict(epochs=2, batch_size=16, validation_split=0.25, seed=2, verbose=0, device="cpu")
    plain = cnnbench.fit("digits_cnn", x, y, **kw)
    measured = cnnbench.fit("digits_cnn", x, y, metrics=["ece", "top5_accuracy"], **kw)
    for key in ("loss", "accuracy", "val_loss", "val_accuracy"):
        assert measured.history[key] == plain.history[key]
    assert measured.history["top5_accuracy"] == [None, None]  # 4 classes: top-5 says nothing


@pytest.mark.parametrize("spec, match", [
    (["macro_f2"], "unknown metric 'macro_f2'; did you mean 'macro_f1'"),
    (["no_such_module_xyz:f"], "cannot import module 'no_such_module_xyz'"),
    (["macro_f1", "macro_f1"], "both named 'macro_f1'"),
    ("macro_f1", "metrics must be a list"),
])
def test_bad_metrics_are_one_line(tiny, spec, match):
    x, y = tiny
    with pytest.raises(UserError, match=match):
        cnnbench.fit("digits_cnn", x, y, epochs=1, metrics=spec, verbose=0, device="cpu")


def test_a_callbacks_state_survives_a_resume_in_fit(tiny, tmp_path, user_module):
    import cm_user_mod

    x, y = tiny
    ck = tmp_path / "ck.pt"
    kw = dict(epochs=2, batch_size=16, verbose=0, device="cpu", checkpoint=ck)
    cnnbench.fit("digits_cnn", x, y, callbacks=[cm_user_mod.Counter(step=3)], **kw)  # "killed" after epoch 2
    counter = cm_user_mod.Counter(step=3)
    h = cnnbench.fit("digits_cnn", x, y, callbacks=[counter], **{**kw, "epochs": 4})
    assert counter.count == 12 and counter.seen == [0, 1, 2, 3]  # epochs 3 and 4 went on from the checkpoint
    assert h.epoch == [0, 1, 2, 3]
    assert h.history["counter"] == [3.0, 6.0, 9.0, 12.0]  # what a callback logs is in the history (Keras)


STUDY = '''
name = "custom"
seeds = [0, 1, 2]
epochs = 1
batch_size = 64
metrics = ["macro_f1", "{mod}:mean_confidence", "{mod}:worst_class_error"]
[grid]
loss = ["categorical_crossentropy", "mean_squared_error"]
[analysis]
metric = "val_mean_confidence"
'''


def test_a_study_ranked_by_a_custom_metric(tmp_path, user_module):
    s = study.parse_text(STUDY.format(mod=user_module))
    assert all(r.config["metrics"][0] == "macro_f1" for r in s.runs)
    p = planning.plan(s, output=tmp_path / "out", download=False)
    study_run.run_plan(p, data_dir=None, device="cpu", workers=1)
    store = Store.open_readonly(tmp_path / "out")
    rows = store.runs()
    assert all(r["status"] == "done" for r in rows)
    stored = rows[0]["custom_metrics"]
    assert set(stored) == {"test_macro_f1", "val_macro_f1", "test_mean_confidence", "val_mean_confidence",
                           "test_worst_class_error", "val_worst_class_error"}
    assert stored["test_macro_f1"] == pytest.approx(rows[0]["test_macro_f1"], rel=1e-12)  # the same function
    names = {(h["name"]) for h in store.history_metrics(rows[0]["key"])}
    assert names == {"macro_f1", "val_macro_f1", "mean_confidence", "val_mean_confidence", "worst_class_error",
                     "val_worst_class_error"}
    store.close()
    sc = analysis.compare_study(tmp_path / "out", metric="val_mean_confidence")
    assert sc.metric.name == "val_mean_confidence" and sc.metric.higher_is_better
    frame = sc.runs
    best = frame.groupby("label")["val_mean_confidence"].mean().idxmax()
    assert sc.cells[0].comparison.ranking.iloc[0]["config"].endswith(best.split(" · ")[-1])
    sc_error = analysis.compare_study(tmp_path / "out", metric="test_worst_class_error")
    assert not sc_error.metric.higher_is_better  # an "error" is minimised
    assert sc_error.catalog.get("val_worst_class_error").label == "validation worst_class_error"


def test_unknown_custom_ranking_metric_is_one_line(user_module):
    text = STUDY.format(mod=user_module).replace('metric = "val_mean_confidence"', 'metric = "val_mean_confidense"')
    with pytest.raises(UserError, match=r"analysis\.metric: unknown metric 'val_mean_confidense'; did you mean "
                                        r"'val_mean_confidence'"):
        study.parse_text(text)


def test_a_study_knows_only_its_own_custom_metrics_whatever_was_parsed_before(user_module):
    """issue 22: a study's custom metrics belong to the study (`StudySpec.metrics`), not to the process:
    parsing study A, which declares mean_confidence, makes A's metric known neither to study B nor to
    `metrics.get` (before, A's parse wrote it into the process-wide `metrics.CUSTOM`, where the analysis
    and the report of any other study found it)."""
    from cnnbench import metrics

    a = study.parse_text(STUDY.format(mod=user_module))
    assert a.metrics.get("val_mean_confidence").higher_is_better  # A's catalog knows it ...
    assert a.metrics.get("test_worst_class_error").higher_is_better is False
    with pytest.raises(UserError, match="unknown metric 'val_mean_confidence'"):
        metrics.get("val_mean_confidence")  # ... the process does not
    b = 'name = "b"\nepochs = 1\nmetrics = ["macro_f1"]\n[analysis]\nmetric = "val_mean_confidence"\n'
    with pytest.raises(UserError, match=r"analysis\.metric: unknown metric 'val_mean_confidence'.*\(macro_f1\)"):
        study.parse_text(b)
    b_study = study.parse_text(b.replace("val_mean_confidence", "val_macro_f1"))
    assert "val_mean_confidence" not in b_study.metrics


def test_the_analysis_of_a_study_knows_only_the_metrics_its_stored_runs_declare(tmp_path, user_module):
    """The analysis builds its catalog from the stored configs: ranking study B by study A's custom metric
    is an unknown metric, whatever the process parsed before (A here)."""
    study.parse_text(STUDY.format(mod=user_module))  # A: declares mean_confidence
    b = study.parse_text('name = "b"\nseeds = [0, 1]\nepochs = 1\nmetrics = ["macro_f1"]\n'
                         '[grid]\noptimizer = ["adam", "sgd"]\n')
    store = Store.open(tmp_path / "b", b.name)
    store.add_runs(b.runs)
    for r in b.runs:
        store.finish(r.key, "done", {"test_acc": 0.5 + 0.1 * r.seed, "val_acc": 0.5}, num_classes=10, seconds=1.0,
                     custom_metrics={"test_macro_f1": 0.4, "val_macro_f1": 0.4})
    store.close()
    with pytest.raises(UserError, match="unknown metric 'val_mean_confidence'"):
        analysis.compare_study(tmp_path / "b", metric="val_mean_confidence")
    sc = analysis.compare_study(tmp_path / "b", metric="test_acc")
    assert "val_mean_confidence" not in sc.catalog and sc.metric.name == "test_acc"


CALLBACK_STUDY = '''
name = "cb"
epochs = 4
batch_size = 128
callbacks = [{{ name = "{mod}:Counter", step = 2 }}, {{ name = "{mod}:InterruptOnce", at = 1, marker = "{marker}" }}]
'''


def test_a_study_callbacks_state_survives_an_interrupted_run(tmp_path, user_module):
    s = study.parse_text(CALLBACK_STUDY.format(mod=user_module, marker=tmp_path / "interrupted"))
    run = s.runs[0]
    assert run.config["callbacks"][0] == {"name": f"{user_module}:Counter", "step": 2}
    store = Store.open(tmp_path / "out", "cb")
    store.add_runs(s.runs)
    task = execution.Task(run.key, run.label, run.config, str(tmp_path / "out"), None, "cpu")
    with pytest.raises(KeyboardInterrupt):
        execution.run_task(task, store=store)  # interrupted at the end of epoch 2: resumes from epoch 1's checkpoint
    assert execution.run_task(task, store=store) == "done"
    counters = [h["value"] for h in store.history_metrics(run.key) if h["name"] == "counter"]
    assert counters == [2.0, 4.0, 6.0, 8.0]  # the count went on from the checkpoint, not from 0
    store.close()


def test_new_keys_leave_run_keys_alone_and_bad_callbacks_are_one_line(user_module):
    base = 'name = "k"\nepochs = 1\n'
    plain = study.parse_text(base).runs[0]
    assert "metrics" not in plain.config and "callbacks" not in plain.config
    empty = study.parse_text(base + "metrics = []\ncallbacks = []\n").runs[0]
    assert empty.key == plain.key
    with_metrics = study.parse_text(base + 'metrics = ["ece"]\n').runs[0]
    assert with_metrics.key != plain.key and with_metrics.config["metrics"] == ["ece"]
    for text, match in [
        (f'callbacks = [{{ name = "{user_module}:NotACallback" }}]', "is not a subclass of cnnbench.Callback"),
        (f'callbacks = [{{ name = "{user_module}:Counter", stepp = 1 }}]', "does not take these options"),
        ('callbacks = [{ name = "no_such_mod_q:Cb" }]', "cannot import module 'no_such_mod_q'"),
        ('metrics = ["macro_f2"]', "metrics: unknown metric 'macro_f2'"),
    ]:
        with pytest.raises(UserError, match=match):
            study.parse_text(base + text + "\n")


def test_a_saved_model_of_such_a_run_names_no_callback(tmp_path, user_module):
    s = study.parse_text('name = "sv"\nepochs = 1\nbatch_size = 256\nsave_models = true\n'
                         f'metrics = ["{user_module}:mean_confidence"]\n'
                         f'callbacks = [{{ name = "{user_module}:Counter" }}]\n')
    p = planning.plan(s, output=tmp_path / "out", download=False)
    study_run.run_plan(p, data_dir=None, device="cpu", workers=1)
    from cnnbench.store import model_files as saving

    path = execution.model_path(tmp_path / "out", s.runs[0].key)
    config = saving.read(path)[0]
    assert "callbacks" not in json.dumps(config) and "cm_user_mod" not in json.dumps(config)
    saving.load(path)  # untrusted: nothing to import


def test_the_same_custom_metric_study_parses_twice_in_one_process(user_module):
    text = STUDY.format(mod=user_module)
    assert study.parse_text(text).meta.analysis.metric == "val_mean_confidence"
    assert study.parse_text(text).meta.analysis.metric == "val_mean_confidence"  # now declared: still accepted
    other = text.replace(f'"{user_module}:mean_confidence", ', "")
    with pytest.raises(UserError, match=r"analysis\.metric: unknown metric 'val_mean_confidence'"):
        study.parse_text(other)  # declared by another study, not by this one


def test_a_diverged_epoch_has_no_metric_values(tiny):
    x, y = tiny
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 4))
    with torch.no_grad():
        model[1].weight.fill_(float("nan"))
    h = cnnbench.fit(model, x, y, epochs=3, batch_size=80, metrics=["macro_f1"], verbose=0, device="cpu")
    assert h.status == "diverged" and h.history["macro_f1"] == [None]
