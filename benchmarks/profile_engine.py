"""Where a training step and an evaluate batch spend their time: cnnbench (torch.profiler) vs TF-Keras (oneDNN).

    python benchmarks/profile_engine.py torch [--threads 2] [--steps 10]
    ONEDNN_VERBOSE=1 python benchmarks/profile_engine.py torch --onednn [--threads 2]
    ONEDNN_VERBOSE=1 PYTHONPATH=/tmp/tfenv python benchmarks/profile_engine.py tf [--threads 2]

The Keras MNIST CNN (or `--model cifar_simple_cnn`, on the 28x28 images in three channels) on real
MNIST. `torch`: cnnbench's model (channels_last as the engine trains it, the steps inside
`heap_allocations` as `fit` and `evaluate` run them), its Keras Adam rule and sparse categorical
cross-entropy; one forward+backward+step
on a batch of 128 (training mode: dropout on) and one forward on a batch of 1000 (eval mode, no grad, as
`cnnbench.evaluate`), each repeated `--steps` times after 3 warm-ups; torch.profiler's CPU self time per
op, in ms per batch. `--onednn` (with ONEDNN_VERBOSE=1 in the environment): the same steps, and the
oneDNN primitives' own execution times (the verbose log's last column) summed per primitive and
direction, in ms per batch. `tf`: the same for TF-Keras' `train_on_batch` / `predict_on_batch`
(oneDNN primitives only: TF's other ops, e.g. Eigen's, do not appear; their share is the step's
wall time minus the primitives').
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _onednn_table(log: str, marker_lines: dict[str, tuple[int, int]], steps: int) -> None:
    """Sum oneDNN exec times per primitive between the markers printed around each phase."""
    lines = log.splitlines()
    for phase, (lo, hi) in marker_lines.items():
        per = defaultdict(float)
        for line in lines[lo:hi]:
            f = line.split(",")
            if len(f) > 8 and f[0] == "onednn_verbose" and "exec" in f[:4]:
                i = f.index("exec")
                kind, impl, prop = f[i + 2], f[i + 3], f[i + 4]
                post = "+" + m.group(1) if (m := re.search(r"post-ops:([^ ,]+)", line)) else ""
                try:
                    per[f"{kind} {prop} ({impl}){post}"] += float(f[-1])
                except ValueError:
                    pass
        total = sum(per.values())
        print(f"\n## oneDNN primitives, {phase}: {total / steps:.1f} ms per batch")
        for k, v in sorted(per.items(), key=lambda kv: -kv[1]):
            print(f"| {k} | {v / steps:.2f} |")


def _capture_stdout_fd():
    """oneDNN writes its verbose log to the C stdout: send fd 1 to a temporary file."""
    import tempfile

    sys.stdout.flush()
    tmp = tempfile.TemporaryFile(mode="w+b")  # noqa: SIM115  (the caller reads and drops it)
    saved = os.dup(1)
    os.dup2(tmp.fileno(), 1)
    return tmp, saved


def _restore_stdout_fd(tmp, saved) -> str:
    sys.stdout.flush()
    os.dup2(saved, 1)
    os.close(saved)
    tmp.seek(0)
    return tmp.read().decode(errors="replace")


def torch_side(a) -> None:
    import numpy as np
    import torch

    torch.set_num_threads(a.threads)
    from cnnbench import losses, models, optim
    from cnnbench.engine.inference import heap_allocations
    try:
        from cnnbench.engine.inputs import as_float01 as _as_float01
    except ImportError:  # a tree from before the engine was split (comparing with an old commit)
        try:
            from cnnbench.engine.train import _as_float01  # type: ignore[attr-defined,no-redef]
        except ImportError:  # before the pipeline's packages (cnnbench/train.py)
            from cnnbench.train import _as_float01  # type: ignore[attr-defined,no-redef]

    d = np.load(a.mnist)
    x = torch.from_numpy(d["x_train"][:128]).unsqueeze(1).contiguous()
    y = torch.from_numpy(d["y_train"][:128]).long()
    xt = torch.from_numpy(d["x_test"][:1000]).unsqueeze(1).contiguous()
    if a.model == "cifar_simple_cnn":  # the 28x28 images, three channels
        x, xt = x.expand(-1, 3, -1, -1).contiguous(), xt.expand(-1, 3, -1, -1).contiguous()
    torch.manual_seed(0)
    model = models.get(a.model, input_shape=tuple(x.shape[1:]), num_outputs=10).to(memory_format=torch.channels_last)
    loss_fn = losses.adapt(losses.get("sparse_categorical_crossentropy"), 10)
    opt = optim.get("adam", model.parameters(), batch_size=128, steps_per_epoch=100, epochs=1)

    def train_step():
        model.train()
        xb = _as_float01(x).contiguous(memory_format=torch.channels_last)
        loss = loss_fn(model(xb), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    def eval_batch():
        model.eval()
        with torch.no_grad():
            model(_as_float01(xt).contiguous(memory_format=torch.channels_last))

    phases = {"train step (batch 128)": train_step, "evaluate batch (1000)": eval_batch}
    with heap_allocations():  # as fit and evaluate run their steps
        _torch_phases(a, phases)


def _torch_phases(a, phases) -> None:
    import torch

    for fn in phases.values():
        for _ in range(3):
            fn()
    if a.onednn:
        marks, tmp, saved = {}, *_capture_stdout_fd()
        for name, fn in phases.items():
            sys.stdout.flush()
            os.write(1, f"MARK {name}\n".encode())
            for _ in range(a.steps):
                fn()
        log = _restore_stdout_fd(tmp, saved)
        lines = log.splitlines()
        idx = [i for i, ln in enumerate(lines) if ln.startswith("MARK ")] + [len(lines)]
        marks = {lines[idx[k]][5:]: (idx[k], idx[k + 1]) for k in range(len(idx) - 1)}
        _onednn_table(log, marks, a.steps)
        return
    from torch.profiler import ProfilerActivity, profile

    for name, fn in phases.items():
        t0 = time.perf_counter()
        for _ in range(a.steps):
            fn()
        wall = (time.perf_counter() - t0) / a.steps * 1000
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            for _ in range(a.steps):
                fn()
        rows = [(e.key, e.self_cpu_time_total / 1000 / a.steps, e.count // a.steps) for e in prof.key_averages()]
        rows.sort(key=lambda r: -r[1])
        total = sum(r[1] for r in rows)
        print(f"\n## torch {torch.__version__}, {a.threads} threads, {name}: {wall:.1f} ms per batch unprofiled; "
              f"profiled self CPU time {total:.1f} ms")
        print("| op | self CPU ms per batch | calls per batch |")
        print("|---|---|---|")
        for k, v, c in rows[:a.top]:
            print(f"| {k} | {v:.2f} | {c} |")


def tf_side(a) -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import numpy as np
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(a.threads)
    tf.config.threading.set_inter_op_parallelism_threads(a.threads)
    import keras

    d = np.load(a.mnist)
    x = d["x_train"][:128, :, :, None].astype("float32") / 255.0
    y = d["y_train"][:128].astype("int64")
    xt = d["x_test"][:1000, :, :, None].astype("float32") / 255.0
    L = keras.layers
    if a.model == "cifar_simple_cnn":
        x, xt = np.repeat(x, 3, axis=3), np.repeat(xt, 3, axis=3)
        layers = [L.Conv2D(32, 3, activation="relu"), L.MaxPooling2D(2), L.Conv2D(64, 3, activation="relu"),
                  L.MaxPooling2D(2), L.Conv2D(64, 3, activation="relu"), L.Flatten(), L.Dense(64, activation="relu"),
                  L.Dense(10)]
    else:
        layers = [L.Conv2D(32, 3, activation="relu"), L.Conv2D(64, 3, activation="relu"), L.MaxPooling2D(2),
                  L.Dropout(0.25), L.Flatten(), L.Dense(128, activation="relu"), L.Dropout(0.5), L.Dense(10)]
    m = keras.Sequential([keras.Input(x.shape[1:]), *layers, L.Activation("softmax", dtype="float32")])
    m.compile(optimizer=keras.optimizers.Adam(), loss="sparse_categorical_crossentropy")
    phases = {"train step (batch 128)": lambda: m.train_on_batch(x, y),
              "evaluate batch (1000)": lambda: m.predict_on_batch(xt)}
    for fn in phases.values():
        for _ in range(3):
            fn()
    walls = {}
    for name, fn in phases.items():
        t0 = time.perf_counter()
        for _ in range(a.steps):
            fn()
        walls[name] = (time.perf_counter() - t0) / a.steps * 1000
    print(f"# TF {tf.__version__}, Keras {keras.__version__}, {a.threads} threads: "
          + "; ".join(f"{k}: {v:.1f} ms per batch" for k, v in walls.items()))
    if os.environ.get("ONEDNN_VERBOSE"):
        tmp, saved = _capture_stdout_fd()
        for name, fn in phases.items():
            os.write(1, f"MARK {name}\n".encode())
            for _ in range(a.steps):
                fn()
        log = _restore_stdout_fd(tmp, saved)
        lines = log.splitlines()
        idx = [i for i, ln in enumerate(lines) if ln.startswith("MARK ")] + [len(lines)]
        _onednn_table(log, {lines[idx[k]][5:]: (idx[k], idx[k + 1]) for k in range(len(idx) - 1)}, a.steps)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("side", choices=["torch", "tf"])
    ap.add_argument("--mnist", type=Path, default=ROOT.parent / "shared" / "datasets" / "mnist.npz")
    ap.add_argument("--model", default="keras_mnist_cnn", choices=["keras_mnist_cnn", "cifar_simple_cnn"])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--top", type=int, default=25)
    ap.add_argument("--onednn", action="store_true", help="torch: sum the oneDNN verbose log instead")
    a = ap.parse_args()
    (torch_side if a.side == "torch" else tf_side)(a)


if __name__ == "__main__":
    main()
