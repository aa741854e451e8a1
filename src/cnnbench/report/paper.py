"""Tables fit for a paper, written into the report directory as CSV, Markdown and LaTeX (booktabs).

- `ranking.*`: each cell's ranked configurations (mean ± std, 95% CI, mean rank, Holm-adjusted p
  against the best); the best in bold, † where not significantly worse than the best.
- `configurations_x_cells.*` (several cells, e.g. datasets): a configuration per row, a cell per
  column — the seed papers' loss × dataset layout; per column the best in bold, † as above.
- `pairwise.*`: every comparison made (a, b, test, statistic, raw p, Holm-adjusted p, rank-biserial r,
  mean paired difference with its 95% interval; Bayesian probabilities with a rope); `nemenyi.csv`: the
  Nemenyi p-values behind the critical-difference diagrams; `metrics.*`: each configuration's test
  accuracy, NLL, ECE, macro-F1 and top-5 accuracy (those stored) and its time per run and in all.
- `AXIS_x_AXIS.*` for every two axes that vary (e.g. `model_x_optimizer`): the means of the
  configurations, one table per combination of the other axes; the best of each table in bold.

CSV holds raw numbers in the metric's own units (accuracy as a fraction); Markdown and LaTeX show
them as the report does (percent for a fraction metric).
"""

from __future__ import annotations

import itertools
import re
from pathlib import Path

import pandas as pd

from ..analysis.names import file_stems
from ..metrics import Metric
from . import escape, files
from . import format as fmt
from .format import Entry
from .tables import TIED_MARK, Table, ranking

# --- one long frame of configuration means --------------------------------------------------------


def config_names(sc, runs: pd.DataFrame) -> pd.Series:
    """Each run's configuration as the comparison names it: its axes outside the cell keys, joined
    (the rule of analysis.compare_study), or the study's name when no such axis varies."""
    if "config" in runs.columns:
        return runs["config"]
    cols = [c for c in runs.columns if c.startswith("axis.") and c[len("axis."):] not in sc.cell_keys]
    if not cols:
        return pd.Series(sc.study_names[0] if sc.study_names else "all", index=runs.index)
    return runs[cols].astype(str).apply(lambda r: " · ".join(f"{c[len('axis.'):]}={v}" for c, v in r.items()),
                                        axis=1)


def configuration_means(sc) -> pd.DataFrame:
    """One row per (cell, configuration): the cell's keys, the configuration's axis values, and its
    ranking row (mean, std, n, rank, tied_with_best)."""
    rows = []
    for cell in sc.cells:
        runs = cell.runs.assign(_config=config_names(sc, cell.runs))
        axis_cols = [c for c in runs.columns if c.startswith("axis.")]
        axes = runs.drop_duplicates("_config").set_index("_config")[axis_cols]
        for r in cell.comparison.ranking.itertuples():
            values = axes.loc[r.config].dropna().to_dict() if r.config in axes.index else {}
            rows.append({"cell": cell.name, "cell_label": cell.label, **{f"axis.{k}": v for k, v in cell.keys.items()},
                         **values, "config": r.config, "mean": r.mean, "std": r.std, "n": r.n,
                         "rank": r.rank, "best": bool(r.best),
                         "tied_with_best": bool(r.tied_with_best) and bool(r.can_reject_vs_best)
                         and cell.comparison.decisive})
    return pd.DataFrame(rows)


def varying_axes(means: pd.DataFrame) -> list[str]:
    return [c[len("axis."):] for c in means.columns if c.startswith("axis.") and means[c].nunique() > 1]


# --- renderers -----------------------------------------------------------------------------------


def markdown(table: Table) -> str:
    def cell(e: Entry) -> str:
        t = escape.markdown(e.text)
        return f"**{t}**" if e.strong and e.text != fmt.DASH else t

    lines = ["| " + " | ".join(escape.markdown(h) for h in table.header) + " |", "|" + "---|" * len(table.header)]
    lines += ["| " + " | ".join(cell(e) for e in row) + " |" for row in table.rows]
    return "\n".join(lines)


def _latex_text(s: str) -> str:
    s = escape.latex(s)
    return (s.replace(" ± ", r" $\pm$ ").replace("±", r"$\pm$").replace(TIED_MARK, r"$^\dagger$")
            .replace("–", "--").replace("−", "-").replace("×", r"$\times$").replace("χ²", r"$\chi^2$")
            .replace("≈", r"$\approx$").replace("α", r"$\alpha$"))


