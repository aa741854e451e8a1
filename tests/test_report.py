"""The report: files that parse, escaped user strings, figures that show what they should, the
study directories only read."""

import json
import os
import shutil
import sqlite3
import xml.etree.ElementTree as ET
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
import pytest

from cnnbench.cli import main
from cnnbench.report import figures

ONE_EPOCH = """
name = "report-test"
description = "A tiny study for the report's tests."
seeds = [0, 1, 2]
epochs = 1
batch_size = 128
dataset = "digits"
model = "digits_cnn"
[grid]
loss = ["categorical_crossentropy", "mse"]
optimizer = ["adam", { name = "sgd", learning_rate = 0.1 }]
"""


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """A finished one-epoch study (2 losses × 2 optimizers × 3 seeds), without its report."""
    root = tmp_path_factory.mktemp("study")
    spec = root / "study.toml"
    spec.write_text(ONE_EPOCH)
    assert main(["run", str(spec), "-o", str(root / "study"), "--workers", "1", "-q", "--no-report"]) == 0
    return root / "study"


@pytest.fixture
def copy(study, tmp_path):
    """A copy of the study directory this test may change."""
    return Path(shutil.copytree(study, tmp_path / "copy", ignore=shutil.ignore_patterns("report")))


@pytest.fixture(scope="module")
def report(study, tmp_path_factory):
    out = tmp_path_factory.mktemp("report")
    assert main(["report", str(study), "--output", str(out)]) == 0
    return out


