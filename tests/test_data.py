"""cnnbench.data: the real loaders on tiny files written in the original formats, the cache, splits."""

from __future__ import annotations

import gzip
import os
import pickle
import struct
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from cnnbench import data
from cnnbench.data import cache, datasets
from cnnbench.errors import UnknownNameError, UserError

SHARED = Path(__file__).resolve().parents[2] / "shared" / "datasets"  # ../shared beside the checkout


# --- writers for the original formats --------------------------------------------------------------
def idx_bytes(arr: np.ndarray) -> bytes:
    arr = np.ascontiguousarray(arr, dtype=np.uint8)
    return struct.pack(">I", 0x0800 + arr.ndim) + struct.pack(f">{arr.ndim}I", *arr.shape) + arr.tobytes()


def write_idx(path: Path, arr: np.ndarray, gz: bool) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    raw = idx_bytes(arr)
    if gz:
        path = path.with_name(path.name + ".gz")
        path.write_bytes(gzip.compress(raw, compresslevel=1))
    else:
        path.write_bytes(raw)
    return path


def write_mnist_like(root: Path, folder: str, x_tr, y_tr, x_te, y_te, gz=True, stems=("train", "t10k")):
    raw = root / folder / "raw"
    out = []
    for stem, x, y in ((stems[0], x_tr, y_tr), (stems[1], x_te, y_te)):
        out.append(write_idx(raw / f"{stem}-images-idx3-ubyte", x, gz))
        out.append(write_idx(raw / f"{stem}-labels-idx1-ubyte", y, gz))
    return out


def tiny_images(n, h=28, w=28, seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, h, w), dtype=np.uint8), rng.integers(0, 10, n).astype(np.uint8)


# --- registry / resolve -----------------------------------------------------------------------------
def test_registry_lists_every_dataset_with_a_summary():
    names = set(data.REGISTRY.list())
    assert {"digits", "mnist", "fashion_mnist", "kmnist", "emnist", "cifar10", "cifar100", "svhn",
            "imagefolder", "npz"} <= names
    for entry in data.REGISTRY:
        assert entry.summary, entry.name


def test_resolve_is_explicit_json_safe_and_idempotent():
    import json

    for spec in ["mnist", "FashionMNIST", {"name": "emnist", "split": "letters"},
                 {"name": "cifar100", "label_mode": "coarse", "limit_train": 100},
                 {"name": "imagefolder:data/dogs_vs_cats", "image_size": 150}, "data/x.npz"]:
        r = data.resolve(spec)
        json.dumps(r)
        assert data.resolve(r) == r
        assert {"limit_train", "limit_test", "limit_mode"} <= set(r)
    assert data.resolve("fmnist")["name"] == "fashion_mnist"
    assert data.resolve({"name": "cifar100", "label_mode": "coarse"})["label_mode"] == "coarse"
    assert data.resolve({"name": "imagefolder:d", "image_size": 150})["name"] == "imagefolder:d"


def test_bad_specs_raise_user_errors_with_hints():
    with pytest.raises(UnknownNameError, match="did you mean 'mnist'"):
        data.resolve("mnsit")
    with pytest.raises(UserError, match="did you mean 'letters'"):
        data.resolve({"name": "emnist", "split": "leters"})
    with pytest.raises(UserError, match="did you mean 'label_mode'"):
        data.resolve({"name": "cifar100", "labelmode": "fine"})
    with pytest.raises(UserError, match="limit_train"):
        data.resolve({"name": "mnist", "limit_train": -3})


def test_default_data_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("CNNBENCH_DATA", str(tmp_path / "env"))
    assert data.default_data_dir(tmp_path / "arg") == tmp_path / "arg"
    assert data.default_data_dir() == tmp_path / "env"
    monkeypatch.delenv("CNNBENCH_DATA")
    assert data.default_data_dir() == Path("~/.cache/cnnbench").expanduser()


# --- digits / npz -----------------------------------------------------------------------------------
def test_digits_fixed_stratified_test_split():
    a, b = data.load("digits"), data.load("digits")
    assert a.x_train.shape == (1438, 1, 8, 8) and a.x_test.shape == (359, 1, 8, 8)
    assert a.x_train.dtype == torch.uint8 and int(a.x_train.max()) == 255
    assert torch.equal(a.y_test, b.y_test) and torch.equal(a.x_test, b.x_test)
    counts = torch.bincount(a.y_test, minlength=10)
    assert int(counts.min()) >= 35 and int(counts.max()) <= 37  # ~20% of each class (~180 per class)


