"""Folders of image files (`imagefolder:PATH`), decoded once into the uint8 cache.

Two layouts are recognised under PATH:

1. class sub-folders, split:  `train/<class>/*.jpg` and `test/<class>/*.jpg`
   (also named `training_set/` + `test_set/`, or `training/` + `testing/`; a Kaggle-style doubled
   folder such as `training_set/training_set/<class>/` is followed);
2. one folder of files named `<class>.<number>.<ext>` (Kaggle Dogs-vs-Cats: `cat.123.jpg`,
   `dog.7.jpg`), either PATH itself or `PATH/train/`, split into train/test by a seeded, stratified
   `test_fraction`.

Classes are sorted by name (as Keras `flow_from_directory` / torchvision `ImageFolder`). Images are
converted to RGB (or grey with `color_mode="grayscale"`) and resized to `image_size` (int or
[height, width]) with the given interpolation; without `image_size` every image must have the same size.
Samples are stored in a seeded shuffled order (not class by class), like Keras'
`image_dataset_from_directory(shuffle=True, seed=seed)`.
"""

from __future__ import annotations

import os
import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Annotated

import numpy as np

from ..errors import UserError
from ..registry import Option
from .sources import REGISTRY, Seed, Source, TestFraction, arrays, choice, find_user_path
from .splits import stratified_indices

IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm"}
TRAIN_NAMES = ("train", "training_set", "training", "train_set")
TEST_NAMES = ("test", "test_set", "testing", "validation", "val")
NAMED_FILE = re.compile(r"^(?P<label>[A-Za-z][A-Za-z0-9_\-]*)\.(?P<num>\d+)\.[A-Za-z0-9]+$")
INTERPOLATIONS = ("nearest", "bilinear", "bicubic", "lanczos", "box", "hamming")


def _is_image(p: Path) -> bool:
    return p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith(".")


def _subdirs(p: Path) -> list[Path]:
    return sorted(d for d in p.iterdir() if d.is_dir() and not d.name.startswith("."))


def _class_root(p: Path) -> Path:
    """Follow a doubled folder (`training_set/training_set/`)."""
    subs = _subdirs(p)
    if len(subs) == 1 and subs[0].name == p.name:
        return subs[0]
    return p


def _find_child(root: Path, names) -> Path | None:
    for n in names:
        for d in (root / n, root / n.upper(), root / n.capitalize()):
            if d.is_dir():
                return d
    return None


def _class_files(folder: Path) -> dict[str, list[Path]]:
    out = {}
    for d in _subdirs(folder):
        files = sorted((f for f in d.rglob("*") if _is_image(f)), key=lambda f: str(f.relative_to(d)))
        if files:
            out[d.name] = files
    return out


def _natural_key(f: Path):
    m = NAMED_FILE.match(f.name)
    return (m["label"].lower(), int(m["num"]), f.name) if m else ("", 0, f.name)


def discover(root: Path):
    """("split", {"train": {class: files}, "test": {...}}) or ("named", {class: files})."""
    train, test = _find_child(root, TRAIN_NAMES), _find_child(root, TEST_NAMES)
    if train is not None and test is not None:
        tr, te = _class_files(_class_root(train)), _class_files(_class_root(test))
        if tr and te:
            return "split", {"train": tr, "test": te}
    for folder in (root, train):
        if folder is None:
            continue
        named = sorted((f for f in folder.iterdir() if _is_image(f) and NAMED_FILE.match(f.name)), key=_natural_key)
        if named:
            groups: dict[str, list[Path]] = {}
            for f in named:
                groups.setdefault(NAMED_FILE.match(f.name)["label"].lower(), []).append(f)
            if len(groups) >= 2:
                return "named", groups
            raise UserError(f"{folder}: every image is named {next(iter(groups))}.<n>, one class; a classifier "
                            "needs at least 2 (e.g. cat.1.jpg and dog.1.jpg), or use train/<class>/ and "
                            "test/<class>/ sub-folders")
    raise UserError(
        f"{root}: no images in a known layout; use train/<class>/*.jpg + test/<class>/*.jpg "
        "(or training_set/ + test_set/), or files named <class>.<number>.jpg such as cat.1.jpg, dog.2.jpg"
    )


def _decode_all(files: list[Path], size: tuple[int, int] | None, mode: str, interpolation: str) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    resample = getattr(Image.Resampling, interpolation.upper())

    def one(f: Path) -> np.ndarray:
        try:
            with Image.open(f) as im:
                im = im.convert(mode)
                if size is not None and im.size != (size[1], size[0]):
                    im = im.resize((size[1], size[0]), resample=resample)
                return np.asarray(im, dtype=np.uint8)
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
            raise UserError(f"{f}: cannot decode the image ({e}); "
                            "the file is truncated or corrupted, remove or replace it") from None

    workers = min(8, (os.cpu_count() or 1))
    with ThreadPoolExecutor(max_workers=workers) as pool:  # PIL releases the GIL while decoding
        images = list(pool.map(one, files, chunksize=64))
    shapes = {a.shape for a in images}
    if len(shapes) > 1:
        raise UserError(
            f"images have different sizes ({', '.join(str(s[:2]) for s in list(shapes)[:3])} ...); "
            "set image_size in the dataset spec, e.g. { name = \"imagefolder:PATH\", image_size = 150 }"
        )
    x = np.stack(images) if images else np.zeros((0, *(size or (1, 1))), np.uint8)
    return x[:, None] if x.ndim == 3 else x.transpose(0, 3, 1, 2)


