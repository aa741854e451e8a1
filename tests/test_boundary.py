"""Inputs checked at the boundary: a bad dataset file, a bad sample-weight file, images too small for
the model and study values of the wrong type are one line, exit 2, nothing written (issue 22)."""

from __future__ import annotations

import numpy as np
import pytest

from cnnbench.cli import main
from cnnbench.errors import UserError


def _npz(path, *, x=None, y=None, shape=(8, 8), n=40):
    rng = np.random.default_rng(0)
    x_train = rng.integers(0, 256, (n, *shape), dtype=np.uint8) if x is None else x
    y_train = np.arange(n) % 2 if y is None else y
    np.savez(path, x_train=x_train, y_train=y_train, x_test=x_train[:10], y_test=np.arange(10) % 2)
    return path


def _run(tmp_path, capsys, dataset, model="digits_cnn", extra=""):
    spec = tmp_path / "study.toml"
    spec.write_text(f'name = "b"\nseeds = [0]\nepochs = 1\nbatch_size = 4\ndataset = "{dataset}"\n'
                    f'model = "{model}"\n{extra}')
    out = tmp_path / "out"
    status = main(["run", str(spec), "-o", str(out), "--data-dir", str(tmp_path), "-q", "--workers", "1",
                   "--device", "cpu", "--no-report"])
    return status, capsys.readouterr().err, out


