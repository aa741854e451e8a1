"""The dataset registry, `load` and `resolve`.

A dataset spec is a name (`"mnist"`, `"data/x.npz"`, `"imagefolder:data/dogs_vs_cats"`) or a dict with a
`name` key plus options (`{"name": "emnist", "split": "letters", "limit_train": 1000}`).

Options every dataset takes (handled here, not by the registry entries):
- `limit_train`, `limit_test` (int or None): keep only N samples, for quick studies;
- `limit_mode`: `"first"` (the first N in published order) or `"stratified"` (the first samples of
  each class, in proportion to the class counts, published order kept);
- `download` (bool, default True): let torchvision download missing files (with its checksums). Not
  part of `resolve`'s output: it does not change the data.
"""

from __future__ import annotations

import math
import os
import string
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import torch

from ..errors import UserError, did_you_mean
from ..registry import Option, Registry
from . import cache, columns, formats
from .splits import LIMIT_MODES, limit, stratified_indices

REGISTRY = Registry("dataset")

COMMON_OPTIONS = ("limit_train", "limit_test", "limit_mode", "download")

# Options the datasets declare in their signatures (`registry.Option`).
Seed = Annotated[int, Option("the seed of the stratified train/test split", ge=0)]
TestFraction = Annotated[float, Option("the share of the images held out as the test set", gt=0, lt=1)]


# --- the dataset object ---------------------------------------------------------------------------
@dataclass
class Dataset:
    """A whole dataset in memory: uint8 images N×C×H×W, int64 labels, the test set as published."""

    name: str
    x_train: torch.Tensor
    x_test: torch.Tensor
    y_train: torch.Tensor
    y_test: torch.Tensor
    num_classes: int
    class_names: list[str]
    spec: dict[str, Any] = field(default_factory=dict)  # the resolved spec it was loaded from
    source: str = ""  # where it came from (files, or the cache file)
    # label columns beside the class label (`columns.py`): name -> (train labels, test labels, classes)
    label_columns: dict[str, tuple[torch.Tensor, torch.Tensor, int]] = field(default_factory=dict)

    def __post_init__(self):
        for part in ("train", "test"):
            x, y = getattr(self, f"x_{part}"), getattr(self, f"y_{part}")
            if x.dtype != torch.uint8 or x.dim() != 4:
                raise ValueError(f"x_{part} must be a uint8 N×C×H×W tensor, got {x.dtype} {tuple(x.shape)}")
            if y.dtype != torch.int64 or y.dim() != 1 or len(y) != len(x):
                raise ValueError(f"y_{part} must be int64 with {len(x)} labels, got {y.dtype} {tuple(y.shape)}")
            if len(y) and (int(y.min()) < 0 or int(y.max()) >= self.num_classes):
                raise ValueError(f"y_{part} spans {int(y.min())}..{int(y.max())}, outside 0..{self.num_classes - 1}")
        if self.x_train.shape[1:] != self.x_test.shape[1:]:
            raise UserError(f"{self.name}: train images are {'×'.join(map(str, self.x_train.shape[1:]))} but test "
                            f"images are {'×'.join(map(str, self.x_test.shape[1:]))} (C×H×W); store both at one size "
                            "(for an image folder, set image_size)")
        if len(self.class_names) != self.num_classes:
            raise ValueError(f"{len(self.class_names)} class names for {self.num_classes} classes")

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """(C, H, W)."""
        return tuple(self.x_train.shape[1:])

    def __repr__(self) -> str:
        c, h, w = self.input_shape
        return (
            f"Dataset({self.name!r}, train={len(self.y_train)}, test={len(self.y_test)}, "
            f"shape={c}x{h}x{w}, classes={self.num_classes})"
        )


def default_data_dir(data_dir: str | os.PathLike | None = None) -> Path:
    """`data_dir` if given (the `--data-dir` flag), else `$CNNBENCH_DATA`, else `~/.cache/cnnbench`."""
    if data_dir is not None and str(data_dir) != "":
        return Path(data_dir).expanduser()
    env = os.environ.get("CNNBENCH_DATA")
    if env:
        return Path(env).expanduser()
    return Path("~/.cache/cnnbench").expanduser()


