"""The built-in datasets' registry entries (scikit-learn digits, the MNIST family, EMNIST, CIFAR-10/100,
SVHN, your own .npz): each a factory that returns the `Source` that finds, downloads and decodes it.
`imagefolder.py` adds your own image folders; `loading.py` resolves a spec and loads it into memory.
"""

from __future__ import annotations

import os
import string
from pathlib import Path
from typing import Annotated

import numpy as np

from ..errors import UserError
from ..registry import Option
from . import columns, formats
from .sources import REGISTRY, Seed, Source, TestFraction, arrays, choice, find_user_path
from .splits import stratified_indices


# --- scikit-learn digits --------------------------------------------------------------------------
@REGISTRY.register(
    "digits",
    aliases=["sklearn_digits", "load_digits"],
    summary="scikit-learn's 8×8 digits, 1,797 images (1,438 train / 359 test, seeded stratified 20%), "
    "1×8×8 grey, 10 classes; no files needed (embedded in scikit-learn)",
)
def digits(test_fraction: TestFraction = 0.2, seed: Seed = 0) -> Source:
    test_fraction, seed = float(test_fraction), int(seed)  # declared limits; 3.0 is the seed 3 (one run key)

    def decode(data_dir, files):
        images, target = _sklearn_digits()
        # 17 values 0..16 ("16 grey levels") -> 0..255
        x = np.rint(images * (255.0 / 16.0)).astype(np.uint8)[:, None]
        y = target.astype(np.int64)
        test_idx = stratified_indices(y, round(len(y) * test_fraction), seed=seed)
        mask = np.ones(len(y), dtype=bool)
        mask[test_idx] = False
        return arrays(x[mask], y[mask], x[test_idx], y[test_idx], [str(i) for i in range(10)])

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
        return arrays(*result, class_names)

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
    split = choice(split, list(EMNIST_SPLITS), "emnist split")
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
        decoded = arrays(*parts["train"], *parts["test"], class_names)
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
    label_mode = choice(label_mode, ["fine", "coarse"], "cifar100 label_mode")
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
    extra = bool(extra)  # declared true/false (0 or 1 taken)
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
        return arrays(xtr, ytr, *got["test"], [str(i) for i in range(10)])

    def missing(data_dir):
        absent = [f"{s}_32x32.mat" for s in splits if not (data_dir / f"{s}_32x32.mat").is_file()]
        return f"put {', '.join(absent)} in {data_dir}/"

    def download(data_dir):
        data_dir.mkdir(parents=True, exist_ok=True)
        for s in splits:
            _tv("SVHN")(str(data_dir), split=s, download=True)

    return Source("svhn", {"extra": extra}, locate, decode, missing, download)


# --- .npz files -----------------------------------------------------------------------------------
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

    def locate(data_dir):
        p = find_user_path(path, data_dir)
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
        labels = [_npz_labels(d, part, where) for part in ("train", "test")]
        ys = [y for y, _ in labels]
        width = next((w for _, w in reversed(labels) if w is not None), None)  # the last, as before
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
        decoded = arrays(x_train, ys[0], x_test, ys[1], names)
        decoded["label_columns"] = columns.npz_columns(d, len(x_train), len(x_test), where)  # y_train_NAME, ...
        return decoded

    def missing(data_dir):
        return f"no file {path!r} (looked in the working directory and {data_dir}); check the path"

    options = {"path": path} if num_classes is None else {"path": path, "num_classes": int(num_classes)}
    return Source(f"npz:{path}", options, locate, decode, missing, cacheable=False)


def _npz_labels(d, part: str, where: str) -> tuple[np.ndarray, int | None]:
    """A .npz's `y_<part>` as int64 class indices, and the number of classes one-hot rows give (else None)."""
    y, width = np.asarray(d[f"y_{part}"]), None
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
    return y.astype(np.int64), width


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