def latex(table: Table, caption: str, label: str) -> str:
    def cell(e: Entry) -> str:
        t = _latex_text(e.text)
        return rf"\textbf{{{t}}}" if e.strong and e.text != fmt.DASH else t

    align = "".join("r" if _numeric_column(table, j) else "l" for j in range(len(table.header)))
    lines = [r"\begin{table}[htbp]", r"\centering", rf"\caption{{{_latex_text(caption)}}}",
             rf"\label{{{label}}}", rf"\begin{{tabular}}{{{align}}}", r"\toprule",
             " & ".join(_latex_text(h) for h in table.header) + r" \\", r"\midrule"]
    lines += [" & ".join(cell(e) for e in row) + r" \\" for row in table.rows]
    lines += [r"\bottomrule", r"\end{tabular}", r"\end{table}"]
    return "\n".join(lines)


def _numeric_column(table: Table, j: int) -> bool:
    return any(row[j].sort is not None for row in table.rows)


def _slug(s: str) -> str:
    return file_stems([s], fallback="x")[str(s)]


_PREAMBLE = ("% cnnbench tables; needs \\usepackage{booktabs}. "
             "Best in bold; $^\\dagger$: not significantly worse than the best.\n")


# --- the paper tables ----------------------------------------------------------------------------


def paper_ranking(c, metric: Metric) -> Table:
    """The ranked table with the columns a paper prints; the tie mark next to the mean."""
    full = ranking(c, metric)
    keep = [0, 1, 2, 3, 4, 5, 6]  # #, configuration, n, mean ± std, CI, mean rank, p vs best
    rows = []
    for row, r in zip(full.rows, c.ranking.itertuples()):
        row = [row[j] for j in keep]
        if not bool(r.best) and bool(r.tied_with_best) and bool(r.can_reject_vs_best) and c.decisive:
            row[3] = row[3]._replace(text=row[3].text + f" {TIED_MARK}")
        rows.append(row)
    return Table([full.header[j] for j in keep], rows)


def ranking_frame(sc) -> pd.DataFrame:
    """Every cell's ranking in one frame, with the cell's keys as columns (raw metric units)."""
    frames = []
    for cell in sc.cells:
        t = cell.comparison.ranking.copy()
        for k, v in reversed(list(cell.keys.items())):
            t.insert(0, k, v)
        t.insert(0, "cell", cell.name)
        frames.append(t)
    out = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    out["metric"] = sc.metric.name
    return out


def configurations_x_cells(means: pd.DataFrame, metric: Metric) -> tuple[Table, pd.DataFrame]:
    cells = list(dict.fromkeys(means["cell"]))
    configs = list(dict.fromkeys(means.sort_values("rank")["config"]))
    by = {(r.config, r.cell): r for r in means.itertuples()}
    rows = []
    for config in configs:
        row = [Entry(str(config))]
        for cell in cells:
            r = by.get((config, cell))
            if r is None:
                row.append(Entry(fmt.DASH))
                continue
            shown = fmt.mean_std(r.mean, r.std, metric) + (f" {TIED_MARK}" if r.tied_with_best and not r.best else "")
            row.append(Entry(shown, fmt.number(r.mean), strong=bool(r.best)))
        rows.append(row)
    wide = means.pivot_table(index="config", columns="cell", values="mean", sort=False)
    wide = wide.reindex(index=configs, columns=cells)
    labels = dict(zip(means["cell"], means["cell_label"])) if "cell_label" in means else {}
    return Table(["configuration", *(labels.get(c, c) for c in cells)], rows), wide.reset_index()


def axis_pair_means(means: pd.DataFrame, a: str, b: str, value: str = "mean") -> list[tuple[str, pd.DataFrame]]:
    """Axis `a` × axis `b` of the configurations' `value` (mean or std over seeds), one frame per
    combination of the other varying axes: [(title, frame indexed by a's values, b's as columns)]."""
    rest = [x for x in varying_axes(means) if x not in (a, b)]
    groups = means.groupby([f"axis.{x}" for x in rest], sort=False, dropna=False) if rest else [((), means)]
    out = []
    for key, g in groups:
        key = key if isinstance(key, tuple) else (key,)
        title = " · ".join(f"{x}={v}" for x, v in zip(rest, key))
        wide = g.pivot_table(index=f"axis.{a}", columns=f"axis.{b}", values=value, sort=False, dropna=False)
        out.append((title, wide.rename_axis(index=a, columns=b)))
    return out


