"""Whether a change to the engine changed any number: train from one seed with one source tree, save every
loss, gradient and weight, then compare two saves bit for bit (torch.equal).

    PYTHONPATH=/tmp/old/src python benchmarks/train_bits.py save /tmp/old.pt [--threads 2] [--models ...]
    PYTHONPATH=src          python benchmarks/train_bits.py save /tmp/new.pt [--threads 2] [--models ...]
    python benchmarks/train_bits.py compare /tmp/old.pt /tmp/new.pt

(`git worktree add /tmp/old <commit>` gives the old tree.) Per model, on the first 2,560 real MNIST
training images (three channels for the models that take them, 48x48 by zero padding for `krutov_cnn`;
`name:head` is a transfer model with that head and no pretrained weights):
- a loop as the engine's step (channels_last, Keras' Adam, sparse categorical cross-entropy, batch 128):
  the 20 steps' losses, the last step's gradients, the final weights;
- `cnnbench.fit`, 2 epochs of 10 steps with a validation split: the history (its seconds aside), the
  weights, and `cnnbench.evaluate` on 1,000 images;
- a bf16 `fit` (precision="bf16", 10 steps): history and weights, and a bf16 `evaluate` on 1,000 images.
Then (always) a `digits_cnn` with two outputs (weighted losses, per-output metrics, micro-batches,
shuffle="batch", a validation split): history, its names in order, weights, `evaluate`; and one output with
metrics and micro-batches.
Numbers depend on the thread count: compare saves made with the same `--threads`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MODELS = ["keras_mnist_cnn", "cifar_simple_cnn", "digits_cnn", "keras_mnist_mlp", "lenet5", "krutov_cnn", "resnet20",
          "resnet18:flatten"]


def save(a) -> None:
    import numpy as np
    import torch

    torch.set_num_threads(a.threads)
    import cnnbench
    from cnnbench import losses, models, optim
    try:
        from cnnbench.engine.inputs import as_float01 as _as_float01
    except ImportError:  # a tree from before the engine was split (comparing with an old commit)
        try:
            from cnnbench.engine.train import _as_float01  # type: ignore[attr-defined,no-redef]
        except ImportError:  # before the pipeline's packages (cnnbench/train.py)
            from cnnbench.train import _as_float01  # type: ignore[attr-defined,no-redef]

    d = np.load(a.mnist)
    res = {}
    for name in a.models:
        x = torch.from_numpy(d["x_train"][:2560]).unsqueeze(1).contiguous()
        spec: str | dict = name
        if name in ("cifar_simple_cnn", "krutov_cnn", "resnet20", "resnet20_v2") or ":" in name:
            x = x.expand(-1, 3, -1, -1).contiguous()
        if name == "krutov_cnn":
            x = torch.nn.functional.pad(x, (10, 10, 10, 10))
        if ":" in name:
            spec = {"name": name.split(":")[0], "head": name.split(":")[1], "weights": "none"}
        y = torch.from_numpy(d["y_train"][:2560]).long()
        torch.manual_seed(0)
        model = models.get(spec, input_shape=tuple(x.shape[1:]), num_outputs=10).to(memory_format=torch.channels_last)
        loss_fn = losses.adapt(losses.get("sparse_categorical_crossentropy"), 10)
        opt = optim.get("adam", model.parameters(), batch_size=128, steps_per_epoch=20, epochs=1)
        model.train()
        step_losses = []
        for i in range(20):
            loss = loss_fn(model(_as_float01(x[i * 128:(i + 1) * 128])), y[i * 128:(i + 1) * 128])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if i == 19:
                res[f"{name}/grads"] = {k: p.grad.clone() for k, p in model.named_parameters() if p.grad is not None}
            opt.step()
            step_losses.append(loss.detach().clone())
        res[f"{name}/loop_losses"] = torch.stack(step_losses)
        res[f"{name}/loop_weights"] = {k: v.clone() for k, v in model.state_dict().items()}
        h = cnnbench.fit(spec, x, y, loss="sparse_categorical_crossentropy", optimizer="adam", epochs=2, batch_size=128,
                         seed=3, device="cpu", num_classes=10, verbose=0, validation_split=0.5)
        res[f"{name}/fit_history"] = {k: v for k, v in h.history.items() if k != "seconds"}
        res[f"{name}/fit_weights"] = {k: v.clone() for k, v in h.model.state_dict().items()}
        res[f"{name}/evaluate"] = cnnbench.evaluate(h.model, x[:1000], y[:1000], batch_size=500, verbose=0,
                                                    return_dict=True)
        hb = cnnbench.fit(spec, x[:1280], y[:1280], loss="sparse_categorical_crossentropy", optimizer="adam",
                          epochs=1, batch_size=128, seed=4, device="cpu", num_classes=10, verbose=0, precision="bf16")
        res[f"{name}/bf16_history"] = {k: v for k, v in hb.history.items() if k != "seconds"}
        res[f"{name}/bf16_weights"] = {k: v.clone() for k, v in hb.model.state_dict().items()}
        res[f"{name}/bf16_evaluate"] = cnnbench.evaluate(hb.model, x[:1000], y[:1000], batch_size=500,
                                                         precision="bf16", verbose=0, return_dict=True)
        print(f"{name}: done", flush=True)
    res.update(_two_outputs(d))
    torch.save({"threads": a.threads, "cnnbench": cnnbench.__file__, **res}, a.files[0])
    print(f"saved {a.files[0]} ({len(res)} entries, cnnbench from {Path(cnnbench.__file__).parent})")


def _two_outputs(d) -> dict:
    """The paths the models above do not take: a registry model with two heads (`digit`, `odd`), weighted
    losses, per-output metrics, micro-batches and shuffle="batch"; and one output with metrics and micro-batches."""
    import torch

    import cnnbench

    x = torch.from_numpy(d["x_train"][:1280]).unsqueeze(1).contiguous()
    y = torch.from_numpy(d["y_train"][:1280]).long()
    res = {}
    h = cnnbench.fit("digits_cnn", x, {"digit": y, "odd": y % 2}, epochs=2, batch_size=128, seed=5, device="cpu",
                     loss={"digit": "sparse_categorical_crossentropy", "odd": "binary_crossentropy"},
                     loss_weights={"odd": 0.5}, metrics={"digit": ["nll", "macro_f1"], "odd": ["ece"]},
                     micro_batch_size=64, shuffle="batch", validation_split=0.25, verbose=0)
    res["two_outputs/fit_history"] = {k: v for k, v in h.history.items() if k != "seconds"}
    res["two_outputs/history_keys"] = list(h.history)  # the logged names, in order
    res["two_outputs/fit_weights"] = {k: v.clone() for k, v in h.model.state_dict().items()}
    res["two_outputs/evaluate"] = cnnbench.evaluate(h.model, x[:500], {"digit": y[:500], "odd": y[:500] % 2},
                                                    verbose=0, return_dict=True)
    h = cnnbench.fit("digits_cnn", x, y, epochs=2, batch_size=128, seed=6, device="cpu", num_classes=10,
                     loss="sparse_categorical_crossentropy", metrics=["nll", "ece"], micro_batch_size=64,
                     validation_split=0.25, verbose=0)
    res["one_output_metrics/fit_history"] = {k: v for k, v in h.history.items() if k != "seconds"}
    res["one_output_metrics/history_keys"] = list(h.history)
    res["one_output_metrics/fit_weights"] = {k: v.clone() for k, v in h.model.state_dict().items()}
    print("two_outputs, one_output_metrics: done", flush=True)
    return res


def _equal(x, y) -> bool:
    import torch

    if isinstance(x, dict):
        return x.keys() == y.keys() and all(_equal(x[k], y[k]) for k in x)
    if isinstance(x, (list, tuple)):
        return len(x) == len(y) and all(_equal(u, v) for u, v in zip(x, y))
    if isinstance(x, torch.Tensor):
        return x.dtype == y.dtype and x.shape == y.shape and torch.equal(x, y)
    return x == y


def compare(a) -> None:
    import torch

    old, new = (torch.load(f, weights_only=False) for f in a.files)
    if old.pop("threads") != new.pop("threads"):
        sys.exit("the two saves were made with different thread counts")
    print(f"old: {old.pop('cnnbench')}\nnew: {new.pop('cnnbench')}")
    if old.keys() != new.keys():
        sys.exit(f"different entries: {sorted(set(old) ^ set(new))}")
    differ = [k for k in old if not _equal(old[k], new[k])]
    for k in old:
        print(("DIFFERS " if k in differ else "equal   ") + k)
    print(f"{len(differ)} of {len(old)} differ" if differ else f"all {len(old)} entries bit-identical")
    sys.exit(1 if differ else 0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("what", choices=["save", "compare"])
    ap.add_argument("files", nargs="+", type=Path, help="save: OUT; compare: OLD NEW")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--models", nargs="+", default=MODELS)
    ap.add_argument("--mnist", type=Path, default=ROOT.parent / "shared" / "datasets" / "mnist.npz")
    a = ap.parse_args()
    if len(a.files) != (1 if a.what == "save" else 2):
        ap.error("save takes one file, compare two")
    (save if a.what == "save" else compare)(a)


if __name__ == "__main__":
    main()
