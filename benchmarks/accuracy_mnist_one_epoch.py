"""One epoch of keras_mnist_cnn + Adam on real MNIST, many seeds: cnnbench against Keras itself.

    python benchmarks/accuracy_mnist_one_epoch.py cnnbench --seeds 0-39 [--npz ../shared/datasets/mnist.npz]
    python benchmarks/accuracy_mnist_one_epoch.py keras --seeds 0-39      # needs keras 3 (any backend)

Not a speed benchmark: it measures the distribution of the test accuracy that one run reaches after one
epoch (batch 32, Keras' default; Adam at Keras' defaults; the Keras mnist_cnn.py model with dropout
0.25 / 0.5), so that "cnnbench trains this model as well as Keras does" is a measured statement. Each
seed is one run on one thread, and prints one line `framework seed test_accuracy`, so two shells can
run disjoint seed ranges side by side and a killed sweep keeps its lines. The summary (mean, sd, and how
many runs reach 98.5%) is printed at the end. docs/models.md has the figures.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
from pathlib import Path

import numpy as np


def seeds_of(text: str) -> list[int]:
    out = []
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        out += list(range(int(lo), int(hi or lo) + 1))
    return out


def run_cnnbench(seed: int, d) -> float:
    import torch

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    import cnnbench

    torch.set_num_threads(1)
    h = cnnbench.fit("keras_mnist_cnn", d["x_train"], d["y_train"], loss="categorical_crossentropy",
                     optimizer="adam", epochs=1, batch_size=32, seed=seed, device="cpu", num_classes=10)
    return cnnbench.evaluate(h.model, d["x_test"], d["y_test"], verbose=0, return_dict=True)["accuracy"]


def run_keras(seed: int, d) -> float:
    import keras

    keras.utils.set_random_seed(seed)
    x = d["x_train"][..., None].astype("float32") / 255
    xt = d["x_test"][..., None].astype("float32") / 255
    layers = keras.layers
    model = keras.Sequential([
        keras.Input((28, 28, 1)), layers.Conv2D(32, 3, activation="relu"), layers.Conv2D(64, 3, activation="relu"),
        layers.MaxPooling2D(2), layers.Dropout(0.25), layers.Flatten(), layers.Dense(128, activation="relu"),
        layers.Dropout(0.5), layers.Dense(10, activation="softmax"),
    ])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x, d["y_train"], batch_size=32, epochs=1, verbose=0)
    return float(model.evaluate(xt, d["y_test"], verbose=0)[1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("framework", choices=["cnnbench", "keras"])
    ap.add_argument("--seeds", default="0-9", help="e.g. 0-39 or 0,5,7-9")
    ap.add_argument("--npz", default=str(Path(__file__).resolve().parents[2] / "shared/datasets/mnist.npz"))
    args = ap.parse_args()
    if args.framework == "keras":
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        try:
            import tensorflow as tf  # one thread, like the cnnbench side (only when Keras runs on TF)

            tf.config.threading.set_intra_op_parallelism_threads(1)
            tf.config.threading.set_inter_op_parallelism_threads(1)
        except ImportError:
            import torch

            torch.set_num_threads(1)
    d = dict(np.load(args.npz))
    run = run_cnnbench if args.framework == "cnnbench" else run_keras
    accs = []
    for seed in seeds_of(args.seeds):
        accs.append(run(seed, d))
        print(args.framework, seed, f"{accs[-1]:.4f}", flush=True)
    if len(accs) > 1:
        reach = sum(a >= 0.985 for a in accs)
        print(f"{args.framework}: {len(accs)} seeds, mean {100 * statistics.mean(accs):.2f}%, "
              f"sd {100 * statistics.stdev(accs):.2f}, {reach} of {len(accs)} reach 98.5%")


if __name__ == "__main__":
    main()
