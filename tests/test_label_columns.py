"""Targets from a second label column (issue 13): a .npz's y_train_NAME / y_test_NAME, CIFAR-100's other
label set; kept with their images through limits, the validation split and the cache; a column the
dataset lacks is refused with one line naming the columns it has."""

from __future__ import annotations

import json
import pickle
import sqlite3

import numpy as np
import pytest
import torch

from cnnbench import Study, data
from cnnbench.errors import UserError
from cnnbench.store import model_files as saving


@pytest.fixture
def npz(tmp_path):
    """The 8×8 digits as a .npz with a second column, `parity` (even 0 / odd 1), and `ring` (0, 1 or 2:
    whether the digit has no, one or two closed loops), each in the file, not derived by cnnbench."""
    ds = data.load("digits")
    loops = np.array([1, 0, 0, 0, 1, 0, 1, 0, 2, 1])
    arrays = {"x_train": ds.x_train[:, 0].numpy(), "y_train": ds.y_train.numpy(),
              "x_test": ds.x_test[:, 0].numpy(), "y_test": ds.y_test.numpy()}
    for part in ("train", "test"):
        y = arrays[f"y_{part}"]
        arrays[f"y_{part}_parity"] = y % 2
        arrays[f"y_{part}_ring"] = loops[y]
    path = tmp_path / "two_columns.npz"
    np.savez(path, **arrays)
    return path, arrays


def test_a_npz_carries_label_columns_kept_with_their_images(npz):
    path, arrays = npz
    ds = data.load(str(path))
    assert set(ds.label_columns) == {"parity", "ring"}
    train, test, k = ds.label_columns["ring"]
    assert k == 3 and train.tolist() == arrays["y_train_ring"].tolist()
    assert test.tolist() == arrays["y_test_ring"].tolist()
    limited = data.load({"name": str(path), "limit_train": 100, "limit_test": 30, "limit_mode": "stratified"})
    # the same images' labels: parity of the kept class labels
    assert limited.label_columns["parity"][0].tolist() == (limited.y_train % 2).tolist()
    assert limited.label_columns["parity"][1].tolist() == (limited.y_test % 2).tolist()
    assert len(limited.label_columns["parity"][0]) == 100


@pytest.mark.parametrize("extra", [
    {"y_train_onehot": "one-hot", "y_test_onehot": "one-hot"},  # N×10 floats, for some other use
    {"y_test_original": "labels"},                               # an unpaired array
])
def test_other_y_arrays_are_not_columns_and_the_file_loads_as_before(npz, tmp_path, extra):
    """A .npz that loaded before label columns existed still does, whatever else it holds (found in review)."""
    _, arrays = npz
    base = {k: v for k, v in arrays.items() if not k.endswith("_ring")}
    n_train, n_test = len(base["y_train"]), len(base["y_test"])
    made = {"one-hot": lambda n: np.eye(10, dtype=np.float64)[np.arange(n) % 10], "labels": lambda n: np.arange(n) % 3}
    more = {k: made[v](n_train if k.startswith("y_train") else n_test) for k, v in extra.items()}
    path = tmp_path / "other.npz"
    np.savez(path, **base, **more)
    ds = data.load(str(path))
    assert ds.y_train.tolist() == base["y_train"].tolist() and "onehot" not in ds.label_columns


def _spec(path, **extra):
    return {"name": "cols", "seeds": [0], "epochs": 2, "batch_size": 64, "dataset": str(path),
            "model": "digits_cnn", "validation_split": 0.2, "validation_mode": "stratified", "save_models": True,
            "targets": {"digit": "label", "ring": "ring", "odd": {"from": "parity", "map": [0, 1]}},
            "loss": "sparse_categorical_crossentropy", "analysis": {"metric": "test_ring_accuracy"}, **extra}


