"""Validation splits and subsets, deterministic from a seed (numpy PCG64, stable across platforms)."""

from __future__ import annotations

import math

import numpy as np
import torch

from ..errors import UserError

SPLIT_MODES = ("keras", "stratified")
LIMIT_MODES = ("first", "stratified")


def _labels_np(y) -> np.ndarray:
    if isinstance(y, torch.Tensor):
        return y.detach().cpu().numpy()
    return np.asarray(y)


def _take(x, idx: np.ndarray):
    if isinstance(x, torch.Tensor):
        return x[torch.from_numpy(idx).to(x.device)]
    return np.asarray(x)[idx]


def _allocate(counts: np.ndarray, total: int) -> np.ndarray:
    """Integers per class summing to `total`, proportional to `counts` (largest remainder,
    ties to the lower class index), never more than a class has."""
    n = int(counts.sum())
    if n == 0 or total <= 0:
        return np.zeros_like(counts)
    exact = counts * (total / n)
    base = np.minimum(np.floor(exact).astype(np.int64), counts)
    rest = total - int(base.sum())
    order = np.argsort(-(exact - base), kind="stable")
    for c in order:
        if rest <= 0:
            break
        if base[c] < counts[c]:
            base[c] += 1
            rest -= 1
    return base


def stratified_indices(y, n_select: int, seed: int = 0, shuffle: bool = True) -> np.ndarray:
    """Sorted indices of `n_select` samples, per class proportional to the class counts.
    `shuffle=False` takes the first ones of each class (in order), else a seeded random choice."""
    y = _labels_np(y)
    classes, inverse = np.unique(y, return_inverse=True)
    counts = np.bincount(inverse, minlength=len(classes))
    take = _allocate(counts, n_select)
    rng = np.random.default_rng(seed)
    chosen = []
    for c in range(len(classes)):
        idx = np.flatnonzero(inverse == c)
        if shuffle:
            idx = rng.permutation(idx)
        chosen.append(idx[: take[c]])
    return np.sort(np.concatenate(chosen)) if chosen else np.zeros(0, dtype=np.int64)


def train_size(n: int, fraction: float) -> int:
    """How many of `n` samples stay for training when `fraction` is held out (as Keras splits)."""
    return math.floor(n * (1.0 - fraction))


def split_validation(x, y, fraction: float, mode: str = "keras", seed: int = 0):
    """`(x_train, y_train, x_val, y_val)`.

    - `"keras"`: like Keras' `validation_split`: the *last* `fraction` of the samples, in the given
      order, before any shuffling (`split_at = floor(n * (1 - fraction))`); `seed` is unused.
    - `"stratified"`: the same number of validation samples, chosen at random (fixed by `seed`) within
      each class in proportion to the class counts. Both parts keep the original order.
    Works on torch tensors or numpy arrays."""
    if mode not in SPLIT_MODES:
        raise UserError(f"validation split mode {mode!r} is unknown; use one of {', '.join(SPLIT_MODES)}")
    try:
        fraction = float(fraction)
    except (TypeError, ValueError):
        raise UserError(f"validation fraction must be a number between 0 and 1, got {fraction!r}") from None
    if not 0.0 < fraction < 1.0:
        raise UserError(f"validation fraction must be between 0 and 1 (exclusive), got {fraction}")
    n = len(y)
    if len(x) != n:
        raise UserError(f"x has {len(x)} samples but y has {n}")
    split_at = train_size(n, fraction)
    if split_at <= 0 or split_at >= n:
        raise UserError(f"validation fraction {fraction} of {n} samples leaves an empty part; use more data")
    if mode == "keras":
        return x[:split_at], y[:split_at], x[split_at:], y[split_at:]
    val_idx = stratified_indices(y, n - split_at, seed=seed, shuffle=True)
    mask = np.ones(n, dtype=bool)
    mask[val_idx] = False
    train_idx = np.flatnonzero(mask)
    return _take(x, train_idx), _take(y, train_idx), _take(x, val_idx), _take(y, val_idx)


def limit(x, y, n: int | None, mode: str = "first"):
    """The first `n` samples (`"first"`), or the first samples of each class in proportion to the
    class counts (`"stratified"`, deterministic, original order kept). `None` keeps everything."""
    if n is None or n >= len(y):
        return x, y
    if mode == "first":
        return x[:n], y[:n]
    idx = stratified_indices(y, n, shuffle=False)
    return _take(x, idx), _take(y, idx)
