"""Model zoo: parameter counts, summaries, forward shapes, freezing, input adaptation."""

from __future__ import annotations

import pytest
import torch

from cnnbench import models
from cnnbench.errors import UnknownNameError, UserError


def n_params(model):
    return models.count_params(model)["total"]


# --- the seeds' CNNs -----------------------------------------------------------------------------
def test_keras_mnist_cnn_matches_keras_param_count_and_summary():
    m = models.get("keras_mnist_cnn", input_shape=(1, 28, 28), num_outputs=10)
    assert n_params(m) == 1_199_882
    text = models.summary(m, (1, 28, 28))
    assert "Total params: 1,199,882" in text
    assert "Trainable params: 1,199,882" in text
    assert "Non-trainable params: 0" in text
    assert "(None, 64, 24, 24)" in text and "1,179,776" in text
    assert m(torch.rand(2, 1, 28, 28)).shape == (2, 10)


def test_keras_mnist_cnn_filters_option_and_keras_init():
    m = models.get({"name": "keras_mnist_cnn", "filters": [8, 16]}, input_shape=(1, 28, 28), num_outputs=3)
    convs = [mod for mod in m.modules() if isinstance(mod, torch.nn.Conv2d)]
    assert [c.out_channels for c in convs] == [8, 16]
    for mod in m.modules():
        if isinstance(mod, (torch.nn.Conv2d, torch.nn.Linear)):
            assert torch.all(mod.bias == 0)
            fan_in = mod.weight[0].numel()
            fan_out = mod.weight.shape[0] * mod.weight[0][0].numel() if mod.weight.dim() > 2 else mod.weight.shape[0]
            limit = (6 / (fan_in + fan_out)) ** 0.5  # glorot_uniform
            assert mod.weight.abs().max() <= limit + 1e-6
            assert mod.weight.abs().max() > 0.5 * limit


def test_resolve_is_explicit_json_safe_and_name_insensitive():
    r = models.resolve("MnistCNN")
    assert r == {"name": "keras_mnist_cnn", "filters": [32, 64], "kernel_size": 3, "hidden_units": 128,
                 "dropout": [0.25, 0.5]}
    assert models.resolve({"name": "digits-cnn", "hidden_units": 32})["hidden_units"] == 32
    # a resolved spec builds the same model
    m = models.get(r, input_shape=(1, 28, 28), num_outputs=10)
    assert n_params(m) == 1_199_882


def test_bad_specs_raise_user_errors():
    with pytest.raises(UnknownNameError, match="did you mean 'keras_mnist_cnn'"):
        models.resolve("keras_mnist_cn")
    with pytest.raises(UserError, match="has no option 'filter'"):
        models.resolve({"name": "keras_mnist_cnn", "filter": [1, 2]})
    with pytest.raises(UserError, match="set by the run"):
        models.resolve({"name": "keras_mnist_cnn", "num_outputs": 3})
    with pytest.raises(UserError, match="at least"):
        models.get("keras_mnist_cnn", input_shape=(1, 4, 4), num_outputs=10)


def test_digits_cnn_is_small_and_works_channels_last():
    m = models.get("digits_cnn", input_shape=(1, 8, 8), num_outputs=10)
    assert n_params(m) < 20_000
    x = torch.rand(4, 1, 8, 8)
    ref = m.eval()(x)
    m_cl = m.to(memory_format=torch.channels_last)
    out = m_cl(x.contiguous(memory_format=torch.channels_last))
    assert out.shape == (4, 10)
    torch.testing.assert_close(out, ref)
    out.sum().backward()
