"""The engine: Keras-like fit/evaluate, input layouts, determinism, early stopping, NaN guard, resume."""

import numpy as np
import pytest
import torch
from torch import nn

import cnnbench
from cnnbench.callbacks import EarlyStopping
from cnnbench.engine.inputs import to_images
from cnnbench.errors import UserError


def _drop_seconds(h):
    return {k: v for k, v in h.history.items() if k != "seconds"}


def test_fit_learns_and_returns_keras_like_history(tiny_images):
    x, y = tiny_images
    h = cnnbench.fit("digits_cnn", x, y, epochs=4, batch_size=32, validation_split=0.2, seed=0)
    assert h.epoch == [0, 1, 2, 3]
    assert set(h.history) >= {"loss", "accuracy", "val_loss", "val_accuracy", "learning_rate"}
    assert h.history["val_accuracy"][-1] > 0.9  # the class is visible in the pixels
    assert h.history["loss"][-1] < h.history["loss"][0]
    res = cnnbench.evaluate(h.model, x, y, return_dict=True)
    assert set(res) == {"loss", "accuracy", "top5_accuracy", "nll", "ece", "macro_f1"} and res["accuracy"] > 0.9
    assert res["top5_accuracy"] is None  # 4 classes: every class is in the top 5


@pytest.mark.parametrize("layout", ["NHW", "NHWC", "NCHW"])
def test_image_layouts_are_accepted(layout):
    x = np.zeros((5, 8, 8), np.uint8)
    x = {"NHW": x, "NHWC": x[..., None], "NCHW": x[:, None]}[layout]
    assert tuple(to_images(x).shape) == (5, 1, 8, 8)
    assert tuple(to_images(np.zeros((5, 32, 32, 3), np.uint8)).shape) == (5, 3, 32, 32)


def test_same_seed_same_history_bit_for_bit(tiny_images):
    x, y = tiny_images
    runs = [cnnbench.fit("digits_cnn", x, y, epochs=2, batch_size=16, validation_split=0.1, seed=3,
                         loss="mse", optimizer="rmsprop") for _ in range(2)]
    assert _drop_seconds(runs[0]) == _drop_seconds(runs[1])
    other = cnnbench.fit("digits_cnn", x, y, epochs=2, batch_size=16, validation_split=0.1, seed=4,
                         loss="mse", optimizer="rmsprop")
    assert _drop_seconds(other) != _drop_seconds(runs[0])


def test_validation_split_takes_the_last_fraction_like_keras(tiny_images):
    x, y = tiny_images
    h = cnnbench.fit("digits_cnn", x, y, epochs=1, batch_size=32, validation_split=0.25)
    # validation on the last 150 images: evaluate on exactly those and compare
    res = cnnbench.evaluate(h.model, x[450:], y[450:], return_dict=True)
    assert res["loss"] == pytest.approx(h.history["val_loss"][-1], rel=1e-5)


def test_early_stopping_stops_and_restores_best_weights():
    es = EarlyStopping(monitor="val_loss", patience=2, restore_best_weights=True)

    class T:  # a minimal trainer stand-in
        stop_training = False
        model = nn.Linear(1, 1)
        history = cnnbench.History()

    es.trainer = T
    for epoch, v in enumerate([1.0, 0.5, 0.6, 0.7, 0.4]):
        if T.stop_training:
            break
        T.model.weight.data.fill_(v)
        es.on_epoch_end(epoch, {"val_loss": v})
    assert T.stop_training and T.history.stopped_epoch == 3 and es.best_epoch == 1
    es.on_train_end()
    assert T.model.weight.item() == 0.5


def test_early_stopping_in_fit_ends_before_epochs(tiny_images):
    x, y = tiny_images
    h = cnnbench.fit("digits_cnn", x, y, epochs=30, batch_size=64, validation_split=0.2,
                     early_stopping={"monitor": "val_accuracy", "patience": 1, "min_delta": 0.5})
    assert h.stopped_epoch is not None and len(h.epoch) < 30