@REGISTRY.register(
    "imagefolder", path_option="path",
    aliases=["image_folder"],
    summary="your own images (imagefolder:PATH, options image_size, color_mode, test_fraction, seed): "
    "PATH/train/<class>/* + PATH/test/<class>/* (or training_set/ + test_set/), or PATH/ of files "
    "<class>.<n>.jpg (Dogs-vs-Cats) split by test_fraction; decoded once into <data_dir>/cnnbench-cache/",
)
def imagefolder(path: Annotated[str | os.PathLike, Option("the folder (in the name: imagefolder:PATH)")] = "",
                image_size: Annotated[int | list[int] | None, Option("resize to this size, or [height, width] "
                                                                     "(absent: keep; all images must agree)", ge=1)]
                = None,
                color_mode: Annotated[str, Option("rgb or grayscale")] = "rgb",
                interpolation: Annotated[str, Option("the resize filter: nearest, bilinear, bicubic, lanczos, box "
                                                     "or hamming")] = "bilinear",
                test_fraction: TestFraction = 0.2, seed: Seed = 0) -> Source:
    if not path:
        raise UserError("imagefolder needs a path: name it 'imagefolder:PATH', e.g. 'imagefolder:data/dogs_vs_cats'")
    if image_size is not None:  # its type and limit (>= 1) are declared; a list's length is not
        if isinstance(image_size, (list, tuple)) and len(image_size) != 2:
            raise UserError(f"image_size must be a whole number or [height, width], got {image_size!r}")
        # a whole float is the whole number (150.0 is 150: one config, one run key)
        image_size = [int(v) for v in image_size] if isinstance(image_size, (list, tuple)) else int(image_size)
        size = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
    else:
        size = None
    color_mode = choice(color_mode, ["rgb", "grayscale"], "color_mode")
    interpolation = choice(interpolation, list(INTERPOLATIONS), "interpolation")
    test_fraction, seed = float(test_fraction), int(seed)  # declared limits; 3.0 is the seed 3 (one run key)
    options = {"path": str(path), "image_size": image_size, "color_mode": color_mode,
               "interpolation": interpolation, "test_fraction": test_fraction, "seed": seed}
    state: dict = {}

    def locate(data_dir):
        root = find_user_path(path, data_dir)
        if root is None or not root.is_dir():
            return None
        layout, groups = discover(root)
        state.update(root=root, layout=layout, groups=groups)
        if layout == "split":
            return [f for part in ("train", "test") for fs in groups[part].values() for f in fs]
        return [f for fs in groups.values() for f in fs]

    def decode(data_dir, files):
        layout, groups = state["layout"], state["groups"]
        # Files are listed class by class; the samples are stored in a seeded shuffled order (as Keras'
        # image_dataset_from_directory(shuffle=True, seed=...)), so that a Keras-style validation split
        # (the last fraction) is not made of the last class only.
        rng = np.random.default_rng(seed)
        mode = "L" if color_mode == "grayscale" else "RGB"
        if layout == "split":
            names = sorted(set(groups["train"]) | set(groups["test"]))
            if len(names) < 2:
                raise UserError(f"{state['root']}: one class folder ({names[0]!r}) under train/ and test/; a "
                                "classifier needs at least 2 classes: one sub-folder per class, e.g. train/cats/ "
                                "and train/dogs/ (the same under test/)")
            index = {c: i for i, c in enumerate(names)}
            parts = []
            for part in ("train", "test"):
                fs = [f for c in sorted(groups[part]) for f in groups[part][c]]
                ys = np.array([index[c] for c in sorted(groups[part]) for _ in groups[part][c]], dtype=np.int64)
                order = rng.permutation(len(fs))  # not class by class (see _shuffle below)
                parts += [_decode_all([fs[i] for i in order], size, mode, interpolation), ys[order]]
            return arrays(*parts, names)
        names = sorted(groups)
        fs = [f for c in names for f in groups[c]]
        y = np.array([i for i, c in enumerate(names) for _ in groups[c]], dtype=np.int64)
        x = _decode_all(fs, size, mode, interpolation)
        test_idx = stratified_indices(y, max(1, round(len(y) * test_fraction)), seed=seed)
        mask = np.ones(len(y), dtype=bool)
        mask[test_idx] = False
        train_idx = np.flatnonzero(mask)
        train_idx, test_idx = rng.permutation(train_idx), rng.permutation(test_idx)
        return arrays(x[train_idx], y[train_idx], x[test_idx], y[test_idx], names)

    def missing(data_dir):
        return f"no folder {path!r} (looked in the working directory and {data_dir}); check the path"

    return Source(f"imagefolder:{path}", options, locate, decode, missing)
