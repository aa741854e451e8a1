"""Models with several outputs (Keras' compile(loss={...}, loss_weights={...})): the weighted sum, Keras'
log names, validation, evaluate, resume and save/load."""

import math

import numpy as np
import pytest
import torch
from study_helpers import TWO_OUTPUT_LOSS, TwoHeads, two_output_data
from torch import nn

import cnnbench
from cnnbench import models
from cnnbench.errors import UserError
from cnnbench.store import model_files as saving


@pytest.fixture
def data():
    return two_output_data(0)


LOSS = TWO_OUTPUT_LOSS
WEIGHTS = {"digit": 1.0, "big": 0.5}


def _model(seed=0, dropout=0.25):
    torch.manual_seed(seed)
    return TwoHeads(dropout=dropout)


def _by_hand(model, x, y):
    """Keras' formulas, in float64 numpy: sparse CE on softmax, binary CE on the sigmoid (probabilities
    clipped to [1e-7, 1 - 1e-7]), accuracies, and the weighted sum."""
    model.eval()
    with torch.no_grad():
        out = model(torch.as_tensor(x).float().unsqueeze(1) / 255.0)
    logits = out["digit"].double().numpy()
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    p = np.clip(p, 1e-7, 1 - 1e-7)
    digit_loss = float(-np.log(p[np.arange(len(y["digit"])), y["digit"]]).mean())
    q = np.clip(1 / (1 + np.exp(-out["big"].double().numpy()[:, 0])), 1e-7, 1 - 1e-7)
    t = y["big"]
    big_loss = float(-(t * np.log(q) + (1 - t) * np.log(1 - q)).mean())
    return {"loss": WEIGHTS["digit"] * digit_loss + WEIGHTS["big"] * big_loss, "digit_loss": digit_loss,
            "big_loss": big_loss, "digit_accuracy": float((logits.argmax(1) == y["digit"]).mean()),
            "big_accuracy": float(((q > 0.5).astype(int) == t).mean())}


def test_keras_names_and_the_weighted_sum_by_hand(data):
    x, y = data
    xv, yv = x[:32], {k: v[:32] for k, v in y.items()}
    # learning rate 0 and one batch: the epoch's training numbers are those of the initial weights
    model = _model(dropout=0.0)
    h = cnnbench.fit(model, x, y, loss=LOSS, loss_weights=WEIGHTS,
                     optimizer=torch.optim.SGD(model.parameters(), lr=0.0),
                     epochs=1, batch_size=96, validation_data=(xv, yv), verbose=0, device="cpu")
    assert list(h.history) == ["loss", "digit_loss", "big_loss", "digit_accuracy", "big_accuracy",
                               "val_loss", "val_digit_loss", "val_big_loss", "val_digit_accuracy",
                               "val_big_accuracy", "learning_rate", "seconds"]
    train, val = _by_hand(model, x, y), _by_hand(model, xv, yv)
    for k, v in train.items():
        assert h.history[k][0] == pytest.approx(v, rel=1e-5), k
        assert h.history[f"val_{k}"][0] == pytest.approx(val[k], rel=1e-5), k
    assert train["loss"] == pytest.approx(train["digit_loss"] + 0.5 * train["big_loss"])
    scores = cnnbench.evaluate(h.model, x, y, return_dict=True)
    for k, v in train.items():
        assert scores[k] == pytest.approx(v, rel=1e-5), k
    assert {"digit_nll", "digit_macro_f1", "big_ece", "digit_top5_accuracy"} <= set(scores)
    assert scores["digit_nll"] == pytest.approx(train["digit_loss"], rel=1e-5)  # NLL is CE on one-hot labels


