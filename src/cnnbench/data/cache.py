"""The decoded-uint8 cache under `<data_dir>/cnnbench-cache/`.

A cache file is a small JSON header followed by the raw bytes of each array, so that loading it is one
`readinto` into one buffer plus zero-copy views (no pickling, no per-array allocation). Files are
written atomically (`cnnbench.store.files.atomic_write`), so a crash never leaves a half-written cache; a
cache file of the wrong size or with a damaged header is ignored and rebuilt. The payload itself is not
checksummed: a CRC32 of MNIST's 55 MB costs 2-3× the whole cached load. The loader checks that the
cached labels are in range and rebuilds the cache when they are not.

The key of a cache file hashes the loader version, the dataset's decode options and the size and
modification time of every source file, so replacing a source file invalidates its cache.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
import warnings
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..store.files import atomic_write, remove_stale_temps

MAGIC = b"CNNBDATA"
VERSION = 1
CACHE_DIRNAME = "cnnbench-cache"
ALIGN = 64


def cache_dir(data_dir: Path) -> Path:
    return Path(data_dir) / CACHE_DIRNAME


def fingerprint(files: list[Path]) -> list[list[Any]]:
    """(name, size, mtime_ns) of each source file: what invalidates a cache entry."""
    out = []
    for f in sorted(set(files)):
        st = f.stat()
        out.append([str(f), st.st_size, st.st_mtime_ns])
    return out


def cache_key(name: str, options: dict[str, Any], files: list[Path]) -> str:
    blob = json.dumps(
        {"v": VERSION, "name": name, "options": options, "files": fingerprint(files)},
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def cache_path(data_dir: Path, name: str, key: str) -> Path:
    safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in name)[:60]
    return cache_dir(data_dir) / f"{safe}-{key}.bin"


def save(path: Path, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> bool:
    """Write atomically. Returns False (with a warning) when the folder is not writable."""
    arrays = {k: np.ascontiguousarray(v) for k, v in arrays.items()}
    entries, offset = [], 0
    for k, v in arrays.items():
        offset = -(-offset // ALIGN) * ALIGN  # every array starts aligned
        entries.append({"key": k, "dtype": v.dtype.str, "shape": list(v.shape), "offset": offset, "nbytes": v.nbytes})
        offset += v.nbytes
    header = json.dumps({"version": VERSION, "arrays": entries, "meta": meta, "payload": offset}).encode()
    prefix = MAGIC + struct.pack("<QI", len(header), zlib.crc32(header))

    def write(f) -> None:
        f.write(prefix)
        f.write(header)
        written = 0
        for e, v in zip(entries, arrays.values()):
            f.write(b"\0" * (e["offset"] - written))
            f.write(memoryview(v.reshape(-1).view(np.uint8)))
            written = e["offset"] + e["nbytes"]

    try:
        remove_stale_temps(path)  # of a load killed while writing this cache file (tens of MB each)
        atomic_write(path, write, fsync=True)
        return True
    except OSError as e:
        warnings.warn(f"cannot write the dataset cache {path} ({e}); the next load decodes again", stacklevel=2)
        return False


def load(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]] | None:
    """The arrays (as tensors sharing one buffer) and meta, or None if absent or damaged."""
    try:
        with open(path, "rb") as f:
            prefix = f.read(len(MAGIC) + 12)
            if len(prefix) != len(MAGIC) + 12 or prefix[: len(MAGIC)] != MAGIC:
                return None
            hlen, crc = struct.unpack("<QI", prefix[len(MAGIC):])
            header = f.read(hlen)
            if len(header) != hlen or zlib.crc32(header) != crc:
                return None
            info = json.loads(header)
            if info.get("version") != VERSION:
                return None
            size = os.fstat(f.fileno()).st_size
            if size != len(prefix) + hlen + info["payload"]:
                return None  # truncated or padded
            buf = np.empty(info["payload"], dtype=np.uint8)
            if f.readinto(memoryview(buf)) != info["payload"]:
                return None
    except (OSError, ValueError, KeyError):
        return None
    out = {}
    for e in info["arrays"]:
        arr = buf[e["offset"] : e["offset"] + e["nbytes"]].view(np.dtype(e["dtype"])).reshape(e["shape"])
        out[e["key"]] = torch.from_numpy(arr)
    return out, info["meta"]
