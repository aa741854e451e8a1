"""What several test modules share and pytest does not inject (import it: `from study_helpers import ...`;
a module of its own, since `conftest` names a different file in tests/faults/)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

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
