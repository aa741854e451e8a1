import os
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

# Tests run on 2 cores alongside other processes: keep torch to one thread, results deterministic.
torch.set_num_threads(1)
os.environ.setdefault("CNNBENCH_DATA", "")
os.environ["CNNBENCH_OFFLINE"] = "1"  # never download datasets from a test, even on a machine online

SHARED = Path(__file__).resolve().parents[2] / "shared" / "datasets"


@pytest.fixture
def tiny_images():
    """600 8×8 uint8 images whose class is readable from the pixels (so training can learn)."""
    rng = np.random.default_rng(0)
    y = rng.integers(0, 4, 600)
    x = rng.integers(0, 60, (600, 8, 8)).astype(np.uint8)
    for c in range(4):
        x[y == c, 2 * c:2 * c + 2, :] = 250  # a bright band whose row encodes the class
    return x, y


@pytest.fixture
def mnist_path():
    path = SHARED / "mnist.npz"
    if not path.exists():
        pytest.skip("real MNIST not present (../shared/datasets/mnist.npz)")
    return path


@pytest.fixture
def keras_torch(monkeypatch):
    """Keras 3 on its torch backend, for differential tests; skips where keras is not installed."""
    if "keras" not in sys.modules:
        if os.environ.get("KERAS_BACKEND", "torch") != "torch":
            pytest.skip("the Keras differential tests need KERAS_BACKEND=torch")
        monkeypatch.setenv("KERAS_BACKEND", "torch")
    keras = pytest.importorskip("keras")
    if keras.backend.backend() != "torch":
        pytest.skip("the Keras differential tests need the torch backend")
    return keras
