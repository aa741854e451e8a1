"""The report of a study with several outputs (issue 13): one table with each output's test accuracy
and test loss per configuration, mean ± std over seeds, beside each cell's ranking — as CSV, Markdown,
LaTeX, in report.html and summary.md — with the numbers the store holds."""

from __future__ import annotations

import json
import sqlite3
from html.parser import HTMLParser

import numpy as np
import pandas as pd
import pytest

from cnnbench import Study

BIG = [0, 0, 0, 0, 0, 1, 1, 1, 1, 1]
SPEC = {"name": "report-outputs", "seeds": [0, 1], "epochs": 1, "batch_size": 64, "model": "digits_cnn",
        "targets": {"digit": "label", "big": {"from": "label", "map": BIG}},
        "loss": {"digit": "sparse_categorical_crossentropy", "big": "binary_crossentropy"},
        "analysis": {"metric": "test_digit_accuracy"},
        "grid": {"dataset": ["digits", {"name": "digits", "limit_train": 700}],
                 "loss_weights": [{"big": 0.5}, {"big": 2.0}]}}


@pytest.fixture(scope="module")
def done(tmp_path_factory):
    out = tmp_path_factory.mktemp("ro") / "out"
    result = Study.from_dict(SPEC).run(out, workers=1)
    assert result.ran == 8 and not result.failed
    return out, result.report.parent


def _by_hand(out) -> pd.DataFrame:
    """Each configuration's per-output test values straight from study.db, mean and std over seeds."""
    con = sqlite3.connect(out / "study.db")
    rows = con.execute("SELECT label, custom_metrics FROM runs WHERE status = 'done'").fetchall()
    con.close()
    values: dict[tuple[str, str], list[float]] = {}
    for label, custom in rows:
        custom = json.loads(custom)
        for name in ("test_digit_accuracy", "test_digit_loss", "test_big_accuracy", "test_big_loss"):
            values.setdefault((label, name), []).append(custom[name])
    return pd.DataFrame([{"label": label, "name": name, "mean": np.mean(v), "std": np.std(v, ddof=1), "n": len(v)}
                         for (label, name), v in values.items()])


def test_outputs_csv_holds_each_outputs_mean_and_std_over_seeds(done):
    out, report = done
    frame = pd.read_csv(report / "outputs.csv")
    assert len(frame) == 4 and frame["cell"].nunique() == 2  # 2 datasets (cells) × 2 configurations
    expected = _by_hand(out)
    for r in frame.itertuples():
        weight = "0.5" if "0.5" in r.config else "2.0"
        label = next(lab for lab in expected["label"].unique()
                     if f"big={weight}" in lab and (("limit_train=700" in lab) == ("700" in r.cell)))
        for name in ("test_digit_accuracy", "test_digit_loss", "test_big_accuracy", "test_big_loss"):
            want = expected[(expected["label"] == label) & (expected["name"] == name)].iloc[0]
            assert getattr(r, f"{name}_mean") == pytest.approx(want["mean"], rel=1e-12)
            assert getattr(r, f"{name}_std") == pytest.approx(want["std"], rel=1e-9)
            assert getattr(r, f"{name}_n") == want["n"] == 2
    # rows follow each cell's ranking (by test_digit_accuracy, the study's metric)
    ranking = pd.read_csv(report / "ranking.csv")
    for cell, part in frame.groupby("cell", sort=False):
        assert list(part["config"]) == list(ranking[ranking["cell"] == cell]["config"])


def test_markdown_latex_and_html_show_the_same_numbers(done):
    _, report = done
    frame = pd.read_csv(report / "outputs.csv")
    first = frame.iloc[0]
    shown = f"{100 * first['test_digit_accuracy_mean']:.2f} ± {100 * first['test_digit_accuracy_std']:.2f}"
    loss = f"{first['test_big_loss_mean']:.4g} ± {first['test_big_loss_std']:.4g}"
    md = (report / "outputs.md").read_text(encoding="utf-8")
    assert "| configuration | n | digit accuracy (%): mean ± std | digit loss: mean ± std | big accuracy (%): " in md
    assert shown in md and loss in md and md.count("## ") == 2  # a section per cell
    tex = (report / "outputs.tex").read_text(encoding="utf-8")
    assert all(rule in tex for rule in (r"\toprule", r"\midrule", r"\bottomrule")) and tex.count(r"\begin{table}") == 2
    assert shown.replace(" ± ", r" $\pm$ ") in tex
    # the best of each column in bold: per cell, 4 columns (ties may bold more)
    assert tex.count(r"\textbf{") >= 8
    best = frame.groupby("cell")["test_digit_accuracy_mean"].transform("max") == frame["test_digit_accuracy_mean"]
    for r in frame[best].itertuples():
        assert rf"\textbf{{{100 * r.test_digit_accuracy_mean:.2f} $\pm$ {100 * r.test_digit_accuracy_std:.2f}}}" in tex

    html = (report / "report.html").read_text(encoding="utf-8")
    cells = _html_tables(html)
    per_output = [t for t in cells if t[0][:2] == ["configuration", "n"] and "digit accuracy (%): mean ± std" in t[0]]
    assert len(per_output) == 2 and any(shown in row for t in per_output for row in t[1:])
    summary = (report / "summary.md").read_text(encoding="utf-8")
    assert summary.count("### Each output") == 2 and shown in summary
    listed = set((report / "report_files.txt").read_text().split())
    assert {"outputs.csv", "outputs.md", "outputs.tex"} <= listed


def _html_tables(html: str) -> list[list[list[str]]]:
    """Every <table> as rows of cell texts."""

    class Tables(HTMLParser):
        def __init__(self):
            super().__init__()
            self.tables, self.cell = [], None

        def handle_starttag(self, tag, attrs):
            if tag == "table":
                self.tables.append([])
            elif tag == "tr" and self.tables:
                self.tables[-1].append([])
            elif tag in ("td", "th"):
                self.cell = ""

        def handle_endtag(self, tag):
            if tag in ("td", "th") and self.cell is not None:
                self.tables[-1][-1].append(self.cell.strip())
                self.cell = None

        def handle_data(self, data):
            if self.cell is not None:
                self.cell += data

    parser = Tables()
    parser.feed(html)
    return parser.tables


def test_a_loss_is_bold_only_among_configurations_trained_with_that_loss():
    """Test losses of different functions are not comparable (found in review: MSE's 0.24 was bolded over
    binary cross-entropy's 0.68 for one output)."""
    import pandas as pd

    from cnnbench.analysis.frames import _flatten
    from cnnbench.report.paper import _one_loss

    def runs(*losses):
        return pd.DataFrame([{f"config.{k}": v for k, v in _flatten({"loss": loss}).items()} for loss in losses])

    bce = {"name": "binary_crossentropy", "from_logits": False}
    mse = {"name": "mean_squared_error"}
    scce = {"name": "sparse_categorical_crossentropy", "from_logits": False}
    two = runs({"digit": scce, "parity": bce}, {"digit": scce, "parity": mse})
    assert _one_loss(two, "digit") and not _one_loss(two, "parity")
    assert not _one_loss(runs({"digit": scce, "parity": bce}, {"digit": scce, "parity": {**bce, "from_logits": True}}),
                         "parity")  # the same name with other options is another loss
    assert _one_loss(runs(scce, scce), "digit")  # one loss for every output
    assert not _one_loss(runs(scce, {"name": "categorical_hinge"}), "digit")