def test_an_early_stopping_callback_reused_for_another_fit_starts_afresh(tiny_images):
    # Keras resets EarlyStopping in on_train_begin; a reused callback must neither stop the second fit
    # on the first fit's best value nor hand it the first fit's weights.
    x, y = tiny_images
    es = EarlyStopping(monitor="val_loss", patience=1, restore_best_weights=True)
    first = cnnbench.fit("digits_cnn", x, y, epochs=6, batch_size=64, validation_split=0.2, callbacks=[es])
    first_weights = {k: v.clone() for k, v in first.model.state_dict().items()}
    # a barely-moving second fit: its val_loss improves a little every epoch, but stays above the first's
    second = cnnbench.fit("digits_cnn", x, y, epochs=3, batch_size=64, validation_split=0.2, seed=1,
                          optimizer={"name": "sgd", "learning_rate": 1e-4}, callbacks=[es])
    assert min(second.history["val_loss"]) > min(first.history["val_loss"])
    assert second.epoch == [0, 1, 2] and second.stopped_epoch is None
    assert es.best_epoch == 2
    assert not torch.equal(second.model.state_dict()["dense.weight"], first_weights["dense.weight"])


def test_nan_loss_is_recorded_as_diverged(tiny_images):
    x, y = tiny_images
    h = cnnbench.fit("digits_cnn", x, y, epochs=5, batch_size=32,
                     optimizer={"name": "sgd", "learning_rate": 1e30})
    assert h.status == "diverged"
    assert not np.isfinite(h.history["loss"][-1])
    assert len(h.epoch) < 5 or not np.isfinite(h.history["loss"][-1])


def test_checkpoint_resume_equals_uninterrupted(tiny_images, tmp_path):
    x, y = tiny_images
    kw = dict(batch_size=32, validation_split=0.1, seed=1, loss="categorical_crossentropy", optimizer="adam")
    full = cnnbench.fit("digits_cnn", x, y, epochs=4, **kw)
    ck = tmp_path / "ck.pt"
    cnnbench.fit("digits_cnn", x, y, epochs=2, checkpoint=ck, **kw)  # "killed" after epoch 2
    resumed = cnnbench.fit("digits_cnn", x, y, epochs=4, checkpoint=ck, **kw)
    assert resumed.epoch == [0, 1, 2, 3]
    assert _drop_seconds(resumed) == _drop_seconds(full)
    state = torch.load(ck, weights_only=True)  # the checkpoint loads without pickle
    assert state["history"]["epoch"] == [0, 1, 2, 3]


def test_fit_accepts_a_module_and_an_optimizer_object(tiny_images):
    x, y = tiny_images
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 4))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    h = cnnbench.fit(model, x, y, epochs=2, batch_size=32, optimizer=opt)
    assert h.model is model and len(h.epoch) == 2


@pytest.mark.parametrize("kwargs, match", [
    (dict(epochs=-1), "epochs must be a whole number >= 0"),
    (dict(epochs=1.5), "epochs must be a whole number >= 0"),
    (dict(batch_size=8.0), "batch_size must be a whole number >= 1"),
    (dict(batch_size=10_000), "batch_size 10000 must be between 1 and the 600"),
    (dict(micro_batch_size=-1), "micro_batch_size must be a whole number >= 1"),
    (dict(validation_split=1.5), "validation_split must be in"),
    (dict(validation_data=([1],)), "validation_data must be a pair"),
    (dict(sample_weight=[1.0] * 10), "sample_weight has shape .10,.; give one weight per image .600."),
    (dict(num_classes=2), "labels span 0..3, outside 0..1"),
    (dict(early_stopping={"patiance": 2}), "early_stopping has no option 'patiance'; did you mean 'patience'"),
    (dict(micro_batch_size=8, loss={"name": "categorical_crossentropy", "reduction": "sum"}),
     "micro_batch_size needs a loss that averages over the batch"),
    (dict(micro_batch_size=8, loss={"name": "sparse_categorical_crossentropy", "ignore_class": 0}),
     "micro_batch_size needs a loss that averages over the batch"),
    (dict(loss="nope"), "unknown loss 'nope'"),
    (dict(device="tpu"), "unknown device"),
])
def test_fit_rejects_bad_arguments(tiny_images, kwargs, match):
    x, y = tiny_images
    with pytest.raises(UserError, match=match):
        cnnbench.fit("digits_cnn", x, y, **{"epochs": 1, **kwargs})