def test_a_study_trains_outputs_on_label_columns(npz, tmp_path):
    path, arrays = npz
    study = Study.from_dict(_spec(path))
    assert study.runs[0].config["targets"] == {"digit": {"from": "label"}, "ring": {"from": "ring"},
                                               "odd": {"from": "parity", "map": [0, 1]}}
    out = tmp_path / "out"
    result = study.run(out, workers=1)
    assert result.ran == 1 and not result.failed
    con = sqlite3.connect(out / "study.db")
    key, custom = con.execute("SELECT key, custom_metrics FROM runs").fetchone()
    con.close()
    custom = json.loads(custom)
    model = saving.load(out / "models" / f"{key}.pt")
    # by hand: the saved model's predictions against the file's columns; validation = the stratified split
    # of the training images by their class label (seed 0), as every run splits
    _, _, val_index, _ = data.split_validation(np.arange(len(arrays["y_train"])), arrays["y_train"], 0.2,
                                               mode="stratified", seed=0)
    for split, x, index in (("test", arrays["x_test"], slice(None)), ("val", arrays["x_train"][val_index], val_index)):
        predicted = {k: v.argmax(1).numpy() for k, v in saving.outputs(model, torch.as_tensor(x).unsqueeze(1)).items()}
        part = "test" if split == "test" else "train"
        for output, column in (("ring", "ring"), ("odd", "parity"), ("digit", None)):
            truth = arrays[f"y_{part}_{column}" if column else f"y_{part}"][index]
            assert custom[f"{split}_{output}_accuracy"] == pytest.approx(np.mean(predicted[output] == truth), abs=1e-12)
    assert model.cnnbench.saved["num_classes"] == {"digit": 10, "ring": 3, "odd": 2}


@pytest.mark.parametrize("targets, words", [
    ({"digit": "label", "coarse": "coarse_label"},
     "targets.coarse: dataset 'digits' has no label column 'coarse_label'; its columns: label"),
    ({"digit": "label", "ring": "rings"}, "has no label column 'rings'; did you mean 'ring'? its columns: label, "
                                          "parity, ring"),
    ({"digit": "label", "odd": {"from": "parity", "map": [0, 1, 1]}},
     "targets.odd.map has 3 entries but its column 'parity' has 2 classes"),
])
def test_a_column_the_dataset_lacks_is_one_line_before_training(npz, tmp_path, targets, words):
    path, _ = npz
    spec = {**_spec(path), "targets": targets, "analysis": {"metric": "test_digit_accuracy"}}
    if "coarse" in targets:
        spec["dataset"] = "digits"
    with pytest.raises(UserError) as e:
        Study.from_dict(spec).plan(tmp_path / "out")
    assert words in str(e.value) and "\n" not in str(e.value)
    assert not (tmp_path / "out" / "study.db").exists()


def test_label_to_label_keys_are_unchanged():
    """targets from the class label keep their canonical form and so their run keys."""
    spec = {"name": "k", "dataset": "digits", "targets": {"digit": "label"}, "loss": "sparse_categorical_crossentropy",
            "analysis": {"metric": "test_digit_accuracy"}}
    assert Study.from_dict(spec).runs[0].config["targets"] == {"digit": {"from": "label"}}


def _pickle(path, obj):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=2)


@pytest.mark.parametrize("mode, column, k", [("fine", "coarse_label", 20), ("coarse", "fine_label", 100)])
def test_cifar100_has_its_other_label_set_as_a_column_also_from_its_cache(tmp_path, mode, column, k):
    from cnnbench.data import cache

    rng = np.random.default_rng(0)
    folder = tmp_path / "cifar-100-python"
    fine = {"train": [95, 3, 50, 7, 99, 0], "test": [12, 88, 41]}
    coarse = {"train": [19, 2, 0, 5, 11, 1], "test": [3, 17, 8]}
    for part, count in (("train", 6), ("test", 3)):
        _pickle(folder / part, {b"data": rng.integers(0, 256, (count, 3072), dtype=np.uint8),
                                b"fine_labels": fine[part], b"coarse_labels": coarse[part]})
    _pickle(folder / "meta", {b"fine_label_names": [f"f{i}".encode() for i in range(100)],
                              b"coarse_label_names": [f"c{i}".encode() for i in range(20)]})
    other = coarse if mode == "fine" else fine
    spec = {"name": "cifar100", "label_mode": mode, "download": True}
    for attempt in ("decoded", "cached"):
        ds = data.load(spec, tmp_path)
        assert ds.source.startswith("cache") == (attempt == "cached")
        train, test, classes = ds.label_columns[column]
        assert (train.tolist(), test.tolist(), classes) == (other["train"], other["test"], k)
    # a cache written before label columns existed is stale: decoded again, with the column
    (cache_file,) = (tmp_path / "cnnbench-cache").glob("cifar100-*.bin")
    tensors, meta = cache.load(cache_file)
    cache.save(cache_file, {n: tensors[n].numpy() for n in ("x_train", "y_train", "x_test", "y_test")},
               {k_: v for k_, v in meta.items() if k_ != "label_columns"})
    ds = data.load(spec, tmp_path)
    assert not ds.source.startswith("cache") and ds.label_columns[column][0].tolist() == other["train"]
