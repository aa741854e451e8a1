"""Keras-like `model.summary()` for any `nn.Module`."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


def _own_counts(module: nn.Module) -> tuple[int, int]:
    """(trainable, non-trainable) numbers of this module's own weights (not its children's).

    Like Keras, BatchNorm's moving mean/variance count as non-trainable weights: persistent floating
    buffers are counted, the integer `num_batches_tracked` and non-persistent buffers are not."""
    trainable = non_trainable = 0
    for p in module.parameters(recurse=False):
        if p.requires_grad:
            trainable += p.numel()
        else:
            non_trainable += p.numel()
    skip = getattr(module, "_non_persistent_buffers_set", set())
    for name, b in module.named_buffers(recurse=False):
        if b is not None and name not in skip and b.is_floating_point():
            non_trainable += b.numel()
    return trainable, non_trainable


def count_params(model: nn.Module) -> dict[str, int]:
    """`{"total", "trainable", "non_trainable"}` counted like Keras (BN moving statistics are
    non-trainable weights; frozen parameters too)."""
    trainable = non_trainable = 0
    for m in model.modules():
        t, n = _own_counts(m)
        trainable += t
        non_trainable += n
    return {"total": trainable + non_trainable, "trainable": trainable, "non_trainable": non_trainable}


def _shape_str(out) -> str:
    if isinstance(out, torch.Tensor):
        return "(" + ", ".join(["None", *map(str, out.shape[1:])]) + ")"
    if isinstance(out, (tuple, list)):
        return "[" + ", ".join(_shape_str(o) for o in out) + "]"
    return "?"


def summary(model: nn.Module, input_shape: Sequence[int], *, line_length: int = 78) -> str:
    """A Keras-style table of the layers run for one `(C, H, W)` input: name (type), output shape,
    parameter count, then total / trainable / non-trainable counts. Runs one forward pass in eval
    mode without gradients (the model's training mode is restored)."""
    rows: list[tuple[str, str, int]] = []
    seen: set[int] = set()
    hooks = []

    def hook(name):
        def fn(module, inputs, output):
            # a layer called twice (shared weights) is listed once, at its first call
            if id(module) in seen:
                return
            seen.add(id(module))
            t, n = _own_counts(module)
            rows.append((f"{name} ({type(module).__name__})", _shape_str(output), t + n))

        return fn

    for name, module in model.named_modules():
        has_children = any(True for _ in module.children())
        if module is model and has_children:
            continue
        if not has_children or sum(_own_counts(module)) > 0:
            hooks.append(module.register_forward_hook(hook(name or type(module).__name__)))

    was_training = model.training
    try:
        param = next(model.parameters(), None)
        device = param.device if param is not None else torch.device("cpu")
        model.eval()
        with torch.no_grad():
            out = model(torch.zeros(1, *map(int, input_shape), device=device))
    finally:
        model.train(was_training)
        for h in hooks:
            h.remove()

    counts = count_params(model)
    listed = sum(r[2] for r in rows)
    w1 = max([len("Layer (type)")] + [len(r[0]) for r in rows]) + 2
    w2 = max([len("Output Shape")] + [len(r[1]) for r in rows]) + 2
    width = max(line_length, w1 + w2 + 12)
    lines = [f'Model: "{getattr(model, "model_name", type(model).__name__)}"', "_" * width]
    lines.append(f"{'Layer (type)':<{w1}}{'Output Shape':<{w2}}{'Param #':>10}")
    lines.append("=" * width)
    for i, (layer, shape, n) in enumerate(rows):
        lines.append(f"{layer:<{w1}}{shape:<{w2}}{n:>10,}")
        if i < len(rows) - 1:
            lines.append("_" * width)
    lines.append("=" * width)
    lines.append(f"Total params: {counts['total']:,}")
    lines.append(f"Trainable params: {counts['trainable']:,}")
    lines.append(f"Non-trainable params: {counts['non_trainable']:,}")
    if listed != counts["total"]:
        lines.append(f"({counts['total'] - listed:,} params belong to layers not run on this input)")
    lines.append(f"Output: {_shape_str(out)}")
    lines.append("_" * width)
    return "\n".join(lines)
