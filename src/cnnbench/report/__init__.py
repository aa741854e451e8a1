"""`cnnbench report STUDY_DIR`: the evidence, as files.

Writes into `STUDY_DIR/report/`: `runs.csv` (one row per run, config flattened to columns),
`history.csv` (one row per run and epoch), `learning_curves.png` (validation accuracy per epoch, one
line per configuration: mean over seeds with a min–max band), `test_accuracy_boxplot.png`,
`summary.md`, and `report.html`, self-contained (images embedded, no network needed).
"""

from __future__ import annotations

import base64
import html
import json
import math
import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from .. import analysis  # noqa: E402
from ..store import Store  # noqa: E402


def write_report(study_dir: str | os.PathLike) -> Path:
    study_dir = Path(study_dir)
    store = Store.open_existing(study_dir)
    try:
        name = store.get_meta("study") or study_dir.name
        tuning_metric = json.loads(store.get_meta("tuning") or "{}").get("metric", "val_acc")
        runs = analysis.runs_frame(store)
        hist = analysis.history_frame(store)
    finally:
        store.close()
    out = study_dir / "report"
    out.mkdir(exist_ok=True)
    table = analysis.rank_configurations(runs)
    marginals = analysis.marginal_rankings(runs) if not runs.empty else {}
    fried = analysis.friedman(runs) if not runs.empty else None
    tuning = Tuning(analysis.tuning_table(runs, tuning_metric), analysis.tuning_budget(runs), tuning_metric)
    if not runs.empty and not hist.empty:  # the curves show the ranked runs
        hist = hist[hist["run_key"].isin(set(analysis.final_runs(runs)["key"]))]

    _atomic_write(out / "runs.csv", runs.to_csv(index=False))
    _atomic_write(out / "history.csv", hist.to_csv(index=False))
    figures = {"learning_curves.png": learning_curves(hist), "test_accuracy_boxplot.png": boxplot(runs, table),
               "learning_rate_search.png": tuning.figure()}
    for fname, fig in figures.items():
        if fig is not None:
            fig.savefig(out / fname, dpi=110, bbox_inches="tight")
            plt.close(fig)
        else:
            (out / fname).unlink(missing_ok=True)
    current = analysis.current_runs(runs)
    counts = current["status"].value_counts().to_dict() if not runs.empty else {}
    if len(current) < len(runs):
        counts["kept from earlier versions of the spec (not ranked; in runs.csv)"] = len(runs) - len(current)
    _atomic_write(out / "summary.md", markdown(name, counts, table, marginals, fried, tuning))
    _atomic_write(out / "report.html", render_html(name, counts, table, marginals, fried, out, tuning))
    return out / "report.html"


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


# --- figures ------------------------------------------------------------------------------------


def _plain(label: str) -> str:
    """A label as matplotlib text: `$` would start mathtext (paths and references may hold one)."""
    return label.replace("$", r"\$")


