"""`cnnbench report DIR [DIR ...]`: the study's answer and its evidence, as files.

Writes into the output directory (default `STUDY_DIR/report/`):

- `report.html` (self-contained: styles, script and figures inline, no network request) and
  `summary.md`, both from the templates in `templates/`: the verdict first, then what was run (spec,
  description, run counts, environment, dates, time, model sizes), each cell's ranked table with its
  tests, the comparison across cells, marginal rankings, the learning-rate search, notes, conflicts.
- tables fit for a paper (paper.py): `ranking.{csv,md,tex}`, `configurations_x_cells.*`, `A_x_B.*`;
  with several outputs `outputs.*` (each output's test accuracy and loss per configuration), also
  beside each cell's ranking in report.html and summary.md; `pairwise.*` (every comparison made: test,
  statistic, raw and Holm-adjusted p, effect sizes), `nemenyi.csv` (the post-hoc p-values),
  `metrics.*` (NLL, ECE, macro-F1, top-5 beside accuracy, and time per configuration); with several
  cells `aggregates.csv` and `probability_of_improvement.csv` (rliable's, analysis/aggregate.py).
- provenance: the versions of cnnbench (its git commit from a checkout) and of the statistics packages,
  and a checksum of each dataset's source files (provenance.py).
- figures as PNG and SVG (figures.py): learning curves, the other per-epoch values (custom metrics,
  per-output losses and accuracies), every run's value, critical-difference diagrams, heatmaps, the
  learning-rate search.
- the data: `runs.csv` (one row per run, config flattened), `history.csv` (per run and epoch),
  `conflicts.csv` (when several stores disagree).

The study directories are only read (`Store.open_readonly`): a read-only study directory reports with
`--output` elsewhere. Every file is replaced atomically (files.py).
"""

from __future__ import annotations

import base64
import itertools
import os
from dataclasses import dataclass, field
from pathlib import Path

import jinja2
import pandas as pd

from .. import analysis, metrics
from ..analysis.names import file_stems
from ..errors import EnvironmentFault, UserError, environment_fault
from ..store.files import remove_stale_temps_in
from . import escape, figures, files, paper, provenance, race, tables
from . import format as fmt
from .figures import Figure
from .tables import Table

TEMPLATES = Path(__file__).parent / "templates"


def write_report(study_dirs, output: str | os.PathLike | None = None, metric: str | None = None,
                 comparison=None) -> Path:
    """Analyse `study_dirs` (one directory, or several holding one study's runs) and write the report
    into `output`; return the path of report.html. `comparison`: their `compare_study(study_dirs,
    metric=metric)` when the caller has it already (`cnnbench run` prints it too), so it is not computed
    twice."""
    return analyse_and_write(study_dirs, output, metric, comparison)[0]


def analyse_and_write(study_dirs, output: str | os.PathLike | None = None, metric: str | None = None,
                      comparison=None):
    """`write_report`, returning (report.html's path, the `StudyComparison` it shows)."""
    dirs = _study_dirs(study_dirs)
    out = _output_dir(dirs, output)
    if metric is not None:
        metrics.check_name(metric)  # an unknown name is a one-line error before any work
    sources = [provenance.read_source(d) for d in dirs]
    sc = comparison if comparison is not None else analysis.compare_study(dirs, metric=metric)
    raw = provenance.raw_runs(dirs)
    try:
        out.mkdir(parents=True, exist_ok=True)
        remove_stale_temps_in(out)  # of a report killed while writing (each file is whole or absent)
    except OSError as e:
        raise UserError(f"cannot write the report into {out} ({e.strerror}); choose a directory you can write "
                        "with --output") from None
    try:
        data_files = write_data(sc, out)
        paper_files = paper.write_all(sc, out)
        figs = write_figures(sc, out)
        context = build_context(sc, sources, raw, figs, data_files + paper_files, out)
        env = _environment(out)
        files.write_text(out / "summary.md", env.get_template("summary.md.j2").render(context))
        html = files.write_text(out / "report.html", env.get_template("report.html.j2").render(context))
        _forget_stale(out, {p.name for p in data_files + paper_files}
                      | {n for f in figs.all() for n in (f.png, f.svg)} | {"summary.md", "report.html"})
    except OSError as e:  # a full disk or a read-only output: every file written so far is whole
        fault = environment_fault(e, e.filename or out / "report.html")
        if fault is None:
            raise
        raise EnvironmentFault(f"cannot write the report into {out}: {e.strerror or e}; free space there or "
                               "choose another directory with --output (every file already written is whole; "
                               "run the same command again)") from None
    return html, sc