def test_npz_grey_and_colour(tmp_path):
    rng = np.random.default_rng(0)
    p = tmp_path / "grey.npz"
    np.savez(p, x_train=rng.integers(0, 256, (10, 5, 6), dtype=np.uint8), y_train=np.arange(10) % 3,
             x_test=rng.integers(0, 256, (4, 5, 6), dtype=np.uint8), y_test=np.arange(4) % 3)
    ds = data.load(str(p))
    assert ds.x_train.shape == (10, 1, 5, 6) and ds.num_classes == 3 and ds.y_train.dtype == torch.int64
    q = tmp_path / "colour.npz"
    x = rng.integers(0, 256, (6, 5, 6, 3), dtype=np.uint8)
    np.savez_compressed(q, x_train=x, y_train=np.arange(6) % 2, x_test=x[:2], y_test=[0, 1],
                        class_names=np.array(["a", "b"]))
    ds = data.load({"name": f"npz:{q}"})
    assert ds.x_train.shape == (6, 3, 5, 6) and ds.class_names == ["a", "b"]
    assert torch.equal(ds.x_train[1, 2], torch.from_numpy(x[1, :, :, 2]))
    bad = tmp_path / "bad.npz"
    np.savez(bad, x_train=x, y_train=np.arange(6))
    with pytest.raises(UserError, match="missing x_test, y_test"):
        data.load(str(bad))


def test_npz_mistakes_are_one_line_errors(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (6, 5, 6), dtype=np.uint8)
    sizes = tmp_path / "sizes.npz"
    np.savez(sizes, x_train=x, y_train=np.arange(6) % 2, x_test=x[:2, :4], y_test=[0, 1])
    with pytest.raises(UserError, match=r"train images are 1×5×6 but test images are 1×4×6"):
        data.load(str(sizes))
    single = tmp_path / "single.npz"
    np.save(tmp_path / "single.npy", x)
    (tmp_path / "single.npy").rename(single)
    with pytest.raises(UserError, match=r"single \.npy array, not an \.npz archive"):
        data.load(str(single))
    byte_names = tmp_path / "bytes.npz"
    np.savez(byte_names, x_train=x, y_train=np.arange(6) % 2, x_test=x[:2], y_test=[0, 1],
             class_names=np.array([b"cat", b"dog"]))
    assert data.load(str(byte_names)).class_names == ["cat", "dog"]
    one_hot = tmp_path / "one_hot.npz"
    np.savez(one_hot, x_train=x, y_train=np.eye(3)[np.arange(6) % 3], x_test=x[:2], y_test=np.eye(3)[[2, 0]])
    assert data.load(str(one_hot)).y_test.tolist() == [2, 0]
    scores = tmp_path / "scores.npz"
    np.savez(scores, x_train=x, y_train=np.full((6, 3), 0.5), x_test=x[:2], y_test=np.eye(3)[[2, 0]])
    with pytest.raises(UserError, match="y_train is 6×3 but not one-hot"):
        data.load(str(scores))


@pytest.mark.parametrize("spec, match", [
    ({"name": "svhn", "extra": "no"}, "dataset 'svhn' option 'extra' must be true or false"),
    ({"name": "digits", "seed": -1}, "dataset 'digits' option 'seed' must be a whole number >= 0, got -1"),
    ({"name": "digits", "seed": 1.5}, "dataset 'digits' option 'seed' must be a whole number >= 0"),
    ({"name": "digits", "test_fraction": "0.2"}, "option 'test_fraction' must be a number in \\(0, 1\\)"),
    ({"name": "imagefolder:pets", "seed": "a"}, "option 'seed' must be a whole number >= 0, got 'a'"),
    ({"name": "imagefolder:pets", "test_fraction": 1}, "option 'test_fraction' must be a number in \\(0, 1\\)"),
    ({"name": "mnist", "download": "yes"}, "download must be true or false"),
])
def test_option_values_are_checked(spec, match):
    with pytest.raises(UserError, match=match):
        data.resolve(spec)


# --- MNIST family (IDX) -----------------------------------------------------------------------------
@pytest.mark.parametrize("gz", [True, False])
def test_mnist_idx_gz_and_raw(tmp_path, gz):
    x_tr, y_tr = tiny_images(30, seed=1)
    x_te, y_te = tiny_images(12, seed=2)
    write_mnist_like(tmp_path, "MNIST", x_tr, y_tr, x_te, y_te, gz=gz)
    ds = data.load({"name": "mnist", "download": False}, data_dir=tmp_path)
    assert ds.x_train.shape == (30, 1, 28, 28) and ds.x_test.shape == (12, 1, 28, 28)
    assert torch.equal(ds.x_train[:, 0], torch.from_numpy(x_tr))
    assert torch.equal(ds.y_test, torch.from_numpy(y_te).long())
    assert ds.num_classes == 10 and ds.name == "mnist"


