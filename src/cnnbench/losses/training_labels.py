"""What the engine does to a training set's labels outside the loss: class weights turned into
per-sample weights (Keras' `class_weight`), and symmetric label noise fixed by a seed."""

from __future__ import annotations

import torch

from ..errors import UserError


def class_weights_to_sample_weights(labels: torch.Tensor, class_weight, num_classes: int) -> torch.Tensor:
    """Per-sample weights [N] (float32) from `class_weight`, with Keras' semantics.

    `class_weight` is a dict `{class_index: weight}` (classes not listed weigh 1.0; TOML string
    keys like `"3"` are accepted), a list of `num_classes` weights, `"balanced"`
    (n_samples / (n_classes * bincount(labels)), as scikit-learn; compute it on the whole training
    set), or None (all ones). The weights multiply the per-sample losses; with the default
    reduction the sum is divided by N, not by the weight sum.

    "balanced" is computed here, not by `sklearn.utils.class_weight.compute_class_weight`: scikit-learn
    divides in float64 and these float32 weights differ from its in the last bit for most label counts
    (so existing runs would change), it refuses a class absent from the labels (weight 0 here), and
    importing it costs each worker about 1.7 s (measured with torch already imported)."""
    labels = torch.as_tensor(labels).reshape(-1).long()
    if class_weight is None:
        return torch.ones(labels.shape[0], dtype=torch.float32, device=labels.device)
    if isinstance(class_weight, str):
        if class_weight.lower() != "balanced":
            raise UserError(f"class_weight {class_weight!r} is not understood; use 'balanced' or a "
                            "table {class_index = weight}")
        counts = torch.bincount(labels, minlength=num_classes)[:num_classes].to(torch.float32)
        n = float(labels.shape[0])
        table = torch.where(counts > 0, n / (num_classes * counts.clamp(min=1.0)), torch.zeros_like(counts))
    elif isinstance(class_weight, dict):
        table = torch.ones(num_classes, dtype=torch.float32)
        for key, value in class_weight.items():
            try:
                index = int(key)
            except (TypeError, ValueError):
                raise UserError(f"class_weight key {key!r} is not a class index; "
                                f"use integers 0..{num_classes - 1}") from None
            if not 0 <= index < num_classes:
                raise UserError(f"class_weight key {key!r} is out of range for {num_classes} classes")
            if not float(value) >= 0:
                raise UserError(f"class_weight for class {key!r} is {value!r}; weights must be >= 0")
            table[index] = float(value)
        table = table.to(labels.device)
    elif isinstance(class_weight, (list, tuple, torch.Tensor)):
        table = torch.as_tensor(class_weight, dtype=torch.float32).reshape(-1)
        if table.shape[0] != num_classes:
            raise UserError(f"class_weight has {table.shape[0]} weights for {num_classes} classes")
        table = table.to(labels.device)
    else:
        raise UserError(f"class_weight must be a table, a list, 'balanced' or None; got {class_weight!r}")
    return table.to(labels.device)[labels]


def add_label_noise(labels: torch.Tensor, rate: float, num_classes: int, seed: int = 0) -> torch.Tensor:
    """Symmetric label noise: each label, with probability `rate`, becomes a uniformly drawn
    *different* class. Deterministic for a given `seed`; returns a new tensor."""
    labels = torch.as_tensor(labels)
    rate = float(rate)
    if not 0.0 <= rate <= 1.0:
        raise UserError(f"label noise rate must be in [0, 1], got {rate}")
    if rate == 0.0:
        return labels.clone()
    if num_classes < 2:
        raise UserError("label noise needs at least 2 classes")
    generator = torch.Generator().manual_seed(int(seed))
    n = labels.numel()
    flip = torch.rand(n, generator=generator) < rate
    offset = torch.randint(1, num_classes, (n,), generator=generator)
    flat = labels.reshape(-1).cpu().long()
    noisy = torch.where(flip, (flat + offset) % num_classes, flat)
    return noisy.to(dtype=labels.dtype, device=labels.device).reshape(labels.shape)
