"""`cnnbench.engine.inference`: evaluate's forward pass gives the eager model's numbers bit for bit."""

import numpy as np
import pytest
import torch
from torch import nn

import cnnbench
from cnnbench import models
from cnnbench.engine import inference
from cnnbench.engine.inputs import as_float01
from cnnbench.models._base import Conv2D


def _eager(monkeypatch):
    """evaluate() as before cnnbench.engine.inference: the model itself, malloc untouched."""
    monkeypatch.setattr(inference, "evaluator", lambda model: model)
    monkeypatch.setattr(inference, "HEAP", False)


def _counting_fused_calls(monkeypatch):
    calls = []
    real = torch.ops.mkldnn._convolution_pointwise

    class Ops:
        def _convolution_pointwise(self, *args):
            calls.append(1)
            return real(*args)

    monkeypatch.setattr(inference.torch.ops, "mkldnn", Ops(), raising=False)
    return calls


def _bf16_convolutions_use_onednn() -> bool:
    """Whether this CPU runs bf16 convolutions in oneDNN (AVX-512 BF16 / AMX); elsewhere torch's slow
    bf16 path runs and evaluation keeps it (no fusion to test)."""
    x, w = torch.zeros(1, 4, 6, 6, dtype=torch.bfloat16), torch.zeros(8, 4, 3, 3, dtype=torch.bfloat16)
    return inference._fusion_available() and torch._C._select_conv_backend(
        x, w, None, [1, 1], [0, 0], [1, 1], False, [0, 0], 1, None) == torch._C._ConvBackend.Mkldnn


def _bits(t: torch.Tensor) -> torch.Tensor:
    """The tensor's bit patterns: equal bits, not just equal values (torch.equal has -0.0 == 0.0)."""
    return t.view({torch.float32: torch.int32, torch.bfloat16: torch.int16}[t.dtype])


@pytest.mark.parametrize("name", ["keras_mnist_cnn", "cifar_simple_cnn", "lenet5", "digits_cnn"])
@pytest.mark.parametrize("layout", [torch.channels_last, torch.contiguous_format])
@pytest.mark.parametrize("bf16", [False, True], ids=["float32", "bf16"])
def test_fused_forward_equals_eager_bit_for_bit(name, layout, bf16):
    torch.manual_seed(0)
    model = models.get(name, input_shape=(1, 28, 28), num_outputs=10).eval().to(memory_format=layout)
    x = torch.rand(64, 1, 28, 28).contiguous(memory_format=layout)
    with torch.no_grad(), torch.autocast("cpu", torch.bfloat16, enabled=bf16):
        eager = model(x)
        fused = inference.evaluator(model)(x)
        # the first layer alone too: its output, before pooling and dense layers can hide a difference
        first = model.conv2d(x)
        with inference._fused(model):
            first_fused = model.conv2d(x)
    assert fused.dtype == eager.dtype and torch.equal(_bits(fused), _bits(eager))
    assert first_fused.dtype == first.dtype == (torch.bfloat16 if bf16 else torch.float32)
    assert torch.equal(_bits(first_fused), _bits(first))
    assert "forward" not in model.conv2d.__dict__  # the fusion lasts for the call only


def test_fused_bf16_convolution_keeps_eager_values_where_rounding_meets_zero():
    """bf16: oneDNN clamps the float32 sum at zero and then rounds, eager rounds and then clamps. Sums
    near zero give the same values either way; the one difference in bits is the sign of a zero: oneDNN
    flushes a negative sum below bf16's smallest normal number (1.2e-38) to -0.0, which eager's ReLU
    keeps and the post-op makes +0.0. Equal values, so no later layer or metric can tell them apart."""
    if not _bf16_convolutions_use_onednn():
        pytest.skip("this CPU or torch runs bf16 convolutions outside oneDNN (nothing fused)")
    torch.manual_seed(0)
    conv = Conv2D(4, 16, 3, activation="relu").eval()
    with torch.no_grad():
        scale = torch.logspace(-39, 0, 16)  # outputs from bf16's subnormals (below 1.2e-38) to ~1
        conv.weight.mul_(scale.view(16, 1, 1, 1))
        conv.bias.copy_(scale * torch.tensor([-0.5, 0.5]).repeat(8))
    x = torch.randn(64, 4, 12, 12).contiguous(memory_format=torch.channels_last)
    with torch.no_grad(), torch.autocast("cpu", torch.bfloat16):
        eager = conv(x)
        with inference._fused(conv):
            fused = conv(x)
    assert (eager == 0).any() and (eager > 0.1).any()
    assert torch.equal(fused, eager)
    differ = _bits(fused) != _bits(eager)
    assert differ.any() and bool((eager[differ] == 0).all())  # -0.0 against +0.0 only
    assert not fused.signbit().any()


