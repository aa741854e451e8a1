"""The report around the statistics (issue 20): files a paper needs, ties in every output, no p-value
from 2 seeds anywhere, distinct figures per cell, provenance. Stores are written without training."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from cnnbench import analysis, study
from cnnbench.cli import main
from cnnbench.store import Store

LONG = "npz(path=/data/experiments/2026/very/long/directory/name/for/the/datasets/{}/images.npz, limit_train=100)"

FOUR_SEEDS = {  # correct test images out of 10,000 (as in test_compare_small_n)
    ("categorical_crossentropy", "adam"): [7912, 7885, 7930, 7871],
    ("categorical_crossentropy", "sgd"): [6120, 5987, 6243, 6051],
    ("hinge", "adam"): [7420, 7511, 7388, 7460],
    ("hinge", "sgd"): [3410, 2890, 3655, 3120],
    ("mean_squared_error", "adam"): [7702, 7689, 7745, 7650],
    ("mean_squared_error", "sgd"): [861, 858, 866, 859],
}


def write_store(d: Path, toml: str, value, *, rename_datasets: dict | None = None) -> Path:
    """A study directory whose runs finished with test accuracy `value(run)` and a few other metrics."""
    s = study.parse_text(toml, source="test")
    store = Store.open(d, s.name)
    store.add_runs(s.runs)
    for r in s.runs:
        acc = value(r)
        store.finish(r.key, "done", {"test_acc": acc, "test_loss": 1 - acc, "test_nll": 2 - acc, "test_ece": 0.1 * acc,
                                     "test_macro_f1": acc - 0.01, "test_top5_acc": min(1.0, acc + 0.1)},
                     num_classes=10, seconds=10.0 + r.seed)
    store.close()
    (d / "study.toml").write_text(toml)
    if rename_datasets:
        con = sqlite3.connect(d / "study.db")
        with con:
            for key, axes in con.execute("SELECT key, axes FROM runs").fetchall():
                axes = json.loads(axes)
                axes["dataset"] = rename_datasets.get(axes["dataset"], axes["dataset"])
                con.execute("UPDATE runs SET axes = ? WHERE key = ?", (json.dumps(axes), key))
        con.close()
    return d


TWO_DATASETS = """
name = "stats"
seeds = [0, 1, 2, 3]
[grid]
dataset = ["digits", { name = "digits", limit_train = 500 }]
loss = ["categorical_crossentropy", "hinge", "mean_squared_error"]
optimizer = ["adam", "sgd"]
"""


def _four_seeds(r) -> float:
    shift = 0.01 if r.axes["dataset"] != "digits" else 0.0
    return FOUR_SEEDS[(r.config["loss"]["name"], r.config["optimizer"]["name"])][r.seed] / 1e4 - shift


@pytest.fixture(scope="module")
def long_names(tmp_path_factory):
    """Two datasets whose names share their first 100 characters."""
    d = tmp_path_factory.mktemp("long") / "study"
    rename = {"digits": LONG.format("a"), "digits(limit_train=500)": LONG.format("b")}
    return write_store(d, TWO_DATASETS, _four_seeds, rename_datasets=rename)


@pytest.fixture(scope="module")
def long_report(long_names, tmp_path_factory):
    out = tmp_path_factory.mktemp("long-report")
    assert main(["report", str(long_names), "-o", str(out)]) == 0
    return out


def test_each_cell_has_its_own_figures_whatever_its_name(long_report):
    listed = set((long_report / "report_files.txt").read_text().split())
    cds = sorted(n for n in listed if n.startswith("critical_difference_") and n.endswith(".svg")
                 and "across" not in n)
    assert len(cds) == 2 and len(set(cds)) == 2
    html = (long_report / "report.html").read_text()
    for name in cds:
        assert f'href="{name}"' in html
    # the two SVGs draw different data
    assert (long_report / cds[0]).read_bytes() != (long_report / cds[1]).read_bytes()


def test_file_stems_are_distinct_and_short():
    from cnnbench.analysis.names import MAX_STEM, display_names, file_stems

    names = [LONG.format("a"), LONG.format("b"), "a/b", "a_b", "x" * 200]
    stems = file_stems(names)
    assert len(set(stems.values())) == len(names) and all(len(s) <= MAX_STEM for s in stems.values())
    assert display_names([LONG.format("a")]) == {LONG.format("a"): "npz(images.npz, limit_train=100)"}
    assert len(set(display_names([LONG.format("a"), LONG.format("b")]).values())) == 2  # alike: kept whole


def test_compare_study_all_pairs_with_a_rope(long_names):
    sc = analysis.compare_study(long_names, pairs="all", rope=0.01)
    for cell in sc.cells:
        assert len(cell.comparison.pairwise) == 15 and cell.comparison.pairwise["p_equivalent"].notna().all()
    assert len(sc.across.pairwise) == 15
