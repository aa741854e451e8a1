"""Readers for the original file formats, whole-array (no per-sample Python work).

- IDX ("ubyte") files of MNIST, Fashion-MNIST, KMNIST, EMNIST, raw or `.gz`
- the CIFAR-10 / CIFAR-100 "python version" pickle batches (read with a restricted unpickler)
- SVHN `.mat` files (scipy)
- `.npz` archives with x_train, y_train, x_test, y_test

Every reader checks the structure (sizes declared in headers, label counts, value ranges) and raises
`UserError` for a truncated or corrupted file. When a file has the published number of records, its MD5
is compared with the published checksum too, so a bit-flipped official file is never trained on.

Why not torchvision's readers (torchvision still downloads the files: `datasets._tv`): its CIFAR
datasets read the batches with `pickle.load`, which runs whatever code a pickle names (a file from
elsewhere must not run code; here a restricted unpickler accepts only arrays, lists and strings); its IDX
reader (`read_sn3_pascalvincent_tensor`) reads the uncompressed files only (after its own extraction,
which doubles the disk use) and reports a truncated file as a reshape error; its `check_integrity` knows
the MD5s of the `.gz` downloads, not of the files people copy in uncompressed (checksums above).
"""

from __future__ import annotations

import gzip
import hashlib
import io
import math
import pickle
import struct
import zipfile
import zlib
from pathlib import Path

import numpy as np

from ..errors import UserError

# MD5 of the *uncompressed* official IDX files (torchvision only lists the .gz checksums).
# MNIST / Fashion-MNIST values are the published ones (checked against /work/shared/datasets).
IDX_MD5 = {
    ("MNIST", "train-images-idx3-ubyte"): "6bbc9ace898e44ae57da46a324031adb",
    ("MNIST", "train-labels-idx1-ubyte"): "a25bea736e30d166cdddb491f175f624",
    ("MNIST", "t10k-images-idx3-ubyte"): "2646ac647ad5339dbf082846283269ea",
    ("MNIST", "t10k-labels-idx1-ubyte"): "27ae3e4e09519cfbb04c329615203637",
    ("FashionMNIST", "train-images-idx3-ubyte"): "f4a8712d7a061bf5bd6d2ca38dc4d50a",
    ("FashionMNIST", "train-labels-idx1-ubyte"): "9018921c3c673c538a1fc5bad174d6f9",
    ("FashionMNIST", "t10k-images-idx3-ubyte"): "8181f5470baa50b63fa0f6fddb340f0a",
    ("FashionMNIST", "t10k-labels-idx1-ubyte"): "15d484375f8d13e6eb1aabb0c3f46965",
}


def md5_bytes(data: bytes | memoryview) -> str:
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


def _corrupt(path: Path | str, problem: str, fix: str = "delete it and download or copy it again") -> UserError:
    return UserError(f"{path}: {problem}; the file is truncated or corrupted, {fix}")


# --- IDX ------------------------------------------------------------------------------------------
def find_file(folder: Path, base: str, prefer_gz: bool = False) -> Path | None:
    """`folder/base` or `folder/base.gz` (`prefer_gz`: the .gz first, e.g. when only its published
    checksum is known), else None."""
    order = (folder / (base + ".gz"), folder / base) if prefer_gz else (folder / base, folder / (base + ".gz"))
    for candidate in order:
        if candidate.is_file():
            return candidate
    return None


def parse_idx(data: bytes, path: Path | str, ndim: int) -> np.ndarray:
    """An IDX ubyte array (magic 0x08 type, `ndim` dims), checked against the header. Zero-copy."""
    if len(data) < 4 + 4 * ndim:
        raise _corrupt(path, f"only {len(data)} bytes, shorter than an IDX header")
    zero, dtype_code, nd = struct.unpack(">HBB", data[:4])
    if zero != 0 or dtype_code != 0x08 or nd != ndim:
        raise _corrupt(
            path, f"not an IDX ubyte file with {ndim} dimension(s) (magic {data[:4].hex()})"
        )
    dims = struct.unpack(f">{ndim}I", data[4 : 4 + 4 * ndim])
    expected = 4 + 4 * ndim + int(np.prod(dims, dtype=np.int64))
    if len(data) != expected:
        raise _corrupt(path, f"header says {dims} ({expected} bytes) but the file has {len(data)} bytes")
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def _value(v):
    """Checksums may be given lazily (a callable), so torchvision is imported only when needed."""
    return v() if callable(v) else v