def test_micro_batches_accumulate_the_same_gradient(tiny_images):
    x, y = tiny_images

    def run(micro):
        torch.manual_seed(0)
        model = nn.Sequential(nn.Flatten(), nn.Linear(64, 16), nn.ReLU(), nn.Linear(16, 4))  # no dropout, no BN
        return cnnbench.fit(model, x, y, epochs=2, batch_size=128, optimizer="sgd", micro_batch_size=micro)

    full, accumulated = run(None), run(32)
    for k in ("loss", "accuracy"):
        assert accumulated.history[k] == pytest.approx(full.history[k], rel=1e-5)
    w_full = [p.detach() for p in full.model.parameters()]
    w_acc = [p.detach() for p in accumulated.model.parameters()]
    assert all(torch.allclose(a, b, rtol=1e-5, atol=1e-6) for a, b in zip(w_full, w_acc))


def test_model_weight_penalty_is_part_of_the_loss_like_keras(tiny_images):
    x, y = tiny_images

    class Penalised(nn.Sequential):
        def regularization_loss(self):
            return 0.0 * self[1].weight.sum() + 1.0

    torch.manual_seed(0)
    plain = cnnbench.fit(nn.Sequential(nn.Flatten(), nn.Linear(64, 4)), x, y, epochs=1, batch_size=600,
                         optimizer="sgd")
    torch.manual_seed(0)
    pen = cnnbench.fit(Penalised(nn.Flatten(), nn.Linear(64, 4)), x, y, epochs=1, batch_size=600, optimizer="sgd")
    assert pen.history["loss"][0] == pytest.approx(plain.history["loss"][0] + 1.0, rel=1e-6)
    assert cnnbench.evaluate(pen.model, x, y, return_dict=True)["loss"] == pytest.approx(
        cnnbench.evaluate(plain.model, x, y, return_dict=True)["loss"] + 1.0, rel=1e-6)


def test_schedule_free_is_evaluated_on_its_averaged_weights(tiny_images):
    x, y = tiny_images
    h = cnnbench.fit("digits_cnn", x, y, epochs=2, batch_size=32, validation_split=0.2,
                     optimizer={"name": "schedule_free_adamw", "learning_rate": 0.01})
    res = cnnbench.evaluate(h.model, x[480:], y[480:], return_dict=True)
    assert res["loss"] == pytest.approx(h.history["val_loss"][-1], rel=1e-5)  # same weights as validation


def test_class_weight_from_a_study_file_uses_string_keys(tiny_images):
    x, y = tiny_images
    h = cnnbench.fit("digits_cnn", x, y, epochs=1, batch_size=32, class_weight={"0": 1.0, "1": 2.0, "2": 1.0, "3": 1.0})
    assert np.isfinite(h.history["loss"][0])


def test_bf16_precision_trains_and_keeps_float32_weights(tiny_images):
    x, y = tiny_images
    h = cnnbench.fit("digits_cnn", x, y, epochs=3, batch_size=32, validation_split=0.2, precision="bf16")
    assert h.history["val_accuracy"][-1] > 0.9
    assert all(p.dtype == torch.float32 for p in h.model.parameters())
    with pytest.raises(UserError, match="precision must be one of fp32, bf16"):
        cnnbench.fit("digits_cnn", x, y, epochs=1, precision="fp16")


# --- verbose (Keras' values), checkpoint faults, damaged checkpoints --------------------------------
def test_verbose_follows_keras(tiny_images, capsys):
    x, y = tiny_images
    kw = dict(epochs=2, batch_size=32, validation_split=0.1, seed=0)
    silent = cnnbench.fit("digits_cnn", x, y, verbose=0, **kw)
    assert capsys.readouterr().out == ""
    lines = cnnbench.fit("digits_cnn", x, y, verbose=2, **kw)
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 2 and out[0].startswith("Epoch 1/2 - ") and "val_accuracy: " in out[1]
    bar = cnnbench.fit("digits_cnn", x, y, verbose=1, **kw)
    out = capsys.readouterr().out
    assert out.count("Epoch ") == 2 and "[" + "=" * 30 + "]" in out and "\r" in out
    cnnbench.fit("digits_cnn", x, y, **kw)  # "auto": not a terminal here, so one line per epoch
    assert len(capsys.readouterr().out.splitlines()) == 2
    # what is shown changes nothing that is computed
    assert _drop_seconds(silent) == _drop_seconds(lines) == _drop_seconds(bar)
    for bad in (3, "yes", True, None):
        with pytest.raises(UserError, match="verbose must be"):
            cnnbench.fit("digits_cnn", x, y, verbose=bad, **kw)