def test_every_file_exists_and_parses(report):
    ranking = pd.read_csv(report / "ranking.csv")
    assert len(ranking) == 4 and {"config", "mean", "std", "ci_low", "p_holm_vs_best", "p_raw_vs_best",
                                  "tied_with_best", "best"} <= set(ranking)
    assert len(pd.read_csv(report / "runs.csv")) == 12
    assert len(pd.read_csv(report / "history.csv")) == 12  # one epoch each
    pair = pd.read_csv(report / "loss_x_optimizer.csv")
    assert len(pair) == 4 and {"loss", "optimizer", "mean", "std"} <= set(pair)
    for stem in ("learning_curves", "test_acc_per_run", "critical_difference", "heatmap_loss_x_optimizer"):
        assert (report / f"{stem}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", stem
        assert ET.parse(report / f"{stem}.svg").getroot().tag.endswith("svg"), stem
    assert not list(report.glob("*.tmp")) and not list(report.glob(".*"))
    assert not list(report.glob("outputs.*"))  # one output: no per-output table
    listed = set((report / "report_files.txt").read_text().split())
    assert listed == {p.name for p in report.iterdir()} - {"report_files.txt"}


def test_latex_tables_use_booktabs_and_set_the_best_in_bold(report):
    tex = (report / "ranking.tex").read_text()
    assert all(rule in tex for rule in (r"\toprule", r"\midrule", r"\bottomrule"))
    best = pd.read_csv(report / "ranking.csv").iloc[0]
    bold = rf"\textbf{{{100 * best['mean']:.2f} $\pm$ {100 * best['std']:.2f}}}"
    assert bold in tex
    assert r"categorical\_crossentropy" in tex  # escaped for LaTeX
    pair = (report / "loss_x_optimizer.tex").read_text()
    assert r"\toprule" in pair and pair.count(r"\textbf{") == 1


def test_report_opens_with_the_verdict_and_says_what_ran(report):
    md = (report / "summary.md").read_text()
    first = md.split("\n\n")[1]
    assert first.startswith("**Verdict.** Best by highest mean test accuracy")
    for expected in ("A tiny study for the report's tests.", "```toml", "Runs: 12 done", "### Environment",
                     "torch", "### Models", "wall time", "run time spent", "Friedman test over 4 configurations"):
        assert expected in md, expected
    html = (report / "report.html").read_text()
    assert html.index('id="verdict"') < html.index("<table")
    assert "http://" not in html and "https://" not in html and "data:image/png;base64," in html


def _set_axis(study_dir: Path, value: str) -> None:
    con = sqlite3.connect(study_dir / "study.db")
    with con:
        for key, axes in con.execute("SELECT key, axes FROM runs").fetchall():
            axes = json.loads(axes)
            if axes["loss"] == "mse":
                axes["loss"] = value
                con.execute("UPDATE runs SET axes = ? WHERE key = ?", (json.dumps(axes), key))
    con.close()


def test_user_strings_are_escaped_in_html_and_markdown(copy, tmp_path):
    evil = "<script>alert(1)</script> | `x` *y* [z](http://e.test)"
    _set_axis(copy, evil)
    spec = copy / "study.toml"
    spec.write_text(spec.read_text().replace("A tiny study", "<script>alert(2)</script> study"))
    out = tmp_path / "out"
    assert main(["report", str(copy), "-o", str(out)]) == 0
    html = (out / "report.html").read_text()
    assert "<script>alert" not in html and "&lt;script&gt;alert(1)" in html and "&lt;script&gt;alert(2)" in html
    md = (out / "summary.md").read_text()
    outside_spec = md.replace(md[md.index("```toml"):md.index("```\n", md.index("```toml") + 7)], "")
    assert "<script>" not in outside_spec and "&lt;script&gt;alert(1)" in outside_spec
    assert r"\| \`x\` \*y\* \[z\](http://e.test)" in outside_spec  # cannot split a table row or make a link
    for table in ("ranking.md", "loss_x_optimizer.md"):
        assert "<script>" not in (out / table).read_text()
    assert "<script>" not in (out / "ranking.tex").read_text() and r"\textless{}script\textgreater{}" in (
        out / "ranking.tex").read_text()


def _lines_per_axes(fig):
    return [[(matplotlib.colors.to_hex(line.get_color()), line.get_linestyle()) for line in ax.get_lines()]
            for ax in fig.axes]


def test_one_epoch_draws_markers(report, study):
    from cnnbench import analysis

    sc = analysis.compare_study(study)
    cell = sc.cells[0]
    from cnnbench.report import paper

    configs = paper.config_names(sc, cell.runs)
    fig = figures.learning_curves(sc.history, list(cell.comparison.ranking["config"]),
                                  dict(zip(cell.runs["key"], configs)), pd.DataFrame(index=configs.unique()), "t")
    lines = [line for ax in fig.axes for line in ax.get_lines()]
    assert lines and all(line.get_marker() == "o" and len(line.get_xdata()) == 1 for line in lines)


def test_many_configurations_never_share_colour_and_style_in_one_axes():
    rng = np.random.default_rng(0)
    configs = [f"loss=l{i % 13} · optimizer=o{i // 13}" for i in range(26)]  # 26 configurations
    rows = [{"run_key": f"{c}/{s}", "epoch": e, "train_loss": rng.random() + 0.1, "train_acc": rng.random(),
             "val_loss": rng.random() + 0.1, "val_acc": rng.random()}
            for c in configs for s in range(2) for e in range(30)]
    history = pd.DataFrame(rows)
    axes = pd.DataFrame({"loss": [c.split(" · ")[0][5:] for c in configs],
                         "optimizer": [c.split(" · ")[1][10:] for c in configs]}, index=configs)
    fig = figures.learning_curves(history, configs, {f"{c}/{s}": c for c in configs for s in range(2)}, axes, "many")
    per_axes = _lines_per_axes(fig)
    assert sum(len(lines) for lines in per_axes) == 26 * 4  # every configuration drawn in every panel
    for lines in per_axes:
        assert len(lines) <= figures.MAX_PER_AXES and len(set(lines)) == len(lines)
    assert all(line.get_marker() in (None, "None", "") for ax in fig.axes for line in ax.get_lines())  # 30 epochs


def test_a_read_only_study_directory_reports_elsewhere(copy, tmp_path, capsys):
    before = (copy / "study.db").read_bytes()
    mode = {p: p.stat().st_mode for p in [copy, *copy.rglob("*")]}
    for p in mode:
        p.chmod(mode[p] & ~0o222)
    try:
        out = tmp_path / "elsewhere"
        assert main(["report", str(copy), "--output", str(out)]) == 0
        assert (out / "report.html").stat().st_size > 0
        if os.geteuid() != 0:  # root writes anywhere: only a user sees the refusal
            assert main(["report", str(copy)]) == 2
            assert "choose a directory you can write with --output" in capsys.readouterr().err
    finally:
        for p, m in mode.items():
            p.chmod(m)
    assert (copy / "study.db").read_bytes() == before and not (copy / "report").exists()


def test_an_old_store_without_the_new_columns_reports(copy, tmp_path):
    con = sqlite3.connect(copy / "study.db")
    have = {r[1] for r in con.execute("PRAGMA table_info(runs)")}
    for column in ("params", "flops", "metrics_epoch", "test_nll", "test_ece", "test_top5_acc", "test_macro_f1",
                   "val_nll", "val_ece", "val_top5_acc", "val_macro_f1", "best_val_acc", "last_val_acc",
                   "best_val_loss", "last_val_loss"):
        if column in have:
            con.execute(f"ALTER TABLE runs DROP COLUMN {column}")
    con.execute("DELETE FROM meta WHERE key NOT IN ('study')")
    con.commit()
    con.close()
    out = tmp_path / "old"
    assert main(["report", str(copy), "-o", str(out)]) == 0
    md = (out / "summary.md").read_text()
    assert "| digits\\_cnn | digits | – | – |" in md  # no parameter or FLOP counts stored: a dash


def test_several_directories_need_an_output_and_make_one_report(study, copy, tmp_path, capsys):
    assert main(["report", str(study), str(copy)]) == 2
    err = capsys.readouterr().err
    assert "--output" in err and err.count("\n") == 1
    out = tmp_path / "both"
    assert main(["report", str(study), str(copy), "--output", str(out)]) == 0
    md = (out / "summary.md").read_text()
    assert f"({study})".replace("_", "\\_") in md and f"({copy})".replace("_", "\\_") in md
    assert len(pd.read_csv(out / "runs.csv")) == 12  # the same runs in both: one each


@pytest.mark.parametrize("args, message", [
    (["--metric", "test_acuracy"], "unknown metric 'test_acuracy'; did you mean 'test_acc'?"),
    (["/no/such/dir"], "is not a directory"),
])
def test_bad_input_is_one_line_and_exit_2(study, tmp_path, capsys, args, message):
    argv = ["report", *(args if args[0].startswith("/") else [str(study), *args]), "-o", str(tmp_path / "o")]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert not (tmp_path / "o").exists()


def test_a_failed_write_leaves_no_temporary_file(tmp_path, monkeypatch):
    import cnnbench.store.files
    from cnnbench.report import files

    class Broken:  # the temporary file is created, then the disk is full
        def __init__(self, path, mode):
            self.fh = open(path, mode)  # noqa: SIM115  (a stand-in file object; closed in __exit__)

        def write(self, data):
            raise OSError("disk full")

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.fh.close()

    monkeypatch.setattr(cnnbench.store.files, "open", Broken, raising=False)
    with pytest.raises(OSError):
        files.write_text(tmp_path / "x.csv", "a,b\n")
    assert list(tmp_path.iterdir()) == []


CUSTOM_METRICS = """
name = "report-custom-metrics"
seeds = [0, 1]
epochs = 2
batch_size = 128
dataset = "digits"
model = "digits_cnn"
metrics = ["macro_f1"]
[grid]
optimizer = ["adam", { name = "sgd", learning_rate = 0.1 }]
"""


def test_custom_metrics_are_drawn_per_epoch_in_the_report(tmp_path):
    """issue 13: metrics = [...] are recorded per epoch (history_metrics) and shown in the report, as
    curves of the mean over seeds, training beside validation."""
    from cnnbench import analysis
    from cnnbench.report import paper
    from cnnbench.store.db import Store

    spec = tmp_path / "study.toml"
    spec.write_text(CUSTOM_METRICS)
    assert main(["run", str(spec), "-o", str(tmp_path / "study"), "--workers", "1", "-q", "--no-report"]) == 0
    out = tmp_path / "report"
    assert main(["report", str(tmp_path / "study"), "--output", str(out)]) == 0
    assert (out / "metric_curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert ET.parse(out / "metric_curves.svg").getroot().tag.endswith("svg")
    assert {"metric_curves.png", "metric_curves.svg"} <= set((out / "report_files.txt").read_text().split())
    assert "metric_curves.png" in (out / "summary.md").read_text()
    assert "Other metrics per epoch" in (out / "report.html").read_text()

    # the curves are the store's values: per configuration and epoch, the mean over the two seeds
    sc = analysis.compare_study(tmp_path / "study")
    extra = figures.history_metrics(sc)
    assert {"macro_f1", "val_macro_f1"} <= set(extra.columns) and len(extra) == 4 * 2  # 4 runs × 2 epochs
    store = Store.open_readonly(tmp_path / "study")
    try:
        stored = {(r["run_key"], r["epoch"], r["name"]): r["value"] for r in store.history_metrics()}
    finally:
        store.close()
    assert all(extra.set_index(["run_key", "epoch"]).loc[(k, e), n] == v for (k, e, n), v in stored.items())
    cell = sc.cells[0]
    configs = paper.config_names(sc, cell.runs)
    config_of = dict(zip(cell.runs["key"], configs))
    ranked = list(cell.comparison.ranking["config"])
    fig = figures.metric_curves(extra, ranked, config_of, pd.DataFrame(index=configs.unique()), "t")
    panels = [ax for ax in fig.axes if ax.get_lines()]
    assert [ax.get_title() for ax in panels] == ["macro f1, training", "macro f1, validation"]
    for ax, column in zip(panels, ("macro_f1", "val_macro_f1")):
        lines = ax.get_lines()
        assert [line.get_label() for line in lines] == ranked
        for line in lines:
            keys = [k for k, c in config_of.items() if c == line.get_label()]
            want = extra[extra["run_key"].isin(keys)].groupby("epoch")[column].mean()
            np.testing.assert_allclose(line.get_ydata(), want.to_numpy())
            np.testing.assert_array_equal(line.get_xdata(), want.index.to_numpy() + 1)


def test_metric_curves_accuracies_in_percent_losses_on_a_log_scale_and_none_without_values():
    rows = [{"run_key": f"{c}/{s}", "epoch": e, "digit_loss": 1.0 / (e + 1), "val_digit_accuracy": 0.5 + 0.1 * e,
             "val_digit_loss": 2.0 / (e + 1)} for c in ("a", "b") for s in range(3) for e in range(3)]
    extra = pd.DataFrame(rows)
    config_of = {f"{c}/{s}": c for c in ("a", "b") for s in range(3)}
    fig = figures.metric_curves(extra, ["a", "b"], config_of, pd.DataFrame(index=["a", "b"]), "t")
    drawn = {ax.get_title(): ax for ax in fig.axes if ax.get_lines()}
    assert set(drawn) == {"digit loss, training", "digit loss, validation", "digit accuracy, validation (%)"}
    assert drawn["digit loss, training"].get_yscale() == "log"
    np.testing.assert_allclose(drawn["digit accuracy, validation (%)"].get_lines()[0].get_ydata(), [50, 60, 70])
    assert drawn["digit accuracy, validation (%)"].get_yscale() == "linear"
    # a name logged for validation only leaves its training panel empty (turned off)
    assert sum(not ax.axison for ax in fig.axes) == 1
    assert figures.metric_curves(pd.DataFrame(), ["a"], {"a/0": "a"}, pd.DataFrame(index=["a"]), "t") is None
    assert figures.metric_curves(extra[["run_key", "epoch"]], ["a", "b"], config_of,
                                 pd.DataFrame(index=["a", "b"]), "t") is None


def test_long_configuration_labels_wrap_in_legends_and_tick_labels_only():
    long = ("optimizer=lars(learning_rate=1.0, momentum=0.9, weight_decay=0.0005, trust_coefficient=0.001, "
            "schedule={'name': 'polynomial', 'power': 2.0, 'end_learning_rate': 0.0001})")
    configs = [long, "optimizer=adam"]
    history = pd.DataFrame([{"run_key": f"{c}/{s}", "epoch": e, "train_loss": 1.0, "train_acc": 0.5, "val_loss": 1.0,
                             "val_acc": 0.5} for c in configs for s in range(2) for e in range(2)])
    fig = figures.learning_curves(history, configs, {f"{c}/{s}": c for c in configs for s in range(2)},
                                  pd.DataFrame(index=configs), "t")
    texts = [t.get_text() for ax in fig.axes if ax.get_legend() for t in ax.get_legend().get_texts()]
    assert texts[0].replace("\n", " ") == long and texts[0].count("\n") >= 2
    assert all(len(line) <= figures.LABEL_WIDTH for t in texts for line in t.split("\n"))
    assert {line.get_label() for ax in fig.axes for line in ax.get_lines()} == set(configs)  # the data keep theirs
    assert figures.wrapped("optimizer=adam") == "optimizer=adam"