def read_idx(path: Path, ndim: int, *, md5=None, gz_md5=None, official_count: int | None = None) -> np.ndarray:
    """Read an IDX file (raw or .gz). If it holds `official_count` records, verify the published MD5
    (`md5` of the raw bytes, or `gz_md5` of the compressed file; either may be a callable)."""
    raw = path.read_bytes()
    data = raw
    if path.suffix == ".gz":
        try:
            data = gzip.decompress(raw)
        except (EOFError, OSError, zlib.error) as e:
            raise _corrupt(path, f"cannot decompress ({e})") from None
    arr = parse_idx(data, path, ndim)
    if official_count is not None and arr.shape[0] == official_count:
        md5, gz_md5 = _value(md5), _value(gz_md5)
        if path.suffix == ".gz" and gz_md5 is not None:
            # a re-compressed copy has another .gz checksum: fall back to the raw checksum if known
            if md5_bytes(raw) != gz_md5 and (md5 is None or md5_bytes(data) != md5):
                raise _corrupt(path, "MD5 differs from the published checksum")
        elif md5 is not None and md5_bytes(data) != md5:
            raise _corrupt(path, "MD5 differs from the published checksum")
    return arr


def read_idx_from_zip(zip_path: Path, member: str, ndim: int) -> np.ndarray:
    """An IDX `.gz` member of an archive such as EMNIST's `gzip.zip` (zip and gzip CRCs checked)."""
    try:
        with zipfile.ZipFile(zip_path) as zf:
            raw = zf.read(member)
        data = gzip.decompress(raw)
    except KeyError:
        raise UserError(f"{zip_path}: has no member {member!r}; use the official EMNIST gzip.zip") from None
    except (zipfile.BadZipFile, EOFError, OSError, zlib.error) as e:
        raise _corrupt(zip_path, f"cannot read {member} ({e})") from None
    return parse_idx(data, f"{zip_path}:{member}", ndim)


def check_labels(y: np.ndarray, n_images: int, num_classes: int, where: str, offset: int = 0) -> None:
    if y.ndim != 1 or len(y) != n_images:
        raise UserError(f"{where}: {len(y)} labels for {n_images} images; the files do not belong together")
    if len(y):
        lo, hi = int(y.min()), int(y.max())
        if lo < offset or hi >= num_classes + offset:
            bad = np.unique(y[(y < offset) | (y >= num_classes + offset)])
            shown = ", ".join(str(int(v)) for v in bad[:8]) + (f", ... ({len(bad)} values)" if len(bad) > 8 else "")
            raise UserError(
                f"{where}: labels span {lo}..{hi}, expected {offset}..{num_classes + offset - 1} (outside: "
                f"{shown}); wrong or corrupted label file"
            )


# --- CIFAR pickles --------------------------------------------------------------------------------
_ALLOWED_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"),
    ("numpy._core.numeric", "_frombuffer"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("_codecs", "encode"),
}


class _RestrictedUnpickler(pickle.Unpickler):
    """Only numpy arrays, lists, dicts, strings and numbers: a CIFAR batch cannot run code."""

    def find_class(self, module, name):
        if (module, name) in _ALLOWED_GLOBALS:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"global {module}.{name} is not allowed in a CIFAR batch")


def read_pickle(path: Path) -> tuple[dict, bytes]:
    """A CIFAR-style pickle as a dict with `str` keys, and the file's bytes."""
    try:
        raw = path.read_bytes()
        obj = _RestrictedUnpickler(io.BytesIO(raw), encoding="bytes").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError) as e:
        raise _corrupt(path, f"cannot unpickle ({type(e).__name__}: {e})") from None
    if not isinstance(obj, dict):
        raise _corrupt(path, "not a CIFAR batch (expected a dict)")
    out = {(k.decode("latin1") if isinstance(k, bytes) else k): v for k, v in obj.items()}
    return out, raw


def _names(values) -> list[str]:
    return [v.decode("utf-8") if isinstance(v, bytes) else str(v) for v in values]


