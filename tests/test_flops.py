"""`cnnbench.engine.flops.count_flops` / `train.forward_flops`: FlopCounterMode's count, without torch._dynamo."""

import subprocess
import sys

import pytest
import torch

from cnnbench import models
from cnnbench.engine.flops import _light_count, _reference_count, count_flops

TRANSFER = {"resnet18", "resnet50", "vgg16", "vgg19", "densenet121", "mobilenet_v3_small"}
BIG = TRANSFER | {"resnet110", "resnet110_v2", "resnet164_v2", "resnet56", "resnet56_v2"}


def _build(name):
    spec = {"name": name, "weights": "none"} if name in TRANSFER else name  # never download weights
    for shape in [(1, 28, 28), (3, 32, 32), (3, 64, 64)]:
        try:
            torch.manual_seed(0)
            return models.get(spec, input_shape=shape, num_outputs=10), shape
        except Exception:
            continue
    pytest.skip(f"{name} does not build at the shapes tried")


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n in BIG else n
                                  for n in models.list_models()])
def test_light_count_equals_flop_counter_mode_for_every_registered_model(name):
    model, shape = _build(name)
    model.eval()
    x = torch.rand(1, *shape)
    with torch.no_grad():
        light = _light_count(lambda: model(x))
        reference = _reference_count(lambda: model(x))
    assert light == reference > 0


def test_counts_what_flop_counter_mode_counts_beyond_convolutions():
    # matmul, bmm, a grouped and a strided convolution, attention: every formula of torch's registry
    conv = torch.nn.Conv2d(4, 8, 3, stride=2, groups=2)
    attention = torch.nn.MultiheadAttention(8, 2, batch_first=True)

    def run():
        h = conv(torch.rand(2, 4, 9, 9)).flatten(2).transpose(1, 2)
        out, _ = attention(h, h, h)
        return torch.bmm(out, out.transpose(1, 2)) @ torch.rand(16, 3)

    with torch.no_grad():
        assert _light_count(run) == _reference_count(run) > 0


def test_forward_flops_does_not_import_torch_dynamo():
    code = ("import sys, torch; from cnnbench import models; from cnnbench.engine.flops import forward_flops;"
            "m = models.get('keras_mnist_cnn', input_shape=(1, 28, 28), num_outputs=10);"
            "n = forward_flops(m, torch.zeros(1, 28, 28, dtype=torch.uint8));"
            "print(n, 'torch._dynamo' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["23984896", "False"]


def test_falls_back_to_flop_counter_mode_for_what_the_light_counter_cannot_run(monkeypatch):
    import cnnbench.engine.flops as flops

    def refuse(run):
        raise NotImplementedError("higher-order operator")

    monkeypatch.setattr(flops, "_light_count", refuse)
    linear = torch.nn.Linear(5, 3)
    with torch.no_grad():
        assert count_flops(lambda: linear(torch.rand(2, 5))) == 2 * 2 * 5 * 3
