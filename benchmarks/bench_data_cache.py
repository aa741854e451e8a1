"""Decode vs cache: loading MNIST from its original IDX files vs from cnnbench's uint8 cache.

    PYTHONPATH=src python benchmarks/bench_data_cache.py [--repeats 7] [--npz /work/shared/datasets/mnist.npz]

Writes the real MNIST IDX files (byte-identical to the published ones; rebuilt from the shared npz) into
a temporary data directory, twice: `.gz` as distributed (and as torchvision downloads them) and
uncompressed. For each, "decode" is `data.load("mnist")` with the cache file removed before every call
(read + gunzip + header checks + MD5 against the published checksums + writing the cache), "cache" is
the same call when the cache exists. Imports (torchvision, used for the published .gz checksums) are
warmed up first so neither side pays them. Reports the median of the repeats.
"""

from __future__ import annotations

import argparse
import gzip
import platform
import shutil
import statistics
import struct
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
from _machine import cpu_name  # benchmarks/ is on sys.path when run as a script

from cnnbench import data
from cnnbench.data import cache


def write_idx(raw_dir: Path, d, gz: bool) -> None:
    raw_dir.mkdir(parents=True, exist_ok=True)
    for part, stem in (("train", "train"), ("test", "t10k")):
        x, y = d[f"x_{part}"], d[f"y_{part}"]
        for kind, blob in (
            ("images-idx3", struct.pack(">IIII", 0x803, *x.shape) + x.tobytes()),
            ("labels-idx1", struct.pack(">II", 0x801, len(y)) + y.tobytes()),
        ):
            name = raw_dir / f"{stem}-{kind}-ubyte"
            if gz:
                name.with_name(name.name + ".gz").write_bytes(gzip.compress(blob, compresslevel=9))
            else:
                name.write_bytes(blob)


def timed(fn, repeats: int) -> list[float]:
    out = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return out


def bench(data_dir: Path, repeats: int) -> dict:
    spec = {"name": "mnist", "download": False}
    cdir = cache.cache_dir(data_dir)

    def decode():
        shutil.rmtree(cdir, ignore_errors=True)
        ds = data.load(spec, data_dir)
        assert not ds.source.startswith("cache")

    def cached():
        ds = data.load(spec, data_dir)
        assert ds.source.startswith("cache")

    source = data.REGISTRY.get("mnist")
    files = source.locate(data_dir)
    decode_only_t = timed(lambda: source.decode(data_dir, files), repeats)
    decode_t = timed(decode, repeats)
    cached()  # the cache exists after the last decode
    cache_t = timed(cached, repeats)
    d, c = statistics.median(decode_t), statistics.median(cache_t)
    return {"decode_s": d, "decode_only_s": statistics.median(decode_only_t), "cache_s": c, "ratio": d / c}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--npz", default=str(Path(__file__).resolve().parents[2] / "shared" / "datasets" / "mnist.npz"))
    ap.add_argument("--repeats", type=int, default=7)
    args = ap.parse_args(argv)
    if not Path(args.npz).exists():
        print(f"skipped: {args.npz} not found")
        return 0
    import torchvision.datasets  # noqa: F401  (warm the import: checksums come from torchvision)

    d = dict(np.load(args.npz))
    print(f"machine: {cpu_name()}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, python {platform.python_version()}")
    with tempfile.TemporaryDirectory() as tmp:
        results = {}
        for label, gz in (("idx .gz (as distributed)", True), ("idx uncompressed", False)):
            root = Path(tmp) / ("gz" if gz else "raw")
            write_idx(root / "MNIST" / "raw", d, gz)
            data.load({"name": "mnist", "download": False}, root)  # warm-up (page cache, allocator)
            results[label] = bench(root, args.repeats)
        cfile = next((Path(tmp) / "gz" / "cnnbench-cache").glob("*.bin"))
        print(f"MNIST 60,000 + 10,000 images; cache file {cfile.stat().st_size / 1e6:.1f} MB; median of {args.repeats}")
        print(f"{'source files':26s} {'first load':>11s} {'(decode only)':>14s} {'cached load':>12s} {'ratio':>7s}")
        for label, r in results.items():
            print(f"{label:26s} {r['decode_s'] * 1e3:9.1f}ms {r['decode_only_s'] * 1e3:12.1f}ms "
                  f"{r['cache_s'] * 1e3:10.1f}ms {r['ratio']:6.1f}x")
        print("first load = decode + checks + writing the cache (fsync); ratio = first load / cached load")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