def test_a_missing_weight_is_one_and_one_loss_serves_every_output(data):
    x, y = data
    y2 = {"a": y["digit"], "b": y["digit"]}

    class Twin(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Linear(64, 10), nn.Linear(64, 10)

        def forward(self, x):
            x = x.flatten(1)
            return {"a": self.a(x), "b": self.b(x)}

    torch.manual_seed(0)
    twin = Twin()
    h = cnnbench.fit(twin, x, y2, loss="categorical_crossentropy", loss_weights={"a": 2.0},
                     optimizer=torch.optim.SGD(twin.parameters(), lr=0.0), epochs=1, batch_size=96, verbose=0,
                     device="cpu")
    assert h.history["loss"][0] == pytest.approx(2.0 * h.history["a_loss"][0] + h.history["b_loss"][0], rel=1e-6)


def test_validation_split_and_early_stopping_on_an_output(data):
    x, y = data
    h = cnnbench.fit(_model(), x, y, loss=LOSS, loss_weights=WEIGHTS, epochs=3, batch_size=16,
                     validation_split=0.25, verbose=0, device="cpu",
                     early_stopping={"monitor": "val_big_accuracy", "patience": 5})
    assert len(h.history["val_digit_accuracy"]) == 3
    assert all(0 <= v <= 1 for v in h.history["val_big_accuracy"])


def test_resumed_multi_output_run_is_bit_identical(data, tmp_path):
    x, y = data
    kw = dict(loss=LOSS, loss_weights=WEIGHTS, batch_size=16, validation_split=0.25, seed=3, verbose=0,
              device="cpu", metrics={"digit": ["macro_f1"]})
    full = cnnbench.fit(_model(), x, y, epochs=4, **kw)
    ck = tmp_path / "ck.pt"
    cnnbench.fit(_model(), x, y, epochs=2, checkpoint=ck, **kw)  # "killed" after epoch 2
    resumed = cnnbench.fit(_model(), x, y, epochs=4, checkpoint=ck, **kw)
    drop = lambda h: {k: v for k, v in h.history.items() if k != "seconds"}  # noqa: E731
    assert resumed.epoch == [0, 1, 2, 3]
    assert drop(resumed) == drop(full)
    for a, b in zip(resumed.model.state_dict().values(), full.model.state_dict().values()):
        assert torch.equal(a, b)


def test_save_and_load_round_trip_the_loss_config(data, tmp_path):
    x, y = data

    @models.REGISTRY.register("two_heads_for_multi_output_test")
    def two_heads(input_shape, num_outputs, *, dropout=0.0):
        return TwoHeads(input_shape, num_outputs, dropout)

    try:
        torch.manual_seed(0)
        model = models.get("two_heads_for_multi_output_test", input_shape=(1, 8, 8), num_outputs=10)
        cnnbench.fit(model, x, y, loss=LOSS, loss_weights={"big": 0.5}, epochs=1, batch_size=32, verbose=0,
                     device="cpu")
        saving.save(model, tmp_path / "m.pt")
        config = saving.read(tmp_path / "m.pt")[0]
        assert config["outputs"] == ["digit", "big"]
        assert config["loss"]["digit"]["name"] == "sparse_categorical_crossentropy"
        assert config["loss"]["big"]["name"] == "binary_crossentropy"
        assert config["loss_weights"] == {"big": 0.5} and config["num_classes"] == {"digit": 10, "big": 2}
        loaded = saving.load(tmp_path / "m.pt")
        before = cnnbench.evaluate(model, x, y, return_dict=True)
        after = cnnbench.evaluate(loaded, x, y, loss=None, return_dict=True)
        assert after["loss"] == pytest.approx(before["loss"], rel=1e-6)
        assert after["big_loss"] == pytest.approx(before["big_loss"], rel=1e-6)
        probs, labels = saving.predict(loaded, torch.as_tensor(x).unsqueeze(1))
        assert probs["digit"].shape == (96, 10) and probs["big"].shape == (96, 2) and labels["big"].shape == (96,)
    finally:
        models.REGISTRY._entries.pop("two_heads_for_multi_output_test", None)
        models.REGISTRY._keys.pop("twoheadsformultioutputtest", None)


def test_a_saved_multi_output_loss_naming_code_is_refused_untrusted(tmp_path):
    torch.manual_seed(0)
    model = models.get("digits_cnn", input_shape=(1, 8, 8), num_outputs=10)
    saving.save(model, tmp_path / "m.pt", config={"outputs": ["a"], "loss": {"a": {"name": "evil_mod:loss"}},
                                                  "num_classes": {"a": 10}})
    with pytest.raises(UserError, match="evil_mod:loss"):
        saving.load(tmp_path / "m.pt")


@pytest.mark.parametrize("kwargs, match", [
    (dict(loss={"digit": "categorical_crossentropy"}), r"loss names the outputs \['digit'\], but the labels"),
    (dict(loss_weights={"digits": 1.0}), "loss_weights names output 'digits'.*did you mean 'digit'"),
    (dict(loss_weights={"big": "x"}), r"loss_weights\['big'\] must be a number"),
    (dict(class_weight="balanced"), "class_weight applies to a model with one output"),
    (dict(validation_data=(np.zeros((4, 8, 8)), [0, 1, 2, 3])), "validation_data's y must be a dict"),
    (dict(metrics=[["macro_f1"], ["ece"]]), "a list of names applies to every output"),
    (dict(metrics={"digits": ["ece"]}), "metrics names output 'digits'.*did you mean 'digit'"),
    (dict(metrics={"big": [1]}), "metrics of output 'big' must be a metric name or a list"),
])
def test_bad_multi_output_input_is_one_line(data, kwargs, match):
    x, y = data
    kw = dict(loss=LOSS, epochs=1, batch_size=32, verbose=0, device="cpu")
    kw.update(kwargs)
    with pytest.raises(UserError, match=match):
        cnnbench.fit(_model(), x, y, **kw)


def test_outputs_must_match_the_labels(data):
    x, y = data
    with pytest.raises(UserError, match="forward returns"):
        cnnbench.fit(_model(), x, {"digit": y["digit"], "small": y["big"]},
                     loss={"digit": "sparse_categorical_crossentropy", "small": "binary_crossentropy"},
                     epochs=1, batch_size=32, verbose=0, device="cpu")
    # a registry model gets one head per output (what a study file's targets = {...} trains)
    built = cnnbench.fit("digits_cnn", x, y, loss=LOSS, epochs=1, batch_size=32, verbose=0, device="cpu").model
    assert {k: v.shape[1] for k, v in built(torch.rand(2, 1, 8, 8)).items()} == {"digit": 10, "big": 1}
    with pytest.raises(UserError, match="loss_weights weighs the losses of several outputs"):
        cnnbench.fit("digits_cnn", x, y["digit"], loss_weights={"a": 1.0}, epochs=1, verbose=0, device="cpu")
    assert math.isfinite(cnnbench.fit(_model(), x, y, loss=LOSS, epochs=1, batch_size=32, verbose=0,
                                      device="cpu").history["loss"][0])