# --- what a registry factory returns --------------------------------------------------------------
@dataclass
class Source:
    """How to find, download and decode one dataset (what a registry factory returns)."""

    name: str
    options: dict[str, Any]  # the dataset-specific options (part of the cache key)
    locate: Callable[[Path], list[Path] | None]  # source files, or None when incomplete
    decode: Callable[[Path, list[Path]], dict[str, Any]]  # x_train, y_train, x_test, y_test, class_names
    missing: Callable[[Path], str]  # "put ... in ..." (one line)
    download: Callable[[Path], None] | None = None
    cacheable: bool = True
    columns: tuple[str, ...] = ()  # label columns decode returns (`label_columns`); a cache without them is stale


Decoded = dict[str, Any]


def _owned(a, dtype) -> np.ndarray:
    """Contiguous, writable (a view of a read-only file buffer is copied once)."""
    a = np.ascontiguousarray(a, dtype=dtype)
    return a if a.flags.writeable else a.copy()


def _arrays(x_train, y_train, x_test, y_test, class_names) -> Decoded:
    return {
        "x_train": _owned(x_train, np.uint8),
        "y_train": _owned(y_train, np.int64),
        "x_test": _owned(x_test, np.uint8),
        "y_test": _owned(y_test, np.int64),
        "class_names": [str(c) for c in class_names],
    }


def _choice(value, allowed, what: str) -> str:
    v = str(value).lower()
    if v not in allowed:
        hint = did_you_mean(v, list(allowed))
        raise UserError(f"{what} {value!r} is unknown; {hint}use one of {', '.join(allowed)}")
    return v


# --- option values -------------------------------------------------------------------------------
# The study's one rule (docs/CONTRACTS.md): a string is never a number or a bool, a whole float is
# taken for a whole number (3.0 is 3), 0 or 1 for false or true.
def _whole(value) -> bool:
    return (not isinstance(value, bool) and isinstance(value, (int, float, np.integer, np.floating))
            and math.isfinite(value) and float(value).is_integer())


def _flag(value, key: str) -> bool:
    if isinstance(value, bool):
        return value
    if _whole(value) and value in (0, 1):
        return bool(value)
    raise UserError(f"{key} must be true or false, got {value!r}")


def _seed(value, key: str = "seed") -> int:
    if not _whole(value) or value < 0:
        raise UserError(f"{key} must be a whole number >= 0, got {value!r}")
    return int(value)