def axis_pairs(means: pd.DataFrame, cell_keys: list[str]) -> list[tuple[str, str]]:
    """Every two varying axes, a cell key (dataset, model) as the columns: the papers' loss × dataset."""
    pairs = []
    for a, b in itertools.combinations(varying_axes(means), 2):
        pairs.append((b, a) if a in cell_keys and b not in cell_keys else (a, b))
    return pairs


def axis_pair_tables(means: pd.DataFrame, a: str, b: str, metric: Metric, higher_is_better: bool,
                     per_column: bool = False):
    """The tables of `axis_pair_means` as mean ± std, the best of each table in bold (of each column
    with `per_column`: when the columns are cells, whose values do not compare): [(title, Table)], and
    the long CSV frame."""
    out = []
    for (title, mean), (_, std) in zip(axis_pair_means(means, a, b), axis_pair_means(means, a, b, "std")):
        best = mean.max() if higher_is_better else mean.min()  # per column
        if not per_column:
            best[:] = best.max() if higher_is_better else best.min()
        rows = [[Entry(str(av))] + [Entry(fmt.mean_std(m, std.loc[av, bv] if bv in std else None, metric),
                                          fmt.number(m), strong=m == best[bv]) for bv, m in row.items()]
                for av, row in mean.iterrows()]
        out.append((title, Table([f"{a} × {b}", *map(str, mean.columns)], rows)))
    rest = [x for x in varying_axes(means) if x not in (a, b)]
    long = means[[*[f"axis.{x}" for x in rest], f"axis.{a}", f"axis.{b}", "mean", "std", "n"]]
    return out, long.rename(columns=lambda c: c.removeprefix("axis."))


# --- several outputs: each output's test scores -------------------------------------------------------

OUTPUT_TABLE_SCORES = ("accuracy", "loss")  # per output: test_<output>_accuracy, test_<output>_loss
_TARGET = re.compile(r"^config\.targets\.([A-Za-z][A-Za-z0-9_]*)\.from$")


def output_names(sc) -> list[str]:
    """The outputs of the study's runs (`targets = {...}`): the one the study is ranked on first (its metric
    `test_<output>_...`), then the others by name (a stored config keeps no order); [] for one output."""
    names = sorted(m.group(1) for c in sc.runs.columns if (m := _TARGET.match(c))) if not sc.runs.empty else []
    # the longest name that prefixes the metric: with outputs "a" and "a_b", test_a_b_accuracy is a_b's
    first = sorted((n for n in names if sc.metric.name.startswith((f"test_{n}_", f"val_{n}_"))), key=len)[-1:]
    return first + [n for n in names if n not in first]


def outputs_frame(sc) -> pd.DataFrame:
    """Per cell and configuration (in its ranking's order): for every output, the mean, the standard
    deviation over seeds and the number of runs of its test accuracy and test loss (finished runs
    that recorded them; raw units). Empty for a study with one output."""
    outputs = output_names(sc)
    rows = []
    for cell in sc.cells if outputs else ():
        runs = cell.runs.assign(_config=config_names(sc, cell.runs))
        runs = runs[runs["status"] == "done"]
        for config in cell.comparison.ranking["config"]:
            mine = runs[runs["_config"] == config]
            row = {"cell": cell.name, **cell.keys, "config": config}
            for output in outputs:
                for score in OUTPUT_TABLE_SCORES:
                    column = f"test_{output}_{score}"
                    values = (mine[column] if column in mine else pd.Series(dtype=float)).dropna().astype(float)
                    row[f"{column}_mean"] = values.mean() if len(values) else float("nan")
                    row[f"{column}_std"] = values.std() if len(values) > 1 else float("nan")
                    row[f"{column}_n"] = len(values)
            rows.append(row)
    return pd.DataFrame(rows)


def _one_loss(runs: pd.DataFrame | None, output: str) -> bool:
    """Whether every run of a cell trained `output` with the same loss (name and options): its own
    `config.loss.<output>.*` columns, or the one loss of every output (`config.loss.*`)."""
    if runs is None or runs.empty:
        return False
    mine = [c for c in runs.columns if c.startswith(f"config.loss.{output}.")]
    if not mine:
        mine = [c for c in runs.columns if c.startswith("config.loss.") and c.count(".") == 2]
    return len(runs[mine].astype(str).drop_duplicates()) <= 1


