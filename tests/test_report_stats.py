"""The report around the statistics (issue 20): files a paper needs, ties in every output, no p-value
from 2 seeds anywhere, distinct figures per cell, provenance. Stores are written without training."""

from __future__ import annotations

import json
import re
import sqlite3
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cnnbench import analysis
from cnnbench import spec as study
from cnnbench.cli import main
from cnnbench.store.db import Store

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


def test_a_slug_is_short_and_keeps_long_names_apart():
    from cnnbench.report import figures

    a, b = figures.slug(LONG.format("a")), figures.slug(LONG.format("b"))
    assert a != b and len(a) <= 60 and len(b) <= 60
    assert figures.slug("loss=mse") == "loss-mse"


def test_file_stems_are_distinct_and_short():
    from cnnbench.analysis.names import MAX_STEM, display_names, file_stems

    names = [LONG.format("a"), LONG.format("b"), "a/b", "a_b", "x" * 200]
    stems = file_stems(names)
    assert len(set(stems.values())) == len(names) and all(len(s) <= MAX_STEM for s in stems.values())
    assert display_names([LONG.format("a")]) == {LONG.format("a"): "npz(images.npz, limit_train=100)"}
    # alike by their file names: as many of the paths' last parts as tell them apart
    assert list(display_names([LONG.format("a"), LONG.format("b")]).values()) == [
        "npz(a/images.npz, limit_train=100)", "npz(b/images.npz, limit_train=100)"]


def test_compare_study_all_pairs_with_a_rope(long_names):
    sc = analysis.compare_study(long_names, pairs="all", rope=0.01)
    for cell in sc.cells:
        assert len(cell.comparison.pairwise) == 15 and cell.comparison.pairwise["p_equivalent"].notna().all()
    assert len(sc.across.pairwise) == 15


@pytest.fixture(scope="module")
def four(tmp_path_factory):
    """The 3 losses × 2 optimizers × 4 seeds study on two datasets, and its report."""
    root = tmp_path_factory.mktemp("four")
    d = write_store(root / "study", TWO_DATASETS, _four_seeds)
    assert main(["report", str(d), "-o", str(root / "report")]) == 0
    return d, root / "report"


def test_pairwise_files_hold_every_comparison_with_raw_and_holm_p(four):
    d, report = four
    pw = pd.read_csv(report / "pairwise.csv")
    assert {"scope", "cell", "a", "b", "n", "test", "normality_p", "statistic", "p_raw", "p_holm", "rank_biserial_r",
            "mean_diff", "diff_ci_low", "diff_ci_high", "significant"} <= set(pw)
    sc = analysis.compare_study(d)
    assert len(pw) == sum(len(c.comparison.pairwise) for c in sc.cells) + len(sc.across.pairwise) == 5 * 3
    within = pw[pw["scope"] == "within cell"]
    assert (within["test"] == "paired t-test").all()
    for _, part in within.groupby("cell"):  # Holm over each cell's comparisons, from the raw p
        assert part["p_holm"].to_numpy() == pytest.approx(analysis.holm(part["p_raw"]))
    chance = within[within["b"] == "loss=mean_squared_error · optimizer=sgd"]
    assert (chance["p_holm"] < 0.05).all() and chance["significant"].all()
    md, tex = (report / "pairwise.md").read_text(), (report / "pairwise.tex").read_text()
    assert "p (raw)" in md and "p (Holm-adjusted)" in md and md.count("## ") == 3
    assert r"\toprule" in tex and "Holm-adjusted" in tex
    ranking = pd.read_csv(report / "ranking.csv")
    assert "p_vs_best" not in ranking and {"p_holm_vs_best", "p_raw_vs_best", "test_vs_best"} <= set(ranking)
    assert "p vs best (Holm-adjusted)" in (report / "ranking.md").read_text()


def test_nemenyi_metrics_and_time_tables(four):
    _, report = four
    nemenyi = pd.read_csv(report / "nemenyi.csv")
    assert len(nemenyi) == 2 * 15 and nemenyi["p_nemenyi"].between(0, 1).all()  # 2 cells × 6·5/2 pairs
    metrics = pd.read_csv(report / "metrics.csv")
    assert len(metrics) == 12
    for column in ("test_acc_mean", "test_nll_mean", "test_ece_mean", "test_macro_f1_mean", "test_top5_acc_mean",
                   "seconds_per_run", "seconds_total"):
        assert column in metrics, column
    row = metrics[(metrics["cell"] == "dataset=digits") & (metrics["config"] == "loss=hinge · optimizer=adam")].iloc[0]
    accs = np.array(FOUR_SEEDS[("hinge", "adam")]) / 1e4
    assert row["test_nll_mean"] == pytest.approx((2 - accs).mean())
    assert row["test_acc_std"] == pytest.approx(accs.std(ddof=1))
    assert row["seconds_per_run"] == pytest.approx(11.5) and row["seconds_total"] == pytest.approx(46.0)
    md = (report / "metrics.md").read_text()
    assert "test NLL: mean ± std" in md and "time per run" in md
    summary = (report / "summary.md").read_text()
    assert "test ECE (15 bins) (%): mean ± std" in summary and "test top-5 accuracy (%): mean ± std" in summary


