"""FLOPs of a forward pass, counted as `torch.utils.flop_counter.FlopCounterMode` counts them, without
importing torch._dynamo.

FlopCounterMode's dispatch mode has its `__torch_dispatch__` wrapped by `torch._disable_dynamo` (every
TorchDispatchMode subclass is), which imports torch._dynamo on the first call: ~1.8 s and its memory in
every worker process, for a number that needs none of it. `count_flops` runs the same counting rule —
torch's own `flop_registry` (2 per multiply-add of matmuls, convolutions and attention), the same
decomposition of ops the registry does not know, the same skipped metadata ops — in a dispatch mode
that opts out of that wrapper (`_should_skip_dynamo`). Nothing can be compiling inside it while
torch._dynamo is not imported, so the wrapper would have been a no-op; once something has imported
torch._dynamo (torch.compile), FlopCounterMode itself is used.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

import torch
from torch import nn

from .inputs import as_float01

_MODE = None


def _metadata_ops() -> set:
    aten = torch.ops.aten
    return {aten.sym_is_contiguous.default, aten.is_contiguous.default, aten.is_contiguous.memory_format,
            aten.is_strides_like_format.default, aten.is_non_overlapping_and_dense.default, aten.size.default,
            aten.sym_size.default, aten.stride.default, aten.sym_stride.default, aten.storage_offset.default,
            aten.sym_storage_offset.default, aten.numel.default, aten.sym_numel.default, aten.dim.default,
            torch.ops.prim.layout.default}


def _mode_class():
    global _MODE
    if _MODE is None:
        from torch.utils._python_dispatch import TorchDispatchMode
        from torch.utils.flop_counter import flop_registry

        skipped = _metadata_ops()

        class _CountingMode(TorchDispatchMode):
            """FlopCounterMode's `_FlopCounterMode.__torch_dispatch__`, counting the total only."""

            @classmethod
            def _should_skip_dynamo(cls) -> bool:  # no torch._disable_dynamo wrapper (see the module's doc)
                return False

            def __init__(self):
                super().__init__()
                self.total = 0

            def __torch_dispatch__(self, func, types, args=(), kwargs=None):
                kwargs = kwargs if kwargs else {}
                if func in skipped:
                    return NotImplemented
                if isinstance(func, torch._ops.HigherOrderOperator):
                    raise NotImplementedError("higher-order operator")  # FlopCounterMode counts these
                if func not in flop_registry and func is not torch.ops.prim.device.default:
                    with self:
                        r = func.decompose(*args, **kwargs)
                        if r is not NotImplemented:
                            return r
                out = func(*args, **kwargs)
                counter = flop_registry.get(func._overloadpacket)
                if counter is not None:
                    self.total += counter(*args, **kwargs, out_val=out)
                return out

        _MODE = _CountingMode
    return _MODE


def _reference_count(run: Callable[[], object]) -> int:
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter:
        run()
    return int(counter.get_total_flops())


def count_flops(run: Callable[[], object]) -> int:
    """The FLOPs `FlopCounterMode` counts while `run()` runs (`run` is called once, or twice when the
    light counter cannot run an operation: then FlopCounterMode counts it)."""
    if "torch._dynamo" in sys.modules:
        return _reference_count(run)
    try:
        return _light_count(run)
    except NotImplementedError:
        return _reference_count(run)


def _light_count(run: Callable[[], object]) -> int:
    mode = _mode_class()()
    with mode:
        run()
    return int(mode.total)


def parameter_count(model: nn.Module) -> int:
    """Every parameter of the model, trainable or frozen (Keras' "Total params")."""
    return sum(p.numel() for p in model.parameters())


@torch.no_grad()
def forward_flops(model: nn.Module, image: torch.Tensor) -> int | None:
    """Floating-point operations of one forward pass on one image (C×H×W or 1×C×H×W; uint8 is
    scaled to [0, 1]) in eval mode, as `torch.utils.flop_counter.FlopCounterMode` counts them (2 per
    multiply-add of matmuls and convolutions; elementwise operations are not counted). None when they
    cannot be counted (an operation the counter does not know how to run, an old torch): a missing
    count must never fail a run."""
    try:
        was_training = model.training
        device = next(model.parameters()).device
        xb = as_float01((image if image.ndim == 4 else image.unsqueeze(0))[:1].to(device))
        model.eval()
        try:
            return count_flops(lambda: model(xb))
        finally:
            model.train(was_training)
    except Exception:
        return None