def test_fashion_and_kmnist_folders(tmp_path):
    x, y = tiny_images(8)
    write_mnist_like(tmp_path, "FashionMNIST", x, y, x[:3], y[:3], gz=False)
    write_mnist_like(tmp_path, "KMNIST", x, y, x[:3], y[:3], gz=True)
    f = data.load({"name": "fashion_mnist", "download": False}, tmp_path)
    k = data.load({"name": "kmnist", "download": False}, tmp_path)
    assert f.class_names[0] == "T-shirt/top" and k.class_names[:2] == ["o", "ki"]
    assert torch.equal(f.x_train, k.x_train)


def test_kmnist_prefers_gz_when_only_its_checksum_is_published(tmp_path):
    x, y = tiny_images(8)
    write_mnist_like(tmp_path, "KMNIST", x, y, x[:3], y[:3], gz=True)
    write_mnist_like(tmp_path, "KMNIST", np.zeros_like(x), y, x[:3], y[:3], gz=False)
    ds = data.load({"name": "kmnist", "download": False}, tmp_path)
    assert torch.equal(ds.x_train[:, 0], torch.from_numpy(x))


def test_emnist_letters_upright_and_shifted_labels(tmp_path):
    upright = np.zeros((4, 28, 28), np.uint8)
    upright[:, 2, :] = 255  # a horizontal bar near the top
    letters = np.array([1, 2, 26, 13], np.uint8)
    raw = upright.transpose(0, 2, 1)  # the files store images transposed
    write_mnist_like(tmp_path, "EMNIST", raw, letters, raw[:2], letters[:2], gz=True,
                     stems=("emnist-letters-train", "emnist-letters-test"))
    ds = data.load({"name": "emnist", "split": "letters", "download": False}, tmp_path)
    assert torch.equal(ds.x_train[:, 0], torch.from_numpy(upright))
    assert ds.y_train.tolist() == [0, 1, 25, 12] and ds.num_classes == 26 and ds.class_names[0] == "a"


def test_emnist_read_from_gzip_zip(tmp_path):
    raw_dir = tmp_path / "EMNIST" / "raw"
    raw_dir.mkdir(parents=True)
    x, y = tiny_images(5)
    with zipfile.ZipFile(raw_dir / "gzip.zip", "w") as zf:
        for stem, xx, yy in (("train", x, y), ("test", x[:2], y[:2])):
            zf.writestr(f"gzip/emnist-digits-{stem}-images-idx3-ubyte.gz", gzip.compress(idx_bytes(xx)))
            zf.writestr(f"gzip/emnist-digits-{stem}-labels-idx1-ubyte.gz", gzip.compress(idx_bytes(yy)))
    ds = data.load({"name": "emnist", "split": "digits", "download": False}, tmp_path)
    assert torch.equal(ds.x_train[:, 0], torch.from_numpy(x.transpose(0, 2, 1).copy()))
    assert ds.y_train.tolist() == y.tolist()


def test_truncated_and_corrupted_idx_files_raise(tmp_path):
    x, y = tiny_images(10)
    files = write_mnist_like(tmp_path, "MNIST", x, y, x, y, gz=False)
    files[0].write_bytes(files[0].read_bytes()[:-100])  # truncated raw
    with pytest.raises(UserError, match="truncated or corrupted"):
        data.load({"name": "mnist", "download": False}, tmp_path)

    gz_dir = tmp_path / "gz"
    files = write_mnist_like(gz_dir, "MNIST", x, y, x, y, gz=True)
    files[2].write_bytes(files[2].read_bytes()[:-20])  # truncated .gz
    with pytest.raises(UserError, match="truncated or corrupted"):
        data.load({"name": "mnist", "download": False}, gz_dir)


def test_official_sized_file_with_wrong_checksum_raises(tmp_path):
    # t10k labels with the published count (10,000) but not the published content
    x, y = tiny_images(10)
    write_mnist_like(tmp_path, "MNIST", x, y, x, y, gz=False)
    raw = tmp_path / "MNIST" / "raw"
    (raw / "t10k-images-idx3-ubyte").write_bytes(idx_bytes(np.zeros((10000, 28, 28), np.uint8)))
    (raw / "t10k-labels-idx1-ubyte").write_bytes(idx_bytes(np.zeros(10000, np.uint8)))
    with pytest.raises(UserError, match="MD5 differs from the published checksum"):
        data.load({"name": "mnist", "download": False}, tmp_path)


