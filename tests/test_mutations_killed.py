"""Tests that kill mutations which survived the suite (issue 22): each fails with the named mutation
applied (tools/mutations.py applies them and runs these tests)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

import cnnbench
from cnnbench import metrics
from cnnbench.data import split_validation, train_size


# --- (a) a finished run's checkpoint is not trained further -----------------------------------------
# mutation "resume-diverged-keeps-training": train.Trainer._load_checkpoint forgets that the stored
# history says diverged / early-stopped, and the resumed fit trains more epochs.
def test_resuming_from_a_diverged_checkpoint_trains_no_further_epoch(tiny_images, tmp_path):
    x, y = tiny_images
    ck = tmp_path / "ck.pt"
    kw = dict(batch_size=32, optimizer={"name": "sgd", "learning_rate": 1e30}, checkpoint=ck, verbose=0)
    first = cnnbench.fit("digits_cnn", x, y, epochs=2, **kw)
    assert first.status == "diverged" and first.epoch == [0]  # diverged in its first epoch, 1 of 2
    resumed = cnnbench.fit("digits_cnn", x, y, epochs=6, **kw)  # a kill after the checkpoint, then a resume
    assert resumed.status == "diverged"
    assert resumed.epoch == first.epoch
    assert torch.load(ck, weights_only=True)["history"]["epoch"] == first.epoch


def test_resuming_from_an_early_stopped_checkpoint_trains_no_further_epoch(tiny_images, tmp_path):
    x, y = tiny_images
    ck = tmp_path / "ck.pt"
    # min_delta 10 on the training loss: epoch 1 is no improvement, patience 0 stops there (Keras' rule)
    kw = dict(batch_size=32, seed=0, checkpoint=ck, verbose=0,
              early_stopping={"monitor": "loss", "min_delta": 10.0, "patience": 0})
    first = cnnbench.fit("digits_cnn", x, y, epochs=4, **kw)
    assert first.stopped_epoch == 1 and first.epoch == [0, 1]
    resumed = cnnbench.fit("digits_cnn", x, y, epochs=4, **kw)
    assert resumed.epoch == [0, 1] and resumed.stopped_epoch == 1
    assert resumed.history["loss"] == first.history["loss"]


# --- (b) the side of an ECE bin edge ---------------------------------------------------------------
# mutation "ece-edge-to-upper-bin": searchsorted(side="right"), a confidence on an edge in the bin above.
def _ece_by_definition(confidence, correct, n_bins=15):
    """Guo et al.: bins (b/n, (b+1)/n], a plain loop with the interval written out."""
    total = 0.0
    for b in range(n_bins):
        lo, hi = b / n_bins, (b + 1) / n_bins
        members = [i for i, c in enumerate(confidence) if lo < c <= hi]
        if members:
            acc = sum(correct[i] for i in members) / len(members)
            conf = sum(confidence[i] for i in members) / len(members)
            total += len(members) / len(confidence) * abs(acc - conf)
    return total


@pytest.mark.parametrize("b", [9, 12, 14])
def test_a_confidence_on_a_bin_edge_goes_to_the_lower_bin(b):
    edge, below = b / 15, (b - 0.5) / 15  # both > 0.5: class 0 is predicted
    p = np.array([[edge, 1 - edge], [below, 1 - below]])
    y = np.array([0, 1])  # sample 0 right with confidence exactly b/15, sample 1 wrong in the bin below
    expected = _ece_by_definition([edge, below], [1.0, 0.0])
    # both in bin ((b-1)/15, b/15]: |1 - (edge + below)| / 2; the edge in the bin above would give
    # (|1 - edge| + below) / 2
    assert expected == pytest.approx(abs(1 - (edge + below)) / 2, abs=1e-15)
    assert expected != pytest.approx((1 - edge + below) / 2, abs=1e-6)
    assert metrics.expected_calibration_error(p, y) == pytest.approx(expected, abs=1e-12)


def test_a_confidence_of_exactly_one_is_in_the_last_bin():
    p = np.array([[1.0, 0.0], [0.0, 1.0]])
    assert metrics.expected_calibration_error(p, np.array([0, 0])) == pytest.approx(0.5, abs=1e-15)


# --- (c) the validation split's rounding -------------------------------------------------------------
# Keras (keras/src/trainers/data_adapters/data_adapter_utils.py, train_validation_split):
#     split_at = int(math.floor(batch_dim * (1.0 - validation_split)))
# mutations "split-round", "split-ceil-of-fraction": round(), n - ceil(n * fraction).
KERAS_SPLITS = [  # (n, validation_split, training samples), worked out by hand from Keras' formula
    (10, 0.8, 1),    # 10 * (1 - 0.8) = 1.9999999999999996 -> 1 (n - ceil(n * 0.8) would give 2)
    (20, 0.9, 1),    # 1.9999999999999996 -> 1
    (7, 0.2, 5),     # 5.6 -> 5 (round would give 6)
    (7, 0.3, 4),     # 4.9 -> 4
    (11, 0.1, 9),    # 9.9 -> 9
    (10, 0.25, 7),   # 7.5 -> 7
    (1438, 0.1, 1294),  # digits' training set: 1294.2 -> 1294
    (60000, 0.1, 54000),
]


@pytest.mark.parametrize("n, fraction, expected", KERAS_SPLITS)
def test_the_validation_split_rounds_as_keras(n, fraction, expected):
    assert expected == math.floor(n * (1.0 - fraction))  # the table is Keras' formula
    assert train_size(n, fraction) == expected
    x, y = torch.arange(n), torch.arange(n) % 3
    x_tr, _, x_val, _ = split_validation(x, y, fraction)
    assert len(x_tr) == expected and len(x_val) == n - expected
    assert x_tr.tolist() == list(range(expected))  # Keras keeps the first part for training
    if n >= 10:
        x_tr, _, x_val, _ = split_validation(x, y, fraction, mode="stratified", seed=0)
        assert len(x_tr) == expected and len(x_val) == n - expected


# --- (d) a NaN loss stops training ---------------------------------------------------------------
# mutation "nan-keeps-training": the NaN guard records the run as diverged but does not stop.
class NaNAfter(nn.Module):
    """A linear classifier whose outputs become NaN from its `after`-th training batch on; counts the
    training batches it sees."""

    def __init__(self, after: int):
        super().__init__()
        self.linear = nn.Linear(64, 4)
        self.after, self.batches = after, 0

    def forward(self, x):
        out = self.linear(x.flatten(1))
        if self.training:
            self.batches += 1
            if self.batches > self.after:
                out = out * float("nan")
        return out


def test_a_nan_loss_stops_training_after_its_epoch(tiny_images):
    x, y = tiny_images  # 600 images, batches of 100: 6 per epoch
    model = NaNAfter(after=14)  # batch 15 is in epoch 2 (0-based)
    h = cnnbench.fit(model, x, y, epochs=6, batch_size=100, optimizer="sgd", verbose=0)
    assert h.status == "diverged"
    assert h.epoch == [0, 1, 2]  # epochs 3, 4, 5 are not trained
    assert math.isfinite(h.history["loss"][1]) and not math.isfinite(h.history["loss"][2])
    assert model.batches <= 18  # no training batch after epoch 2


# --- a diverged run is finished: running the study again does not train it again ---------------------
# mutation "diverged-run-rerun": store.db.FINISHED without "diverged".
def test_running_a_study_again_does_not_rerun_its_diverged_runs(tmp_path):
    study = cnnbench.Study.from_dict({"name": "diverges", "seeds": [0], "epochs": 2, "batch_size": 64,
                                      "optimizer": {"name": "sgd", "learning_rate": 1e30}}, output=tmp_path / "out")
    import sqlite3

    def stored():
        con = sqlite3.connect(tmp_path / "out" / "study.db")
        try:
            return con.execute("SELECT key, status, started_at, finished_at FROM runs").fetchall()
        finally:
            con.close()

    first = study.run(device="cpu", workers=1, report=False)
    assert first.ran == 1 and first.failed == []
    (_, status, started, finished), = before = stored()
    assert status == "diverged" and started is not None and finished is not None
    again = study.run(device="cpu", workers=1, report=False)
    assert again.ran == 0 and again.already_finished == 1
    assert stored() == before  # not started again


# --- analysis.compare: what its columns promise (docs/CONTRACTS.md, docs/statistics.md) ---------------
# mutations "holm-no-cap", "significant-on-raw-p", "tied-with-best-on-raw-p", "displayed-p-vs-best-raw",
# "effect-vs-best-sign" (analysis/compare.py)
def _frame(differences):
    """Six blocks (seeds); A at `base`, every other configuration at base − its differences."""
    import pandas as pd

    base = [0.90, 0.91, 0.92, 0.93, 0.94, 0.95]
    rows = [("A", b, v) for b, v in enumerate(base)]
    rows += [(name, b, v - d[b]) for name, d in differences.items() for b, v in enumerate(base)]
    return pd.DataFrame(rows, columns=["config", "block", "value"])


def test_vs_the_best_the_table_uses_holm_adjusted_p_values():
    from cnnbench.analysis import compare

    # B, C, D below A in all six blocks: each exact two-sided Wilcoxon p is 2/2^6 = 0.03125 < 0.05, but
    # Holm over the three comparisons makes each 3 × 0.03125 = 0.09375 (running max): none significant
    cmp = compare(_frame({"B": [0.1] * 6, "C": [0.2] * 6, "D": [0.3] * 6}), alpha=0.05)
    pw = cmp.pairwise.set_index("b")
    assert pw["p"].tolist() == pytest.approx([0.03125] * 3)
    assert pw["p_holm"].tolist() == pytest.approx([0.09375] * 3)
    assert not pw["significant"].any()
    ranking = cmp.ranking.set_index("config")
    assert ranking.loc[["B", "C", "D"], "p_holm_vs_best"].tolist() == pytest.approx([0.09375] * 3)  # shown: Holm's
    assert ranking["tied_with_best"].all()  # no Holm-significant difference: all tied with the best
    # this configuration − the best, in the metric's units
    assert ranking.loc[["B", "C", "D"], "effect_vs_best"].tolist() == pytest.approx([-0.1, -0.2, -0.3])


def test_holm_adjusted_p_values_are_capped_at_one():
    from cnnbench.analysis import compare

    d = [0.05, -0.04, 0.03, -0.06, 0.02, -0.01]  # signs alternate: p = 1 for each pair, Holm 3 × 1 capped
    cmp = compare(_frame({"B": d, "C": [v * 1.1 for v in d], "D": [v * 0.9 for v in d]}))
    assert cmp.pairwise["p_holm"].tolist() == pytest.approx([1.0, 1.0, 1.0])
    assert (cmp.ranking["p_holm_vs_best"].dropna() <= 1.0).all()


def test_significant_means_p_strictly_below_alpha():
    # Kills `significant-at-alpha-inclusive`. Five blocks all in A's favour: the exact Wilcoxon p is 2/2^5 =
    # 0.0625 (one comparison: Holm's p is the same). At α = 0.0625 that is not below α: not significant.
    import pandas as pd

    from cnnbench.analysis import compare

    df = pd.DataFrame({"config": list("AB") * 5, "block": [b for b in range(5) for _ in range(2)],
                       "value": [0.9, 0.8, 0.91, 0.8, 0.92, 0.81, 0.93, 0.8, 0.9, 0.82]})
    at = compare(df, alpha=0.0625).pairwise.iloc[0]
    assert at["p_holm"] == pytest.approx(0.0625)
    assert not at["significant"]
    assert compare(df, alpha=0.0626).pairwise.iloc[0]["significant"]