def _fraction(value, key: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < 1:
        raise UserError(f"{key} must be a number between 0 and 1, got {value!r}")
    return float(value)


# --- scikit-learn digits --------------------------------------------------------------------------
@REGISTRY.register(
    "digits",
    aliases=["sklearn_digits", "load_digits"],
    summary="scikit-learn's 8×8 digits, 1,797 images (1,438 train / 359 test, seeded stratified 20%), "
    "1×8×8 grey, 10 classes; no files needed (embedded in scikit-learn)",
)
def digits(test_fraction: TestFraction = 0.2, seed: Seed = 0) -> Source:
    test_fraction, seed = _fraction(test_fraction, "digits: test_fraction"), _seed(seed, "digits: seed")

    def decode(data_dir, files):
        images, target = _sklearn_digits()
        # 17 values 0..16 ("16 grey levels") -> 0..255
        x = np.rint(images * (255.0 / 16.0)).astype(np.uint8)[:, None]
        y = target.astype(np.int64)
        test_idx = stratified_indices(y, round(len(y) * test_fraction), seed=seed)
        mask = np.ones(len(y), dtype=bool)
        mask[test_idx] = False
        return _arrays(x[mask], y[mask], x[test_idx], y[test_idx], [str(i) for i in range(10)])

    return Source("digits", {"test_fraction": test_fraction, "seed": seed},
                  locate=lambda d: [], decode=decode, missing=lambda d: "", cacheable=False)


def _sklearn_digits() -> tuple[np.ndarray, np.ndarray]:
    """(images N×8×8, target N) of scikit-learn's digits, read from the CSV it ships.

    Read directly, as `sklearn.datasets.load_digits` does, because importing scikit-learn costs each
    worker process ~80 MB; `load_digits` is the fallback should the file move."""
    import importlib.util

    spec = importlib.util.find_spec("sklearn")  # locates the package without importing it
    path = Path(spec.submodule_search_locations[0]) / "datasets" / "data" / "digits.csv.gz" if spec else None
    if path is not None and path.is_file():
        data = np.loadtxt(path, delimiter=",")
        return data[:, :-1].reshape(-1, 8, 8), data[:, -1].astype(np.int64)
    from sklearn.datasets import load_digits

    d = load_digits()
    return d.images, d.target


# --- IDX datasets (MNIST family) ------------------------------------------------------------------
def _tv(name: str):
    import torchvision.datasets as tvd

    return getattr(tvd, name)


def _idx_source(name: str, folder: str, tv_name: str, class_names: list[str], *,
                prefix: str = "", official: tuple[int, int] | None = (60000, 10000),
                tv_kwargs: dict | None = None, label_offset: int = 0, transpose: bool = False,
                options: dict | None = None) -> Source:
    """MNIST-like: `<data_dir>/<folder>/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]`
    (EMNIST: `emnist-<split>-{train,test}-...`, also read straight from EMNIST's `gzip.zip`)."""
    parts = {"train": "train", "test": "t10k"} if not prefix else {"train": f"{prefix}train", "test": f"{prefix}test"}
    bases = {
        (part, kind): f"{stem}-{kind}-{'idx3' if kind == 'images' else 'idx1'}-ubyte"
        for part, stem in parts.items()
        for kind in ("images", "labels")
    }

    def raw_dir(data_dir: Path) -> Path:
        return data_dir / folder / "raw"

    def locate(data_dir):
        # raw first when its published MD5 is known (faster), else the .gz whose MD5 torchvision lists
        found = [formats.find_file(raw_dir(data_dir), b, prefer_gz=(folder, b) not in formats.IDX_MD5)
                 for b in bases.values()]
        if all(found):
            return found
        zip_path = raw_dir(data_dir) / "gzip.zip"  # EMNIST's archive, if only that is there
        if prefix and zip_path.is_file():
            return [zip_path]
        return None

    def gz_md5(base: str):
        try:
            return dict(_tv(tv_name).resources).get(base + ".gz")
        except Exception:
            return None

    def decode(data_dir, files):
        out = {}
        for i, ((part, kind), base) in enumerate(bases.items()):
            ndim = 3 if kind == "images" else 1
            if len(files) == 1:  # gzip.zip
                out[part, kind] = formats.read_idx_from_zip(files[0], f"gzip/{base}.gz", ndim)
            else:
                count = official[0 if part == "train" else 1] if official else None
                out[part, kind] = formats.read_idx(
                    files[i], ndim, md5=formats.IDX_MD5.get((folder, base)), gz_md5=lambda b=base: gz_md5(b),
                    official_count=count,
                )
        result = []
        for part in ("train", "test"):
            x, y = out[part, "images"], out[part, "labels"].astype(np.int64)
            formats.check_labels(y, len(x), len(class_names), f"{name} {part} labels in {raw_dir(data_dir)}",
                                 offset=label_offset)
            if label_offset:
                y = y - label_offset
            x = x.transpose(0, 2, 1) if transpose else x
            result += [x[:, None], y]
        return _arrays(*result, class_names)

    def missing(data_dir):
        absent = [b + ".gz" for b in bases.values() if not formats.find_file(raw_dir(data_dir), b)]
        extra = " (or EMNIST's gzip.zip)" if prefix else ""
        return f"put {', '.join(absent)} (or the same names without .gz){extra} in {raw_dir(data_dir)}/"

    def download(data_dir):
        data_dir.mkdir(parents=True, exist_ok=True)
        _tv(tv_name)(str(data_dir), train=True, download=True, **(tv_kwargs or {}))

    return Source(name, options or {}, locate, decode, missing, download)


@REGISTRY.register(
    "mnist",
    summary="MNIST digits, 60,000 train / 10,000 test, 1×28×28 grey, 10 classes (~11 MB gz); files: "
    "<data_dir>/MNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]",
)
def mnist() -> Source:
    return _idx_source("mnist", "MNIST", "MNIST", [str(i) for i in range(10)])


@REGISTRY.register(
    "fashion_mnist",
    aliases=["fmnist", "FashionMNIST"],
    summary="Fashion-MNIST, 60,000 train / 10,000 test, 1×28×28 grey, 10 classes (~30 MB gz); files: "
    "<data_dir>/FashionMNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]",
)
def fashion_mnist() -> Source:
    names = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
    return _idx_source("fashion_mnist", "FashionMNIST", "FashionMNIST", names)


@REGISTRY.register(
    "kmnist",
    aliases=["kuzushiji_mnist"],
    summary="Kuzushiji-MNIST, 60,000 train / 10,000 test, 1×28×28 grey, 10 classes (~20 MB gz); files: "
    "<data_dir>/KMNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]",
)
def kmnist() -> Source:
    return _idx_source("kmnist", "KMNIST", "KMNIST", ["o", "ki", "su", "tsu", "na", "ha", "ma", "ya", "re", "wo"])


EMNIST_SPLITS = {  # split: (train, test, class names)
    "byclass": (697932, 116323, list(string.digits + string.ascii_uppercase + string.ascii_lowercase)),
    "bymerge": (697932, 116323, list(string.digits + string.ascii_uppercase + "abdefghnqrt")),
    "balanced": (112800, 18800, list(string.digits + string.ascii_uppercase + "abdefghnqrt")),
    "letters": (124800, 20800, list(string.ascii_lowercase)),
    "digits": (240000, 40000, list(string.digits)),
    "mnist": (60000, 10000, list(string.digits)),
}


@REGISTRY.register(
    "emnist",
    summary="EMNIST (split=byclass|bymerge|balanced|letters|digits|mnist; default balanced: 112,800 / "
    "18,800, 47 classes), 1×28×28 grey, upright; files: <data_dir>/EMNIST/raw/"
    "emnist-<split>-{train,test}-{images-idx3,labels-idx1}-ubyte[.gz] or gzip.zip (562 MB)",
)
def emnist(split: Annotated[str, Option("byclass, bymerge, balanced, letters, digits or mnist")] = "balanced",
           ) -> Source:
    split = _choice(split, list(EMNIST_SPLITS), "emnist split")
    n_train, n_test, names = EMNIST_SPLITS[split]
    return _idx_source(
        "emnist", "EMNIST", "EMNIST", names, prefix=f"emnist-{split}-", official=(n_train, n_test),
        tv_kwargs={"split": split}, label_offset=1 if split == "letters" else 0, transpose=True,
        options={"split": split},
    )


# --- CIFAR ----------------------------------------------------------------------------------------
def _cifar_source(name: str, tv_name: str, folder: str, train_files: list[str], test_files: list[str],
                  meta_file: str, label_key: str, names_key: str, options: dict,
                  other: tuple[str, str, str] | None = None) -> Source:
    """`other`: (column, label key, names key) of a second label set in the same files (CIFAR-100's)."""
    def locate(data_dir):
        paths = [data_dir / folder / f for f in (*train_files, *test_files, meta_file)]
        return paths if all(p.is_file() for p in paths) else None

    def md5s():
        try:
            cls = _tv(tv_name)
            return dict(map(tuple, cls.train_list + cls.test_list))
        except Exception:
            return {}

    def decode(data_dir, files):
        count = 10000 if name == "cifar10" else None
        parts = {}
        for part, fnames in (("train", train_files), ("test", test_files)):
            xs, ys = [], []
            for f in fnames:
                official = count if count else (50000 if part == "train" else 10000)
                x, y = formats.cifar_batch(data_dir / folder / f, label_key, md5=lambda f=f: md5s().get(f),
                                            official_count=official)
                xs.append(x)
                ys.append(y)
            parts[part] = (np.concatenate(xs), np.concatenate(ys))
        class_names = formats.cifar_meta(data_dir / folder / meta_file, names_key)
        for part, (x, y) in parts.items():
            formats.check_labels(y, len(x), len(class_names), f"{name} {part} labels in {data_dir / folder}")
        decoded = _arrays(*parts["train"], *parts["test"], class_names)
        if other is not None:  # the other label set, as a label column (read again: decoded once, then cached)
            column, key, names = other
            k = len(formats.cifar_meta(data_dir / folder / meta_file, names))
            ys = [np.concatenate([formats.cifar_batch(data_dir / folder / f, key)[1] for f in fnames])
                  for fnames in (train_files, test_files)]
            for part, y in zip(("train", "test"), ys):
                formats.check_labels(y, len(y), k, f"{name} {part} {key} in {data_dir / folder}")
            decoded["label_columns"] = {column: (ys[0], ys[1], k)}
        return decoded

    def missing(data_dir):
        absent = [f for f in (*train_files, *test_files, meta_file) if not (data_dir / folder / f).is_file()]
        return (
            f"put {', '.join(absent)} (from {_tv(tv_name).filename}, extracted) in {data_dir / folder}/"
        )

    def download(data_dir):
        data_dir.mkdir(parents=True, exist_ok=True)
        _tv(tv_name)(str(data_dir), train=True, download=True)

    return Source(name, options, locate, decode, missing, download, columns=(other[0],) if other else ())


@REGISTRY.register(
    "cifar10",
    aliases=["cifar_10"],
    summary="CIFAR-10, 50,000 train / 10,000 test, 3×32×32 colour, 10 classes (163 MB tar.gz); files: "
    "<data_dir>/cifar-10-batches-py/{data_batch_1..5,test_batch,batches.meta}",
)
def cifar10() -> Source:
    return _cifar_source(
        "cifar10", "CIFAR10", "cifar-10-batches-py", [f"data_batch_{i}" for i in range(1, 6)], ["test_batch"],
        "batches.meta", "labels", "label_names", {},
    )


@REGISTRY.register(
    "cifar100",
    aliases=["cifar_100"],
    summary="CIFAR-100 (label_mode=fine: 100 classes | coarse: 20), 50,000 train / 10,000 test, 3×32×32 "
    "colour (161 MB tar.gz); files: <data_dir>/cifar-100-python/{train,test,meta}",
)
def cifar100(label_mode: Annotated[str, Option("fine (100 classes) or coarse (20 superclasses)")] = "fine",
             ) -> Source:
    label_mode = _choice(label_mode, ["fine", "coarse"], "cifar100 label_mode")
    other = "coarse" if label_mode == "fine" else "fine"  # the other label set: a label column for targets
    return _cifar_source(
        "cifar100", "CIFAR100", "cifar-100-python", ["train"], ["test"], "meta",
        f"{label_mode}_labels", f"{label_mode}_label_names", {"label_mode": label_mode},
        other=(f"{other}_label", f"{other}_labels", f"{other}_label_names"),
    )


# --- SVHN -----------------------------------------------------------------------------------------
@REGISTRY.register(
    "svhn",
    summary="SVHN cropped digits, 73,257 train (+531,131 with extra=true) / 26,032 test, 3×32×32 colour, "
    "10 classes; files: <data_dir>/{train,test}_32x32.mat (+ extra_32x32.mat)",
)
def svhn(extra: Annotated[bool, Option("add the 531,131 extra training images")] = False) -> Source:
    extra = _flag(extra, "svhn: extra")
    splits = ["train", "test"] + (["extra"] if extra else [])
    official = {"train": 73257, "test": 26032, "extra": 531131}

    def locate(data_dir):
        paths = [data_dir / f"{s}_32x32.mat" for s in splits]
        return paths if all(p.is_file() for p in paths) else None

    def decode(data_dir, files):
        def md5(split):
            try:
                return _tv("SVHN").split_list[split][2]
            except Exception:
                return None

        got = {s: formats.read_svhn_mat(p, md5=lambda s=s: md5(s), official_count=official[s])
               for s, p in zip(splits, files)}
        xtr, ytr = got["train"]
        if extra:
            xtr, ytr = np.concatenate([xtr, got["extra"][0]]), np.concatenate([ytr, got["extra"][1]])
        return _arrays(xtr, ytr, *got["test"], [str(i) for i in range(10)])

    def missing(data_dir):
        absent = [f"{s}_32x32.mat" for s in splits if not (data_dir / f"{s}_32x32.mat").is_file()]
        return f"put {', '.join(absent)} in {data_dir}/"

    def download(data_dir):
        data_dir.mkdir(parents=True, exist_ok=True)
        for s in splits:
            _tv("SVHN")(str(data_dir), split=s, download=True)

    return Source("svhn", {"extra": extra}, locate, decode, missing, download)


# --- .npz files -----------------------------------------------------------------------------------
def _find_user_path(path: str, data_dir: Path) -> Path | None:
    p = Path(path).expanduser()
    if p.exists():
        return p
    if not p.is_absolute() and (data_dir / p).exists():
        return data_dir / p
    return None


@REGISTRY.register(
    "npz", path_option="path", suffixes=[".npz"],
    summary="your own .npz (name ending in .npz, or npz:PATH): keys x_train, y_train, x_test, y_test "
    "(uint8 N×H×W grey or N×H×W×C; labels 0..K-1; optional class_names); PATH as given, else under "
    "<data_dir>; option num_classes when some classes have no image",
)
def npz(path: Annotated[str | os.PathLike, Option("the .npz file (in the name: npz:PATH or PATH.npz)")] = "",
        num_classes: Annotated[int | None, Option("K when some of the classes 0..K-1 have no image", ge=2)] = None,
        ) -> Source:
    if not path:
        raise UserError("npz dataset needs a path: use a name ending in .npz, e.g. 'data/my_dataset.npz'")
    if num_classes is not None and (not _whole(num_classes) or num_classes < 2):
        raise UserError(f"npz: num_classes must be a whole number >= 2, got {num_classes!r}")

    def locate(data_dir):
        p = _find_user_path(path, data_dir)
        return [p] if p is not None and p.is_file() else None

    def decode(data_dir, files):
        d = formats.read_npz(files[0])
        where = str(files[0])
        x_train = formats.to_uint8_images(d["x_train"], f"{where} x_train")
        x_test = formats.to_uint8_images(d["x_test"], f"{where} x_test")
        for part, x in (("train", x_train), ("test", x_test)):
            if len(x) == 0:  # nothing to train on or to test: say so here, not as a division by zero later
                raise UserError(f"{where}: x_{part} holds 0 images; a dataset needs at least one training and "
                                "one test image")
        ys, width = [], None
        for part in ("train", "test"):
            y = np.asarray(d[f"y_{part}"])
            if y.ndim not in (1, 2):
                raise UserError(f"{where}: y_{part} has shape {y.shape}; store one class index per image (shape "
                                "(N,)) or one-hot rows (N×K)")
            if y.ndim == 2 and y.shape[1] == 1:
                y = y[:, 0]
            elif y.ndim == 2:  # one-hot
                if not (np.isin(y, (0, 1)).all() and (y.sum(1) == 1).all()):
                    raise UserError(f"{where}: y_{part} is {y.shape[0]}×{y.shape[1]} but not one-hot; store "
                                    "one class index per image (or one-hot rows of 0s and a single 1)")
                width = y.shape[1]  # the number of classes, whether each occurs or not
                y = y.argmax(1)
            if y.dtype.kind not in "iub":
                raise UserError(f"{where}: y_{part} must hold integer class indices, got {y.dtype}")
            ys.append(y.astype(np.int64))
        names = None
        if "class_names" in d:
            names = [c.decode() if isinstance(c, bytes) else str(c) for c in d["class_names"].tolist()]
            if num_classes is not None and len(names) != num_classes:
                raise UserError(f"{where}: {len(names)} class_names but num_classes = {num_classes} in the "
                                "dataset spec; make them agree (or drop num_classes)")
        k = len(names) if names is not None else num_classes or width
        if k is None:
            k = _dense_classes(ys, where)
        if names is None:
            names = [str(i) for i in range(k)]
        for part, x, y in (("train", x_train, ys[0]), ("test", x_test, ys[1])):
            formats.check_labels(y, len(x), len(names), f"{where} y_{part}")
        decoded = _arrays(x_train, ys[0], x_test, ys[1], names)
        decoded["label_columns"] = columns.npz_columns(d, len(x_train), len(x_test), where)  # y_train_NAME, ...
        return decoded

    def missing(data_dir):
        return f"no file {path!r} (looked in the working directory and {data_dir}); check the path"

    options = {"path": path} if num_classes is None else {"path": path, "num_classes": int(num_classes)}
    return Source(f"npz:{path}", options, locate, decode, missing, cacheable=False)


def _preview(values, n: int = 8) -> str:
    values = [int(v) for v in values]
    return ", ".join(map(str, values[:n])) + (f", ... ({len(values)} values)" if len(values) > n else "")


def _dense_classes(ys: list[np.ndarray], where: str) -> int:
    """K for labels with no class list: they must be exactly 0..K-1, each occurring. A stray label (1e6
    for 1, a 1-based set) would otherwise make a model with a million outputs, or a class never seen."""
    present = np.unique(np.concatenate(ys))
    k = len(present)
    if k and present[0] == 0 and present[-1] == k - 1:
        return k
    outside = present[(present < 0) | (present >= k)]
    absent = np.setdiff1d(np.arange(k), present)
    raise UserError(
        f"{where}: class labels must be 0..K-1; the {k} distinct labels include {_preview(outside)} "
        f"(outside 0..{k - 1}; absent: {_preview(absent)}); relabel them 0..{k - 1} (e.g. "
        "numpy.unique(y, return_inverse=True)), or if some classes have no image, give class_names in the "
        "file or num_classes in the dataset spec, e.g. { name = \"npz:PATH\", num_classes = 10 }")


# --- spec handling --------------------------------------------------------------------------------
def _source(spec) -> tuple[Source, dict[str, Any], dict[str, Any]]:
    """What `resolve` and `load` share: the entry's `Source` (its options checked against their
    declarations), the resolved spec (see `resolve`) and the common options (limits, download)."""
    name, options, _ = REGISTRY.parse(spec)  # "imagefolder:PATH", "npz:PATH", "x.npz": the one name grammar
    common = {k: options.pop(k) for k in COMMON_OPTIONS if k in options}
    source: Source = REGISTRY.get(name, **options)
    c = _common(common)
    resolved = {"name": _display_name(name, source.options),
                **{k: v for k, v in source.options.items() if k != "path"},
                **{k: c[k] for k in ("limit_train", "limit_test", "limit_mode")}}
    return source, resolved, c


def _common(common: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for key in ("limit_train", "limit_test"):
        v = common.get(key)
        if v is not None:
            if not _whole(v) or v < 1:
                raise UserError(f"{key} must be a positive whole number (or absent), got {v!r}")
            v = int(v)
        out[key] = v
    out["limit_mode"] = _choice(common.get("limit_mode", "first"), list(LIMIT_MODES), "limit_mode")
    out["download"] = _flag(common.get("download", True), "download")
    return out


def _display_name(entry_name: str, options: dict[str, Any]) -> str:
    if entry_name == "imagefolder":
        return f"imagefolder:{options['path']}"
    if entry_name == "npz":
        p = options["path"]
        return p if p.lower().endswith(".npz") else f"npz:{p}"
    return entry_name


def resolve(spec) -> dict[str, Any]:
    """The JSON-safe, fully explicit spec: `{"name": ..., **dataset options, limit_train, limit_test,
    limit_mode}` (`download` is left out: it does not change the data). Path-based datasets keep their
    path in the name (`"imagefolder:data/cats"`, `"data/x.npz"`)."""
    return _source(spec)[1]


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0][:160] if text else ''}".rstrip(": ")


