"""The forward pass of `evaluate` (and of fit's validation): the eager model's numbers, faster on a CPU.

Two changes to how the eager model is run, neither to its arithmetic (BENCHMARKS.md, "Evaluation"):

- **Activations from the heap, not fresh mappings.** A batch of 1000 MNIST images makes activations of
  86 and 147 MB. glibc's malloc serves blocks above its mmap threshold (at most 32 MiB) with a fresh
  `mmap` and unmaps them on free, so every batch page-faults those megabytes in again: on a loaded
  2-core machine that cost ~40% of the evaluation. Training suffers alike: each step frees and
  allocates again activations of 5-20 MB (batch 128), which glibc hands back to the system (mmap or heap
  trimming) and faults in again at the next step (1.1x a Keras MNIST CNN's training throughput and 1.4x
  `cifar_simple_cnn`'s when kept, on one thread). During an evaluation and during `fit`'s training
  (`heap_allocations`), mmap is off and the heap is not trimmed, so the second batch reuses the first
  one's pages; afterwards the thresholds are set to where glibc's dynamic threshold ends up in a
  long-running process (mmap threshold 32 MiB, trim threshold 64 MiB; glibc cannot report the values
  it had, and setting them ends its dynamic adjustment for the rest of the process) and `malloc_trim`
  returns the free pages to the system. Memory behaviour changes, numbers do not. Left alone where the user tunes malloc
  (a `MALLOC_*_` variable or a `glibc.malloc` tunable in the environment) and off glibc (macOS, musl).
- **Convolution + ReLU in one oneDNN primitive** (`torch.ops.mkldnn._convolution_pointwise`, a ReLU
  post-op): for cnnbench's `Conv2D(activation="relu")` on a CPU, in float32 and in bf16 (a bf16 model, or
  `precision = "bf16"`'s autocast with the tensors cast to bf16 as autocast casts them), where eager
  torch would run the same oneDNN convolution (`torch._C._select_conv_backend`) followed by a separate
  ReLU pass. The post-op clamps the convolution's float32 accumulator at zero before it is stored (in bf16:
  before it is rounded to bf16), and ReLU commutes with that rounding (round-to-nearest keeps the sign and
  maps no positive value below zero), so the output is the same bit for bit as eager's
  convolution-then-ReLU (tests/test_inference.py). One exception in bf16, in values none: oneDNN flushes a
  negative sum below bf16's smallest normal number (1.2e-38) to -0.0, which eager's ReLU keeps and the
  post-op stores as +0.0; equal values, so no later layer's values, logit or metric change. It saves a
  pass over, and an allocation of, the largest activations (in bf16 the most: torch's bf16 ReLU is not
  vectorised, 2.6x float32's time per element). Anything else — autocast to float16, float64, gradients
  enabled, another device or backend, a module that is not exactly `Conv2D` with ReLU, an operator this
  torch lacks — runs the module's own forward.

Measured and not taken (they change the logits): running a batch in smaller chunks (up to 1.9e-6 on
cifar_simple_cnn: oneDNN/MKL pick kernels by batch size), `torch.jit.freeze` + `optimize_for_inference`
(3.8e-6 on the Keras MNIST CNN: Linear becomes matmul + add). `torch.jit.freeze` alone is exact but no
faster; `torch.inference_mode` instead of `no_grad`: no difference.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

# mallopt parameters (malloc.h) and glibc's values after its dynamic threshold has reached its maximum
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD, M_MMAP_MAX = -1, -3, -4
STEADY = {M_MMAP_THRESHOLD: 32 << 20, M_TRIM_THRESHOLD: 64 << 20, M_MMAP_MAX: 65536}
HEAP = True  # False: leave malloc as it is (benchmarks/bench_eval.py compares)
_FUSED_OK: bool | None = None


def _fusion_available() -> bool:
    global _FUSED_OK
    if _FUSED_OK is None:
        try:
            _FUSED_OK = bool(torch.backends.mkldnn.is_available()
                             and hasattr(torch.ops.mkldnn, "_convolution_pointwise")
                             and hasattr(torch._C, "_select_conv_backend"))
        except Exception:
            _FUSED_OK = False
    return _FUSED_OK


def _fusable_conv(module: nn.Module) -> bool:
    from ..models._base import Conv2D

    # exactly Conv2D: a subclass may change the convolution (_conv_forward: weight standardisation, masks)
    return (type(module) is Conv2D and getattr(module, "act", None) is F.relu
            and not module._asym_same and module.padding_mode == "zeros"
            and isinstance(module.padding, tuple) and "forward" not in module.__dict__)


def _eager_conv_dtype(*tensors: torch.Tensor | None) -> torch.dtype | None:
    """The dtype eager `conv2d` computes in for these tensors: theirs (all float32 or all bf16), or bf16 under
    CPU autocast to bf16 (which casts float32 and bf16 tensors to bf16, as `.to` does); None for anything
    else (float64, float16, mixed dtypes, autocast to float16), which runs eagerly."""
    dtypes = {t.dtype for t in tensors if t is not None}
    if not dtypes <= {torch.float32, torch.bfloat16}:
        return None
    if torch.is_autocast_enabled("cpu"):
        return torch.bfloat16 if _autocast_bf16() else None
    return dtypes.pop() if len(dtypes) == 1 else None


def _conv_relu(module: nn.Module) -> Callable[[torch.Tensor], torch.Tensor]:
    original = module.forward  # the bound class method

    def forward(x: torch.Tensor) -> torch.Tensor:
        w, b = module.weight, module.bias
        dtype = _eager_conv_dtype(x, w, b)
        if dtype is None or torch.is_grad_enabled() or x.device.type != "cpu" or x.dim() != 4:
            return original(x)
        # what autocast hands eager conv2d: every tensor in bf16 (a no-op without autocast)
        xc, wc, bc = x.to(dtype), w.to(dtype), None if b is None else b.to(dtype)
        if torch._C._select_conv_backend(xc, wc, bc, module.stride, module.padding, module.dilation, False,
                                         [0, 0], module.groups, None) != torch._C._ConvBackend.Mkldnn:
            return original(x)
        try:
            return torch.ops.mkldnn._convolution_pointwise(xc, wc, bc, list(module.padding), list(module.stride),
                                                           list(module.dilation), module.groups, "relu", [None], "")
        except Exception:  # an operator this build refuses: the module's own forward (an error recurs there)
            return original(x)

    return forward


@contextlib.contextmanager
def _fused(model: nn.Module):
    """Conv2D+ReLU modules run as one oneDNN convolution with a ReLU post-op, inside the block only."""
    patched = []
    if _fusion_available():
        try:
            for module in model.modules():
                if _fusable_conv(module):
                    module.forward = _conv_relu(module)  # an instance attribute: shadows Conv2D.forward
                    patched.append(module)
        except Exception:  # a module that refuses attributes (TorchScript): eager
            pass
    try:
        yield
    finally:
        for module in patched:
            module.__dict__.pop("forward", None)


def _libc():
    global _LIBC
    if _LIBC is None:
        _LIBC = False
        try:
            import ctypes
            import platform

            tuned = any(k.startswith("MALLOC_") and k.endswith("_") for k in os.environ) or (
                "glibc.malloc" in os.environ.get("GLIBC_TUNABLES", ""))
            if not tuned and platform.system() == "Linux" and platform.libc_ver()[0] == "glibc":
                libc = ctypes.CDLL(None)
                _LIBC = libc if hasattr(libc, "mallopt") and hasattr(libc, "malloc_trim") else False
        except Exception:
            _LIBC = False
    return _LIBC


_LIBC = None
_DEPTH = 0  # evaluations in progress (nested, or in several threads): malloc is set by the first, reset by the last
_DEPTH_LOCK = threading.Lock()


@contextlib.contextmanager
def heap_allocations():
    """Inside the block, glibc serves large blocks from the heap and keeps freed ones (see the module's doc)."""
    global _DEPTH
    libc = _libc() if HEAP else False
    if not libc:
        yield
        return
    with _DEPTH_LOCK:
        if _DEPTH == 0:
            libc.mallopt(M_MMAP_MAX, 0)
            libc.mallopt(M_TRIM_THRESHOLD, 1 << 30)
        _DEPTH += 1
    try:
        yield
    finally:
        with _DEPTH_LOCK:
            _DEPTH -= 1
            if _DEPTH == 0:
                for param, value in STEADY.items():
                    libc.mallopt(param, value)
                libc.malloc_trim(0)


def _finite(tensors, dtype: torch.dtype | None = None) -> bool:
    """Every floating tensor finite, in `dtype` where given: the ReLU post-op maps NaN to 0 where F.relu
    keeps NaN, so a model or a batch holding a NaN (a diverged or damaged model) must run eagerly to show
    it. bf16 is checked after the cast: float32 values above bf16's largest (~3.39e38) become inf there."""
    return all(bool(torch.isfinite(t if dtype is None else t.to(dtype)).all()) for t in tensors
               if isinstance(t, torch.Tensor) and t.is_floating_point())


def _autocast_bf16() -> bool:
    return torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") == torch.bfloat16


def evaluator(model: nn.Module) -> Callable[[Any], Any]:
    """`forward(xb)` = `model(xb)`, with Conv2D+ReLU fused where that gives the same numbers (module doc).

    Eager, unfused, for a compiled model (patching forward per batch would recompile it every batch),
    for a model holding a NaN or an infinity, and for a batch holding one (under bf16 autocast: once
    cast to bf16): the post-op turns NaN into 0 where eager ReLU keeps it. With finite weights and inputs
    a NaN could still arise inside the network only from an overflow to inf (inf - inf); an evaluation
    whose activations overflow float32 (bf16: its slightly smaller range) is not made exact. Nor is one
    inside a user's own autocast block that changes weights in place between calls: eager autocast reuses
    its first cast of a weight until the block ends, the fused path casts the weight as it is."""
    compiled = hasattr(model, "_orig_mod")  # torch.compile's OptimizedModule
    state = [*model.parameters(), *model.buffers()]
    fusable = {None: not compiled and _finite(state)}

    def forward(xb):
        dtype = torch.bfloat16 if _autocast_bf16() else None
        if dtype not in fusable:
            fusable[dtype] = fusable[None] and _finite(state, dtype)
        if not fusable[dtype] or not _finite([xb], dtype):
            return model(xb)
        with _fused(model):
            return model(xb)

    return forward
