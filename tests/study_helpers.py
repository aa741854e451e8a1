"""What several test modules share and pytest does not inject (import it: `from study_helpers import ...`;
a module of its own, since `conftest` names a different file in tests/faults/)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import numpy as np
import pytest
from torch import nn

from cnnbench.store.db import Store

# --- a study with two outputs (digits and whether the digit is "big"), shared by the multi-output tests ---
BIG = [0, 0, 0, 0, 0, 1, 1, 1, 1, 1]  # digits 5..9 are "big"
TWO_OUTPUT_SPEC = {
    "name": "mo", "seeds": [0], "epochs": 2, "batch_size": 64, "dataset": "digits", "model": "digits_cnn",
    "targets": {"digit": "label", "big": {"from": "label", "map": BIG}},
    "loss": {"digit": "sparse_categorical_crossentropy", "big": "binary_crossentropy"},
    "loss_weights": {"digit": 1.0, "big": 0.5}, "analysis": {"metric": "test_digit_accuracy"}}


def study_rows(study_dir, sql):
    """The rows of a query on a study directory's study.db (the connection closed again)."""
    con = sqlite3.connect(Path(study_dir) / "study.db")
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def interrupt_while_recording(study, out, monkeypatch, epoch: int = 1) -> None:
    """Run `study` into `out` and "kill" it (KeyboardInterrupt) while it records epoch `epoch` of its first
    run, after that epoch's checkpoint was written; the store's recorder is put back for the resume."""
    record = Store.record_epoch

    def interrupt(self, key, at, logs):
        if at == epoch:
            raise KeyboardInterrupt
        record(self, key, at, logs)

    monkeypatch.setattr(Store, "record_epoch", interrupt)
    with pytest.raises(KeyboardInterrupt):
        study.run(out, workers=1)
    monkeypatch.setattr(Store, "record_epoch", record)


# --- a model with two outputs for fit / evaluate / save ---------------------------------------------------
TWO_OUTPUT_LOSS = {"digit": "sparse_categorical_crossentropy", "big": "binary_crossentropy"}


class TwoHeads(nn.Module):
    """A digit head (10 classes, softmax) and a "big" head (one sigmoid unit: digit >= 5)."""

    def __init__(self, input_shape=(1, 8, 8), num_outputs=10, dropout=0.25):
        super().__init__()
        c, h, w = input_shape
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(c * h * w, 16), nn.ReLU(), nn.Dropout(dropout))
        self.digit = nn.Linear(16, num_outputs)
        self.big = nn.Linear(16, 1)

    def forward(self, x):
        h = self.body(x)
        return {"digit": self.digit(h), "big": self.big(h)}


def two_output_data(seed: int):
    """96 random 8x8 images, their digit labels and whether each digit is "big" (>= 5)."""
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, (96, 8, 8), dtype=np.uint8)
    digit = rng.integers(0, 10, 96)
    return x, {"digit": digit, "big": (digit >= 5).astype(np.int64)}