def outputs_tables(sc, frame: pd.DataFrame | None = None) -> list[tuple[str, Table]]:
    """Per cell: a configuration per row (the ranking's order), per output its test accuracy and test
    loss as mean ± std over seeds; the best of each column in bold (highest accuracy; lowest loss only
    where every configuration trained that output with the same loss: losses of different functions are
    not comparable)."""
    frame = outputs_frame(sc) if frame is None else frame
    if frame.empty:
        return []
    outputs = output_names(sc)
    columns = [(f"test_{o}_{s}", sc.catalog.get(f"test_{o}_{s}")) for o in outputs for s in OUTPUT_TABLE_SCORES]
    out = []
    runs_of = {c.name: c.runs for c in sc.cells}
    for cell, part in frame.groupby("cell", sort=False):
        best = {}
        for (column, metric), (output, score) in zip(columns, [(o, s) for o in outputs for s in OUTPUT_TABLE_SCORES]):
            means = part[f"{column}_mean"].dropna()
            comparable = score != "loss" or _one_loss(runs_of.get(str(cell)), output)
            best[column] = (means.max() if metric.higher_is_better else means.min()) \
                if len(means) and comparable else None
        rows = []
        for r in part.to_dict("records"):
            n = max((int(r[f"{c}_n"]) for c, _ in columns), default=0)
            row = [Entry(str(r["config"])), Entry(fmt.count(n), float(n))]
            for column, metric in columns:
                mean = r[f"{column}_mean"]
                row.append(Entry(fmt.mean_std(mean, r[f"{column}_std"], metric), fmt.number(mean),
                                 strong=best[column] is not None and mean == best[column]))
            rows.append(row)
        header = ["configuration", "n", *(fmt.heading(m).removeprefix("test ") + ": mean ± std" for _, m in columns)]
        out.append((str(cell), Table(header, rows)))
    return out


def write_all(sc, out: Path) -> list[Path]:
    """Write every paper table into `out`; return the paths written."""
    metric, written = sc.metric, []
    caption = f"{metric.label}{fmt.unit(metric)}, mean ± std over seeds"

    def put(name: str, text: str) -> None:
        written.append(files.write_text(out / name, text))

    put("ranking.csv", ranking_frame(sc).to_csv(index=False))
    written += write_statistics_files(sc, out)
    md, tex = [], [_PREAMBLE]
    stems = file_stems(cell.name for cell in sc.cells)
    for cell in sc.cells:
        c = cell.comparison
        t = paper_ranking(c, metric)
        marks = (f"{TIED_MARK}: not significantly worse than the best (Wilcoxon, Holm, α = {c.alpha:g})" if c.decisive
                 else f"no pairwise test could separate configurations with {int(c.ranking['n'].min())} seeds")
        md += [f"## {escape.markdown(cell.label)}", "", markdown(t), "", escape.markdown(marks + "."), ""]
        tex += [latex(t, f"{cell.label}: {caption}; {marks}", f"tab:ranking-{stems[cell.name]}"), ""]
    md.append("Best in bold.")
    put("ranking.md", "\n".join(md) + "\n")
    put("ranking.tex", "\n".join(tex))

    frame = outputs_frame(sc)
    if not frame.empty:  # several outputs: each output's test accuracy and loss per configuration
        parts = outputs_tables(sc, frame)
        what = ("test accuracy (%) and test loss of each output, mean ± std over seeds; best per column in bold "
                "(a loss only where the configurations share that output's loss)")
        _put_per_cell(put, "outputs", frame, parts, what)

    means = configuration_means(sc)
    if means.empty:
        return written
    if len(sc.cells) > 1:
        t, wide = configurations_x_cells(means, metric)
        put("configurations_x_cells.csv", wide.to_csv(index=False))
        put("configurations_x_cells.md", markdown(t) + f"\n\n{escape.markdown(caption)}; best per column in bold.\n")
        put("configurations_x_cells.tex", _PREAMBLE + latex(t, caption + "; best per column in bold",
                                                            "tab:configurations-x-cells") + "\n")
    for a, b in axis_pairs(means, sc.cell_keys):
        per_column = b in sc.cell_keys
        parts, long = axis_pair_tables(means, a, b, metric, sc.metric.higher_is_better, per_column)
        stem = f"{_slug(a)}_x_{_slug(b)}"
        put(f"{stem}.csv", long.to_csv(index=False))
        put(f"{stem}.md", "\n\n".join((f"## {escape.markdown(title)}\n\n" if title else "") + markdown(t)
                                      for title, t in parts) + "\n")
        put(f"{stem}.tex", _PREAMBLE + "\n\n".join(
            latex(t, f"{a} × {b}{': ' + title if title else ''}: {caption}; best "
                     f"{'per column ' if per_column else ''}in bold", f"tab:{stem}-{_slug(title)}")
            for title, t in parts) + "\n")
    return written