def test_label_count_mismatch_raises(tmp_path):
    x, y = tiny_images(10)
    write_mnist_like(tmp_path, "MNIST", x, y[:9], x, y, gz=True)
    with pytest.raises(UserError, match="9 labels for 10 images"):
        data.load({"name": "mnist", "download": False}, tmp_path)


def test_missing_dataset_names_the_files(tmp_path):
    with pytest.raises(UserError) as e:
        data.load({"name": "mnist", "download": False}, tmp_path)
    msg = str(e.value)
    assert "\n" not in msg and "train-images-idx3-ubyte.gz" in msg and str(tmp_path / "MNIST" / "raw") in msg


class _FakeTV:
    """Stands in for a torchvision dataset class: `download=True` fails like offline, or writes files."""

    def __init__(self, root, train=True, download=False, **kw):
        if _FakeTV.fail:
            from urllib.error import URLError

            raise URLError("[Errno -2] Name or service not known")
        x, y = tiny_images(6)
        write_mnist_like(Path(root), "MNIST", x, y, x[:2], y[:2], gz=True)


def test_download_failure_and_success_paths(tmp_path, monkeypatch):
    monkeypatch.delenv("CNNBENCH_OFFLINE", raising=False)
    monkeypatch.setattr(datasets, "_tv", lambda name: _FakeTV)
    _FakeTV.fail = True
    with pytest.raises(UserError, match=r"could not be downloaded .*URLError.*put train-images-idx3-ubyte\.gz"):
        data.load("mnist", tmp_path)
    _FakeTV.fail = False
    ds = data.load("mnist", tmp_path)
    assert len(ds.y_train) == 6


def test_offline_switch_turns_downloads_off(tmp_path, monkeypatch):
    monkeypatch.setenv("CNNBENCH_OFFLINE", "1")
    monkeypatch.setattr(datasets, "_tv", lambda name: _FakeTV)
    _FakeTV.fail = False  # a download would succeed, but must not be tried
    with pytest.raises(UserError, match="download is off"):
        data.load("mnist", tmp_path)


# --- the cache ---------------------------------------------------------------------------------------
# (conftest sets CNNBENCH_OFFLINE=1: these loads find their files and would never download; with
# download = false nothing at all is written, see test_download_off_writes_nothing)
def test_cache_used_on_second_load_and_invalidated(tmp_path, monkeypatch):
    x, y = tiny_images(20)
    files = write_mnist_like(tmp_path, "MNIST", x, y, x[:5], y[:5], gz=True)
    first = data.load("mnist", tmp_path)
    assert not first.source.startswith("cache")
    assert list((tmp_path / "cnnbench-cache").glob("mnist-*.bin"))

    def no_decode(*a, **k):
        raise AssertionError("decoded again instead of reading the cache")

    monkeypatch.setattr(datasets.formats, "read_idx", no_decode)
    second = data.load("mnist", tmp_path)
    assert second.source.startswith("cache")
    for k in ("x_train", "y_train", "x_test", "y_test"):
        assert torch.equal(getattr(first, k), getattr(second, k))
    assert second.class_names == first.class_names
    second.x_train[0, 0, 0, 0] = 7  # the tensors are writable

    monkeypatch.undo()
    # replacing a source file invalidates the cache
    x2, _ = tiny_images(20, seed=9)
    write_idx(files[0].with_name("train-images-idx3-ubyte"), x2, gz=True)
    third = data.load("mnist", tmp_path)
    assert not third.source.startswith("cache") and torch.equal(third.x_train[:, 0], torch.from_numpy(x2))


def test_unwritable_cache_only_warns(tmp_path, monkeypatch):
    import cnnbench.store.files

    x, y = tiny_images(6)
    write_mnist_like(tmp_path, "MNIST", x, y, x, y, gz=True)

    def refuse(*a, **k):
        raise PermissionError("read-only file system")

    # cache.save writes with files.atomic_write
    monkeypatch.setattr(cnnbench.store.files, "open", refuse, raising=False)
    with pytest.warns(UserWarning, match="cannot write the dataset cache"):
        ds = data.load("mnist", tmp_path)
    assert len(ds.y_train) == 6


def test_damaged_cache_file_is_rebuilt(tmp_path):
    x, y = tiny_images(20)
    write_mnist_like(tmp_path, "MNIST", x, y, x[:5], y[:5], gz=True)
    data.load("mnist", tmp_path)
    (cfile,) = (tmp_path / "cnnbench-cache").glob("mnist-*.bin")
    cfile.write_bytes(cfile.read_bytes()[:-10])
    assert cache.load(cfile) is None
    ds = data.load("mnist", tmp_path)
    assert not ds.source.startswith("cache") and torch.equal(ds.x_train[:, 0], torch.from_numpy(x))
    assert cache.load(cfile) is not None


