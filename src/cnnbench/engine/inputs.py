"""What `fit` and `evaluate` take, made into tensors and checked: images, labels (one output's or a
column per output), sample weights, the validation data or split, the device, the precision's autocast,
whole-number options; and the per-epoch seed."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ..data import train_size
from ..errors import UserError


def to_images(x: Any) -> torch.Tensor:
    """Images as a Keras user passes them -> an N×C×H×W tensor (uint8 kept as uint8, else float32).

    N×H×W (grey), N×H×W×C (Keras' channels-last) and N×C×H×W are accepted; C is 1, 3 or 4.
    """
    t = torch.as_tensor(np.ascontiguousarray(x)) if isinstance(x, np.ndarray) else torch.as_tensor(x)
    if t.ndim == 3:
        t = t.unsqueeze(1)
    if t.ndim != 4:
        raise UserError(f"images must be N×H×W, N×H×W×C or N×C×H×W, got shape {tuple(t.shape)}")
    if t.shape[-1] in (1, 3, 4) and t.shape[1] not in (1, 3, 4):
        t = t.permute(0, 3, 1, 2)
    if t.dtype != torch.uint8:
        t = t.float()
    return t.contiguous()


def to_labels(y: Any) -> torch.Tensor:
    """Integer class labels (N,) or one-hot (N×K) -> int64 class indices (N,)."""
    t = torch.as_tensor(np.asarray(y)) if isinstance(y, np.ndarray) else torch.as_tensor(y)
    if t.ndim == 2 and t.shape[1] > 1:
        t = t.argmax(1)
    t = t.reshape(-1)
    if t.is_floating_point() and not torch.equal(t, t.round()):
        raise UserError("labels must be integer class indices (or one-hot rows)")
    return t.long()


def resolve_device(device: str | torch.device | None) -> torch.device:
    if device is None or str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(device)
    except RuntimeError:
        raise UserError(f"unknown device {device!r}; use cpu, cuda or auto") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError("device 'cuda' asked for, but torch sees no CUDA GPU; use --device cpu or auto")
    return device


def as_float01(xb: torch.Tensor) -> torch.Tensor:
    xb = xb.float().div_(255.0) if xb.dtype == torch.uint8 else xb
    return xb.contiguous(memory_format=torch.channels_last)


def epoch_seed(seed: int, epoch: int) -> int:
    # A fixed, well-mixed 63-bit seed per (seed, epoch): independent streams, identical on resume.
    return (seed * 0x9E3779B97F4A7C15 + (epoch + 1) * 0xBF58476D1CE4E5B9) % (2**63 - 1)


def label_columns(y: dict, names: list[str] | None, what: str) -> tuple[list[str], torch.Tensor]:
    """A dict of per-output labels -> (names, N×M int64 tensor)."""
    if not y:
        raise UserError(f"{what} is an empty dict; give {{output_name: labels}} for each output of the model")
    if names is not None and set(y) != set(names):
        raise UserError(f"{what} names the outputs {sorted(y)}, but the model's losses name {sorted(names)}; "
                        "give labels for exactly these outputs")
    names = list(names or y)
    columns = [to_labels(y[n]) for n in names]
    sizes = {n: c.shape[0] for n, c in zip(names, columns)}
    if len(set(sizes.values())) > 1:
        raise UserError(f"{what}: the outputs have different numbers of labels {sizes}; give one label per image "
                        "for every output")
    return names, torch.stack(columns, dim=1)


PRECISIONS = ("fp32", "bf16")


def precision_autocast(device: torch.device, precision: str):
    """bf16: the model's matmuls and convolutions in bfloat16 (autocast), weights and loss in float32.
    Training 2.0x float32 on one thread of a CPU with AVX-512 BF16 (BENCHMARKS.md); not yet measured on a GPU."""
    if precision not in PRECISIONS:
        raise UserError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16")


def parse_validation_freq(value) -> int | list[int]:
    """Keras' validation_freq: a whole number >= 1, or a list of (1-based) epochs."""
    if isinstance(value, (list, tuple, range)):
        for epoch in value:
            check_whole_number(epoch, "each epoch of validation_freq")
        return [int(e) for e in value]
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise UserError(f"validation_freq must be a whole number >= 1 or a list of 1-based epochs, got {value!r}")
    return int(value)


def check_whole_number(value, name: str, minimum: int = 1) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise UserError(f"{name} must be a whole number >= {minimum}, got {value!r}")


@dataclass
class TrainingData:
    """`fit`'s data as tensors: images N×C×H×W, labels N (or N×M, a column per output of `names`), the
    sample weights N, and the validation pair (from `validation_data`, or the last `validation_split`)."""

    x: torch.Tensor
    y: torch.Tensor
    sample_weight: torch.Tensor | None
    validation: tuple[torch.Tensor, torch.Tensor] | None
    names: list[str] | None  # the outputs' names, for a model with several outputs


def training_data(x, y, *, sample_weight, loss_weights, validation_data, validation_split) -> TrainingData:
    x = to_images(x)
    names = None
    if isinstance(y, dict):
        names, y = label_columns(y, None, "y")
    else:
        y = to_labels(y)
        if loss_weights is not None:
            raise UserError("loss_weights weighs the losses of several outputs; give y as a dict "
                            "{output_name: labels} (and a model whose forward returns a dict), or drop loss_weights")
    if x.shape[0] != y.shape[0]:
        raise UserError(f"x has {x.shape[0]} images but y has {y.shape[0]} labels")
    sw = None if sample_weight is None else torch.as_tensor(np.asarray(sample_weight), dtype=torch.float32)
    if sw is not None and tuple(sw.shape) != (x.shape[0],):
        raise UserError(f"sample_weight has shape {tuple(sw.shape)}; give one weight per image ({x.shape[0]})")
    val: tuple[torch.Tensor, torch.Tensor] | None = None
    if validation_data is not None:
        val = _validation_data(validation_data, names)
    elif validation_split:
        if not 0.0 < validation_split < 1.0:
            raise UserError(f"validation_split must be in (0, 1), got {validation_split}")
        n_train = train_size(x.shape[0], validation_split)  # Keras: the last fraction is validation
        val = (x[n_train:], y[n_train:])
        x, y = x[:n_train], y[:n_train]
        sw = None if sw is None else sw[:n_train]
    return TrainingData(x, y, sw, val, names)


def _validation_data(validation_data, names: list[str] | None) -> tuple[torch.Tensor, torch.Tensor]:
    if not isinstance(validation_data, (tuple, list)) or len(validation_data) != 2:
        raise UserError("validation_data must be a pair (x_val, y_val)")
    if names is not None:
        x_val = to_images(validation_data[0])
        if not isinstance(validation_data[1], dict):
            raise UserError("validation_data's y must be a dict {output_name: labels}, as y is")
        val = (x_val, label_columns(validation_data[1], names, "validation_data's y")[1])
    else:
        val = (to_images(validation_data[0]), to_labels(validation_data[1]))
    if val[0].shape[0] != val[1].shape[0]:
        raise UserError(f"validation_data has {val[0].shape[0]} images but {val[1].shape[0]} labels")
    return val