# --- every comparison made, the Nemenyi p-values, the other metrics ----------------------------------


def pairwise_frame(sc) -> pd.DataFrame:
    """Every pairwise comparison the analysis made, per cell and across cells: the test used, its statistic,
    the raw and the Holm-adjusted p-value, the rank-biserial effect size and the mean paired difference
    (a − b, the metric's units) with its 95% interval; the Bayesian probabilities with a rope."""
    frames = []
    parts = [("within cell", cell.name, cell.label, cell.comparison) for cell in sc.cells]
    if sc.across is not None:
        parts.append(("across cells", "across cells", "across cells", sc.across))
    for scope, name, label, c in parts:
        if c.pairwise is None or c.pairwise.empty:
            continue
        t = c.pairwise.rename(columns={"p": "p_raw", "effect_size": "rank_biserial_r"}).copy()
        t.insert(0, "blocks", c.block_name)
        t.insert(0, "cell_label", label)
        t.insert(0, "cell", name)
        t.insert(0, "scope", scope)
        frames.append(t)
    out = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    if not out.empty:
        out["metric"] = sc.metric.name
    return out


def nemenyi_frame(sc) -> pd.DataFrame:
    """The Nemenyi post-hoc p-values (scikit-posthocs) of every comparison that has them, long: cell, a, b, p."""
    rows = []
    parts = [(cell.name, cell.comparison) for cell in sc.cells]
    if sc.across is not None:
        parts.append(("across cells", sc.across))
    for name, c in parts:
        if c.nemenyi is None:
            continue
        names = list(c.ranking["config"])
        for i, a in enumerate(names):
            for b in names[i + 1:]:
                rows.append({"cell": name, "a": a, "b": b, "p_nemenyi": float(c.nemenyi.loc[a, b]),
                             "mean_rank_a": float(c.ranking.set_index("config").loc[a, "mean_rank"]),
                             "mean_rank_b": float(c.ranking.set_index("config").loc[b, "mean_rank"]),
                             "critical_difference": c.critical_difference})
    return pd.DataFrame(rows)


OTHER_METRICS = ("test_acc", "test_nll", "test_ece", "test_macro_f1", "test_top5_acc")


def metrics_frame(sc) -> pd.DataFrame:
    """Per cell and configuration (ranking order): mean, std and n over seeds of each stored test metric that
    any run has (accuracy, NLL, ECE, macro-F1, top-5; a diverged run at chance for accuracies, else left
    out), and the time per run (mean seconds) and in all."""
    from ..analysis import scored

    rows = []
    present = [m for m in OTHER_METRICS if m in sc.runs and sc.runs[m].notna().any()] if not sc.runs.empty else []
    for cell in sc.cells:
        runs = cell.runs.assign(_config=config_names(sc, cell.runs))
        for config in cell.comparison.ranking["config"]:
            mine = runs[runs["_config"] == config]
            row = {"cell": cell.name, "cell_label": cell.label, **cell.keys, "config": config}
            for m in present:
                values = scored(mine, m).dropna().astype(float)
                row[f"{m}_mean"] = values.mean() if len(values) else float("nan")
                row[f"{m}_std"] = values.std() if len(values) > 1 else float("nan")
                row[f"{m}_n"] = len(values)
            seconds = pd.to_numeric(mine["seconds"], errors="coerce").dropna()
            row["seconds_per_run"] = seconds.mean() if len(seconds) else float("nan")
            row["seconds_total"] = seconds.sum() if len(seconds) else float("nan")
            row["runs"] = len(mine)
            rows.append(row)
    return pd.DataFrame(rows)