def test_cache_with_damaged_labels_is_rebuilt(tmp_path):
    x, y = tiny_images(20)
    write_mnist_like(tmp_path, "MNIST", x, y, x[:5], y[:5], gz=True)
    data.load("mnist", tmp_path)
    (cfile,) = (tmp_path / "cnnbench-cache").glob("mnist-*.bin")
    raw = bytearray(cfile.read_bytes())
    raw[-3] ^= 0xFF  # inside y_test, the last array: a label far out of range
    cfile.write_bytes(bytes(raw))
    ds = data.load("mnist", tmp_path)
    assert not ds.source.startswith("cache") and torch.equal(ds.y_test, torch.from_numpy(y[:5]).long())
    assert data.load("mnist", tmp_path).source.startswith("cache")


# --- CIFAR ---------------------------------------------------------------------------------------------
def _pickle(path: Path, obj):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=2)


def test_cifar10_batches(tmp_path):
    rng = np.random.default_rng(0)
    folder = tmp_path / "cifar-10-batches-py"
    batches = {}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batches[name] = (rng.integers(0, 256, (4, 3072), dtype=np.uint8), [int(v) for v in rng.integers(0, 10, 4)])
        _pickle(folder / name, {b"batch_label": b"x", b"data": batches[name][0], b"labels": batches[name][1],
                                b"filenames": [b"a.png"] * 4})
    names = [b"airplane", b"automobile", b"bird", b"cat", b"deer", b"dog", b"frog", b"horse", b"ship", b"truck"]
    _pickle(folder / "batches.meta", {b"label_names": names, b"num_cases_per_batch": 10000})
    ds = data.load({"name": "cifar10", "download": False}, tmp_path)
    assert ds.x_train.shape == (20, 3, 32, 32) and ds.x_test.shape == (4, 3, 32, 32)
    assert ds.class_names[0] == "airplane" and ds.num_classes == 10
    d1 = batches["data_batch_1"][0]
    assert torch.equal(ds.x_train[0, 1].flatten(), torch.from_numpy(d1[0, 1024:2048]))  # channel-major rows
    assert ds.y_train[4:8].tolist() == batches["data_batch_2"][1]

    (folder / "test_batch").write_bytes((folder / "test_batch").read_bytes()[:500])
    with pytest.raises(UserError, match="truncated or corrupted"):
        data.load({"name": "cifar10", "download": False}, tmp_path)