def cifar_batch(path: Path, label_key: str, *, md5=None,
                official_count: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(x N×3×32×32 uint8, y int64) from one CIFAR batch file (published MD5 checked when the batch
    has the published size; `md5` may be a callable)."""
    d, raw = read_pickle(path)
    if "data" not in d or label_key not in d:
        raise _corrupt(path, f"missing 'data' or {label_key!r} in the batch")
    data = np.asarray(d["data"])
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        raise _corrupt(path, f"'data' is {data.dtype} {data.shape}, expected uint8 N×3072")
    y = np.asarray(d[label_key], dtype=np.int64)
    if len(y) != len(data):
        raise _corrupt(path, f"{len(y)} labels for {len(data)} images")
    if official_count is not None and len(y) == official_count:
        md5 = _value(md5)
        if md5 is not None and md5_bytes(raw) != md5:
            raise _corrupt(path, "MD5 differs from the published checksum")
    return data.reshape(-1, 3, 32, 32), y


def cifar_meta(path: Path, key: str) -> list[str]:
    d, _ = read_pickle(path)
    if key not in d:
        raise _corrupt(path, f"missing {key!r}")
    return _names(d[key])


# --- SVHN .mat ------------------------------------------------------------------------------------
def read_svhn_mat(path: Path, *, md5=None, official_count: int | None = None):
    """(x N×3×32×32 uint8, y int64 with digit 0 as 0) from an SVHN `*_32x32.mat` file."""
    import scipy.io

    try:
        mat = scipy.io.loadmat(str(path))
    except Exception as e:  # scipy raises many kinds (ValueError, OSError, TypeError, ...)
        raise _corrupt(path, f"cannot read the .mat file ({type(e).__name__}: {e})") from None
    if "X" not in mat or "y" not in mat:
        raise _corrupt(path, "missing 'X' or 'y'")
    X, y = mat["X"], np.asarray(mat["y"]).reshape(-1).astype(np.int64)
    if X.dtype != np.uint8 or X.ndim != 4 or X.shape[2] != 3 or X.shape[3] != len(y):
        raise _corrupt(path, f"'X' is {X.dtype} {X.shape}, expected uint8 32×32×3×{len(y)}")
    check_labels(y, X.shape[3], 10, str(path), offset=1)  # SVHN labels are 1..10, 10 is digit 0
    if (official_count is not None and len(y) == official_count and _value(md5) is not None
            and md5_bytes(path.read_bytes()) != _value(md5)):
        raise _corrupt(path, "MD5 differs from the published checksum")
    y[y == 10] = 0
    return np.ascontiguousarray(np.transpose(X, (3, 2, 0, 1))), y


# --- .npz -----------------------------------------------------------------------------------------
def to_uint8_images(x: np.ndarray, where: str) -> np.ndarray:
    """N×H×W or N×H×W×C (C in 1, 3, 4) -> uint8 N×C×H×W. Floats in 0..1 are scaled by 255."""
    x = np.asarray(x)
    if x.ndim == 3:
        x = x[:, None, :, :]
    elif x.ndim == 4 and x.shape[-1] in (1, 3, 4):
        x = x.transpose(0, 3, 1, 2)
    else:
        raise UserError(f"{where}: images have shape {x.shape}; expected N×H×W (grey) or N×H×W×C")
    if x.dtype.kind not in "uifb":  # strings, dates, ...: never read as pixel values
        raise UserError(f"{where}: images are of type {x.dtype}, not numbers; store uint8 0..255 (or floats 0..1)")
    if min(x.shape[2:]) < 1:
        raise UserError(f"{where}: images are {x.shape[2]}×{x.shape[3]} pixels (H×W); every image needs at least "
                        "1×1 pixel, store the images at their size")
    if x.dtype != np.uint8:
        if x.size and (np.isnan(x).any() if x.dtype.kind == "f" else False):
            raise UserError(f"{where}: images contain NaN")
        lo, hi = (float(x.min()), float(x.max())) if x.size else (0.0, 0.0)
        if x.dtype.kind == "f" and lo >= 0 and hi <= 1:
            x = np.rint(x * 255.0)
        elif lo < 0 or hi > 255:
            raise UserError(f"{where}: image values span {lo}..{hi}; store uint8 0..255 (or floats 0..1)")
        x = x.astype(np.uint8)
    return np.ascontiguousarray(x)


def _check_npz_sizes(z, path) -> None:
    """Refuse a member whose header promises more data than the archive holds: numpy would first try
    to allocate what the header says (a header claiming 10^13 images ends in MemoryError)."""
    for info in z.zip.infolist():
        with z.zip.open(info) as f:
            try:
                version = np.lib.format.read_magic(f)
                read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                               else np.lib.format.read_array_header_2_0)
                shape, _, dtype = read_header(f)
            except ValueError:
                continue  # not an .npy member, or a header numpy rejects: np.load says so below
            declared = math.prod(shape) * dtype.itemsize
            held = info.file_size - f.tell()
            if declared > held:
                name = info.filename.removesuffix(".npy")
                raise _corrupt(path, f"{name} claims shape {tuple(shape)} ({declared:,} bytes of {dtype}) but the "
                                     f"archive holds {held:,} bytes for it", "write it again")


def read_npz(path: Path) -> dict[str, np.ndarray]:
    try:
        z = np.load(path, allow_pickle=False)
        if not isinstance(z, np.lib.npyio.NpzFile):
            raise UserError(f"{path}: this is a single .npy array, not an .npz archive; save the four arrays "
                            "with numpy.savez(path, x_train=..., y_train=..., x_test=..., y_test=...)")
        with z:
            missing = [k for k in ("x_train", "y_train", "x_test", "y_test") if k not in z.files]
            if missing:
                raise UserError(
                    f"{path}: missing {', '.join(missing)}; a dataset .npz needs x_train, y_train, x_test, y_test"
                )
            _check_npz_sizes(z, path)
            return {k: z[k] for k in z.files}
    except UserError:
        raise
    except (zipfile.BadZipFile, EOFError, OSError, ValueError, NotImplementedError, zlib.error) as e:
        raise _corrupt(path, f"cannot read the .npz ({type(e).__name__}: {e})", "write it again") from None
