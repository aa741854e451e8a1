"""Loading a dataset: a spec (a name or a table) parsed by the registry's one name grammar, resolved to
its explicit form (`resolve`, what a run's config holds), and loaded into memory (`load`), decoding once
into the cache under `<data_dir>/cnnbench-cache/`.

Options every dataset takes (handled here, not by the registry entries):
- `limit_train`, `limit_test` (int or None): keep only N samples, for quick studies;
- `limit_mode`: `"first"` (the first N in published order) or `"stratified"` (the first samples of
  each class, in proportion to the class counts, published order kept);
- `download` (bool, default True): let torchvision download missing files (with its checksums). Not
  part of `resolve`'s output: it does not change the data.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import UserError
from . import cache, columns
from .sources import REGISTRY, Dataset, Source, choice, default_data_dir, flag, whole
from .splits import LIMIT_MODES, limit

COMMON_OPTIONS = ("limit_train", "limit_test", "limit_mode", "download")


# --- spec handling --------------------------------------------------------------------------------
def source_of(spec) -> tuple[Source, dict[str, Any], dict[str, Any]]:
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
            if not whole(v) or v < 1:
                raise UserError(f"{key} must be a positive whole number (or absent), got {v!r}")
            v = int(v)
        out[key] = v
    out["limit_mode"] = choice(common.get("limit_mode", "first"), list(LIMIT_MODES), "limit_mode")
    out["download"] = flag(common.get("download", True), "download")
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
    return source_of(spec)[1]


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0][:160] if text else ''}".rstrip(": ")


def load(spec, data_dir: str | os.PathLike | None = None) -> Dataset:
    """Load a dataset into memory (decoding once into the cache under `<data_dir>/cnnbench-cache/`)."""
    source, resolved, c = source_of(spec)  # the spec parsed and its source built once
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