MANIFEST = "report_files.txt"


def _forget_stale(out: Path, written: set[str]) -> None:
    """Remove what an earlier report wrote and this one did not (a table of an axis since dropped, a
    figure of another metric), then record what this one wrote. Only files the manifest names are
    touched: the output directory may hold the user's own files."""
    manifest = out / MANIFEST
    earlier = set(manifest.read_text(encoding="utf-8").split("\n")) if manifest.is_file() else set()
    for name in earlier - written:
        if name and "/" not in name and name != MANIFEST:
            (out / name).unlink(missing_ok=True)
    files.write_text(manifest, "\n".join(sorted(written)) + "\n")


def _study_dirs(study_dirs) -> list[Path]:
    dirs = [Path(study_dirs)] if isinstance(study_dirs, (str, os.PathLike)) else [Path(d) for d in study_dirs]
    if not dirs:
        raise UserError("give at least one study directory")
    for d in dirs:
        if not d.is_dir():
            raise UserError(f"{d} is not a directory; give a study directory (the --output of `cnnbench run`)")
    return list(dict.fromkeys(dirs))


def _output_dir(dirs: list[Path], output) -> Path:
    if output is not None:
        return Path(output)
    if len(dirs) > 1:
        raise UserError(f"{len(dirs)} study directories make one report: say where it goes with --output DIR")
    return dirs[0] / "report"


# --- data files ----------------------------------------------------------------------------------


def write_data(sc, out: Path) -> list[Path]:
    written = [files.write_text(out / "runs.csv", sc.runs.to_csv(index=False)),
               files.write_text(out / "history.csv", sc.history.to_csv(index=False))]
    if not sc.conflicts.empty:
        written.append(files.write_text(out / "conflicts.csv", sc.conflicts.to_csv(index=False)))
    else:
        (out / "conflicts.csv").unlink(missing_ok=True)  # from an earlier report of other stores
    return written


# --- figures -------------------------------------------------------------------------------------


@dataclass
class Figures:
    per_cell: dict[str, list[Figure]] = field(default_factory=dict)  # cell name -> its figures
    across: list[Figure] = field(default_factory=list)
    study: list[Figure] = field(default_factory=list)  # every run's value, heatmaps
    tuning: Figure | None = None
    race: dict[str, Figure] = field(default_factory=dict)  # cell name -> its race figure ([racing])

    def all(self) -> list[Figure]:
        return [*itertools.chain(*self.per_cell.values()), *self.across, *self.study,
                *([self.tuning] if self.tuning else []), *self.race.values()]


