"""Augmentation cost vs one training step of the Keras MNIST CNN (batch 128, 1×28×28, CPU).

    PYTHONPATH=src python benchmarks/bench_augment.py [--steps 30] [--device cpu]

The step is forward + backward + Adam step of the Keras example CNN (Conv32-Conv64 3×3 relu, MaxPool2,
Dropout .25, Flatten, Dense128 relu, Dropout .5, Dense10), defined here. For each augmentation config,
augmentation (same batch, seeded CPU `torch.Generator`, as the engine calls it) and a training step
are timed alternately, so both see the same machine load. Target: < 25% of the step. Reports medians.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
from _machine import cpu_name  # benchmarks/ is on sys.path when run as a script

from cnnbench.data import augment

CONFIGS = {
    "flips": {"horizontal_flip": True, "vertical_flip": True},
    "keras mnist (rot 10, shift .1, zoom .1)": {"rotation_range": 10, "width_shift_range": 0.1,
                                                 "height_shift_range": 0.1, "zoom_range": 0.1},
    "cifar (flip + crop 4)": {"horizontal_flip": True, "crop_padding": 4},
    "cutout 8": {"cutout_size": 8},
    "everything": {"horizontal_flip": True, "vertical_flip": True, "rotation_range": 15,
                   "width_shift_range": 0.1, "height_shift_range": 0.1, "zoom_range": 0.1, "shear_range": 10,
                   "brightness_range": [0.8, 1.2], "channel_shift_range": 10, "crop_padding": 2,
                   "cutout_size": 8},
}


def keras_mnist_cnn() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(1, 32, 3), nn.ReLU(),
        nn.Conv2d(32, 64, 3), nn.ReLU(),
        nn.MaxPool2d(2), nn.Dropout(0.25), nn.Flatten(),
        nn.Linear(64 * 12 * 12, 128), nn.ReLU(), nn.Dropout(0.5),
        nn.Linear(128, 10),
    )


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args(argv)
    dev = torch.device(args.device)
    sync = (lambda: torch.cuda.synchronize(dev)) if dev.type == "cuda" else (lambda: None)
    torch.manual_seed(0)
    model = keras_mnist_cnn().to(dev)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    x = torch.rand(args.batch, 1, 28, 28, device=dev)
    y = torch.randint(0, 10, (args.batch,), device=dev)

    def step():
        out = model(x)
        loss = F.cross_entropy(out, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    model.train()
    for _ in range(3):
        step()
    where = cpu_name() if dev.type == "cpu" else torch.cuda.get_device_name(dev)
    print(f"machine: {where}, {torch.get_num_threads()} threads, torch {torch.__version__}; device {dev}")
    print(f"batch {args.batch}, 1x28x28; augmentation and training step timed alternately "
          f"(as the engine runs them), median of {args.steps} each")
    print(f"{'augmentation':42s} {'aug':>9s} {'step':>9s} {'aug/step':>9s}   "
          f"{'min aug':>8s} {'min step':>9s} {'ratio':>7s}")
    worst = 0.0
    for label, spec in CONFIGS.items():
        aug = augment.get(spec)
        gen = torch.Generator().manual_seed(0)  # a CPU generator, as the engine passes
        for _ in range(3):
            aug(x, gen)
        t_aug, t_step = [], []
        for _ in range(args.steps):
            t0 = time.perf_counter()
            aug(x, gen)
            sync()
            t1 = time.perf_counter()
            step()
            sync()
            t_aug.append(t1 - t0)
            t_step.append(time.perf_counter() - t1)
        a, s_ = statistics.median(t_aug), statistics.median(t_step)
        amin, smin = min(t_aug), min(t_step)
        worst = max(worst, a / s_)
        print(f"{label:42s} {a * 1e3:7.2f}ms {s_ * 1e3:7.1f}ms {100 * a / s_:8.2f}%   "
              f"{amin * 1e3:6.2f}ms {smin * 1e3:7.1f}ms {100 * amin / smin:6.2f}%")
    print(f"worst median ratio: {100 * worst:.2f}% of a step (target < 25%): {'OK' if worst < 0.25 else 'OVER'}")
    print("(min = least disturbed run; on a shared machine the medians include time-slicing by other processes)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