def metrics_tables(sc, frame: pd.DataFrame | None = None) -> list[tuple[str, Table]]:
    """Per cell: each configuration's test metrics (mean ± std over seeds) and its time per run; the
    best of each metric's column in bold."""
    from .. import metrics as metrics_mod

    frame = metrics_frame(sc) if frame is None else frame
    if frame.empty:
        return []
    present = [m for m in OTHER_METRICS if f"{m}_mean" in frame]
    out = []
    for _, part in frame.groupby("cell", sort=False):
        best = {}
        for m in present:
            means = part[f"{m}_mean"].dropna()
            best[m] = (means.max() if metrics_mod.get(m).higher_is_better else means.min()) if len(means) else None
        rows = []
        for r in part.to_dict("records"):
            row = [Entry(str(r["config"])), Entry(fmt.count(r["runs"]), float(r["runs"]))]
            for m in present:
                metric = metrics_mod.get(m)
                row.append(Entry(fmt.mean_std(r[f"{m}_mean"], r[f"{m}_std"], metric), fmt.number(r[f"{m}_mean"]),
                                 strong=best[m] is not None and r[f"{m}_mean"] == best[m]))
            row += [Entry(fmt.seconds(r["seconds_per_run"]), fmt.number(r["seconds_per_run"])),
                    Entry(fmt.seconds(r["seconds_total"]), fmt.number(r["seconds_total"]))]
            rows.append(row)
        header = ["configuration", "runs", *(fmt.heading(metrics_mod.get(m)) + ": mean ± std" for m in present),
                  "time per run", "time in all"]
        out.append((str(part["cell_label"].iloc[0]), Table(header, rows)))
    return out


def write_statistics_files(sc, out: Path) -> list[Path]:
    """pairwise.{csv,md,tex}, nemenyi.csv and metrics.{csv,md,tex}; the paths written."""
    from .tables import pairwise as pairwise_table

    written: list[Path] = []

    def put(name: str, text: str) -> None:
        written.append(files.write_text(out / name, text))

    frame = pairwise_frame(sc)
    if not frame.empty:
        put("pairwise.csv", frame.to_csv(index=False))
        parts = [(cell.label, cell.comparison) for cell in sc.cells]
        if sc.across is not None:
            parts.append(("across cells", sc.across))
        parts = [(title, c) for title, c in parts if c.pairwise is not None and not c.pairwise.empty]
        what = ("every pairwise comparison made: the test, its statistic, the raw and the Holm-adjusted p-value "
                "(Holm over the comparisons of the same cell), the rank-biserial r and the mean paired difference "
                "a − b with its 95% interval")
        put("pairwise.md", "\n\n".join(f"## {escape.markdown(title)}\n\n{markdown(pairwise_table(c, sc.metric))}"
                                       for title, c in parts) + f"\n\n{escape.markdown(what.capitalize())}.\n")
        put("pairwise.tex", _PREAMBLE + "\n\n".join(
            latex(pairwise_table(c, sc.metric), f"{title}: {what}", f"tab:pairwise-{_slug(title)}")
            for title, c in parts) + "\n")
    if getattr(sc, "aggregates", None) is not None:  # rliable's aggregates across cells
        put("aggregates.csv", sc.aggregates.table.to_csv(index=False))
        put("probability_of_improvement.csv", sc.aggregates.improvement.to_csv(index=False))
    nemenyi = nemenyi_frame(sc)
    if not nemenyi.empty:
        put("nemenyi.csv", nemenyi.to_csv(index=False))
    frame = metrics_frame(sc)
    if not frame.empty:
        parts2 = metrics_tables(sc, frame)
        what = "test metrics, mean ± std over seeds, and time per configuration; best per metric in bold"
        _put_per_cell(put, "metrics", frame, parts2, what)
    return written


def _put_per_cell(put, stem: str, frame, parts, what: str) -> None:
    """`STEM.csv` (the frame), `STEM.md` and `STEM.tex` (one table per cell, headed by the cell's name when
    there are several; `what` is the caption)."""
    one = len(parts) == 1
    put(f"{stem}.csv", frame.to_csv(index=False))
    put(f"{stem}.md", "\n\n".join(("" if one else f"## {escape.markdown(cell)}\n\n") + markdown(t)
                                   for cell, t in parts) + f"\n\n{escape.markdown(what.capitalize())}.\n")
    put(f"{stem}.tex", _PREAMBLE + "\n\n".join(
        latex(t, ("" if one else f"{cell}: ") + what, f"tab:{stem}{'' if one else '-' + _slug(cell)}")
        for cell, t in parts) + "\n")