BAD = {
    "labels_3d": (dict(y=np.zeros((40, 3, 2), np.int64)), "y_train has shape (40, 3, 2)"),
    "images_2d": (dict(x=np.zeros((40, 64), np.uint8)), "images have shape (40, 64)"),
    "images_of_strings": (dict(x=np.full((40, 8, 8), "a")), "not numbers"),
    "zero_height": (dict(shape=(0, 8)), "images are 0×8 pixels"),
    "one_pixel_for_digits_cnn": (dict(shape=(1, 1)), "model 'digits_cnn' needs images of at least 6x6, got 1x1"),
    "5x5_for_digits_cnn": (dict(shape=(5, 5)), "needs images of at least 6x6, got 5x5"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_a_bad_dataset_file_is_one_line_exit_2_nothing_written(tmp_path, capsys, case):
    arrays, message = BAD[case]
    _npz(tmp_path / "d.npz", **arrays)
    status, err, out = _run(tmp_path, capsys, tmp_path / "d.npz")
    assert status == 2 and err.count("\n") == 1 and message in err, err
    assert "Traceback" not in err and not out.exists()


def test_a_one_pixel_image_is_fine_for_a_model_that_takes_it(tmp_path, capsys):
    """The check is the model's own: keras_mnist_mlp (Flatten + Dense) takes 1x1 images."""
    from cnnbench import models

    _npz(tmp_path / "d.npz", shape=(1, 1))
    models.check_input("keras_mnist_mlp", (1, 1, 1))  # no error
    models.check_input({"name": "resnet20"}, (3, 1, 1))
    with pytest.raises(UserError, match="at least 12x12"):
        models.check_input("lenet5", (1, 11, 11))
    with pytest.raises(UserError, match="at least 16x16"):  # the minimum follows the options
        models.check_input({"name": "lenet5", "padding": "valid"}, (1, 12, 12))


@pytest.mark.parametrize("weights, message", [
    (np.array(["a"] * 40), "holds <U1 values, not numbers"),
    (np.array(["1.5"] * 40), "holds <U3 values, not numbers"),  # a string is never a number
])
def test_a_sample_weight_file_of_strings_is_refused_before_anything_is_written(tmp_path, capsys, weights, message):
    _npz(tmp_path / "d.npz")
    np.save(tmp_path / "w.npy", weights)
    status, err, out = _run(tmp_path, capsys, tmp_path / "d.npz", extra=f'sample_weight = "{tmp_path / "w.npy"}"\n')
    assert status == 2 and err.count("\n") == 1 and "sample_weight" in err and message in err, err
    assert not out.exists()


# --- one coercion rule for a study's values --------------------------------------------------------
def _parse(text):
    from cnnbench import spec as study

    seeds = "" if text.startswith("seeds") else "seeds = [0, 1, 2]\n"  # three: a race tests after 3 seeds
    return study.parse_text(f'name = "c"\n{seeds}{text}\n', "s.toml")


STRINGS_AND_BOOLS = [  # a string is never a number or a bool; true is not the number 1
    'validation_split = "0.1"', "validation_split = true", 'label_noise = "0.1"', 'epochs = "10"',
    'batch_size = "8"', 'micro_batch_size = "8"', 'seeds = ["0"]', "seeds = [true]",
    'early_stopping = { patience = "3" }', "early_stopping = { patience = true }",
    'early_stopping = { min_delta = "0.1" }', 'early_stopping = { start_from_epoch = "1" }',
    'early_stopping = { restore_best_weights = "yes" }', 'save_models = "yes"', 'skip_missing_datasets = "no"',
    'class_weight = { 0 = "2" }', "class_weight = { 0 = true }", 'optimizer = { name = "adam", learning_rate = "0.1" }',
    '[tuning]\nlearning_rates = ["0.1"]', '[tuning]\nreuse = "yes"', '[tuning]\nlearning_rates = { num = "3" }',
    '[analysis]\nalpha = "0.1"', "[analysis]\nrope = true", '[racing]\nalpha = "0.1"', '[racing]\nkeep = "2"',
    'dataset = { name = "digits", seed = "3" }', 'dataset = { name = "digits", limit_train = "100" }',
]


@pytest.mark.parametrize("text", STRINGS_AND_BOOLS)
def test_a_string_or_a_bool_is_never_taken_for_a_number(text):
    with pytest.raises(UserError) as e:
        _parse(text)
    message = str(e.value)
    assert message.startswith("s.toml: ") and "\n" not in message and "invalid TOML" not in message
    assert "must be" in message, message


@pytest.mark.parametrize("text", [
    "epochs = 2.5", "batch_size = 8.5", "early_stopping = { patience = 1.5 }", "seeds = [0.5]",
    "early_stopping = { restore_best_weights = 0.5 }", "save_models = 2", "[racing]\nfirst_test = 2.5",
    "[tuning]\nlearning_rates = { num = 2.5 }", 'dataset = { name = "digits", seed = 2.5 }',
    "epochs = inf", "early_stopping = { patience = nan }",
])
def test_a_float_that_is_not_whole_is_refused_for_a_whole_number_or_a_bool(text):
    with pytest.raises(UserError, match=r"whole number|true or false"):
        _parse(text)


@pytest.mark.parametrize("written, same_as", [
    ("epochs = 3.0", "epochs = 3"), ("batch_size = 16.0", "batch_size = 16"),
    ("micro_batch_size = 8.0", "micro_batch_size = 8"), ("seeds = [0.0, 1.0, 2.0]", "seeds = [0, 1, 2]"),
    ("early_stopping = { patience = 3.0 }", "early_stopping = { patience = 3 }"),
    ("early_stopping = { start_from_epoch = 1.0 }", "early_stopping = { start_from_epoch = 1 }"),
    ("early_stopping = { restore_best_weights = 1 }", "early_stopping = { restore_best_weights = true }"),
    ("early_stopping = { restore_best_weights = 1.0 }", "early_stopping = { restore_best_weights = true }"),
    ("early_stopping = { restore_best_weights = 0 }", "early_stopping = { restore_best_weights = false }"),
    ("validation_split = 0", "validation_split = 0.0"), ("label_noise = 0", "label_noise = 0.0"),
    ("early_stopping = { min_delta = 0 }", "early_stopping = { min_delta = 0.0 }"),
    ("class_weight = { 0 = 2 }", "class_weight = { 0 = 2.0 }"),
    ('dataset = { name = "digits", seed = 3.0 }', 'dataset = { name = "digits", seed = 3 }'),
    ('dataset = { name = "digits", limit_train = 100.0 }', 'dataset = { name = "digits", limit_train = 100 }'),
])
def test_a_whole_float_is_its_integer_and_0_or_1_a_bool_with_the_same_run_keys(written, same_as):
    assert [r.key for r in _parse(written).runs] == [r.key for r in _parse(same_as).runs]
    assert [r.config for r in _parse(written).runs] == [r.config for r in _parse(same_as).runs]


def test_the_bools_of_the_study_take_0_and_1():
    assert _parse("save_models = 1").meta.save_models is True
    assert _parse("skip_missing_datasets = 0").meta.skip_missing_datasets is False
    assert _parse("[tuning]\nreuse = 0\nseeds = [7]\n").meta.tuning.reuse is False
