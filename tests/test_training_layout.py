"""The training step's layout and memory shortcuts (models/_base.py) change no number.

In-place ReLU in Conv2D/Dense, the dropout mask applied as one multiplication, and the seed models'
Flatten that hands a channels_last gradient back are each compared with the plain computation they
replace: forward values, gradients and whole training steps bit for bit (torch.equal), in both layouts.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from cnnbench import losses, models, optim
from cnnbench.models import _base
from cnnbench.models._base import Conv2D, Dense, Dropout, Flatten


def _plain_dropout(self, x):
    """Dropout's forward before the shortcut: the same mask, x * keep, then scaled."""
    if not self.training or self.p == 0 or x.device.type != "cpu":
        return F.dropout(x, self.p, self.training, self.inplace)
    n = x.numel()
    words = torch.empty((n + 2) // 3, dtype=torch.int64).random_()
    uniform16 = words.view(torch.int16).view(-1, 4)[:, :3].reshape(-1)[:n]
    keep = uniform16.view(x.shape) >= round(self.p * 65536) - 32768
    return x * keep.to(x.dtype) * (1.0 / (1.0 - self.p))


def _plain_activate(act, y):
    return act(y) if act is not None else y


@pytest.fixture
def plain_layers(monkeypatch):
    """A context in which the layers compute as before the shortcuts (out-of-place ReLU, two-step
    dropout, `torch.flatten`'s own backward)."""
    def use():
        monkeypatch.setattr(_base, "_activate", _plain_activate)
        monkeypatch.setattr(Dropout, "forward", _plain_dropout)
        monkeypatch.setattr(Flatten, "forward", lambda self, x: torch.flatten(x, 1))
    return use


def test_flatten_is_c_h_w_order_in_both_layouts_and_keeps_the_gradient_layout():
    x = torch.randn(4, 5, 3, 2)
    for keep in (False, True):
        for fmt in (torch.contiguous_format, torch.channels_last):
            xi = x.clone(memory_format=fmt).requires_grad_()
            out = Flatten(keep_layout=keep)(xi)
            assert torch.equal(out, x.reshape(4, -1))  # C, H, W order whatever the memory layout
            assert out.is_contiguous()
            g = torch.randn(out.shape)
            out.backward(g)
            assert torch.equal(xi.grad, g.view(x.shape))
            if keep and fmt == torch.channels_last:
                assert xi.grad.is_contiguous(memory_format=torch.channels_last)
    # a flatten needing no copy, and evaluation, take torch.flatten itself
    one = torch.randn(4, 5, 1, 1).contiguous(memory_format=torch.channels_last).requires_grad_()
    assert Flatten(keep_layout=True)(one).grad_fn.name() != "_FlattenKeepLayoutBackward"
    with torch.no_grad():
        assert torch.equal(Flatten(keep_layout=True)(x.contiguous(memory_format=torch.channels_last)),
                           x.reshape(4, -1))
    assert all(m.keep_layout for m in models.get("keras_mnist_cnn", input_shape=(1, 28, 28), num_outputs=10)
               if isinstance(m, Flatten))


def _same_bits(a, b) -> bool:
    """Equal values, NaNs in the same places and zeros of the same sign."""
    return (a.dtype == b.dtype and torch.equal(a.isnan(), b.isnan())
            and torch.equal(a.nan_to_num(7.0), b.nan_to_num(7.0))
            and torch.equal(a.signbit() | a.isnan(), b.signbit() | b.isnan()))


@pytest.mark.parametrize("p", [0.25, 0.5, 0.3])
@pytest.mark.parametrize("fmt", [torch.contiguous_format, torch.channels_last])
def test_dropout_mask_in_one_multiplication_is_bit_identical(p, fmt):
    x = torch.randn(3, 7, 5, 6) * 10
    x[0, 0, 0, :4] = torch.tensor([0.0, -0.0, float("inf"), -float("inf")])
    x = x.contiguous(memory_format=fmt)
    d = Dropout(p).train()
    outs = []
    for fwd in (Dropout.forward, _plain_dropout):
        xi = x.detach().clone(memory_format=torch.preserve_format).requires_grad_()
        torch.manual_seed(7)
        out = fwd(d, xi)
        g = torch.randn(out.shape)
        g[0, 0, 0, 4] = float("inf")
        out.backward(g)
        outs.append((out.detach(), xi.grad))
    (out, grad), (ref, ref_grad) = outs
    assert _same_bits(out, ref) and _same_bits(grad, ref_grad)
    # bf16 (autocast) keeps the two-step form: scaled in float32 and rounded once, as before
    torch.manual_seed(7)
    b = d(x.bfloat16())
    torch.manual_seed(7)
    assert _same_bits(b, _plain_dropout(d, x.bfloat16()))


def test_in_place_relu_gives_the_same_values_and_gradients():
    torch.manual_seed(0)
    conv, dense = Conv2D(3, 4, 3, activation="relu"), Dense(12, 5, activation="relu")
    x = torch.randn(2, 3, 6, 6).contiguous(memory_format=torch.channels_last)
    for layer, inp, plain in ((conv, x, lambda i: F.relu(F.conv2d(i, conv.weight, conv.bias))),
                              (dense, x[:, :, :2, :2].reshape(2, 12), lambda i: F.relu(F.linear(i, dense.weight,
                                                                                               dense.bias)))):
        grads = []
        for fn in (layer, plain):
            layer.zero_grad()
            out = fn(inp)
            out.backward(torch.ones_like(out))
            grads.append((out.detach(), [p.grad.clone() for p in layer.parameters()]))
        assert torch.equal(grads[0][0], grads[1][0])
        assert all(torch.equal(a, b) for a, b in zip(grads[0][1], grads[1][1]))


@pytest.mark.parametrize("name,channels", [("keras_mnist_cnn", 1), ("cifar_simple_cnn", 3), ("krutov_cnn", 3)])
def test_training_steps_are_bit_identical_to_the_plain_layers(name, channels, plain_layers):
    """Four Adam steps in channels_last, as the engine trains: the same losses, gradients and weights."""
    rng = np.random.default_rng(0)
    size = 48 if name == "krutov_cnn" else 28
    x = torch.from_numpy(rng.integers(0, 256, (4 * 32, channels, size, size), dtype=np.uint8)).float() / 255
    y = torch.from_numpy(rng.integers(0, 10, 4 * 32))

    def train():
        torch.manual_seed(0)
        model = models.get(name, input_shape=(channels, size, size), num_outputs=10)
        model = model.to(memory_format=torch.channels_last)
        loss_fn = losses.adapt(losses.get("sparse_categorical_crossentropy"), 10)
        opt = optim.get("adam", model.parameters(), batch_size=32, steps_per_epoch=4, epochs=1)
        model.train()
        seen = []
        for i in range(4):
            xb = x[i * 32:(i + 1) * 32].contiguous(memory_format=torch.channels_last)
            loss = loss_fn(model(xb), y[i * 32:(i + 1) * 32])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            seen.append(loss.detach())
            seen += [p.grad.clone() for p in model.parameters()]
            opt.step()
        return seen + [v.clone() for v in model.state_dict().values()]

    fast = train()
    plain_layers()
    plain = train()
    assert len(fast) == len(plain)
    assert all(torch.equal(a, b) for a, b in zip(fast, plain))


def test_fit_trains_with_heap_allocations_and_restores_malloc(tiny_images):
    """fit's steps run inside inference.heap_allocations (the activations reuse heap pages), and malloc
    is given back its steady settings when training ends."""
    import cnnbench
    from cnnbench.callbacks import LambdaCallback
    from cnnbench.engine import inference

    if not inference._libc():
        pytest.skip("not glibc, or malloc tuned in the environment: heap_allocations leaves malloc alone")
    depths = []
    x, y = tiny_images
    cnnbench.fit("digits_cnn", x[:64], y[:64], epochs=2, batch_size=32, verbose=0,
                 callbacks=[LambdaCallback(on_epoch_end=lambda epoch, logs: depths.append(inference._DEPTH))])
    assert depths == [1, 1]
    assert inference._DEPTH == 0
