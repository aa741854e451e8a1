"""Keras' habits in `fit` / `evaluate` (issue 21): the arguments Keras users pass, with Keras' meaning.

The expected batch orders, epoch numbers and evaluate orders below are what Keras 3.15 (torch backend) did on
the same cases; the tests taking `keras_torch` check them against Keras itself where it is installed (marked slow:
importing keras takes seconds).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from study_helpers import TWO_OUTPUT_LOSS, TwoHeads, two_output_data
from torch import nn

import cnnbench
from cnnbench.callbacks import LambdaCallback
from cnnbench.engine.evaluation import keras_order
from cnnbench.errors import UserError

# the warning of a steps_per_epoch that cuts a pass short (checked where it is the subject, with pytest.warns)
pytestmark = pytest.mark.filterwarnings("ignore:steps_per_epoch=.* does not divide:UserWarning")

N, BATCH = 10, 3  # 4 batches per pass: [0 1 2] [3 4 5] [6 7 8] [9]


class Recorder(nn.Module):
    """Logits of a linear layer; in training mode it records which images each batch held (pixel 0 = index)."""

    def __init__(self, classes: int = 3):
        super().__init__()
        torch.manual_seed(0)
        self.fc = nn.Linear(16, classes)
        self.batches: list[list[int]] = []

    def forward(self, x):
        if self.training:
            self.batches.append([round(v * 255) for v in x[:, 0, 0, 0].tolist()])
        return self.fc(x.flatten(1))


def _indexed(n: int = N):
    x = np.zeros((n, 4, 4), dtype=np.uint8)
    x[:, 0, 0] = np.arange(n)
    return x, np.arange(n) % 3


def _batches_per_epoch(**fit_options):
    """What `fit` trained: ([[batch, ...] per epoch], the History, [whether each epoch was validated])."""
    x, y = _indexed()
    model = Recorder()
    per_epoch: list[list[list[int]]] = []
    starts: list[int] = []
    validated: list[bool] = []
    mark = LambdaCallback(on_epoch_begin=lambda epoch, logs: starts.append(len(model.batches)),
                          on_epoch_end=lambda epoch, logs: (per_epoch.append(model.batches[starts[-1]:]),
                                                            validated.append("val_loss" in logs)),
                          on_train_end=lambda logs: setattr(model, "train_end_logs", logs))
    h = cnnbench.fit(model, x, y, batch_size=BATCH, verbose=0, device="cpu", num_classes=3, callbacks=[mark],
                     **fit_options)
    return per_epoch, h, validated


IN_ORDER = [[0, 1, 2], [3, 4, 5], [6, 7, 8], [9]]


def _images(batches: list[list[int]]) -> list[int]:
    return [i for batch in batches for i in batch]


# --- fit: shuffle, steps_per_epoch, initial_epoch, validation_freq --------------------------------------------
def test_shuffle_false_trains_the_batches_in_order_and_batch_shuffles_within_each_batch():
    per_epoch, _, _ = _batches_per_epoch(epochs=2, shuffle=False)
    assert per_epoch == [IN_ORDER, IN_ORDER]
    per_epoch, _, _ = _batches_per_epoch(epochs=2, shuffle="batch")
    for epoch in per_epoch:
        assert [sorted(b) for b in epoch] == IN_ORDER
    assert per_epoch[0] != IN_ORDER or per_epoch[1] != IN_ORDER  # 3 shuffled batches of 3, twice: not all in order
    shuffled, _, _ = _batches_per_epoch(epochs=2)  # the default: a new permutation every epoch
    assert [sorted(_images(e)) for e in shuffled] == [list(range(N))] * 2 and shuffled[0] != shuffled[1]


def test_steps_per_epoch_continues_the_pass_across_epochs_as_keras_iterator_over_arrays():
    # fewer steps than a pass: each epoch takes the next batches; the epoch that reaches the end stops there
    per_epoch, h, _ = _batches_per_epoch(epochs=5, shuffle=False, steps_per_epoch=2)
    assert per_epoch == [IN_ORDER[:2], IN_ORDER[2:], IN_ORDER[:2], IN_ORDER[2:], IN_ORDER[:2]]
    assert h.params["steps"] == 2
    with pytest.warns(UserWarning, match="steps_per_epoch=3 does not divide the 4 batches"):  # Keras warns too
        per_epoch, _, _ = _batches_per_epoch(epochs=3, shuffle=False, steps_per_epoch=3)
    assert per_epoch == [IN_ORDER[:3], IN_ORDER[3:], IN_ORDER[:3]]
    # more steps than a pass: an epoch is one pass (Keras warns that the input ran out of data)
    with pytest.warns(UserWarning, match="does not divide"):
        per_epoch, _, _ = _batches_per_epoch(epochs=3, shuffle=False, steps_per_epoch=6)
    assert per_epoch == [IN_ORDER] * 3
    # shuffled: one permutation per pass, continued by the next epoch, then a new one
    per_epoch, _, _ = _batches_per_epoch(epochs=4, steps_per_epoch=3)
    assert [len(e) for e in per_epoch] == [3, 1, 3, 1]
    assert sorted(_images(per_epoch[0] + per_epoch[1])) == list(range(N))
    assert sorted(_images(per_epoch[2] + per_epoch[3])) == list(range(N))
    assert per_epoch[0] + per_epoch[1] != per_epoch[2] + per_epoch[3]


def test_steps_per_epoch_epoch_logs_average_the_epochs_own_batches():
    x, y = _indexed()
    model = Recorder()
    h = cnnbench.fit(model, x, y, batch_size=BATCH, epochs=2, shuffle=False, steps_per_epoch=3, verbose=0,
                     device="cpu", num_classes=3, optimizer={"name": "sgd", "learning_rate": 1e-30})
    # steps far below float32's resolution: every epoch's loss is the fixed model's mean over the images it saw
    with torch.no_grad():
        model.eval()
        per_image = nn.functional.cross_entropy(model(torch.as_tensor(x).float()[:, None] / 255),
                                                torch.as_tensor(y), reduction="none")
    assert h.history["loss"][0] == pytest.approx(per_image[:9].mean().item(), rel=1e-6)
    assert h.history["loss"][1] == pytest.approx(per_image[9:].mean().item(), rel=1e-6)


def test_initial_epoch_numbers_the_epochs_from_it(capsys):
    seen = []
    per_epoch, h, _ = _batches_per_epoch(epochs=5, initial_epoch=3, shuffle=False)
    assert h.epoch == [3, 4] and len(per_epoch) == 2 and h.params["epochs"] == 5
    x, y = _indexed()
    cnnbench.fit(Recorder(), x, y, batch_size=BATCH, epochs=5, initial_epoch=3, verbose=2, device="cpu",
                 callbacks=[LambdaCallback(on_epoch_end=lambda epoch, logs: seen.append(epoch))])
    lines = capsys.readouterr().out.splitlines()
    assert seen == [3, 4] and lines[0].startswith("Epoch 4/5 - ") and lines[1].startswith("Epoch 5/5 - ")
    nothing, h, _ = _batches_per_epoch(epochs=2, initial_epoch=2)
    assert nothing == [] and h.epoch == []


def test_initial_epoch_zero_and_the_defaults_change_no_number(tiny_images):
    x, y = tiny_images
    kw = dict(epochs=2, batch_size=64, validation_split=0.2, seed=4, verbose=0, device="cpu")
    plain = cnnbench.fit("digits_cnn", x, y, **kw)
    spelled = cnnbench.fit("digits_cnn", x, y, shuffle=True, initial_epoch=0, validation_freq=1,
                           steps_per_epoch=None, **kw)
    drop = ("seconds",)
    assert {k: v for k, v in plain.history.items() if k not in drop} == \
        {k: v for k, v in spelled.history.items() if k not in drop}
    for a, b in zip(plain.model.parameters(), spelled.model.parameters(), strict=True):
        assert torch.equal(a, b)


def test_validation_freq_validates_on_keras_1_based_epochs():
    x, y = _indexed()
    kw = dict(batch_size=BATCH, epochs=5, verbose=0, device="cpu", num_classes=3, validation_data=(x, y))
    every_second = cnnbench.fit(Recorder(), x, y, validation_freq=2, **kw)
    assert len(every_second.history["loss"]) == 5 and len(every_second.history["val_loss"]) == 2
    logged = []
    listed = cnnbench.fit(Recorder(), x, y, validation_freq=[1, 5], **kw,
                          callbacks=[LambdaCallback(on_epoch_end=lambda e, logs: logged.append("val_loss" in logs))])
    assert logged == [True, False, False, False, True]
    # early stopping on val_loss skips the epochs without validation (Keras warns and skips them)
    stopped = cnnbench.fit(Recorder(), x, y, validation_freq=2, early_stopping={"monitor": "val_loss"}, **kw)
    assert len(listed.history["val_loss"]) == 2
    assert stopped.epoch[0] == 0 and len(stopped.history["val_loss"]) >= 1  # ran, did not refuse val_loss


@pytest.mark.parametrize("bad", [dict(shuffle="yes"), dict(shuffle=1), dict(validation_freq=0),
                                 dict(validation_freq=[0, 2]), dict(validation_freq="2"), dict(initial_epoch=-1),
                                 dict(steps_per_epoch=0), dict(steps_per_epoch=2.5)])
def test_bad_epoch_options_are_one_line(bad):
    x, y = _indexed()
    with pytest.raises(UserError) as e:
        cnnbench.fit(Recorder(), x, y, batch_size=BATCH, verbose=0, device="cpu", **bad)
    assert "\n" not in str(e.value) and next(iter(bad)) in str(e.value)


def test_steps_per_epoch_resumes_mid_pass_as_if_never_stopped(tiny_images, tmp_path):
    x, y = tiny_images  # 600 images, batch 64: 10 batches; 4 per epoch: epochs of 4, 4, 2 batches per pass
    kw = dict(batch_size=64, steps_per_epoch=4, seed=1, verbose=0, device="cpu",
              augmentation={"width_shift_range": 0.1})
    whole = cnnbench.fit("digits_cnn", x, y, epochs=4, checkpoint=tmp_path / "a.pt", **kw)
    cnnbench.fit("digits_cnn", x, y, epochs=2, checkpoint=tmp_path / "b.pt", **kw)  # stopped mid-pass
    resumed = cnnbench.fit("digits_cnn", x, y, epochs=4, checkpoint=tmp_path / "b.pt", **kw)
    assert resumed.history["loss"] == whole.history["loss"]
    for a, b in zip(whole.model.parameters(), resumed.model.parameters(), strict=True):
        assert torch.equal(a, b)


# --- callbacks and the progress display ---------------------------------------------------------------------
def test_on_train_end_gets_the_last_epochs_logs_and_history_model_is_the_model():
    x, y = _indexed()
    got = []
    model = Recorder()
    h = cnnbench.fit(model, x, y, batch_size=BATCH, epochs=2, validation_split=0.3, verbose=0, device="cpu",
                     callbacks=[LambdaCallback(on_train_end=got.append)])
    assert got[0] == {k: v[-1] for k, v in h.history.items()}
    assert {"loss", "accuracy", "val_loss", "val_accuracy"} <= set(got[0])
    assert h.model is model
    got.clear()
    cnnbench.fit(Recorder(), x, y, batch_size=BATCH, epochs=1, initial_epoch=1, verbose=0, device="cpu",
                 callbacks=[LambdaCallback(on_train_end=got.append)])
    assert got == [{}]  # no epoch ran: Keras passes its empty training logs


@pytest.mark.parametrize("verbose", [1, 2])
def test_a_print_in_on_epoch_end_starts_its_own_line(verbose, capsys):
    x, y = _indexed()
    cnnbench.fit(Recorder(), x, y, batch_size=BATCH, epochs=2, verbose=verbose, device="cpu",
                 callbacks=[LambdaCallback(on_epoch_end=lambda epoch, logs: print(f"HELLO {epoch}"))])
    out = capsys.readouterr().out
    for epoch in (0, 1):
        at = out.index(f"HELLO {epoch}\n")
        assert out[at - 1] == "\n"  # the epoch's progress line ended before the callback ran
    assert out.rstrip().endswith("HELLO 1")


# --- evaluate: Keras' verbose and return value ---------------------------------------------------------------
def test_evaluate_returns_keras_list_and_the_dict_with_return_dict(capsys):
    x, y = _indexed()
    h = cnnbench.fit(Recorder(), x, y, batch_size=BATCH, epochs=1, verbose=0, device="cpu", num_classes=3)
    capsys.readouterr()
    scores = cnnbench.evaluate(h.model, x, y, verbose=0, return_dict=True)
    values = cnnbench.evaluate(h.model, x, y, verbose=0)
    assert capsys.readouterr().out == ""
    assert list(scores)[:6] == ["loss", "accuracy", "top5_accuracy", "nll", "ece", "macro_f1"]
    assert values == list(scores.values())  # one output: Keras' order is the compiled order, loss first
    one_line = cnnbench.evaluate(h.model, x, y, verbose=2, batch_size=4, return_dict=True)
    lines = capsys.readouterr().out.splitlines()
    assert one_line["loss"] == pytest.approx(scores["loss"], rel=1e-6)  # batches of 4: float32 sums differ
    assert len(lines) == 1 and lines[0].startswith("3/3 - ")
    assert f"loss: {scores['loss']:.4f}" in lines[0] and f"accuracy: {scores['accuracy']:.4f}" in lines[0]
    cnnbench.evaluate(h.model, x, y)  # "auto": not a terminal here, so Keras' one line
    assert len(capsys.readouterr().out.splitlines()) == 1
    cnnbench.evaluate(h.model, x, y, verbose=1)
    assert "[" + "=" * 30 + "]" in capsys.readouterr().out
    for bad in (3, "yes", True, None):
        with pytest.raises(UserError, match="verbose must be"):
            cnnbench.evaluate(h.model, x, y, verbose=bad)


def test_batch_size_none_and_predict_verbose_are_keras(capsys):
    x, y = _indexed(40)
    h = cnnbench.fit(Recorder(), x, y, batch_size=None, epochs=1, verbose=0, device="cpu", num_classes=3)
    assert h.params["batch_size"] == 32 and h.params["steps"] == 2  # Keras: None is 32
    assert cnnbench.evaluate(h.model, x, y, batch_size=None, verbose=0) == cnnbench.evaluate(h.model, x, y, verbose=0)
    with pytest.raises(UserError, match="batch_size"):
        cnnbench.evaluate(h.model, x, y, batch_size=0, verbose=0)
    images = torch.as_tensor(x).unsqueeze(1)
    capsys.readouterr()
    probs, labels = cnnbench.predict(h.model, images, verbose=0)
    assert capsys.readouterr().out == "" and probs.shape == (40, 3) and torch.equal(labels, probs.argmax(1))
    again, _ = cnnbench.predict(h.model, images, batch_size=4, verbose=2)
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 1 and lines[0].startswith("10/10 - ") and torch.allclose(again, probs)
    with pytest.raises(UserError, match="verbose must be"):
        cnnbench.predict(h.model, images, verbose="yes")


def test_evaluate_with_several_outputs_lists_keras_order():
    x, y = two_output_data(0)
    torch.manual_seed(0)
    h = cnnbench.fit(TwoHeads(), x, y, loss=TWO_OUTPUT_LOSS, epochs=1, batch_size=32, verbose=0, device="cpu")
    scores = cnnbench.evaluate(h.model, x, y, verbose=0, return_dict=True)
    values = cnnbench.evaluate(h.model, x, y, verbose=0)
    rest = sorted(k for k in scores if k not in ("loss", "digit_loss", "big_loss"))
    expected = [scores[k] for k in ["loss", "digit_loss", "big_loss", *rest]]
    assert len(values) == len(expected) == len(scores)
    assert all(a == b or (a != a and b != b) for a, b in zip(values, expected, strict=True))  # NaN where no ece


def test_keras_order_is_keras_flatten_metrics_in_order():
    one = {"loss": 1.0, "accuracy": 2.0, "top5_accuracy": None, "nll": 3.0, "mine": 4.0}
    assert keras_order(one) == [1.0, 2.0, None, 3.0, 4.0]
    two = {"loss": 0, "digit_loss": 1, "big_loss": 2, "digit_accuracy": 3, "big_accuracy": 4, "big_nll": 5}
    assert keras_order(two, ["digit", "big"]) == [0, 1, 2, 4, 5, 3]


# --- against Keras itself ----------------------------------------------------------------------------------------
def _keras_batches(keras, **fit_options):
    """`_batches_per_epoch` for Keras' `model.fit` on the same images (flattened, as its Dense takes them)."""
    import warnings

    x, y = _indexed()
    seen: list[list[int]] = []

    class Recording(keras.Sequential):
        def train_step(self, data):
            seen.append([round(float(v) * 255) for v in keras.ops.convert_to_numpy(data[0][:, 0])])
            return super().train_step(data)

    model = Recording([keras.Input((16,)), keras.layers.Dense(3, activation="softmax")])
    model.compile("sgd", "sparse_categorical_crossentropy", metrics=["accuracy"])
    per_epoch: list[list[list[int]]] = []
    starts: list[int] = []
    validated: list[bool] = []
    mark = keras.callbacks.LambdaCallback(
        on_epoch_begin=lambda epoch, logs: starts.append(len(seen)),
        on_epoch_end=lambda epoch, logs: (per_epoch.append(seen[starts[-1]:]), validated.append("val_loss" in logs)),
        on_train_end=lambda logs: setattr(model, "train_end_logs", logs))
    flat = x.reshape(N, 16).astype("float32") / 255
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Keras' "Your input ran out of data" when an epoch ends a pass early
        h = model.fit(flat, y, batch_size=BATCH, verbose=0, callbacks=[mark], validation_data=(flat, y),
                      **fit_options)
    return per_epoch, h, validated


