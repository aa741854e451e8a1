"""Callbacks are a registry like every other family (issue 22): a study names Keras' EarlyStopping by its
class name, its options are declared and checked where the study is read, and the callback built from
the name is the same one `early_stopping = {...}` builds."""

from __future__ import annotations

import numpy as np
import pytest

import cnnbench
from cnnbench import callbacks
from cnnbench.errors import UserError
from cnnbench.spec import build_callbacks, parse_text

BASE = 'name = "cb"\nepochs = 1\n'


def test_a_study_names_early_stopping_as_keras_does_and_gets_every_option_explicit():
    run = parse_text(BASE + 'callbacks = [{ name = "EarlyStopping", monitor = "val_loss", patience = 2 }]\n').runs[0]
    assert run.config["callbacks"] == [{"name": "early_stopping", "monitor": "val_loss", "min_delta": 0.0,
                                        "patience": 2, "mode": "auto", "restore_best_weights": False,
                                        "start_from_epoch": 0}]
    (built,) = build_callbacks(run.config["callbacks"])
    assert isinstance(built, callbacks.EarlyStopping) and built.patience == 2
    assert "early_stopping" in callbacks.REGISTRY and callbacks.REGISTRY.list() == ["early_stopping"]


@pytest.mark.parametrize(("entry", "error", "match"), [
    ('{ name = "EarlyStopping", patience = -1 }', UserError, "patience.*>= 0"),
    ('{ name = "EarlyStopping", mode = "down" }', UserError, "mode"),
    ('{ name = "EarlyStopping", patients = 3 }', UserError, "has no option 'patients'; did you mean 'patience'"),
    ('{ name = "EarlyStoping" }', UserError, "unknown callback 'EarlyStoping'; did you mean 'EarlyStopping'"),
])
def test_a_bad_callback_option_or_name_is_one_line_when_the_study_is_read(entry, error, match):
    with pytest.raises(error, match=match) as e:
        parse_text(BASE + f"callbacks = [{entry}]\n")
    assert "\n" not in str(e.value)


def test_the_named_callback_stops_training_as_early_stopping_does():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, size=(96, 8, 8, 1), dtype=np.uint8)
    y = rng.integers(0, 10, size=96)
    kw = dict(epochs=6, batch_size=32, verbose=0, device="cpu", validation_split=0.25)
    options = {"monitor": "loss", "min_delta": 10.0, "patience": 1}  # never improves by 10: stops after epoch 1
    by_key = cnnbench.fit("digits_cnn", x, y, early_stopping=options, **kw)
    by_name = cnnbench.fit("digits_cnn", x, y, callbacks=build_callbacks([{"name": "EarlyStopping", **options}]), **kw)
    assert by_key.epoch == by_name.epoch == [0, 1]
    assert by_key.stopped_epoch == by_name.stopped_epoch == 1
    assert by_key.history["loss"] == by_name.history["loss"]
