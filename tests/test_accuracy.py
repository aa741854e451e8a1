"""Accuracy against published references, on the real data in ../shared/datasets (skipped when absent)."""

import time

import pytest
import torch

import cnnbench
from cnnbench import data


@pytest.mark.slow
def test_keras_mnist_cnn_with_adam_reaches_98_5_percent_after_one_epoch(mnist_path):
    # Keras' mnist_cnn example reports ~99% after 12 epochs; with Adam and Keras' default batch size
    # (32) one epoch is enough for 98.5% (measured: 98.75% with seed 0; batch 128 gives ~98.4%).
    ds = data.load(str(mnist_path))
    threads = torch.get_num_threads()
    torch.set_num_threads(2)  # the suite runs on one thread; this test is the one long training run
    assert ds.x_train.shape == (60000, 1, 28, 28) and ds.num_classes == 10
    t0 = time.perf_counter()
    h = cnnbench.fit("keras_mnist_cnn", ds.x_train, ds.y_train, loss="categorical_crossentropy",
                     optimizer="adam", epochs=1, batch_size=32, seed=0, device="cpu", num_classes=10)
    seconds = time.perf_counter() - t0
    torch.set_num_threads(threads)
    result = cnnbench.evaluate(h.model, ds.x_test, ds.y_test)
    print(f"MNIST 1 epoch: test accuracy {result['accuracy']:.4f}, {60000 / seconds:.0f} images/s")
    assert result["accuracy"] >= 0.985