@pytest.mark.slow  # imports keras (seconds)
@pytest.mark.parametrize("options", [
    dict(epochs=5, shuffle=False, steps_per_epoch=2),
    dict(epochs=3, shuffle=False, steps_per_epoch=3),
    dict(epochs=3, shuffle=False, steps_per_epoch=6),
    dict(epochs=5, shuffle=False, initial_epoch=2, steps_per_epoch=3),
    dict(epochs=6, shuffle=False, initial_epoch=1, validation_freq=2),
    dict(epochs=4, shuffle=False, validation_freq=[1, 4]),
    dict(epochs=4, steps_per_epoch=3),  # shuffled: each side its own order, the same batch sizes
    dict(epochs=2, shuffle="batch"),
])
def test_batches_epochs_and_validation_match_keras(keras_torch, options):
    x, y = _indexed()
    theirs, keras_history, keras_validated = _keras_batches(keras_torch, **options)
    ours, history, validated = _batches_per_epoch(validation_data=(x, y), **options)
    if options.get("shuffle", True) is False:
        assert ours == theirs
    else:
        assert [[len(b) for b in e] for e in ours] == [[len(b) for b in e] for e in theirs]
        if options.get("shuffle") == "batch":
            assert [[sorted(b) for b in e] for e in ours] == [[sorted(b) for b in e] for e in theirs]
    assert set(keras_history.model.train_end_logs) <= set(history.model.train_end_logs)
    assert history.epoch == keras_history.epoch
    assert validated == keras_validated
    assert {k: history.params[k] for k in keras_history.params} == keras_history.params  # verbose, epochs, steps
    assert {k: len(v) for k, v in history.history.items() if k in keras_history.history} == \
        {k: len(v) for k, v in keras_history.history.items()}


