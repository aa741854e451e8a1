"""Training throughput of several cnnbench source trees, interleaved, a fresh process per round.

    python benchmarks/bench_train_variants.py old=/tmp/old/src,new=src [--rounds 4] [--threads 2 1]
        [--models keras_mnist_cnn cifar_simple_cnn] [--images 6400] [--mnist ../shared/datasets/mnist.npz]
        [--tf-pythonpath /tmp/tfenv]

What one round of one variant is, in its own interpreter with PYTHONPATH=that variant's src: `cnnbench.fit`
of the model on the first `--images` real MNIST training images (three channels for `cifar_simple_cnn`,
the 28x28 images repeated), Adam, sparse categorical cross-entropy, batch 128, one epoch, seed 1, after a
2-batch warm-up fit; images/s and the process' CPU-seconds per wall-second over the timed fit, the
1-minute load before it and the process' peak resident memory. Threads are set explicitly
(torch.set_num_threads / set_num_interop_threads, OMP_NUM_THREADS).

`--tf-pythonpath DIR` adds a variant `tf`: the same model in TF-Keras (`keras.Sequential`, Keras 3 on
TensorFlow, from `pip install --target DIR tensorflow tf-keras`, kept out of cnnbench's environment), the
same images, optimiser, loss, batch size and warm-up, threads set with tf.config.threading (intra- and
inter-op) and OMP_NUM_THREADS. Its numbers are its own: it is timed, not hashed against the others.

Variants, models and thread counts are interleaved round by round, the variants' order reversed every
other round, so that the noise of a shared machine hits them alike. Each variant's trained weights and
per-epoch history (its seconds aside) are hashed; the script says whether every variant gave the same
bits as the first for each model and thread count (a faster variant that changes the numbers is not the
same engine). The summary gives, per model and thread count, each variant's best round, its median, and
the ratio of each variant's best round to the first variant's (best against best), and the median of
the per-round ratios (each round's variants run back to back, so the per-round ratio is the least noisy).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HERE = Path(__file__).resolve()


def worker(a) -> None:
    import numpy as np
    import torch

    torch.set_num_threads(a.threads)
    torch.set_num_interop_threads(a.threads)
    import cnnbench

    d = np.load(a.mnist)
    x = torch.from_numpy(d["x_train"][:a.images]).unsqueeze(1).contiguous()
    if a.model == "cifar_simple_cnn":
        x = x.expand(-1, 3, -1, -1).contiguous()
    y = torch.from_numpy(d["y_train"][:a.images]).long()

    def fit(xs, ys):
        return cnnbench.fit(a.model, xs, ys, loss="sparse_categorical_crossentropy", optimizer="adam", epochs=1,
                            batch_size=128, seed=1, device="cpu", num_classes=10, verbose=0)

    fit(x[:256], y[:256])
    load = os.getloadavg()[0]
    c0, t0 = time.process_time(), time.perf_counter()
    h = fit(x, y)
    wall = time.perf_counter() - t0
    cpu = (time.process_time() - c0) / wall
    digest = hashlib.sha256()
    for k, v in h.model.state_dict().items():
        digest.update(k.encode())
        digest.update(v.detach().contiguous().numpy().tobytes())
    digest.update(json.dumps({k: v for k, v in h.history.items() if k != "seconds"}, sort_keys=True).encode())
    import resource

    maxrss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB
    print(json.dumps({"images_per_s": a.images / wall, "cpu_per_wall": cpu, "load": load, "maxrss_mb": maxrss_mb,
                      "hash": digest.hexdigest()[:16], "loss": h.history["loss"][-1],
                      "cnnbench": str(Path(cnnbench.__file__).parent)}))


def worker_tf(a) -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import numpy as np
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(a.threads)
    tf.config.threading.set_inter_op_parallelism_threads(a.threads)
    import keras

    d = np.load(a.mnist)
    x = d["x_train"][:a.images, :, :, None].astype("float32") / 255.0
    if a.model == "cifar_simple_cnn":
        x = np.repeat(x, 3, axis=3)
    y = d["y_train"][:a.images].astype("int64")
    keras.utils.set_random_seed(1)
    L = keras.layers
    if a.model == "keras_mnist_cnn":
        layers = [L.Conv2D(32, 3, activation="relu"), L.Conv2D(64, 3, activation="relu"), L.MaxPooling2D(2),
                  L.Dropout(0.25), L.Flatten(), L.Dense(128, activation="relu"), L.Dropout(0.5), L.Dense(10)]
    elif a.model == "cifar_simple_cnn":
        layers = [L.Conv2D(32, 3, activation="relu"), L.MaxPooling2D(2), L.Conv2D(64, 3, activation="relu"),
                  L.MaxPooling2D(2), L.Conv2D(64, 3, activation="relu"), L.Flatten(), L.Dense(64, activation="relu"),
                  L.Dense(10)]
    else:
        raise SystemExit(f"no TF-Keras twin of {a.model}")
    m = keras.Sequential([keras.Input(x.shape[1:]), *layers, L.Activation("softmax", dtype="float32")])
    m.compile(optimizer=keras.optimizers.Adam(), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    m.fit(x[:256], y[:256], batch_size=128, epochs=1, verbose=0)  # traces its graph outside the timing
    load = os.getloadavg()[0]
    c0, t0 = time.process_time(), time.perf_counter()
    h = m.fit(x, y, batch_size=128, epochs=1, verbose=0)
    wall = time.perf_counter() - t0
    import resource

    print(json.dumps({"images_per_s": a.images / wall, "cpu_per_wall": (time.process_time() - c0) / wall,
                      "load": load, "maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                      "hash": "tf", "loss": float(h.history["loss"][-1]), "cnnbench": f"TF {tf.__version__}"}))


def main() -> None:  # noqa: C901 -- a benchmark's argument handling, read top to bottom
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("variants", nargs="?", help="name=src,name=src (the first is the reference)")
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--threads", type=int, nargs="+", default=[2, 1])
    ap.add_argument("--models", nargs="+", default=["keras_mnist_cnn", "cifar_simple_cnn"])
    ap.add_argument("--images", type=int, default=6400)
    ap.add_argument("--mnist", type=Path, default=ROOT.parent / "shared" / "datasets" / "mnist.npz")
    ap.add_argument("--tf-pythonpath", help="also time TF-Keras (variant tf), with this PYTHONPATH")
    ap.add_argument("--worker", choices=["cnnbench", "tf"], help=argparse.SUPPRESS)
    ap.add_argument("--model", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.worker:
        a.threads = a.threads[0]
        (worker if a.worker == "cnnbench" else worker_tf)(a)
        return
    if not a.variants:
        ap.error("give the variants, e.g. old=/tmp/old/src,new=src")
    src = dict(v.split("=", 1) for v in a.variants.split(","))
    names = list(src)
    if a.tf_pythonpath:
        src["tf"] = a.tf_pythonpath
        names.append("tf")
    sys.path.insert(0, str(HERE.parent))
    from _machine import cpu_name

    up = lambda: subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()  # noqa: E731
    print(f"# {cpu_name()}, {os.cpu_count()} cores; {a.images} images, batch 128; start: {up()}", flush=True)
    res: dict[tuple, list[dict]] = {}
    for r in range(a.rounds):
        for threads in a.threads:
            for model in a.models:
                for v in names if r % 2 == 0 else names[::-1]:
                    env = dict(os.environ, PYTHONPATH=str(Path(src[v]).resolve()), OMP_NUM_THREADS=str(threads))
                    cmd = [sys.executable, str(HERE), "--worker", "tf" if v == "tf" else "cnnbench", "--model", model,
                           "--threads", str(threads),
                           "--images", str(a.images), "--mnist", str(a.mnist)]
                    p = subprocess.run(cmd, capture_output=True, text=True, env=env)
                    if p.returncode:
                        sys.exit(f"{v} {model} {threads} threads failed:\n{p.stderr[-3000:]}")
                    out = json.loads(p.stdout.strip().splitlines()[-1])
                    res.setdefault((model, threads, v), []).append(out)
                    print(f"round {r + 1} {model:17s} {threads} thr {v:8s} {out['images_per_s']:7.0f} images/s "
                          f"CPU/wall {out['cpu_per_wall']:.2f} load {out['load']:.2f} "
                          f"peak RSS {out['maxrss_mb']:.0f} MB hash {out['hash']}", flush=True)
    print(f"# end: {up()}")
    print("\n| model | threads | variant | best images/s (its CPU/wall) | median | best / first's best "
          "| median of per-round ratios | same bits as the first |")
    print("|---|---|---|---|---|---|---|---|")
    for model in a.models:
        for threads in a.threads:
            ref = res[(model, threads, names[0])]
            for v in names:
                rows = res[(model, threads, v)]
                top = max(rows, key=lambda o: o["images_per_s"])
                ips = [o["images_per_s"] for o in rows]
                ratios = [o["images_per_s"] / f["images_per_s"] for o, f in zip(rows, ref)]
                same = all(o["hash"] == ref[0]["hash"] for o in rows) and len({o["hash"] for o in ref}) == 1
                same_text = "–" if v == "tf" else "yes" if same else "NO"
                best = top["images_per_s"] / max(o["images_per_s"] for o in ref)
                print(f"| {model} | {threads} | {v} | {top['images_per_s']:,.0f} ({top['cpu_per_wall']:.2f}) | "
                      f"{statistics.median(ips):,.0f} | {best:.2f}x | {statistics.median(ratios):.2f}x "
                      f"(range {min(ratios):.2f}-{max(ratios):.2f}) | {same_text} |")
    if "tf" in names:
        print("\n| model | threads | variant | best / TF-Keras' best | median of per-round ratios to TF-Keras |")
        print("|---|---|---|---|---|")
        for model in a.models:
            for threads in a.threads:
                tf_rows = res[(model, threads, "tf")]
                for v in names[:-1]:
                    rows = res[(model, threads, v)]
                    ratios = [o["images_per_s"] / t["images_per_s"] for o, t in zip(rows, tf_rows)]
                    best = max(o["images_per_s"] for o in rows) / max(t["images_per_s"] for t in tf_rows)
                    print(f"| {model} | {threads} | {v} | **{best:.2f}x** | {statistics.median(ratios):.2f}x "
                          f"(range {min(ratios):.2f}-{max(ratios):.2f}) |")

if __name__ == "__main__":
    main()