def write_figures(sc, out: Path) -> Figures:
    figs = Figures()
    one = len(sc.cells) == 1
    extra = figures.history_metrics(sc)  # custom metrics, per-output values: their curves below the learning curves
    stems = file_stems(cell.name for cell in sc.cells)  # distinct per cell, however long or alike the names
    for cell in sc.cells:
        suffix = "" if one else "_" + stems[cell.name]
        made = figs.per_cell.setdefault(cell.name, [])
        configs = paper.config_names(sc, cell.runs)
        # the runs' curves, drawn by configuration in ranking order, styled by their axis values
        drawn = (list(cell.comparison.ranking["config"]), dict(zip(cell.runs["key"], configs)),
                 _config_axes(cell.runs, configs))
        curves = figures.learning_curves(sc.history, *drawn, f"Learning curves: {cell.label}")
        if curves is not None:
            made.append(figures.save(curves, out, "learning_curves" + suffix, "Learning curves",
                                     "Mean over seeds per epoch; band: 95% t-interval of the mean (none from one "
                                     "seed). The loss is each run's own training loss: it compares runs trained "
                                     "with the same loss only."))
        more = figures.metric_curves(extra, *drawn, f"Other metrics per epoch: {cell.label}")
        if more is not None:
            made.append(figures.save(more, out, "metric_curves" + suffix, "Other metrics per epoch",
                                     "Every other value the epochs logged: custom metrics (metrics = [...]), a "
                                     "multi-output model's per-output losses and accuracies, what callbacks log; "
                                     "training (left) and validation (right). Mean over seeds per epoch; band: 95% "
                                     "t-interval of the mean (none from one seed)."))
        cd = figures.critical_difference(cell.comparison, cell.label)
        if cd is not None:
            made.append(figures.save(cd, out, "critical_difference" + suffix, "Critical-difference diagram",
                                     "Mean ranks over seeds (1 = best); configurations joined by a bar are not "
                                     f"told apart by the Nemenyi test at α = {cell.comparison.alpha:g}."))
    if sc.across is not None:
        cd = figures.critical_difference(sc.across, "across cells")
        if cd is not None:
            figs.across.append(figures.save(cd, out, "critical_difference_across_cells", "Critical-difference "
                                            "diagram across cells", "Mean ranks with the cells as blocks."))
        profile = figures.performance_profiles(sc.aggregates, sc.metric)
        if profile is not None:
            figs.across.append(figures.save(profile, out, "performance_profiles", "Performance profiles",
                                            "The share of each configuration's runs (every seed of every cell) "
                                            "scoring better than τ (Agarwal et al. 2021); a curve above another "
                                            "is better at every threshold."))
    comparisons = [(cell.label, cell.comparison) for cell in sc.cells]
    by_run = figures.metric_by_run(comparisons, sc.metric)
    if by_run is not None:
        figs.study.append(figures.save(by_run, out, f"{sc.metric.name}_per_run", f"{sc.metric.label} of every run",
                                       "Each point is one run (a diverged run at chance level for accuracy); "
                                       "bar: mean; line: 95% interval of the mean (from 3 seeds on)."))
    means = paper.configuration_means(sc)
    if not means.empty:
        for a, b in paper.axis_pairs(means, sc.cell_keys):
            parts = paper.axis_pair_means(means, a, b)
            stem = f"heatmap_{figures.slug(a)}_x_{figures.slug(b)}"
            per_column = b in sc.cell_keys  # columns of cells (datasets): values that do not compare
            figs.study.append(figures.save(
                figures.heatmap(parts, a, b, sc.metric, per_column=per_column), out, stem, f"{a} × {b}",
                f"Mean {sc.metric.label} over seeds of each {a} × {b} configuration"
                + ("; the colour of each column on its own scale (brightest: that column's best)." if per_column
                   else ".")))
    tuning_metric = tuning_settings(sc)
    table = analysis.tuning_table(sc.runs, tuning_metric) if not sc.runs.empty else pd.DataFrame()
    fig = figures.learning_rate_search(table, tuning_metric) if not table.empty else None
    if fig is not None:
        figs.tuning = figures.save(fig, out, "learning_rate_search", "Learning-rate search",
                                   f"Mean final {tuning_metric} over the search seeds against the learning rate; "
                                   "star: the chosen rate.")
    figs.race = race.write_figures(sc, out)
    return figs


def _config_axes(runs: pd.DataFrame, configs: pd.Series) -> pd.DataFrame:
    """Configuration -> the values of its axes (for grouping learning curves)."""
    cols = [c for c in runs.columns if c.startswith("axis.")]
    axes = runs[cols].assign(_config=configs.to_numpy()).drop_duplicates("_config").set_index("_config")
    return axes.rename(columns=lambda c: c[len("axis."):])


def tuning_settings(sc) -> str:
    import json

    tuning = sc.meta.get("tuning")
    return json.loads(tuning).get("metric", "val_acc") if tuning else "val_acc"


# --- the template context ------------------------------------------------------------------------