def test_provenance_in_html_and_markdown(four, tmp_path):
    from importlib import metadata

    _, report = four
    html, md = (report / "report.html").read_text(), (report / "summary.md").read_text()
    for text in (html, md):
        for package in ("numpy", "scipy", "scikit-posthocs", "baycomp"):
            assert package in text and metadata.version(package) in text, package
        assert "cnnbench" in text and "checksum" in text
        assert re.search(r"git [0-9a-f]{12}|not a git checkout", text)
    from cnnbench.report import provenance

    # a dataset given by path is hashed from its file
    npz = tmp_path / "data.npz"
    np.savez(npz, x_train=np.zeros((4, 8, 8), np.uint8), y_train=np.arange(4), x_test=np.zeros((2, 8, 8), np.uint8),
             y_test=np.arange(2))
    import hashlib

    want = hashlib.sha256(b"data.npz\0" + npz.read_bytes()).hexdigest()[:16]
    rows = provenance.dataset_checksums(pd.DataFrame({"config": [json.dumps({"dataset": {"name": str(npz)}})]}))
    assert rows == [[str(npz), f"sha256 {want} of 1 source file"]]


TWO_SEEDS = """
name = "two-seeds"
seeds = [0, 1]
[grid]
loss = ["categorical_crossentropy", "hinge", "mean_squared_error"]
optimizer = ["adam", "sgd"]
"""

P_NUMBER = re.compile(r"\bp\s*[=<]\s*\d|p-value\s*[=<]\s*\d|χ²_?F?\s*=\s*\d|\bF\s*=\s*\d")


def test_two_seeds_print_and_write_no_p_value_anywhere(tmp_path, capsys):
    d = write_store(tmp_path / "study", TWO_SEEDS, lambda r: FOUR_SEEDS[(r.config["loss"]["name"],
                                                                         r.config["optimizer"]["name"])][r.seed] / 1e4)
    out = tmp_path / "report"
    assert main(["report", str(d), "-o", str(out)]) == 0
    terminal = capsys.readouterr().out
    assert "Verdict:" in terminal and "Configurations ranked by test accuracy" in terminal  # as `run` prints
    assert str(out / "report.html") in terminal
    for text in (terminal, (out / "summary.md").read_text(), (out / "report.html").read_text(),
                 (out / "ranking.md").read_text(), (out / "ranking.tex").read_text()):
        assert not P_NUMBER.search(text), P_NUMBER.search(text)
    ranking = pd.read_csv(out / "ranking.csv")
    assert ranking[["p_holm_vs_best", "p_raw_vs_best", "ci_low", "ci_high"]].isna().all().all()
    pw = pd.read_csv(out / "pairwise.csv")
    assert pw[["p_raw", "p_holm", "statistic", "diff_ci_low"]].isna().all().all()
    assert not (out / "nemenyi.csv").exists()
    listed = set((out / "report_files.txt").read_text().split())
    assert not any(n.startswith("critical_difference") for n in listed)


TIES = """
name = "ties"
seeds = [0, 1, 2, 3, 4, 5, 6, 7]
[grid]
optimizer = ["adam", "nadam", "sgd"]
"""


def test_exact_ties_are_ties_in_the_verdict_the_tables_and_the_csv(tmp_path):
    correct = [6036, 6012, 6050, 6041, 6020, 6033, 6047, 6029]

    def value(r):  # adam and nadam: the same count of correct images on every seed, by two float paths
        name = r.config["optimizer"]["name"]
        n = correct[r.seed]
        return {"adam": n / 8000, "nadam": (n * 0.5) / 4000, "sgd": (n - 150 - r.seed) / 8000}[name]

    d = write_store(tmp_path / "study", TIES, value)
    out = tmp_path / "report"
    assert main(["report", str(d), "-o", str(out)]) == 0
    ranking = pd.read_csv(out / "ranking.csv")
    assert list(ranking["config"]) == ["optimizer=adam", "optimizer=nadam", "optimizer=sgd"]
    assert list(ranking["best"]) == [True, True, False] and list(ranking["rank"]) == [1, 1, 3]
    md = (out / "summary.md").read_text()
    assert "optimizer=adam and optimizer=nadam, tied" in md.split("\n\n")[1]
    tex = (out / "ranking.tex").read_text()
    assert tex.count(r"\textbf{") == 2
    paper_md = (out / "ranking.md").read_text()
    assert paper_md.count("**") == 4  # two bold entries
    html = (out / "report.html").read_text()
    assert html.count('class="best"') >= 2 and "best (tied: equal in every block)" in html
    pw = pd.read_csv(out / "pairwise.csv")
    tie = pw[(pw["a"] == "optimizer=adam") & (pw["b"] == "optimizer=nadam")].iloc[0]
    assert np.isnan(tie["p_raw"]) and tie["test"].startswith("none (equal values")


