"""What `cnnbench run`'s progress within an epoch costs: `fit` with a callback that defines
`on_batch_progress` (called after every batch; reads the running loss at most once a second, as
`execution`'s progress callback does) against `fit` without one, interleaved round by round, best round
against best round, one thread. The losses must be equal: the hook only reads.

    python benchmarks/bench_batch_hook.py [--rounds 5] [--epochs 3] [--model digits_cnn]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import torch

from cnnbench import data, fit
from cnnbench.callbacks import Callback


class Probe(Callback):
    last = 0.0

    def on_batch_progress(self, batch, steps, running):
        now = time.monotonic()
        if now - self.last >= 1.0:
            self.last = now
            running()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--model", default="digits_cnn")
    args = ap.parse_args()
    torch.set_num_threads(1)
    ds = data.load("digits")
    seconds: dict[str, list[float]] = {"without": [], "with hook": []}
    losses = {}
    for _ in range(args.rounds):
        for name in seconds:
            t0 = time.perf_counter()
            h = fit(args.model, ds.x_train, ds.y_train, epochs=args.epochs, batch_size=32, seed=0, verbose=0,
                    callbacks=[Probe()] if name == "with hook" else [])
            seconds[name].append(time.perf_counter() - t0)
            losses[name] = h.history["loss"]
    best = {k: min(v) for k, v in seconds.items()}
    print(f"best of {args.rounds}: without {best['without']:.3f} s, with hook {best['with hook']:.3f} s; "
          f"ratio {best['with hook'] / best['without']:.3f}; same losses: {losses['with hook'] == losses['without']}")


if __name__ == "__main__":
    main()
