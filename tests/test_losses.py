"""Tests of cnnbench.losses (see docs/losses.md)."""

import json

import pytest
import torch

from cnnbench import losses
from cnnbench.errors import UserError


def test_documented_keras_values():
    bce = losses.get("BinaryCrossentropy", reduction="none")
    y_true = [[0, 1], [0.2, 0.8], [0.3, 0.7], [0.4, 0.6]]
    y_pred = [[0.6, 0.4], [0.4, 0.6], [0.6, 0.4], [0.8, 0.2]]
    expected = torch.tensor([0.9162905, 0.5919184, 0.79465103, 1.0549198])
    torch.testing.assert_close(bce(y_true, y_pred), expected, rtol=1e-5, atol=0)
    cce = losses.get("categorical_crossentropy")
    y, p = [[0, 1, 0], [0, 0, 1]], [[0.05, 0.95, 0], [0.1, 0.8, 0.1]]
    assert float(cce(y, p)) == pytest.approx(1.177, abs=1e-3)
    assert float(cce(y, p, sample_weight=torch.tensor([0.3, 0.7]))) == pytest.approx(0.814, abs=1e-3)


@pytest.mark.parametrize("num_classes", [2, 10])
@pytest.mark.parametrize("name", losses.list())
def test_every_loss_trains_through_adapt(name, num_classes):
    train_loss = losses.adapt(name, num_classes)
    outputs = torch.randn(16, train_loss.out_features, requires_grad=True)
    labels = torch.randint(0, num_classes, (16,))
    value = train_loss(outputs, labels)
    assert value.dim() == 0 and torch.isfinite(value)
    value.backward()
    assert outputs.grad is not None and torch.isfinite(outputs.grad).all()
    probs = train_loss.probabilities(outputs.detach())
    assert probs.shape == (16, num_classes)
    torch.testing.assert_close(probs.sum(-1), torch.ones(16))
    json.dumps(losses.resolve(name))