def test_critical_difference_diagram_spans_one_to_k_with_the_cd_bar_above_the_tick_labels():
    import matplotlib

    from cnnbench.analysis.compare import compare
    from cnnbench.report import figures

    frame = pd.DataFrame([{"config": f"{loss} · {opt}", "block": s, "value": v / 1e4}
                          for (loss, opt), vs in FOUR_SEEDS.items() for s, v in enumerate(vs)])
    cmp = compare(frame, test="auto", block_name="seeds")
    fig = figures.critical_difference(cmp, "cell")
    ax = fig.axes[0]
    assert ax.get_xlim() == (1, 6) and list(ax.get_xticks()) == [1, 2, 3, 4, 5, 6]
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    ticks = [t.get_window_extent(renderer) for t in ax.get_xticklabels() if t.get_text()]
    cd_text = next(t for t in ax.texts if t.get_text().startswith("CD = "))
    assert cd_text.get_text() == f"CD = {cmp.critical_difference:.2f}"
    top_of_ticks = max(b.y1 for b in ticks)
    assert cd_text.get_window_extent(renderer).y0 > top_of_ticks  # the label clears the tick labels
    bar = next(line for line in ax.get_lines() if len(line.get_xdata()) == 2
               and list(line.get_xdata()) == pytest.approx([1, 1 + cmp.critical_difference]))
    y_bar = bar.get_transform().transform((1, 0))[1]
    assert y_bar > top_of_ticks
    matplotlib.pyplot.close(fig)


def test_heatmap_of_datasets_colours_each_column_on_its_own_scale():
    from cnnbench import metrics
    from cnnbench.report import figures

    t = pd.DataFrame({"easy": [0.99, 0.98, 0.97], "hard": [0.30, 0.20, 0.10]}, index=["a", "b", "c"])
    fig = figures.heatmap([("", t)], "loss", "dataset", metrics.get("test_acc"), per_column=True)
    image = fig.axes[0].get_images()[0].get_array()
    assert list(np.asarray(image)[:, 0]) == pytest.approx([1.0, 0.5, 0.0])  # each column best to worst
    assert list(np.asarray(image)[:, 1]) == pytest.approx([1.0, 0.5, 0.0])
    assert len(fig.axes) == 1  # no shared colour bar
    shared = figures.heatmap([("", t)], "loss", "optimizer", metrics.get("test_acc"))
    assert len(shared.axes) == 2  # one scale and its bar


def test_reports_raise_no_matplotlib_warning_and_do_not_clip_intervals(long_names, tmp_path):
    import warnings

    from cnnbench.report import format as fmt
    from cnnbench.report import write_report

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        write_report(long_names, tmp_path / "r")
    assert not [w for w in caught if "matplotlib" in str(w.filename) or "layout" in str(w.message)], \
        [str(w.message) for w in caught]
    from cnnbench import metrics

    assert fmt.interval(0.95, 1.03, metrics.get("test_acc")) == "[95.00, 103.00]"


def test_across_datasets_rliable_aggregates_beside_mean_ranks(four):
    d, report = four
    agg = pd.read_csv(report / "aggregates.csv")
    assert list(agg.columns[:4]) == ["config", "runs", "tasks", "iqm"] and (agg["runs"] == 8).all()
    sc = analysis.compare_study(d)
    assert agg["iqm"].to_numpy() == pytest.approx(sc.aggregates.table["iqm"].to_numpy())
    assert "rliable's interquartile mean" in sc.verdict and sc.verdict.index("Across") < sc.verdict.index("rliable")
    poi = pd.read_csv(report / "probability_of_improvement.csv")
    assert len(poi) == 5 and poi["p_improvement"].between(0, 1).all()
    md = (report / "summary.md").read_text()
    assert "Aggregates over every run (rliable)" in md and "performance_profiles.png" in md
    assert (report / "performance_profiles.png").read_bytes()[:4] == b"\x89PNG"