def load(spec, data_dir: str | os.PathLike | None = None) -> Dataset:
    """Load a dataset into memory (decoding once into the cache under `<data_dir>/cnnbench-cache/`)."""
    source, resolved, c = _source(spec)  # the spec parsed and its source built once
    data_dir = default_data_dir(data_dir)

    files = source.locate(data_dir)
    # CNNBENCH_OFFLINE=1 turns every download off (air-gapped machines, test suites).
    download = c["download"] and os.environ.get("CNNBENCH_OFFLINE", "") in ("", "0")
    if files is None and source.download is not None:
        if download:
            before = _folders(data_dir)
            try:
                source.download(data_dir)
            except Exception as e:  # offline, checksum mismatch, read-only folder, ...
                files = source.locate(data_dir)
                if files is None:
                    _remove_empty_new_folders(data_dir, before)
                    raise UserError(
                        f"dataset {resolved['name']!r} is not in {data_dir} and could not be downloaded "
                        f"({_first_line(e)}); {source.missing(data_dir)}, or pass --data-dir / set CNNBENCH_DATA"
                    ) from None
            files = source.locate(data_dir)
        if files is None:
            how = "download is off" if not download else "the download left no files"
            raise UserError(
                f"dataset {resolved['name']!r} is not in {data_dir} ({how}); {source.missing(data_dir)}, "
                "or pass --data-dir / set CNNBENCH_DATA"
            )
    if files is None:
        raise UserError(f"dataset {resolved['name']!r}: {source.missing(data_dir)}")

    arrays, origin = None, ", ".join(str(f) for f in files[:3]) + (" ..." if len(files) > 3 else "")
    # download = false reads what is there and writes nothing into the data directory (no cache either):
    # it is what `cnnbench run --dry-run` uses to look at the datasets.
    write_cache = source.cacheable and c["download"]
    if source.cacheable:
        key = cache.cache_key(source.name, source.options, files)
        cpath = cache.cache_path(data_dir, source.name, key)
        hit = cache.load(cpath)
        cached_columns = None if hit is None else columns.from_cache(*hit)
        if (hit is not None and _labels_in_range(hit[0], len(hit[1]["class_names"])) and cached_columns is not None
                and set(source.columns) <= set(cached_columns)):
            tensors, meta = hit
            arrays = {**tensors, "class_names": meta["class_names"], "label_columns": cached_columns}
            origin = f"cache {cpath}"
    if arrays is None:
        decoded = source.decode(data_dir, files)
        _check_usable(resolved["name"], decoded["x_train"], decoded["x_test"], decoded["class_names"])
        if write_cache:
            extra, kinds = columns.to_cache(decoded.get("label_columns") or {})
            cache.save(cpath, {**{k: decoded[k] for k in ("x_train", "y_train", "x_test", "y_test")}, **extra},
                       {"class_names": decoded["class_names"], "name": source.name, "options": source.options,
                        **({"label_columns": kinds} if kinds else {})})
        arrays = {k: (torch.from_numpy(v) if isinstance(v, np.ndarray) else v) for k, v in decoded.items()}

    _check_usable(resolved["name"], arrays["x_train"], arrays["x_test"], arrays["class_names"])
    cols = arrays.get("label_columns") or {}  # kept with their images through the limits
    train_cols = columns.limited(cols, 0, arrays["y_train"], c["limit_train"], c["limit_mode"])
    test_cols = columns.limited(cols, 1, arrays["y_test"], c["limit_test"], c["limit_mode"])
    x_train, y_train = limit(arrays["x_train"], arrays["y_train"], c["limit_train"], c["limit_mode"])
    x_test, y_test = limit(arrays["x_test"], arrays["y_test"], c["limit_test"], c["limit_mode"])
    names = list(arrays["class_names"])
    return Dataset(
        name=resolved["name"], x_train=x_train, x_test=x_test, y_train=y_train, y_test=y_test,
        num_classes=len(names), class_names=names, spec=resolved, source=origin,
        label_columns={n: (train_cols[n], test_cols[n], cols[n][2]) for n in cols},
    )