def learning_curves(hist: pd.DataFrame):
    if hist.empty:
        return None
    metric = "val_acc" if hist["val_acc"].notna().any() else "train_acc"
    fig, ax = plt.subplots(figsize=(9, 5.5))
    colors = plt.get_cmap("tab20").colors
    groups = {label: g.groupby("epoch")[metric].agg(["mean", "min", "max"]) for label, g in hist.groupby("label")}
    def final_mean(label: str) -> float:  # NaN (a diverged run's last epoch) sorts last
        value = groups[label]["mean"].iloc[-1]
        return -value if value == value else math.inf

    ranked = sorted(groups, key=final_mean)
    for i, label in enumerate(ranked):  # legend in order of final accuracy, best first
        per_epoch = groups[label]
        epochs = per_epoch.index + 1
        c = colors[i % len(colors)]
        ax.plot(epochs, per_epoch["mean"], color=c, label=_plain(label), lw=1.6)
        ax.fill_between(epochs, per_epoch["min"], per_epoch["max"], color=c, alpha=0.15, lw=0)
    ax.set_xlabel("epoch")
    ax.set_ylabel("validation accuracy" if metric == "val_acc" else "training accuracy")
    ax.set_title("Learning curves (mean over seeds, band: min–max)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False)
    return fig


class Tuning:
    """The learning-rate search of a study with [tuning]: chosen rates, budget, sensitivity figure."""

    HEADER = ["configuration", "chosen learning rate", "rates tried", "search runs", "epochs", "seconds"]

    def __init__(self, table: pd.DataFrame, budget: pd.DataFrame, metric: str):
        self.table, self.budget, self.metric = table, budget, metric

    def __bool__(self) -> bool:
        return not self.table.empty

    def rows(self) -> list[list[str]]:
        chosen = {r.label: r.learning_rate for r in self.table[self.table["chosen"]].itertuples()}
        return [[r.label, f"{chosen[r.label]:g}" if r.label in chosen else "– (no finite result)", str(r.rates),
                 str(r.runs), str(int(r.epochs)), f"{r.seconds:.0f}" if r.seconds == r.seconds else "–"]
                for r in self.budget.itertuples()]

    def text(self) -> str:
        total = self.budget["seconds"].sum()
        return (f"Each configuration was trained at every rate with the search seeds; the rate with the best "
                f"mean final {self.metric} was chosen and run with all seeds. Search budget: "
                f"{int(self.budget['runs'].sum())} runs, {int(self.budget['epochs'].sum())} epochs, {total:.0f} s.")

    def figure(self):
        if not self:
            return None
        fig, ax = plt.subplots(figsize=(9, 5))
        colors = plt.get_cmap("tab20").colors
        for i, (label, g) in enumerate(self.table.groupby("label", sort=False)):
            finite = g[g["value"].abs() != float("inf")]
            c = colors[i % len(colors)]
            ax.plot(finite["learning_rate"], finite["value"], "o-", color=c, label=_plain(label), ms=3, lw=1.2)
            best = g[g["chosen"]]
            ax.plot(best["learning_rate"], best["value"], "*", color=c, ms=14, mec="black")
        ax.set_xscale("log")
        ax.set_xlabel("learning rate")
        ax.set_ylabel(self.metric.replace("_", " "))
        ax.set_title("Learning-rate search (star: chosen; diverged rates omitted)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False)
        return fig


def boxplot(runs: pd.DataFrame, table: pd.DataFrame):
    runs = analysis.final_runs(runs)
    if runs.empty or not (runs["status"] == "done").any():
        return None
    labels = list(table.loc[table["n"] > 0, "label"])
    done = runs[runs["status"] == "done"]
    data = [done.loc[done["label"] == lab, "test_acc"].dropna().to_numpy() for lab in labels]
    fig, ax = plt.subplots(figsize=(9, max(3, 0.32 * len(labels) + 1.5)))
    ax.boxplot(data[::-1], orientation="horizontal", tick_labels=[_plain(x) for x in labels[::-1]], showmeans=True)
    ax.set_xlabel("test accuracy")
    ax.set_title("Final test accuracy per configuration (best at the top)")
    ax.tick_params(axis="y", labelsize=7)
    ax.grid(axis="x", alpha=0.3)
    return fig


# --- text ---------------------------------------------------------------------------------------


def _pct(x: float) -> str:
    return "–" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{100 * x:.2f}"


def _p(x: float) -> str:
    return "–" if x is None or math.isnan(x) else (f"{x:.3g}" if x >= 1e-4 else "<1e-4")


def ranked_rows(table: pd.DataFrame) -> list[list[str]]:
    rows = []
    for r in table.itertuples():
        # an accuracy's interval is clipped to [0, 1]: with few seeds the t-interval can reach past it
        ci = f"[{_pct(max(r.ci_low, 0.0))}, {_pct(min(r.ci_high, 1.0))}]" if r.n > 1 else "–"
        notes = ", ".join(s for s in (f"{r.diverged} diverged" if r.diverged else "",
                                      f"{r.failed} failed" if r.failed else "") if s)
        rank = "–" if math.isnan(r.rank) else str(int(r.rank))
        rows.append([rank, r.label, str(r.n), f"{_pct(r.mean)} ± {_pct(r.std)}", ci, _p(r.p_vs_best), notes])
    return rows


SCORING = ("A diverged run (NaN/inf loss) counts at chance accuracy (1 / classes); a failed run (an error) "
           "is left out and noted.")

RANKED_HEADER = ["#", "configuration", "seeds", "test acc % (mean ± std)", "95% CI", "p vs best", "notes"]


def marginal_rows(t: pd.DataFrame) -> list[list[str]]:
    return [[str(r["rank"]), str(r.iloc[1]), "–" if math.isnan(r["mean_rank"]) else f"{r['mean_rank']:.2f}",
             f"{_pct(r['mean'])} ± {_pct(r['std'])}", str(r["n"])] for _, r in t.iterrows()]


MARGINAL_HEADER = ["#", "value", "mean rank", "test acc % (mean ± std)", "runs"]


def _md_table(header: list[str], rows: list[list[str]]) -> str:
    esc = lambda s: str(s).replace("|", "\\|")  # noqa: E731
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(esc(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _friedman_text(fried: dict | None) -> str:
    if not fried:
        return "Friedman test: not applicable (needs ≥ 3 configurations and ≥ 2 seeds common to all)."
    return (f"Friedman test over {fried['configurations']} configurations × {fried['seeds']} seeds: "
            f"χ² = {fried['statistic']:.3g}, p = {_p(fried['pvalue'])}.")


def markdown(name, counts, table, marginals, fried, tuning=None) -> str:
    parts = [f"# Study `{name}`", "", "Runs: " + ", ".join(f"{v} {k}" for k, v in sorted(counts.items())), "",
             "## Configurations ranked by test accuracy", "", _md_table(RANKED_HEADER, ranked_rows(table)), "",
             _friedman_text(fried) + " p vs best: Welch's t-test against the top configuration. " + SCORING, ""]
    for axis, t in marginals.items():
        parts += [f"## Marginal ranking: {axis}", "", _md_table(MARGINAL_HEADER, marginal_rows(t)), ""]
    if tuning:
        parts += ["## Learning-rate search", "", tuning.text(), "", _md_table(Tuning.HEADER, tuning.rows()), "",
                  "![learning-rate search](learning_rate_search.png)", ""]
    parts += ["## Figures", "", "![learning curves](learning_curves.png)", "",
              "![test accuracy](test_accuracy_boxplot.png)", ""]
    return "\n".join(parts)


def _html_table(header, rows) -> str:
    e = html.escape
    head = "".join(f"<th>{e(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{e(str(c))}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _img(path: Path, alt: str) -> str:
    if not path.exists():
        return f"<p><em>{html.escape(alt)}: no finished runs yet.</em></p>"
    data = base64.b64encode(path.read_bytes()).decode()
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


_CSS = """body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:1em 0;font-size:14px}th,td{border:1px solid #ccc;padding:4px 8px;text-align:left}
th{background:#f3f3f3}tbody tr:first-child{font-weight:600}img{max-width:100%}code{background:#f3f3f3;padding:1px 4px}"""


def render_html(name, counts, table, marginals, fried, out: Path, tuning=None) -> str:
    e = html.escape
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>cnnbench: {e(name)}</title>",
             f"<style>{_CSS}</style></head><body>", f"<h1>Study <code>{e(name)}</code></h1>",
             "<p>Runs: " + e(", ".join(f"{v} {k}" for k, v in sorted(counts.items()))) + "</p>",
             "<h2>Configurations ranked by test accuracy</h2>", _html_table(RANKED_HEADER, ranked_rows(table)),
             f"<p>{e(_friedman_text(fried))} p vs best: Welch's t-test against the top configuration. "
             f"{e(SCORING)}</p>"]
    for axis, t in marginals.items():
        parts += [f"<h2>Marginal ranking: {e(axis)}</h2>", _html_table(MARGINAL_HEADER, marginal_rows(t))]
    if tuning:
        parts += ["<h2>Learning-rate search</h2>", f"<p>{e(tuning.text())}</p>", _html_table(Tuning.HEADER, tuning.rows()),
                  _img(out / "learning_rate_search.png", "learning-rate search")]
    parts += ["<h2>Learning curves</h2>", _img(out / "learning_curves.png", "learning curves"),
              "<h2>Test accuracy</h2>", _img(out / "test_accuracy_boxplot.png", "test accuracy boxplot"),
              "<p>Data: <a href='runs.csv'>runs.csv</a>, <a href='history.csv'>history.csv</a>.</p>",
              "</body></html>"]
    return "\n".join(parts)
