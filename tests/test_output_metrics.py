"""Keras' metrics for a model with several outputs (issue 13): `metrics={"digit": [...]}` or a list for
every output, in `fit` and in study files; logged as `<output>_<name>` / `val_<output>_<name>`, checked
against hand computation, stored and rankable, the same after a resume and after save/load."""

from __future__ import annotations

import json
import textwrap

import numpy as np
import pytest
import torch
from study_helpers import TWO_OUTPUT_LOSS, TWO_OUTPUT_SPEC, interrupt_while_recording, study_rows, two_output_data
from study_helpers import TwoHeads as _TwoHeads

import cnnbench
from cnnbench import Study
from cnnbench.errors import UserError
from cnnbench.store import model_files as saving

USER_MODULE = textwrap.dedent('''
    import numpy as np

    def mean_confidence(y_true, probabilities):
        return float(np.asarray(probabilities).max(1).mean())
''')


@pytest.fixture
def user_module(tmp_path, monkeypatch):
    (tmp_path / "om_user_mod.py").write_text(USER_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    return "om_user_mod"


def TwoHeads():
    return _TwoHeads(dropout=0.0)


LOSS = TWO_OUTPUT_LOSS


@pytest.fixture
def data():
    return two_output_data(3)


def _probabilities(model, x):
    """Each output's class probabilities as the losses define them, in float64: softmax, [1 - σ, σ]."""
    model.eval()
    with torch.no_grad():
        out = model(torch.as_tensor(x).float().unsqueeze(1) / 255.0)
    logits = out["digit"].double().numpy()
    p = np.exp(logits - logits.max(1, keepdims=True))
    q = 1 / (1 + np.exp(-out["big"].double().numpy()[:, 0]))
    return {"digit": p / p.sum(1, keepdims=True), "big": np.stack([1 - q, q], 1)}


def _macro_f1(p, y):
    predicted, f1 = p.argmax(1), []
    for k in sorted(set(y) | set(predicted)):
        tp = np.sum((predicted == k) & (y == k))
        f1.append(2 * tp / (np.sum(predicted == k) + np.sum(y == k)))
    return float(np.mean(f1))


def _nll(p, y):
    return float(-np.log(np.clip(p[np.arange(len(y)), y], 1e-7, 1)).mean())


def test_a_list_applies_to_every_output_and_matches_hand_computation(data, user_module):
    x, y = data
    torch.manual_seed(0)
    model = TwoHeads()
    # learning rate 0 and one batch: the epoch's training metrics are those of the initial weights
    h = cnnbench.fit(model, x, y, loss=LOSS, optimizer=torch.optim.SGD(model.parameters(), lr=0.0), epochs=1,
                     batch_size=96, validation_data=(x[:40], {k: v[:40] for k, v in y.items()}),
                     metrics=["accuracy", "macro_f1", f"{user_module}:mean_confidence"], verbose=0, device="cpu")
    expected = [f"{o}_{m}" for o in ("digit", "big") for m in ("macro_f1", "mean_confidence")]
    for name in expected:
        assert name in h.history and f"val_{name}" in h.history
    assert "accuracy" not in h.history and "digit_accuracy" in h.history  # recorded per output, as always
    p = _probabilities(model, x)
    for o in ("digit", "big"):
        assert h.history[f"{o}_macro_f1"][0] == pytest.approx(_macro_f1(p[o], y[o]), abs=1e-12)
        assert h.history[f"{o}_mean_confidence"][0] == pytest.approx(p[o].max(1).mean(), rel=1e-6)
        assert h.history[f"val_{o}_macro_f1"][0] == pytest.approx(_macro_f1(p[o][:40], y[o][:40]), abs=1e-12)
        assert h.history[f"val_{o}_mean_confidence"][0] == pytest.approx(p[o][:40].max(1).mean(), rel=1e-6)
    scores = cnnbench.evaluate(model, x, y, return_dict=True)  # the metrics fit was given
    assert scores["big_mean_confidence"] == pytest.approx(p["big"].max(1).mean(), rel=1e-6)


def test_a_dict_names_the_outputs_and_a_list_for_all_is_the_same_run(data):
    x, y = data
    kw = dict(loss=LOSS, epochs=2, batch_size=32, validation_split=0.25, seed=1, verbose=0, device="cpu")
    torch.manual_seed(0)
    h = cnnbench.fit(TwoHeads(), x, y, metrics={"digit": ["accuracy", "nll"], "big": "macro_f1"}, **kw)
    added = {k for k in h.history if k.endswith(("_nll", "_macro_f1"))}
    assert added == {"digit_nll", "val_digit_nll", "big_macro_f1", "val_big_macro_f1"}
    torch.manual_seed(0)
    plain = cnnbench.fit(TwoHeads(), x, y, **kw)
    for key in plain.history:  # metrics do not change the training numbers
        if key != "seconds":
            assert h.history[key] == plain.history[key]
    p = _probabilities(h.model, x[72:])  # validation_split 0.25: the last 24 images
    assert h.history["val_digit_nll"][-1] == pytest.approx(_nll(p["digit"], y["digit"][72:]), rel=1e-6)


def test_a_resumed_fit_logs_the_same_output_metrics_bit_for_bit(data, tmp_path, user_module):
    x, y = data
    kw = dict(loss=LOSS, batch_size=32, validation_split=0.25, seed=2, verbose=0, device="cpu",
              metrics={"digit": ["macro_f1", f"{user_module}:mean_confidence"], "big": ["ece"]})
    full = cnnbench.fit("digits_cnn", x, y, epochs=3, **kw)
    cnnbench.fit("digits_cnn", x, y, epochs=1, checkpoint=tmp_path / "ck.pt", **kw)  # "killed" after epoch 1
    resumed = cnnbench.fit("digits_cnn", x, y, epochs=3, checkpoint=tmp_path / "ck.pt", **kw)
    for key in ("digit_macro_f1", "val_digit_mean_confidence", "big_ece", "val_big_ece", "loss"):
        assert resumed.history[key] == full.history[key]


def test_built_in_output_metrics_survive_save_and_load(data, tmp_path, user_module):
    x, y = data
    h = cnnbench.fit("digits_cnn", x, y, loss=LOSS, epochs=1, batch_size=32, verbose=0, device="cpu",
                     metrics={"digit": ["nll", f"{user_module}:mean_confidence"]})
    saving.save(h.model, tmp_path / "m.pt")
    config = saving.read(tmp_path / "m.pt")[0]
    assert config["metrics"] == {"digit": ["nll"]}  # a metric naming code is not kept: the file names no code
    loaded = saving.load(tmp_path / "m.pt")  # untrusted
    before = cnnbench.evaluate(h.model, x, y, return_dict=True)
    after = cnnbench.evaluate(loaded, x, y, return_dict=True)
    assert "digit_mean_confidence" in before and "digit_mean_confidence" not in after
    # the outputs in their trained order (the file's JSON sorts them: "big" before "digit")
    xs = torch.as_tensor(x).unsqueeze(1)
    trained, reloaded = saving.outputs(h.model, xs), saving.outputs(loaded, xs)
    for name in ("digit", "big"):
        assert torch.allclose(trained[name], reloaded[name], atol=1e-6)
    assert after["digit_nll"] == pytest.approx(before["digit_nll"], rel=1e-6)
    assert after["digit_nll"] == pytest.approx(_nll(_probabilities_of(loaded, x), y["digit"]), rel=1e-6)


def _probabilities_of(model, x):
    out = saving.outputs(model, torch.as_tensor(x).unsqueeze(1))
    logits = out["digit"].double().numpy()
    p = np.exp(logits - logits.max(1, keepdims=True))
    return p / p.sum(1, keepdims=True)


# --- study files ---------------------------------------------------------------------------------

SPEC = {**TWO_OUTPUT_SPEC, "name": "om", "seeds": [0, 1]}
_rows = study_rows


def test_study_metrics_with_targets_are_canonical_per_output(user_module):
    ref = f"{user_module}:mean_confidence"
    listed = Study.from_dict({**SPEC, "metrics": ["macro_f1", ref]}).runs[0]
    tabled = Study.from_dict({**SPEC, "metrics": {"big": ["macro_f1", ref], "digit": ["accuracy", "macro_f1", ref]}})
    assert listed.config["metrics"] == {"digit": ["macro_f1", ref], "big": ["macro_f1", ref]}
    assert listed.key == tabled.runs[0].key  # a list for every output and the table it means: one run
    plain = Study.from_dict(SPEC).runs[0]
    assert "metrics" not in plain.config
    # accuracy is always recorded: naming it changes nothing, with or without targets
    assert Study.from_dict({**SPEC, "metrics": ["accuracy"]}).runs[0].key == plain.key
    assert Study.from_dict({**SPEC, "metrics": {"digit": "accuracy"}}).runs[0].key == plain.key
    one = {"name": "one", "epochs": 1}
    assert Study.from_dict({**one, "metrics": ["acc"]}).runs[0].key == Study.from_dict(one).runs[0].key
    # early stopping may monitor an output's metric
    es = Study.from_dict({**SPEC, "metrics": {"digit": ["macro_f1"]},
                          "early_stopping": {"monitor": "val_digit_macro_f1", "patience": 1}})
    assert es.runs[0].config["early_stopping"]["monitor"] == "val_digit_macro_f1"


@pytest.mark.parametrize("change, words", [
    ({"metrics": {"digits": ["macro_f1"]}}, "metrics names output 'digits', which the model does not have; "
                                            "did you mean 'digit'?"),
    ({"metrics": {"digit": ["macro_f2"]}}, "unknown metric 'macro_f2'"),
    ({"metrics": [["macro_f1"], ["ece"]]}, "metrics: [['macro_f1'], ['ece']] is not a list of names; give one"),
    ({"metrics": {"digit": [1]}}, "metrics of output 'digit' must be a metric name or a list of names"),
    ({"targets": None, "loss": "sparse_categorical_crossentropy", "loss_weights": None,
      "metrics": {"digit": ["ece"]}}, "but the run has no targets"),
    ({"metrics": {"digit": ["ece"]}, "analysis": {"metric": "test_big_ece_x"}}, "unknown metric 'test_big_ece_x'"),
])
def test_bad_output_metrics_are_one_line(change, words):
    spec = {k: v for k, v in {**SPEC, **change}.items() if v is not None}
    with pytest.raises(UserError) as e:
        Study.from_dict(spec)
    assert words in str(e.value) and "\n" not in str(e.value)


def test_a_study_records_ranks_and_resumes_output_metrics(tmp_path, user_module, monkeypatch):
    from cnnbench import analysis
    from cnnbench.data import load

    ref = f"{user_module}:mean_confidence"
    spec = {**SPEC, "save_models": True, "metrics": {"digit": ["macro_f1", ref], "big": [ref]},
            "analysis": {"metric": "test_digit_mean_confidence"}}
    study = Study.from_dict(spec)
    out = tmp_path / "out"
    result = study.run(out, workers=1)
    assert result.ran == 2 and not result.failed
    names = {n for (n,) in _rows(out, "SELECT DISTINCT name FROM history_metrics")}
    assert {"digit_macro_f1", "val_digit_macro_f1", "digit_mean_confidence", "val_digit_mean_confidence",
            "big_mean_confidence", "val_big_mean_confidence"} <= names
    assert "big_macro_f1" not in names  # not asked for big (its test_big_macro_f1 is evaluated as always)
    # the stored test values are the metric on the saved model's test-set probabilities
    ds = load({"name": "digits"})
    for key, custom in _rows(out, "SELECT key, custom_metrics FROM runs"):
        custom = json.loads(custom)
        model = saving.load(out / "models" / f"{key}.pt")
        p = saving.outputs(model, ds.x_test)
        logits = p["digit"].double().numpy()
        digit = np.exp(logits - logits.max(1, keepdims=True))
        digit /= digit.sum(1, keepdims=True)
        q = torch.sigmoid(p["big"].double()).numpy()[:, 0]
        assert custom["test_digit_mean_confidence"] == pytest.approx(digit.max(1).mean(), rel=1e-5)
        assert custom["test_big_mean_confidence"] == pytest.approx(np.maximum(q, 1 - q).mean(), rel=1e-5)
        assert custom["test_digit_macro_f1"] == pytest.approx(_macro_f1(digit, ds.y_test.numpy()), abs=1e-9)
        assert custom["val_big_mean_confidence"] is not None
    # ranked by it, as the report's metric
    sc = analysis.compare_study(out)
    assert sc.metric.name == "test_digit_mean_confidence" and sc.metric.label == "test digit mean_confidence"
    frame = study.results(out)
    assert frame["test_digit_mean_confidence"].notna().all()
    assert sc.cells[0].comparison.ranking.iloc[0]["mean"] == pytest.approx(frame["test_digit_mean_confidence"].mean())
    # an interrupted run resumes from its checkpoint with the same numbers, bit for bit
    interrupt_while_recording(study, tmp_path / "again", monkeypatch)
    assert study.run(tmp_path / "again", workers=1).ran == 2
    for sql in ("SELECT key, test_loss, custom_metrics FROM runs ORDER BY key",
                "SELECT run_key, epoch, name, value FROM history_metrics ORDER BY run_key, epoch, name"):
        assert _rows(tmp_path / "again", sql) == _rows(out, sql)