def _check_usable(name: str, x_train, x_test, class_names) -> None:
    """A dataset a classifier can be trained and tested on: images in both parts, at least 2 classes
    (also for a cache written before these checks)."""
    for part, x in (("training", x_train), ("test", x_test)):
        if len(x) == 0:
            raise UserError(f"dataset {name!r} has 0 {part} images; a dataset needs at least one training and "
                            "one test image")
    if len(class_names) < 2:
        raise UserError(f"dataset {name!r} has {len(class_names)} class ({', '.join(map(repr, class_names))}); "
                        "a classifier needs at least 2 classes")


def _folders(root: Path, depth: int = 3) -> set[Path] | None:
    """The folders under `root`, `depth` levels down (None if `root` does not exist yet)."""
    if not root.is_dir():
        return None
    found, level = set(), [root]
    for _ in range(depth):
        nxt = []
        for d in level:
            try:
                nxt += [Path(e.path) for e in os.scandir(d) if e.is_dir(follow_symlinks=False)]
            except OSError:
                pass
        found.update(nxt)
        level = nxt
    return found


def _remove_empty_new_folders(root: Path, before: set[Path] | None) -> None:
    """After a failed download: remove the folders it created that are still empty (`MNIST/raw/`), so
    that what is left does not look like a dataset that is there."""
    after = _folders(root) or set()
    for d in sorted(after - (before or set()), key=lambda p: len(p.parts), reverse=True):
        try:
            d.rmdir()  # only succeeds on an empty folder
        except OSError:
            pass
    if before is None:
        try:
            root.rmdir()
        except OSError:
            pass


def _labels_in_range(arrays: dict[str, torch.Tensor], num_classes: int) -> bool:
    # The cache checksums its header, not its payload (hashing it would cost more than reading it).
    # Damaged labels are cheap to catch, and a cache that fails this is rebuilt from the source files.
    return all(len(y) == 0 or (int(y.min()) >= 0 and int(y.max()) < num_classes)
               for y in (arrays["y_train"], arrays["y_test"]))


def describe(name: str) -> str:
    """One line on a dataset: its registry summary."""
    return REGISTRY.entry(name).summary
