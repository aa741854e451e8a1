"""Engine throughput: `cnnbench.fit` / `cnnbench.evaluate` vs TF-Keras, each round in a fresh process.

    python benchmarks/bench_engine.py --rounds 3 --tf-pythonpath /tmp/tfenv [--modes 2 1 2x1]
        [--mnist ../shared/datasets/mnist.npz] [--images 12800] [--precision fp32|bf16] [--bare]

TensorFlow is a benchmark-only install, never a dependency of cnnbench, and is kept out of cnnbench's
environment: `pip install --target /tmp/tfenv tensorflow==2.21.0 tf-keras`, then `--tf-pythonpath
/tmp/tfenv` (the TF side runs as `PYTHONPATH=/tmp/tfenv python ...`; `--tf-python` names another
interpreter instead, e.g. a virtual environment's). `--legacy-keras` runs tf-keras 2.x
(TF_USE_LEGACY_KERAS=1) instead of Keras 3 on the TensorFlow backend.

What one round of one framework is, in its own fresh interpreter (`--worker`): the Keras MNIST CNN
(cnnbench's `keras_mnist_cnn`; Conv32-Conv64-MaxPool-Dropout-Dense128-Dropout-Dense10) on real MNIST,
Adam, sparse categorical cross-entropy;
- train: one epoch over the first `--images` training images, batch 128, after a 2-batch warm-up fit
  (TF traces its graph there); images/s and the process' CPU-seconds per wall-second over the fit;
- evaluate: the 10,000 test images, batch 1000, after a 1-batch warm-up; images/s and CPU/wall.
Each process is started, timed and ended before the next starts; the frameworks and modes are
interleaved round by round (the order alternates between rounds) so that the noise of a shared
machine hits them alike. A round's import and data-loading time is not in its figures.

Modes (threads set explicitly on both sides: torch.set_num_threads / set_num_interop_threads;
tf.config.threading intra- and inter-op; OMP_NUM_THREADS):
- `2`: one process, 2 threads;  `1`: one process, 1 thread;
- `2x1`: two 1-thread processes at once (what `cnnbench run` does with one worker per core); images/s
  is the two processes' images over the wall time from the first start to the last end of their
  timed sections.

The summary takes the best round of each framework in each mode (best against best) and the ratio
cnnbench / TF-Keras. TF-Keras runs in one of two states per process with 2 threads (about one core
busy or about two, CPU/wall ~1.0 or ~1.75): the summary reports TF's best round in each state apart.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HERE = Path(__file__).resolve()
TWO_CORE_STATE = 1.3  # TF CPU-seconds per wall-second above which a 2-thread round used both cores


# --- one round, in a fresh interpreter --------------------------------------------------------------
def _timed(fn):
    """(seconds, CPU-seconds per wall-second, fn's result) of one call."""
    c0, t0 = time.process_time(), time.perf_counter()
    out = fn()
    wall = time.perf_counter() - t0
    return wall, (time.process_time() - c0) / wall, out


def worker_cnnbench(a) -> dict:
    t_import = time.perf_counter()
    import numpy as np
    import torch

    torch.set_num_threads(a.threads)
    torch.set_num_interop_threads(a.threads)
    import cnnbench
    import_s = time.perf_counter() - t_import
    d = np.load(a.mnist)
    x = torch.from_numpy(d["x_train"][:a.images]).unsqueeze(1).contiguous()
    y = torch.from_numpy(d["y_train"][:a.images]).long()
    xt = torch.from_numpy(d["x_test"]).unsqueeze(1).contiguous()
    yt = torch.from_numpy(d["y_test"]).long()

    def fit(xs, ys):
        return cnnbench.fit("keras_mnist_cnn", xs, ys, loss="sparse_categorical_crossentropy", optimizer="adam",
                            epochs=1, batch_size=a.batch, seed=a.seed, device="cpu", num_classes=10,
                            precision=a.precision, verbose=0)

    fit(x[:a.batch * 2], y[:a.batch * 2])
    _wait_for_start(a)
    train_s, train_cpu, history = _timed(lambda: fit(x, y))
    model = history.model

    def evaluate(xs, ys):
        return cnnbench.evaluate(model, xs, ys, batch_size=a.eval_batch, precision=a.precision, verbose=0,
                                 return_dict=True)

    evaluate(xt[:a.eval_batch], yt[:a.eval_batch])
    eval_s, eval_cpu, scores = _timed(lambda: evaluate(xt, yt))
    return {"framework": "cnnbench", "version": f"cnnbench {cnnbench.__version__}, torch {torch.__version__}",
            "threads": torch.get_num_threads(), "import_s": import_s, "train_images": len(x), "train_s": train_s,
            "train_cpu_per_wall": train_cpu, "eval_images": len(xt), "eval_s": eval_s, "eval_cpu_per_wall": eval_cpu,
            "train_loss": history.history["loss"][-1], "test_accuracy": scores["accuracy"]}


def worker_bare(a) -> dict:
    """The plainest correct PyTorch loop (reference): torch.optim.Adam, F.cross_entropy, channels_last."""
    t_import = time.perf_counter()
    import numpy as np
    import torch
    import torch.nn.functional as F

    torch.set_num_threads(a.threads)
    torch.set_num_interop_threads(a.threads)
    from cnnbench import models
    import_s = time.perf_counter() - t_import
    d = np.load(a.mnist)
    x = torch.from_numpy(d["x_train"][:a.images]).unsqueeze(1).contiguous()
    y = torch.from_numpy(d["y_train"][:a.images]).long()
    xt = torch.from_numpy(d["x_test"]).unsqueeze(1).contiguous()
    yt = torch.from_numpy(d["y_test"]).long()
    torch.manual_seed(a.seed)
    model = models.get("keras_mnist_cnn", input_shape=(1, 28, 28), num_outputs=10).to(memory_format=torch.channels_last)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, eps=1e-7)

    def epoch(xs, ys):
        model.train()
        order = torch.randperm(xs.shape[0])
        for start in range(0, xs.shape[0], a.batch):
            idx = order[start:start + a.batch]
            xb = (xs[idx].float() / 255.0).contiguous(memory_format=torch.channels_last)
            loss = F.cross_entropy(model(xb), ys[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

    @torch.inference_mode()
    def evaluate(xs, ys):
        model.eval()
        correct = 0
        for start in range(0, xs.shape[0], a.eval_batch):
            xb = (xs[start:start + a.eval_batch].float() / 255.0).contiguous(memory_format=torch.channels_last)
            correct += int((model(xb).argmax(1) == ys[start:start + a.eval_batch]).sum())
        return correct / xs.shape[0]

    epoch(x[:a.batch * 2], y[:a.batch * 2])
    _wait_for_start(a)
    train_s, train_cpu, _ = _timed(lambda: epoch(x, y))
    evaluate(xt[:a.eval_batch], yt[:a.eval_batch])
    eval_s, eval_cpu, acc = _timed(lambda: evaluate(xt, yt))
    return {"framework": "bare", "version": f"torch {torch.__version__}", "threads": torch.get_num_threads(),
            "import_s": import_s, "train_images": len(x), "train_s": train_s, "train_cpu_per_wall": train_cpu,
            "eval_images": len(xt), "eval_s": eval_s, "eval_cpu_per_wall": eval_cpu, "test_accuracy": acc}


def worker_tf(a) -> dict:
    t_import = time.perf_counter()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import numpy as np
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(a.threads)
    tf.config.threading.set_inter_op_parallelism_threads(a.threads)
    if os.environ.get("TF_USE_LEGACY_KERAS") == "1":
        import tf_keras as keras
    else:
        import keras
    import_s = time.perf_counter() - t_import
    d = np.load(a.mnist)
    x = d["x_train"][:a.images, :, :, None].astype("float32") / 255.0
    y = d["y_train"][:a.images].astype("int64")
    xt = d["x_test"][:, :, :, None].astype("float32") / 255.0
    yt = d["y_test"].astype("int64")
    keras.utils.set_random_seed(a.seed)
    if a.precision == "bf16":
        keras.mixed_precision.set_global_policy("mixed_bfloat16")
    m = keras.Sequential([
        keras.Input((28, 28, 1)), keras.layers.Conv2D(32, 3, activation="relu"),
        keras.layers.Conv2D(64, 3, activation="relu"), keras.layers.MaxPooling2D(2), keras.layers.Dropout(0.25),
        keras.layers.Flatten(), keras.layers.Dense(128, activation="relu"), keras.layers.Dropout(0.5),
        keras.layers.Dense(10), keras.layers.Activation("softmax", dtype="float32")])
    m.compile(optimizer=keras.optimizers.Adam(), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    m.fit(x[:a.batch * 2], y[:a.batch * 2], batch_size=a.batch, epochs=1, verbose=0)  # trace outside the timing
    _wait_for_start(a)
    train_s, train_cpu, h = _timed(lambda: m.fit(x, y, batch_size=a.batch, epochs=1, verbose=0))
    m.evaluate(xt[:a.eval_batch], yt[:a.eval_batch], batch_size=a.eval_batch, verbose=0)
    eval_s, eval_cpu, scores = _timed(lambda: m.evaluate(xt, yt, batch_size=a.eval_batch, verbose=0))
    return {"framework": "tf", "version": f"TensorFlow {tf.__version__}, Keras {keras.__version__}",
            "threads": tf.config.threading.get_intra_op_parallelism_threads(), "import_s": import_s,
            "train_images": len(x), "train_s": train_s, "train_cpu_per_wall": train_cpu, "eval_images": len(xt),
            "eval_s": eval_s, "eval_cpu_per_wall": eval_cpu, "train_loss": float(h.history["loss"][-1]),
            "test_accuracy": float(scores[1])}


def _wait_for_start(a) -> None:
    """In a 2x1 pair, start the timed section together: say ready, wait for the go (one line on stdin)."""
    if a.pair:
        print("READY", flush=True)
        sys.stdin.readline()


# --- the driver ---------------------------------------------------------------------------------------
def _command(a, framework: str, threads: int, pair: bool) -> tuple[list[str], dict]:
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    python = sys.executable
    if framework == "tf":
        if a.tf_python:
            python = a.tf_python
        if a.tf_pythonpath:
            env["PYTHONPATH"] = a.tf_pythonpath
        if a.legacy_keras:
            env["TF_USE_LEGACY_KERAS"] = "1"
    cmd = [python, str(HERE), "--worker", framework, "--threads", str(threads), "--mnist", str(a.mnist),
           "--images", str(a.images), "--batch", str(a.batch), "--eval-batch", str(a.eval_batch),
           "--precision", a.precision, "--seed", str(a.seed)] + (["--pair"] if pair else [])
    return cmd, env


def _run_one(a, framework: str, threads: int) -> dict:
    cmd, env = _command(a, framework, threads, pair=False)
    p = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if p.returncode:
        raise SystemExit(f"{framework} round failed ({p.returncode}):\n{p.stderr[-3000:]}")
    return json.loads(p.stdout.strip().splitlines()[-1])


def _run_pair(a, framework: str) -> dict:
    """Two 1-thread processes at once: both warm up, then their timed sections start together."""
    procs = []
    for i in range(2):
        cmd, env = _command(a, framework, 1, pair=True)
        cmd[cmd.index("--seed") + 1] = str(a.seed + i)
        procs.append(subprocess.Popen(cmd, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, text=True))
    for p in procs:
        line = p.stdout.readline()
        if line.strip() != "READY":
            raise SystemExit(f"{framework} pair failed:\n{line}{p.stderr.read()[-3000:]}")
    t0 = time.perf_counter()
    for p in procs:
        p.stdin.write("go\n")
        p.stdin.flush()
    outs = []
    for p in procs:
        out, err = p.communicate()
        if p.returncode:
            raise SystemExit(f"{framework} pair failed ({p.returncode}):\n{err[-3000:]}")
        outs.append(json.loads(out.strip().splitlines()[-1]))
    # Both trained, then evaluated, at once; the pair's images/s: both processes' images over the longest
    # of the two timed sections (they started together).
    r = dict(outs[0])
    r["train_s"] = max(o["train_s"] for o in outs) / 2  # per 1x images: images / (wall / 2)
    r["eval_s"] = max(o["eval_s"] for o in outs) / 2
    r["train_cpu_per_wall"] = sum(o["train_cpu_per_wall"] for o in outs)
    r["eval_cpu_per_wall"] = sum(o["eval_cpu_per_wall"] for o in outs)
    r["pair_wall_s"] = time.perf_counter() - t0
    return r


def _uptime() -> str:
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    except OSError:
        return f"load average {os.getloadavg()}"


def _label(framework: str) -> str:
    return {"cnnbench": "cnnbench", "bare": "bare PyTorch loop", "tf": "TF-Keras"}[framework]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mnist", type=Path, default=ROOT.parent / "shared" / "datasets" / "mnist.npz")
    ap.add_argument("--images", type=int, default=12800)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--eval-batch", type=int, default=1000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--modes", nargs="+", default=["2", "1"], choices=["2", "1", "2x1"])
    ap.add_argument("--precision", default="fp32", choices=["fp32", "bf16"],
                    help="bf16: cnnbench precision='bf16' vs Keras' mixed_bfloat16 policy")
    ap.add_argument("--bare", action="store_true", help="also time the bare PyTorch loop")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--tf-python", help="a python with tensorflow installed")
    ap.add_argument("--tf-pythonpath", help="PYTHONPATH for the TF side (a pip --target directory)")
    ap.add_argument("--legacy-keras", action="store_true", help="tf-keras 2.x instead of Keras 3")
    ap.add_argument("--json", type=Path, help="also write every round's figures here")
    ap.add_argument("--worker", choices=["cnnbench", "bare", "tf"], help=argparse.SUPPRESS)
    ap.add_argument("--threads", type=int, default=2, help=argparse.SUPPRESS)
    ap.add_argument("--pair", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.worker:
        result = {"cnnbench": worker_cnnbench, "bare": worker_bare, "tf": worker_tf}[a.worker](a)
        print(json.dumps(result), flush=True)
        return

    sys.path.insert(0, str(HERE.parent))
    from _machine import cpu_name

    frameworks = ["cnnbench"] + (["bare"] if a.bare else []) + (["tf"] if (a.tf_python or a.tf_pythonpath) else [])
    print(f"# {cpu_name()}, nproc {os.cpu_count()}, affinity {len(os.sched_getaffinity(0))} cores")
    print(f"# start: {_uptime()}")
    rounds: list[dict] = []
    for r in range(a.rounds):
        order = frameworks if r % 2 == 0 else frameworks[::-1]
        for mode in a.modes:
            for fw in order:
                load = os.getloadavg()[0]
                res = _run_pair(a, fw) if mode == "2x1" else _run_one(a, fw, int(mode))
                res.update(round=r, mode=mode, load1_before=load)
                rounds.append(res)
                print(f"round {r} mode {mode:>3} {fw:8s} train {res['train_images'] / res['train_s']:7,.0f} img/s "
                      f"(CPU/wall {res['train_cpu_per_wall']:.2f})  eval {res['eval_images'] / res['eval_s']:7,.0f} "
                      f"img/s (CPU/wall {res['eval_cpu_per_wall']:.2f})  load {load:.2f}", flush=True)
    print(f"# end: {_uptime()}")
    if a.json:
        a.json.write_text(json.dumps(rounds, indent=1))

    versions = {r["framework"]: r["version"] for r in rounds}
    print("# " + "; ".join(versions.values()) + f"; precision {a.precision}; {a.rounds} rounds, best round each")
    print("| mode | what | " + " | ".join(_label(f) for f in frameworks) + " | cnnbench ÷ TF-Keras |")
    print("|---|---|" + "---|" * len(frameworks) + "---|")
    for mode in a.modes:
        for what in ("train", "eval"):
            best, cpu = {}, {}
            for fw in frameworks:
                rs = [r for r in rounds if r["mode"] == mode and r["framework"] == fw]
                top = max(rs, key=lambda r: r[f"{what}_images"] / r[f"{what}_s"])
                best[fw] = top[f"{what}_images"] / top[f"{what}_s"]
                cpu[fw] = [r[f"{what}_cpu_per_wall"] for r in rs]
            cells = [f"{best[f]:,.0f} (CPU/wall {min(cpu[f]):.2f}–{max(cpu[f]):.2f})" for f in frameworks]
            ratio = f"**{best['cnnbench'] / best['tf']:.2f}×**" if "tf" in best else "–"
            print(f"| {mode} | {what} images/s | " + " | ".join(cells) + f" | {ratio} |")
            if "tf" in best and mode == "2":  # TF's one-core and two-core states apart
                rs = [r for r in rounds if r["mode"] == mode and r["framework"] == "tf"]
                for state, pick in (("TF on ~1 core", lambda c: c < TWO_CORE_STATE),
                                    ("TF on ~2 cores", lambda c: c >= TWO_CORE_STATE)):
                    sel = [r for r in rs if pick(r[f"{what}_cpu_per_wall"])]
                    if sel:
                        b = max(r[f"{what}_images"] / r[f"{what}_s"] for r in sel)
                        print(f"| 2, {state} ({len(sel)}/{len(rs)} rounds) | {what} images/s | "
                              + " | ".join("" for f in frameworks[:-1]) + f" | {b:,.0f} | "
                              f"{best['cnnbench'] / b:.2f}× |")


if __name__ == "__main__":
    main()