def test_cifar_pickle_cannot_run_code(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch", "batches.meta"]:
        (folder / name).write_bytes(pickle.dumps(os.getcwd, protocol=2))  # a global outside the allow-list
    with pytest.raises(UserError, match="not allowed"):
        data.load({"name": "cifar10", "download": False}, tmp_path)


@pytest.mark.parametrize("mode,n", [("fine", 100), ("coarse", 20)])
def test_cifar100_label_modes(tmp_path, mode, n):
    rng = np.random.default_rng(0)
    folder = tmp_path / "cifar-100-python"
    for name, count in (("train", 6), ("test", 3)):
        _pickle(folder / name, {b"data": rng.integers(0, 256, (count, 3072), dtype=np.uint8),
                                b"fine_labels": list(range(90, 90 + count)), b"coarse_labels": list(range(count))})
    _pickle(folder / "meta", {b"fine_label_names": [f"f{i}".encode() for i in range(100)],
                              b"coarse_label_names": [f"c{i}".encode() for i in range(20)]})
    ds = data.load({"name": "cifar100", "label_mode": mode, "download": False}, tmp_path)
    assert ds.num_classes == n and len(ds.class_names) == n
    assert ds.y_train.tolist() == (list(range(90, 96)) if mode == "fine" else list(range(6)))


# --- SVHN ----------------------------------------------------------------------------------------------
def test_svhn_mat(tmp_path):
    scipy_io = pytest.importorskip("scipy.io")
    rng = np.random.default_rng(0)
    for split, n in (("train", 7), ("test", 3)):
        X = rng.integers(0, 256, (32, 32, 3, n), dtype=np.uint8)
        y = np.array([10, 1, 2, 3, 4, 5, 9][:n], np.uint8)[:, None]
        scipy_io.savemat(tmp_path / f"{split}_32x32.mat", {"X": X, "y": y})
        if split == "train":
            X_train = X
    ds = data.load({"name": "svhn", "download": False}, tmp_path)
    assert ds.x_train.shape == (7, 3, 32, 32) and ds.y_train.tolist() == [0, 1, 2, 3, 4, 5, 9]
    assert torch.equal(ds.x_train[2, 1], torch.from_numpy(X_train[:, :, 1, 2]))  # N×C×H×W, upright
    mat = tmp_path / "test_32x32.mat"
    mat.write_bytes(mat.read_bytes()[: len(mat.read_bytes()) // 2])
    with pytest.raises(UserError, match="truncated or corrupted"):
        data.load({"name": "svhn", "download": False}, tmp_path)


# --- image folders -------------------------------------------------------------------------------------
def _img(path: Path, value: int, size=(12, 10), fmt=None):
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, (value, value, 255 - value)).save(path, format=fmt)


def test_imagefolder_train_test_layout(tmp_path):
    root = tmp_path / "pets"
    for part, n in (("train", 3), ("test", 2)):
        for cls, v in (("cat", 10), ("dog", 200)):
            for i in range(n):
                _img(root / part / cls / f"{i}.png", v, size=(12 + i, 10))
    ds = data.load({"name": f"imagefolder:{root}", "image_size": 8}, tmp_path)
    assert ds.x_train.shape == (6, 3, 8, 8) and ds.x_test.shape == (4, 3, 8, 8)
    assert ds.class_names == ["cat", "dog"] and sorted(ds.y_train.tolist()) == [0, 0, 0, 1, 1, 1]
    # each image keeps its class's colour
    assert all(int(ds.x_train[i, 0, 4, 4]) == (10 if ds.y_train[i] == 0 else 200) for i in range(6))
    again = data.load({"name": f"imagefolder:{root}", "image_size": 8}, tmp_path)
    assert again.source.startswith("cache") and torch.equal(again.x_train, ds.x_train)
    grey = data.load({"name": f"imagefolder:{root}", "image_size": [6, 7], "color_mode": "grayscale"}, tmp_path)
    assert grey.x_train.shape == (6, 1, 6, 7)
    with pytest.raises(UserError, match="image_size"):  # different sizes and no image_size
        data.load({"name": f"imagefolder:{root}"}, tmp_path)


def test_imagefolder_kaggle_training_set_layout(tmp_path):
    root = tmp_path / "cats_and_dogs"
    for part in ("training_set", "test_set"):
        for cls, v in (("cats", 10), ("dogs", 200)):
            for i in range(2):
                _img(root / part / part / cls / f"{cls[:-1]}.{i}.jpg", v, fmt="JPEG")
    ds = data.load({"name": f"imagefolder:{root}", "image_size": 10}, tmp_path)
    assert ds.class_names == ["cats", "dogs"] and len(ds.y_train) == 4 and len(ds.y_test) == 4


def test_imagefolder_dogs_vs_cats_naming(tmp_path):
    root = tmp_path / "dogs_vs_cats" / "train"
    for i in range(10):
        _img(root / f"cat.{i}.png", 10 + 5 * i)
        _img(root / f"dog.{i}.png", 150 + 5 * i)
    spec = {"name": f"imagefolder:{root.parent}", "image_size": 8, "test_fraction": 0.2, "seed": 3}
    ds = data.load(spec, tmp_path)
    assert ds.class_names == ["cat", "dog"]
    assert len(ds.y_test) == 4 and ds.y_test.bincount().tolist() == [2, 2]  # stratified 20%
    assert ds.y_train.bincount().tolist() == [8, 8]
    # not class by class: a Keras-style last-fraction validation split sees both classes
    assert len(set(ds.y_train[-4:].tolist())) == 2 or len(set(ds.y_train[:4].tolist())) == 2
    ds2 = data.load({**spec, "seed": 4}, tmp_path)
    ds3 = data.load(spec, tmp_path)
    assert torch.equal(ds.x_test, ds3.x_test)  # the seed fixes the split
    assert set(ds.x_test[:, 0, 4, 4].tolist()) != set(ds2.x_test[:, 0, 4, 4].tolist())
    (root / "cat.3.png").write_bytes((root / "cat.3.png").read_bytes()[:40])  # truncated image
    with pytest.raises(UserError, match=r"cat\.3\.png"):
        data.load({**spec, "seed": 5}, tmp_path)


def test_imagefolder_missing_or_unrecognised(tmp_path):
    with pytest.raises(UserError, match="no folder"):
        data.load(f"imagefolder:{tmp_path / 'nope'}", tmp_path)
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="known layout"):
        data.load({"name": f"imagefolder:{tmp_path / 'empty'}", "image_size": 8}, tmp_path)


# --- splits and limits -----------------------------------------------------------------------------------
def test_keras_split_is_the_last_fraction():
    x = torch.arange(100).reshape(100, 1, 1, 1).to(torch.uint8)
    y = torch.arange(100) % 10
    xt, yt, xv, _yv = data.split_validation(x, y, 0.1, mode="keras")
    assert len(yt) == 90 and torch.equal(xv.flatten(), torch.arange(90, 100).to(torch.uint8))
    assert torch.equal(xt.flatten(), torch.arange(90).to(torch.uint8))


def test_stratified_split_proportions_and_seed():
    y = torch.tensor([0] * 80 + [1] * 15 + [2] * 5)
    x = torch.arange(100)
    xt, yt, xv, yv = data.split_validation(x, y, 0.2, mode="stratified", seed=1)
    assert len(yv) == 20 and torch.bincount(yv, minlength=3).tolist() == [16, 3, 1]
    assert torch.bincount(yt, minlength=3).tolist() == [64, 12, 4]
    assert sorted(xt.tolist() + xv.tolist()) == list(range(100))
    assert torch.all(xv[1:] > xv[:-1])  # original order kept
    same = data.split_validation(x, y, 0.2, mode="stratified", seed=1)
    other = data.split_validation(x, y, 0.2, mode="stratified", seed=2)
    assert torch.equal(same[2], xv) and not torch.equal(other[2], xv)
    with pytest.raises(UserError):
        data.split_validation(x, y, 1.5)
    with pytest.raises(UserError):
        data.split_validation(x, y, 0.2, mode="random")


def test_limits_first_and_stratified(tmp_path):
    x, y = tiny_images(40)
    y = np.array([0] * 30 + [1] * 10, np.uint8)
    write_mnist_like(tmp_path, "MNIST", x, y, x, y, gz=True)
    first = data.load({"name": "mnist", "download": False, "limit_train": 8, "limit_test": 4}, tmp_path)
    assert first.y_train.tolist() == [0] * 8 and len(first.y_test) == 4
    strat = data.load({"name": "mnist", "download": False, "limit_train": 8, "limit_mode": "stratified"}, tmp_path)
    assert strat.y_train.tolist() == [0] * 6 + [1] * 2
    assert torch.equal(strat.x_train[-2:, 0], torch.from_numpy(x[30:32]))  # the first ones of each class


# --- optional: real MNIST --------------------------------------------------------------------------------
@pytest.mark.skipif(not (SHARED / "mnist.npz").exists(), reason="real MNIST not available")
def test_real_mnist_through_the_idx_loader(tmp_path):
    d = np.load(SHARED / "mnist.npz")
    write_mnist_like(tmp_path, "MNIST", d["x_train"], d["y_train"], d["x_test"], d["y_test"], gz=False)
    ds = data.load({"name": "mnist", "download": False}, tmp_path)  # published MD5s are checked
    assert ds.x_train.shape == (60000, 1, 28, 28) and ds.x_test.shape == (10000, 1, 28, 28)
    assert torch.bincount(ds.y_train).tolist() == [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
    assert ds.y_train[:5].tolist() == [5, 0, 4, 1, 9] and ds.y_test[:5].tolist() == [7, 2, 1, 0, 4]
    assert abs(ds.x_train.float().mean().item() / 255 - 0.130660) < 1e-4
    assert not data.load("mnist", tmp_path).source.startswith("cache")  # download = false wrote none
    cached = data.load("mnist", tmp_path)
    assert cached.source.startswith("cache") and torch.equal(cached.x_train, ds.x_train)


# --- faults: bad inputs are one line, a dry run and a failed download leave nothing behind -------------
class _MkdirThenFail:
    """A torchvision dataset whose download creates MNIST/raw/ and then fails, like one offline."""

    def __init__(self, root, **kw):
        (Path(root) / "MNIST" / "raw").mkdir(parents=True, exist_ok=True)
        from urllib.error import URLError

        raise URLError("[Errno -2] Name or service not known")


def test_failed_download_leaves_no_empty_folder(tmp_path, monkeypatch):
    monkeypatch.delenv("CNNBENCH_OFFLINE", raising=False)
    monkeypatch.setattr(datasets, "_tv", lambda name: _MkdirThenFail)
    (tmp_path / "mine").mkdir()  # the user's own folders stay
    with pytest.raises(UserError, match="could not be downloaded"):
        data.load("mnist", tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine"]
    fresh = tmp_path / "new_data_dir"  # a data directory the download created is removed too
    with pytest.raises(UserError, match="could not be downloaded"):
        data.load("mnist", fresh)
    assert not fresh.exists()


def test_download_off_writes_nothing(tmp_path):
    x, y = tiny_images(20)
    write_mnist_like(tmp_path, "MNIST", x, y, x[:5], y[:5], gz=True)
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    data.load({"name": "mnist", "download": False}, tmp_path)
    data.load({"name": "digits", "download": False}, tmp_path)
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before


def _npz(path, y_train, y_test, n_test=None, **extra):
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (len(y_train), 4, 4), dtype=np.uint8)
    xt = rng.integers(0, 256, (len(y_test) if n_test is None else n_test, 4, 4), dtype=np.uint8)
    np.savez(path, x_train=x, y_train=np.asarray(y_train), x_test=xt, y_test=np.asarray(y_test), **extra)
    return str(path)


def test_npz_labels_must_be_dense(tmp_path):
    with pytest.raises(UserError, match=r"labels must be 0\.\.K-1.* include 1000000 \(outside 0\.\.2; absent: 2\)"
                                        r".*num_classes") as e:
        data.load(_npz(tmp_path / "stray.npz", [0, 1, 1000000, 0], [1, 0]))
    assert "\n" not in str(e.value)
    with pytest.raises(UserError, match=r"include 3 \(outside 0\.\.2; absent: 0\)"):  # 1-based labels
        data.load(_npz(tmp_path / "one_based.npz", [1, 2, 3], [1, 3]))
    with pytest.raises(UserError, match=r"include -1 "):
        data.load(_npz(tmp_path / "negative.npz", [-1, 0, 1], [0]))
    # classes without an image: say how many there are
    sparse = _npz(tmp_path / "sparse.npz", [0, 1, 4], [4, 0])
    ds = data.load({"name": sparse, "num_classes": 6})
    assert ds.num_classes == 6 and ds.class_names == ["0", "1", "2", "3", "4", "5"]
    assert data.resolve({"name": sparse, "num_classes": 6})["num_classes"] == 6
    assert "num_classes" not in data.resolve(sparse)  # run keys of studies without it stay as they were
    with pytest.raises(UserError, match=r"labels span 0\.\.4, expected 0\.\.2 \(outside: 4\)"):
        data.load({"name": sparse, "num_classes": 3})
    with pytest.raises(UserError, match=r"option 'num_classes' must be a whole number >= 2 \(or absent\), got 1"):
        data.load({"name": sparse, "num_classes": 1})
    named = _npz(tmp_path / "named.npz", [0, 2], [2], class_names=np.array(["a", "b", "c"]))
    assert data.load(named).num_classes == 3  # class_names say how many classes there are
    with pytest.raises(UserError, match="3 class_names but num_classes = 4"):
        data.load({"name": named, "num_classes": 4})


def test_npz_without_images_or_with_a_lying_header(tmp_path):
    with pytest.raises(UserError, match="x_train holds 0 images") as e:
        data.load(_npz(tmp_path / "empty.npz", np.zeros(0, np.int64), [0, 1]))
    assert "\n" not in str(e.value)
    with pytest.raises(UserError, match="x_test holds 0 images"):
        data.load(_npz(tmp_path / "no_test.npz", [0, 1], np.zeros(0, np.int64), n_test=0))
    # a member whose header claims 10^13 images: refused before numpy allocates them
    import io
    import zipfile

    good = tmp_path / "good.npz"
    _npz(good, [0, 1], [1, 0])
    huge = tmp_path / "huge.npz"
    with zipfile.ZipFile(good) as src, zipfile.ZipFile(huge, "w") as dst:
        for info in src.infolist():
            if info.filename == "x_train.npy":
                buf = io.BytesIO()
                np.lib.format.write_array_header_1_0(buf, {"descr": "|u1", "fortran_order": False,
                                                           "shape": (10**13, 4, 4)})
                dst.writestr(info.filename, buf.getvalue() + bytes(32))
            else:
                dst.writestr(info, src.read(info))
    with pytest.raises(UserError, match=r"x_train claims shape \(10000000000000, 4, 4\).*holds 32 bytes") as e:
        data.load(str(huge))
    assert "\n" not in str(e.value)


def test_image_folder_with_one_class_names_the_folder(tmp_path):
    from PIL import Image

    root = tmp_path / "pets"
    for part in ("train", "test"):
        (root / part / "cats").mkdir(parents=True)
        for i in range(2):
            Image.new("RGB", (4, 4), (i, 0, 0)).save(root / part / "cats" / f"{i}.png")
    with pytest.raises(UserError, match=rf"{root}: one class folder \('cats'\).*at least 2 classes"):
        data.load(f"imagefolder:{root}", tmp_path)
    named = tmp_path / "named"
    named.mkdir()
    for i in range(3):
        Image.new("RGB", (4, 4)).save(named / f"cat.{i}.png")
    with pytest.raises(UserError, match=rf"{named}: every image is named cat\.<n>, one class"):
        data.load(f"imagefolder:{named}", tmp_path)
