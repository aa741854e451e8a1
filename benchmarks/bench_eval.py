"""`cnnbench.evaluate`: the eager forward vs `cnnbench.engine.inference` (heap allocations, Conv+ReLU fused).

    python benchmarks/bench_eval.py [--rounds 5] [--threads 2] [--models keras_mnist_cnn cifar_simple_cnn]

Real MNIST (../shared/datasets/mnist.npz, not copied): each model is trained for one epoch on the first
6,400 training images (batch 128, Adam; cifar_simple_cnn takes the 28x28 images as they are), then
`cnnbench.evaluate` runs on the 10,000 test images with batch 1000, in one process, variants interleaved
round by round (the order reversed every other round), best round of each, ratios against the eager
forward of the same rounds:

- `eager`: `model(xb)` per batch with malloc as it is, as before `cnnbench.engine.inference`;
- `heap`: malloc without mmap during the evaluation (`inference.heap_allocations`), no fusion;
- `fused`: Conv2D+ReLU as one oneDNN convolution with a ReLU post-op, malloc as it is;
- `heap+fused`: both, what `evaluate` and fit's validation pass do now;
- `... bf16`: the same with `precision="bf16"` (autocast); `heap+fused bf16` is what a bf16 `evaluate`
  does since 2026-12-03 (before: `heap bf16`, no fusion under autocast).

Exactness: every variant's `evaluate` result (loss, accuracy, top-5, NLL, ECE, macro-F1) compared with
the eager one's for equality, and the logits' largest absolute difference. The load (1-minute average)
is printed before every round: the machine is shared.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
MNIST = ROOT.parent / "shared" / "datasets" / "mnist.npz"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--models", nargs="+", default=["keras_mnist_cnn", "cifar_simple_cnn"])
    ap.add_argument("--batch-size", type=int, default=1000)
    ap.add_argument("--no-bf16", action="store_true")
    ap.add_argument("--data", default=str(MNIST))
    args = ap.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    torch.set_num_interop_threads(1)
    from _machine import describe

    import cnnbench
    from cnnbench.engine import inference
    try:
        from cnnbench.engine.inputs import as_float01 as _as_float01
    except ImportError:  # a tree from before the engine was split (comparing with an old commit)
        try:
            from cnnbench.engine.train import _as_float01  # type: ignore[attr-defined,no-redef]
        except ImportError:  # before the pipeline's packages (cnnbench/train.py)
            from cnnbench.train import _as_float01  # type: ignore[attr-defined,no-redef]

    print(describe())
    d = np.load(args.data)
    xtr, ytr = d["x_train"][:6400], d["y_train"][:6400]
    xte, yte = d["x_test"], d["y_test"]

    fusion = inference._fusion_available()
    real_evaluator = inference.evaluator

    def configure(variant: str):
        heap, fused = "heap" in variant, "fused" in variant
        inference.evaluator = real_evaluator if fused else (lambda model: model)
        inference.HEAP = heap
        inference._FUSED_OK = fusion if fused else False

    variants = ["eager", "heap", "fused", "heap+fused"]
    if not args.no_bf16:
        variants += ["eager bf16", "heap bf16", "heap+fused bf16"]
    models = {}
    for name in args.models:
        torch.manual_seed(0)
        model = cnnbench.models.get(name, input_shape=(1, 28, 28), num_outputs=10)
        cnnbench.fit(model, xtr, ytr, epochs=1, batch_size=128, verbose=0, seed=0)
        models[name] = model

    def run(name: str, variant: str):
        configure(variant)
        precision = "bf16" if "bf16" in variant else "fp32"
        return cnnbench.evaluate(models[name], xte, yte, batch_size=args.batch_size, precision=precision,
                                 verbose=0, return_dict=True)

    # exactness: results and logits of every variant against eager (fp32) / eager bf16
    x = torch.from_numpy(xte).unsqueeze(1)
    for name, model in models.items():
        model.eval()
        logits = {}
        for variant in variants:
            configure(variant)
            forward = inference.evaluator(model)
            with torch.no_grad(), torch.autocast("cpu", torch.bfloat16, enabled="bf16" in variant):
                logits[variant] = torch.cat([forward(_as_float01(x[s:s + args.batch_size])).float()
                                             for s in range(0, x.shape[0], args.batch_size)])
        results = {v: run(name, v) for v in variants}
        for variant in variants:
            ref = "eager bf16" if "bf16" in variant else "eager"
            diff = (logits[variant] - logits[ref]).abs().max().item()
            same = results[variant] == results[ref]
            print(f"{name:18s} {variant:14s} logits max |diff| vs {ref}: {diff:.3g}; evaluate() results "
                  f"{'identical' if same else 'DIFFER: ' + repr((results[variant], results[ref]))}")
        print(f"{name:18s} eager: {results['eager']}")

    times = {(n, v): [] for n in models for v in variants}
    for r in range(args.rounds):
        order = [(n, v) for n in models for v in variants]
        if r % 2:
            order.reverse()
        print(f"round {r + 1}: load {os.getloadavg()[0]:.2f}", flush=True)
        for key in order:
            t0 = time.perf_counter()
            run(*key)
            times[key].append(time.perf_counter() - t0)
    configure("heap+fused")
    print(f"\n{describe()}\nbest of {args.rounds} rounds, evaluate() of {len(xte)} images, batch {args.batch_size}:")
    for name in models:
        for variant in variants:
            best = min(times[(name, variant)])
            ref = min(times[(name, "eager bf16" if "bf16" in variant else "eager")])
            print(f"{name:18s} {variant:14s} {len(xte) / best:8.0f} images/s  {ref / best:5.2f}x "
                  f"(rounds: {', '.join(f'{len(xte) / t:.0f}' for t in times[(name, variant)])})")


if __name__ == "__main__":
    main()
