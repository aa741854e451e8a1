"""Engine throughput: `cnnbench.fit` vs a bare PyTorch loop vs TF-Keras, side by side, on real MNIST.

    python benchmarks/bench_engine.py [--mnist ../shared/datasets/mnist.npz] [--images 12800]
        [--rounds 3] [--tf-python /path/to/venv-with-tensorflow/bin/python]

Same model (the Keras MNIST CNN), same batch size (128), same batches (the engine's epoch-0 order),
same optimizer (Adam). float32 unless a variant says otherwise; bf16 = bfloat16 autocast / Keras'
mixed_bfloat16 policy (weights and loss in float32). Variants are interleaved round by round (A B C A B C ...) so that the noise of a
shared machine hits them alike; each figure is the median over rounds, and the ratios are taken
within this one run. TF-Keras runs in a separate interpreter, in the same rounds (TensorFlow is a benchmark-only install,
never a dependency of cnnbench: `python -m venv tf && tf/bin/pip install tensorflow-cpu`).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

import cnnbench
from cnnbench import models
from cnnbench.train import _epoch_seed

from _machine import describe  # noqa: E402  (benchmarks/ is on sys.path when run as a script)

ROOT = Path(__file__).resolve().parents[1]


def bare_loop(x: torch.Tensor, y: torch.Tensor, batch: int, channels_last: bool, seed: int = 0) -> float:
    """The plainest correct PyTorch loop; returns seconds for one pass over x."""
    torch.manual_seed(seed)
    model = models.get("keras_mnist_cnn", input_shape=(1, 28, 28), num_outputs=10)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    model = model.to(memory_format=fmt)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, eps=1e-7)
    order = torch.randperm(x.shape[0], generator=torch.Generator().manual_seed(_epoch_seed(seed, 0)))
    model.train()
    t0 = time.perf_counter()
    for start in range(0, x.shape[0], batch):
        idx = order[start:start + batch]
        xb = (x[idx].float() / 255.0).contiguous(memory_format=fmt)
        loss = F.cross_entropy(model(xb), y[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return time.perf_counter() - t0


def engine(x: torch.Tensor, y: torch.Tensor, batch: int, seed: int = 0, precision: str = "fp32") -> float:
    t0 = time.perf_counter()
    cnnbench.fit("keras_mnist_cnn", x, y, loss="sparse_categorical_crossentropy", optimizer="adam",
                 epochs=1, batch_size=batch, seed=seed, device="cpu", num_classes=10, precision=precision)
    return time.perf_counter() - t0


def _engine_1thread(args) -> float:
    torch.set_num_threads(1)
    return engine(*args)


def study_workers(x: torch.Tensor, y: torch.Tensor, batch: int, workers: int = 2) -> float:
    """How `cnnbench run` trains on a CPU: `workers` runs at once, one 1-thread process each.
    Returns seconds per run's worth of images (wall time / workers), so images/s is comparable."""
    import multiprocessing as mp

    ctx = mp.get_context("forkserver")
    with ctx.Pool(workers) as pool:
        pool.map(_engine_1thread, [(x[:batch * 2], y[:batch * 2], batch)] * workers)  # warm the workers
        t0 = time.perf_counter()
        pool.map(_engine_1thread, [(x, y, batch, seed) for seed in range(workers)])
        return (time.perf_counter() - t0) / workers


