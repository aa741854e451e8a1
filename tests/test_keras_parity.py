"""Differential test against Keras itself (runs where keras 3 is installed, on its torch backend).

`keras_mnist_cnn` trained by `cnnbench.fit` must follow Keras' `model.fit` step for step when both start
from the same weights and see the batches in the same order: this checks the layer order, the
channels-first/last flatten, the loss and its reduction, and Keras' Adam together, in the engine.
(With dropout on, and each side drawing its own initial weights and order, the two are only equal in
distribution; docs/models.md has the 1-epoch MNIST accuracies of both.)
"""

import numpy as np
import pytest
import torch

import cnnbench
from cnnbench import models
from cnnbench.engine.inputs import epoch_seed


def _keras_to_torch(kernels_and_biases):
    """Keras weights of the Conv-Conv-Pool-Flatten-Dense-Dense model -> the torch model's parameters."""
    k1, b1, k2, b2, k3, b3, k4, b4 = kernels_and_biases
    h = w = 12  # the pooled feature map at 28x28 input
    # Keras flattens (h, w, c); torch flattens (c, h, w): reorder the first Dense kernel's rows.
    k3 = k3.reshape(h, w, k2.shape[-1], -1).transpose(2, 0, 1, 3).reshape(k3.shape[0], -1)
    return [k1.transpose(3, 2, 0, 1), b1, k2.transpose(3, 2, 0, 1), b2, k3.T, b3, k4.T, b4]


@pytest.mark.slow
def test_fit_follows_keras_fit_step_for_step(keras_torch):
    keras = keras_torch
    filters, hidden, steps, batch, seed = (8, 16), 32, 6, 32, 3
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (steps * batch, 28, 28), dtype=np.uint8)
    x[:, :4] = 0  # blank rows, as in MNIST: exact zeros through relu and max-pool
    y = rng.integers(0, 10, steps * batch)

    keras.utils.set_random_seed(0)
    ref = keras.Sequential([
        keras.Input((28, 28, 1)),
        keras.layers.Conv2D(filters[0], 3, activation="relu"),
        keras.layers.Conv2D(filters[1], 3, activation="relu"),
        keras.layers.MaxPooling2D(2),
        keras.layers.Flatten(),
        keras.layers.Dense(hidden, activation="relu"),
        keras.layers.Dense(10, activation="softmax"),
    ])
    start = _keras_to_torch([np.array(keras.ops.convert_to_numpy(v)) for v in ref.weights])

    ours = models.get({"name": "keras_mnist_cnn", "filters": list(filters), "hidden_units": hidden,
                       "dropout": [0.0, 0.0]}, input_shape=(1, 28, 28), num_outputs=10)
    with torch.no_grad():
        for p, a in zip(ours.parameters(), start, strict=True):
            p.copy_(torch.from_numpy(np.ascontiguousarray(a)))
    h = cnnbench.fit(ours, x, y, loss="categorical_crossentropy", optimizer="adam", epochs=1,
                     batch_size=batch, seed=seed, device="cpu", num_classes=10)

    # Keras sees the same batches: the engine's epoch-0 order, with Keras' own shuffling off.
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(epoch_seed(seed, 0))).numpy()
    ref.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    ref.fit(x[order][..., None].astype("float32") / 255, y[order], batch_size=batch, epochs=1,
            shuffle=False, verbose=0)
    end = _keras_to_torch([np.array(keras.ops.convert_to_numpy(v)) for v in ref.weights])

    for (name, p), a, a0 in zip(h.model.named_parameters(), end, start, strict=True):
        moved = np.abs(a - a0).max()
        assert moved > 1e-3, name  # Adam moved every tensor by about lr per step
        np.testing.assert_allclose(p.detach().numpy(), a, atol=1e-5, err_msg=name)