def test_fused_forward_on_same_padding_and_strides_equals_eager():
    torch.manual_seed(0)
    model = nn.Sequential(Conv2D(3, 8, 3, padding="same", activation="relu"),
                          Conv2D(8, 16, 3, strides=2, padding="same", activation="relu"),  # asymmetric: eager
                          Conv2D(16, 16, 5, strides=2, activation="relu"), Conv2D(16, 4, 1, activation="tanh"))
    x = torch.rand(20, 3, 21, 21).contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        assert torch.equal(inference.evaluator(model.eval())(x), model(x))


def test_fusion_is_used_for_conv_relu_in_float32_and_bf16_and_not_under_grad_or_float16(monkeypatch):
    if not inference._fusion_available():
        pytest.skip("this torch has no oneDNN pointwise convolution")
    torch.manual_seed(0)
    model = models.get("keras_mnist_cnn", input_shape=(1, 28, 28), num_outputs=10).eval()
    x = torch.rand(32, 1, 28, 28).contiguous(memory_format=torch.channels_last)
    forward = inference.evaluator(model)
    calls = _counting_fused_calls(monkeypatch)
    with torch.no_grad():
        forward(x)
    assert len(calls) == 2  # both Conv2D+ReLU
    calls.clear()
    with torch.no_grad(), torch.autocast("cpu", torch.bfloat16):
        bf16 = forward(x)
        assert torch.equal(bf16, model(x))
    assert len(calls) == (2 if _bf16_convolutions_use_onednn() else 0)  # precision = "bf16"
    calls.clear()
    with torch.no_grad(), pytest.raises(RuntimeError):  # mixed dtypes without autocast: eager's error
        forward(x.bfloat16())
    with torch.no_grad(), torch.autocast("cpu", torch.float16):  # not known exact: eager
        assert torch.equal(forward(x), model(x))
    model.double()
    with torch.no_grad():
        assert torch.equal(forward(x.double()), model(x.double()))  # float64: eager
    model.float()
    assert calls == []
    out = forward(x)  # gradients enabled: eager, differentiable
    out.sum().backward()
    assert calls == [] and model.conv2d.weight.grad is not None


def test_bf16_batch_or_weights_that_overflow_bf16_run_eagerly(monkeypatch):
    """Finite float32 values above bf16's largest (~3.39e38) become inf when autocast casts them, and
    the post-op would turn the NaN they make into 0: such a batch or model runs eagerly under bf16."""
    torch.manual_seed(0)
    model = models.get("keras_mnist_cnn", input_shape=(1, 28, 28), num_outputs=10).eval()
    x = torch.rand(4, 1, 28, 28)
    big = torch.full_like(x, 3.4e38)
    calls = _counting_fused_calls(monkeypatch)
    with torch.no_grad(), torch.autocast("cpu", torch.bfloat16):
        assert torch.equal(inference.evaluator(model)(big).isnan(), model(big).isnan())
        assert calls == []
        assert torch.isfinite(big).all()
        inference.evaluator(model)(x)
        fused = len(calls)
        calls.clear()
        model.conv2d_1.weight[0, 0, 0, 0] = 3.4e38
        inference.evaluator(model)(x)
        assert calls == []
    assert fused == (2 if _bf16_convolutions_use_onednn() else 0)
    with torch.no_grad():  # in float32 3.4e38 is finite: fused
        inference.evaluator(model)(x)
    assert len(calls) == (2 if inference._fusion_available() else 0)


def test_falls_back_to_eager_when_fusion_is_unavailable_or_fails(monkeypatch):
    torch.manual_seed(0)
    model = models.get("keras_mnist_cnn", input_shape=(1, 28, 28), num_outputs=10).eval()
    x = torch.rand(16, 1, 28, 28)
    with torch.no_grad():
        eager = model(x)
        monkeypatch.setattr(inference, "_FUSED_OK", False)
        assert torch.equal(inference.evaluator(model)(x), eager)
        monkeypatch.setattr(inference, "_FUSED_OK", True)

        class Broken:
            def _convolution_pointwise(self, *args):
                raise RuntimeError("no such kernel")

        monkeypatch.setattr(inference.torch.ops, "mkldnn", Broken(), raising=False)
        assert torch.equal(inference.evaluator(model)(x), eager)


def test_nan_in_weights_or_input_stays_nan_as_in_eager(monkeypatch):
    """The ReLU post-op maps NaN to 0 where F.relu keeps it: a model or a batch holding a NaN runs
    eagerly, so a diverged model's evaluation still says nan."""
    if not inference._fusion_available():
        pytest.skip("this torch has no oneDNN pointwise convolution")
    torch.manual_seed(0)
    model = models.get("keras_mnist_cnn", input_shape=(1, 28, 28), num_outputs=10).eval()
    x = torch.rand(16, 1, 28, 28)
    calls = _counting_fused_calls(monkeypatch)
    with torch.no_grad():
        bad_x = x.clone()
        bad_x[0, 0, 5, 5] = float("nan")
        assert torch.equal(inference.evaluator(model)(bad_x).isnan(), model(bad_x).isnan())
        assert inference.evaluator(model)(bad_x).isnan().any() and calls == []
        model.conv2d_1.weight[0, 0, 0, 0] = float("nan")
        assert inference.evaluator(model)(x).isnan().all() and calls == []