@pytest.mark.parametrize("fails", ["write", "os.replace"])
def test_a_full_disk_while_checkpointing_is_one_line_and_leaves_no_temporary_file(tiny_images, tmp_path,
                                                                               monkeypatch, fails):
    import errno
    import os

    from cnnbench.engine import loop
    from cnnbench.errors import EnvironmentFault
    from cnnbench.store import files

    x, y = tiny_images
    ck = tmp_path / "checkpoints" / "k.pt"
    kw = dict(batch_size=32, seed=1, verbose=0, checkpoint=ck)
    cnnbench.fit("digits_cnn", x, y, epochs=1, **kw)
    before = ck.read_bytes()
    if fails == "write":
        class FullDisk:  # writes a part of the file, then the disk is full
            def __init__(self, path, mode):
                self.fh = open(path, mode)  # noqa: SIM115  (a stand-in file object; closed in __exit__)

            def write(self, data):
                self.fh.write(bytes(data)[:4])
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(self.fh.name))

            def __enter__(self):
                return self

            def __exit__(self, *exc):
                self.fh.close()

        monkeypatch.setattr(files, "open", FullDisk, raising=False)  # the checkpoint is written by files.atomic_write
    else:
        def broken(src, dst):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(dst))
        monkeypatch.setattr(loop.os, "replace", broken)
    with pytest.raises(EnvironmentFault) as err:
        cnnbench.fit("digits_cnn", x, y, epochs=3, **kw)
    message = str(err.value)
    assert "\n" not in message and str(ck) in message and "free space" in message
    assert sorted(p.name for p in ck.parent.iterdir()) == ["k.pt"]  # no temporary file
    assert ck.read_bytes() == before  # the last good checkpoint is intact
    monkeypatch.undo()
    resumed = cnnbench.fit("digits_cnn", x, y, epochs=3, **kw)  # space is back: the run resumes
    full = cnnbench.fit("digits_cnn", x, y, epochs=3, batch_size=32, seed=1, verbose=0)
    assert _drop_seconds(resumed) == _drop_seconds(full)


@pytest.mark.parametrize("damage", ["truncated", "garbage", "pickle", "empty"])
def test_a_damaged_checkpoint_is_set_aside_and_the_run_starts_again(tiny_images, tmp_path, damage, caplog):
    import pickle

    x, y = tiny_images
    ck = tmp_path / "k.pt"
    kw = dict(batch_size=32, validation_split=0.1, seed=1, verbose=0)
    cnnbench.fit("digits_cnn", x, y, epochs=2, checkpoint=ck, **kw)
    data = ck.read_bytes()
    ck.write_bytes({"truncated": data[:len(data) // 2], "garbage": b"\x00garbage" * 100, "empty": b"",
                    "pickle": pickle.dumps(np.float64(1.0))}[damage])
    caplog.set_level("WARNING", logger="cnnbench")
    resumed = cnnbench.fit("digits_cnn", x, y, epochs=3, checkpoint=ck, **kw)
    full = cnnbench.fit("digits_cnn", x, y, epochs=3, **kw)
    assert _drop_seconds(resumed) == _drop_seconds(full)  # from scratch, the same numbers
    aside = [p.name for p in tmp_path.iterdir() if ".corrupt-" in p.name]
    assert len(aside) == 1 and aside[0].startswith("k.pt.corrupt-")
    assert len(resumed.notes) == 1 and aside[0] in resumed.notes[0] and "weights_only" not in resumed.notes[0]
    assert [r.getMessage() for r in caplog.records] == [f"cnnbench: {resumed.notes[0]}"]


def test_num_classes_may_be_a_numpy_integer_as_any_integer_is():
    """The one coercion rule (docs/CONTRACTS.md): np.int64(3), as `len(np.unique(y))` gives it, is 3 classes."""
    rng = np.random.default_rng(0)
    x, y = rng.integers(0, 256, (40, 8, 8, 1), dtype=np.uint8), np.arange(40) % 3
    kw = dict(epochs=1, batch_size=16, verbose=0, device="cpu")
    numpy_count = cnnbench.fit("digits_cnn", x, y, num_classes=np.int64(3), **kw)
    plain = cnnbench.fit("digits_cnn", x, y, num_classes=3, **kw)
    assert numpy_count.history["loss"] == plain.history["loss"]
    assert type(numpy_count.params["num_classes"]) is int
    with pytest.raises(UserError, match="num_classes >= 2"):
        cnnbench.fit("digits_cnn", x, y % 2, num_classes=2.0, **kw)  # a float is not a count of classes