def build_context(sc, sources, raw: pd.DataFrame, figs: Figures, written: list[Path], out: Path) -> dict:
    metric = sc.metric
    per_output = dict(paper.outputs_tables(sc))  # several outputs: each output's test scores, per cell
    per_metric = dict(paper.metrics_tables(sc))  # each configuration's other test metrics and time, per cell
    cells = [{"name": cell.label, "full_name": cell.name, "ranking": tables.ranking(cell.comparison, metric),
              "metrics": per_metric.get(str(cell.label)),
              "outputs": per_output.get(str(cell.name)),
              "friedman": tables.friedman_line(cell.comparison), "pairwise": tables.pairwise(cell.comparison, metric),
              "verdict": cell.comparison.verdict, "notes": cell.comparison.notes,
              "figures": figs.per_cell.get(cell.name, [])} for cell in sc.cells]
    across = None
    if sc.across is not None:
        agg_table, poi_table = (tables.aggregates(sc.aggregates, metric) if sc.aggregates is not None
                                else (None, None))
        across = {"ranking": tables.ranking(sc.across, metric), "friedman": tables.friedman_line(sc.across),
                  "aggregates": agg_table, "improvement": poi_table,
                  "left_out": sc.aggregates.left_out if sc.aggregates is not None else [],
                  "pairwise": tables.pairwise(sc.across, metric), "verdict": sc.across.verdict,
                  "notes": sc.across.notes, "figures": figs.across}
    env_header, env_rows = provenance.environments(raw)
    return {
        "title": " + ".join(sc.study_names) or "study",
        "verdict": sc.verdict,
        "notes": sc.notes,
        "metric": metric,
        "metric_heading": fmt.heading(metric),
        "alpha": sc.alpha,
        "rope": sc.rope,
        "sources": sources,
        "counts": race.status_counts(sc, provenance.status_counts(raw)),
        "environment": tables.plain(env_header, env_rows),
        "timing": provenance.timing(raw),
        "models": tables.plain(["model", "dataset", "parameters", "FLOPs per image"], provenance.model_costs(raw)),
        "software": tables.plain(["package", "version"], provenance.software()),
        "datasets": tables.plain(["dataset", "checksum"], provenance.dataset_checksums(raw)),
        "cell_names": [(cell.label, cell.name) for cell in sc.cells if cell.label != cell.name],
        "cell_keys": sc.cell_keys,
        "cells": cells,
        "across": across,
        "marginals": marginal_tables(sc),
        "tuning": tuning_context(sc, figs.tuning),
        "race": race.context(sc, figs.race),
        "conflicts": tables.conflicts(sc.conflicts),
        "study_figures": figs.study,
        "figures": figs.all(),
        "files": [p.name for p in written] + [f.svg for f in figs.all()],
        "tied_mark": tables.TIED_MARK,
    }


def marginal_tables(sc) -> list[tuple[str, Table]]:
    runs = sc.runs
    if runs.empty or sc.metric.name not in runs:
        return []
    return [(axis, tables.marginal(t, axis, sc.metric))
            for axis, t in analysis.marginal_rankings(runs, sc.metric.name, sc.metric.higher_is_better).items()]


def tuning_context(sc, figure: Figure | None) -> dict | None:
    metric = tuning_settings(sc)
    if sc.runs.empty:
        return None
    table = analysis.tuning_table(sc.runs, metric)
    if table.empty:
        return None
    budget = analysis.tuning_budget(sc.runs)
    text = (f"Each configuration was trained at every rate with the search seeds; the rate with the best mean final "
            f"{metric} on the validation set was chosen, and the configuration was then run at that rate with all "
            f"the study's seeds. The chosen rate is selected on validation data; the ranking above is on "
            f"{sc.metric.label}, with the search seed's run ranked alongside the other seeds. Search budget: "
            f"{int(budget['runs'].sum())} runs, {int(budget['epochs'].sum())} epochs, "
            f"{fmt.seconds(budget['seconds'].sum())}.")
    return {"text": text, "table": tables.tuning(table, budget), "figure": figure}


# --- rendering -----------------------------------------------------------------------------------


def _environment(out: Path) -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), undefined=jinja2.StrictUndefined,
                             autoescape=jinja2.select_autoescape(enabled_extensions=("html.j2",), default=False),
                             trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True)
    env.filters["md"] = escape.markdown
    env.globals["md_table"] = paper.markdown
    env.globals["md_fence"] = escape.markdown_fence
    env.globals["data_uri"] = lambda name: _data_uri(out / name)
    return env


def _data_uri(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")

