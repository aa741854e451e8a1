"""Where one evaluation batch spends its time in float32 and in bf16 (autocast), op by op.

    python benchmarks/profile_eval_precision.py [--mnist ../shared/datasets/mnist.npz] [--threads 2]

The Keras MNIST CNN (untrained weights: the time does not depend on them) in eval mode, channels_last,
no grad, inside `heap_allocations` as `cnnbench.evaluate` runs it, on the first 1,000 real MNIST test
images; the plain module forward, i.e. without evaluate's fused Conv+ReLU path (float32 only), which is
what bf16 runs. Prints the mean wall time per batch of 10 unprofiled batches after 3 warm-ups, then
torch.profiler's CPU self time per op over 5 batches (the profiler slows small ops; compare rows, not
the total with the wall time)."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from torch.profiler import ProfilerActivity, profile

from cnnbench import models
from cnnbench.engine.inference import heap_allocations


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mnist", default=str(Path(__file__).resolve().parents[2] / "shared" / "datasets" / "mnist.npz"))
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    images = np.load(args.mnist)["x_test"][:1000]
    x = torch.from_numpy(images).float().div(255).unsqueeze(1).contiguous(memory_format=torch.channels_last)
    model = models.get("keras_mnist_cnn", input_shape=(1, 28, 28), num_outputs=10)
    model = model.eval().to(memory_format=torch.channels_last)

    def batch(precision: str):
        with torch.no_grad(), heap_allocations(), torch.autocast("cpu", dtype=torch.bfloat16,
                                                                 enabled=precision == "bf16"):
            return model(x)

    for precision in ("fp32", "bf16"):
        for _ in range(3):
            batch(precision)
        start = time.perf_counter()
        for _ in range(10):
            batch(precision)
        wall = (time.perf_counter() - start) / 10
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            for _ in range(5):
                batch(precision)
        print(f"{precision}: {wall * 1000:.1f} ms per batch of 1,000 (unprofiled), {args.threads} threads")
        for e in sorted(prof.key_averages(), key=lambda e: -e.self_cpu_time_total)[:6]:
            print(f"  {e.key:32s} {e.self_cpu_time_total / 5 / 1000:8.1f} ms per batch ({e.count // 5} calls)")


if __name__ == "__main__":
    main()