def test_a_conv2d_subclass_and_a_compiled_model_run_their_own_forward(monkeypatch):
    if not inference._fusion_available():
        pytest.skip("this torch has no oneDNN pointwise convolution")

    class Standardised(Conv2D):  # weight standardisation: the fused op would use the raw weight
        def _conv_forward(self, x, weight, bias):
            w = (weight - weight.mean(dim=(1, 2, 3), keepdim=True)) / (weight.std(dim=(1, 2, 3), keepdim=True) + 1e-5)
            return super()._conv_forward(x, w, bias)

    torch.manual_seed(0)
    model = nn.Sequential(Standardised(1, 4, 3, activation="relu"), nn.Flatten()).eval()
    x = torch.rand(8, 1, 8, 8)
    calls = _counting_fused_calls(monkeypatch)
    with torch.no_grad():
        assert torch.equal(inference.evaluator(model)(x), model(x)) and calls == []

        class Compiled(nn.Module):  # stands for torch.compile's OptimizedModule (without importing dynamo)
            def __init__(self, inner):
                super().__init__()
                self._orig_mod = inner

            def forward(self, x):
                return self._orig_mod(x)

        plain = nn.Sequential(Conv2D(1, 4, 3, activation="relu"), nn.Flatten()).eval()
        assert torch.equal(inference.evaluator(Compiled(plain))(x), plain(x)) and calls == []
        inference.evaluator(plain)(x)
        assert calls == [1]  # the same module uncompiled is fused


def test_scripted_model_runs_eagerly():
    model = torch.jit.script(nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 3)))
    x = torch.rand(8, 1, 8, 8)
    with torch.no_grad():
        assert torch.equal(inference.evaluator(model.eval())(x), model(x))


def test_heap_allocations_restores_and_nests():
    with inference.heap_allocations():
        with inference.heap_allocations():
            a = torch.empty(40 << 20, dtype=torch.uint8).fill_(1)
        assert inference._DEPTH == 1
        del a
    assert inference._DEPTH == 0


@pytest.mark.parametrize("env", [{"MALLOC_MMAP_THRESHOLD_": "131072"},
                                 {"GLIBC_TUNABLES": "glibc.malloc.trim_threshold=0"}])
def test_malloc_is_left_alone_where_the_user_tunes_it(monkeypatch, env):
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    monkeypatch.setattr(inference, "_LIBC", None)  # decided again, under this environment
    assert inference._libc() is False
    monkeypatch.setattr(inference, "_LIBC", None)


def test_evaluate_and_validation_equal_the_eager_path(monkeypatch, tiny_images):
    x, y = tiny_images

    def fit_and_evaluate():
        torch.manual_seed(0)
        model = models.get("keras_mnist_cnn", input_shape=(1, 8, 8), num_outputs=4)
        history = cnnbench.fit(model, x[:400], y[:400], epochs=2, batch_size=64, verbose=0,
                               validation_data=(x[400:], y[400:]))
        return (history, cnnbench.evaluate(model, x[400:], y[400:], batch_size=50, return_dict=True),
                cnnbench.evaluate(model, x[400:], y[400:], batch_size=50, precision="bf16", return_dict=True))

    history, fast, fast_bf16 = fit_and_evaluate()
    with monkeypatch.context() as m:
        _eager(m)
        history2, eager, eager_bf16 = fit_and_evaluate()
    for key in ("loss", "accuracy", "val_loss", "val_accuracy"):
        assert history.history[key] == history2.history[key]
    assert fast == eager and fast_bf16 == eager_bf16


def test_evaluate_on_real_mnist_equals_the_eager_path(monkeypatch, mnist_path):
    d = np.load(mnist_path)
    x, y = d["x_test"][:2000], d["y_test"][:2000]
    torch.manual_seed(0)
    model = models.get("keras_mnist_cnn", input_shape=(1, 28, 28), num_outputs=10)
    cnnbench.fit(model, d["x_train"][:1024], d["y_train"][:1024], epochs=1, batch_size=128, verbose=0)
    fast = cnnbench.evaluate(model, x, y, batch_size=1000, return_dict=True)
    with monkeypatch.context() as m:
        _eager(m)
        eager = cnnbench.evaluate(model, x, y, batch_size=1000, return_dict=True)
    assert fast == eager
    xb = as_float01(torch.from_numpy(x[:500]).unsqueeze(1))
    with torch.no_grad():
        assert torch.equal(inference.evaluator(model.eval())(xb), model(xb))