@pytest.mark.slow  # imports keras (seconds)
def test_evaluate_matches_keras_evaluate(keras_torch):
    keras = keras_torch
    x, y = _indexed()
    ours = Recorder().eval()
    ref = keras.Sequential([keras.Input((16,)), keras.layers.Dense(3, activation="softmax")])
    ref.set_weights([ours.fc.weight.detach().numpy().T, ours.fc.bias.detach().numpy()])
    ref.compile("sgd", "sparse_categorical_crossentropy", metrics=["accuracy"])
    flat = x.reshape(N, 16).astype("float32") / 255
    theirs = ref.evaluate(flat, y, verbose=0)
    mine = cnnbench.evaluate(ours, x, y, loss="sparse_categorical_crossentropy", num_classes=3, verbose=0)
    assert len(theirs) == 2 and mine[0] == pytest.approx(theirs[0], rel=1e-5)
    assert mine[1] == pytest.approx(theirs[1], rel=1e-6)  # Keras' accuracy is a float32
    names = ref.evaluate(flat, y, verbose=0, return_dict=True)
    assert set(names) <= set(cnnbench.evaluate(ours, x, y, num_classes=3, verbose=0, return_dict=True))


@pytest.mark.slow  # imports keras (seconds)
def test_keras_order_matches_keras_with_several_outputs(keras_torch):
    keras = keras_torch
    x, y = two_output_data(0)
    flat = x.reshape(len(x), 64).astype("float32") / 255
    inputs = keras.Input((64,))
    outputs = {"digit": keras.layers.Dense(10, activation="softmax", name="digit")(inputs),
               "big": keras.layers.Dense(1, activation="sigmoid", name="big")(inputs)}
    ref = keras.Model(inputs, outputs)
    ref.compile("sgd", loss=TWO_OUTPUT_LOSS, metrics={"digit": ["accuracy"], "big": ["accuracy"]})
    logs = ref.evaluate(flat, y, verbose=0, return_dict=True)
    keras_names = ref._flatten_metrics_in_order({k: k for k in logs})  # the order of its evaluate list
    ours_named = {k: k for k in ["loss", "digit_loss", "big_loss", "digit_accuracy", "big_accuracy"]}
    assert set(ours_named) == set(logs)
    assert keras_order(ours_named, ["digit", "big"]) == keras_names