TF_SCRIPT = r"""
import sys, time, json, numpy as np, os
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import tensorflow as tf
from tensorflow import keras
d = np.load(sys.argv[1]); n = int(sys.argv[2]); batch = int(sys.argv[3])
x = (d["x_train"][:n, :, :, None].astype("float32") / 255.0); y = d["y_train"][:n].astype("int64")
def build():
    m = keras.Sequential([keras.Input((28, 28, 1)), keras.layers.Conv2D(32, 3, activation="relu"),
        keras.layers.Conv2D(64, 3, activation="relu"), keras.layers.MaxPooling2D(2), keras.layers.Dropout(0.25),
        keras.layers.Flatten(), keras.layers.Dense(128, activation="relu"), keras.layers.Dropout(0.5),
        keras.layers.Dense(10), keras.layers.Activation("softmax", dtype="float32")])
    m.compile(optimizer=keras.optimizers.Adam(), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return m
print(json.dumps({"tf": tf.__version__}), flush=True)
for line in sys.stdin:  # one round per request, so the rounds interleave with PyTorch's
    keras.mixed_precision.set_global_policy(line.strip())
    m = build()
    m.fit(x[:batch * 2], y[:batch * 2], batch_size=batch, epochs=1, verbose=0)  # trace outside the timing
    t0 = time.perf_counter(); m.fit(x, y, batch_size=batch, epochs=1, verbose=0)
    print(json.dumps({"seconds": time.perf_counter() - t0}), flush=True)
"""


class TFKeras:
    """TF-Keras in its own interpreter (never imported next to torch), timed one round at a time."""

    def __init__(self, python: str, mnist: Path, n: int, batch: int):
        self.proc = subprocess.Popen([python, "-c", TF_SCRIPT, str(mnist), str(n), str(batch)], text=True,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        self.version = json.loads(self.proc.stdout.readline())["tf"]

    def round(self, policy: str) -> float:
        self.proc.stdin.write(policy + "\n")
        self.proc.stdin.flush()
        return json.loads(self.proc.stdout.readline())["seconds"]

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mnist", type=Path, default=ROOT.parent / "shared" / "datasets" / "mnist.npz")
    ap.add_argument("--images", type=int, default=12800)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    ap.add_argument("--tf-python", help="a python with tensorflow installed (skipped when absent)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    d = np.load(args.mnist)
    x = torch.from_numpy(d["x_train"][:args.images]).unsqueeze(1).contiguous()
    y = torch.from_numpy(d["y_train"][:args.images]).long()
    n = x.shape[0]

    # Warm up oneDNN's kernels once for each layout so that the first variant is not penalised.
    bare_loop(x[:args.batch * 4], y[:args.batch * 4], args.batch, True)
    bare_loop(x[:args.batch * 4], y[:args.batch * 4], args.batch, False)
    variants = {"bare NCHW": lambda: bare_loop(x, y, args.batch, False),
                "bare channels_last": lambda: bare_loop(x, y, args.batch, True),
                "cnnbench.fit": lambda: engine(x, y, args.batch),
                "cnnbench.fit precision=bf16": lambda: engine(x, y, args.batch, precision="bf16"),
                "cnnbench run: 2 runs at once, 1-thread workers (total)": lambda: study_workers(x, y, args.batch)}
    tf = TFKeras(args.tf_python, args.mnist, n, args.batch) if args.tf_python else None
    if tf is not None:
        for policy in ("float32", "mixed_bfloat16"):
            variants[f"TF-Keras {tf.version} model.fit ({policy})"] = (lambda p=policy: tf.round(p))
    times: dict[str, list[float]] = {k: [] for k in variants}
    for _ in range(args.rounds):
        for name, fn in variants.items():
            times[name].append(fn())
    if tf is not None:
        tf.close()

    ips = {k: n / statistics.median(v) for k, v in times.items()}
    refs = ["bare NCHW"] + [k for k in ips if k.startswith("TF-Keras") and k.endswith("(float32)")]
    print(f"# {describe()}; {n} MNIST images, batch {args.batch}, median of {args.rounds} interleaved rounds")
    print("| variant | images/s | " + " | ".join(f"÷ {r}" for r in refs) + " |")
    print("|---|---|" + "---|" * len(refs))
    for k, v in ips.items():
        print(f"| {k} | {v:,.0f} | " + " | ".join(f"{v / ips[r]:.2f}×" for r in refs) + " |")


if __name__ == "__main__":
    main()
