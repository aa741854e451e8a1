"""The report's figures, each written as PNG and SVG (atomically: no half-written image, no `.tmp`).

- learning curves: loss and accuracy, training and validation, per epoch; the mean over seeds with a
  95% t-interval band (no band from one seed); at most 10 configurations per axes, each with its own
  colour (small multiples by an axis value, or by rank, beyond that); markers when there are few
  epochs, so a one-epoch study draws points.
- metric curves: the same for every other value an epoch logged (the store's `history_metrics`:
  custom metrics `metrics = [...]`, a multi-output model's per-output losses and accuracies, what a
  callback logs), one row per name, training beside validation.
- `metric_by_run`: every run's value as a point, per configuration, in the tables' units, with the
  mean and its 95% interval.
- critical-difference diagrams (scikit-posthocs), only where the Friedman test applies.
- axis × axis heatmaps of configuration means.
- the learning-rate search's sensitivity.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from ..store.db import Store
from . import files
from . import format as fmt

MAX_PER_AXES = 10  # tab10: ten distinct colours; more lines in one axes are unreadable anyway
COLORS = plt.get_cmap("tab10").colors
MARKERS_UP_TO_EPOCHS = 20


@dataclass
class Figure:
    stem: str  # file name without extension; .png and .svg exist
    title: str
    caption: str

    @property
    def png(self) -> str:
        return self.stem + ".png"

    @property
    def svg(self) -> str:
        return self.stem + ".svg"


def save(fig, out: Path, stem: str, title: str, caption: str) -> Figure:
    try:
        for ext in ("png", "svg"):
            with files.atomic_path(out / f"{stem}.{ext}") as tmp:
                fig.savefig(tmp, format=ext, dpi=110, bbox_inches="tight", metadata=_metadata(ext))
    finally:
        plt.close(fig)
    return Figure(stem, title, caption)


def _metadata(ext: str) -> dict:
    # No creation date: the same runs give byte-identical figures.
    return {"Date": None} if ext == "svg" else {"Software": None}


def plain(label) -> str:
    """A label as matplotlib text: `$` would start mathtext (paths and references may hold one)."""
    return str(label).replace("$", r"\$")


LABEL_WIDTH = 60  # characters a line in a legend or a tick label; a longer configuration wraps


def wrapped(label: str) -> str:
    """A long configuration label (`lars(learning_rate=1.0, ..., schedule={...})`) on several lines, so
    that a legend or the tick labels do not make the figure wider than its panels can share."""
    import textwrap

    lines = textwrap.wrap(str(label), LABEL_WIDTH, break_long_words=False, break_on_hyphens=False)
    return "\n".join(lines) or str(label)


def slug(s: str) -> str:
    """`s` as a file-name part of at most 60 characters; a longer one is cut and given 8 hex digits of
    its SHA-1, so two long names that share their first 60 characters stay apart (for the cells of one
    report, `analysis.names.file_stems` also keeps apart names whose slugs are equal)."""
    import hashlib

    text = re.sub(r"[^A-Za-z0-9]+", "-", str(s)).strip("-").lower() or "cell"
    if len(text) <= 60:
        return text
    return f"{text[:51].rstrip('-')}-{hashlib.sha1(str(s).encode('utf-8')).hexdigest()[:8]}"


# --- learning curves -----------------------------------------------------------------------------

PANELS = [("train_loss", "training loss (own)"), ("val_loss", "validation loss (own)"),
          ("train_acc", "training accuracy (%)"), ("val_acc", "validation accuracy (%)")]


def mean_band(values: pd.DataFrame, column: str) -> pd.DataFrame:
    """Per epoch: the mean over seeds and a 95% t-interval (NaN where fewer than 2 seeds)."""
    v = values[["epoch", column]].replace([np.inf, -np.inf], np.nan).dropna()
    g = v.groupby("epoch")[column].agg(["mean", "std", "count"])
    if (g["count"] > 1).any():  # scipy.stats (~0.7 s to import) only where there is an interval to draw
        from scipy import stats

        half = stats.t.ppf(0.975, (g["count"] - 1).clip(lower=1)) * g["std"] / np.sqrt(g["count"])
    else:
        half = pd.Series(np.nan, index=g.index)
    g["low"], g["high"] = g["mean"] - half.where(g["count"] > 1), g["mean"] + half.where(g["count"] > 1)
    return g


def curve_groups(configs: list[str], axes: pd.DataFrame) -> list[tuple[str, list[str]]]:
    """Configurations in groups of at most MAX_PER_AXES: by the value of the axis that splits them
    into the fewest such groups, else in rank order. `axes`: configuration -> its axis values."""
    if len(configs) <= MAX_PER_AXES:
        return [("", configs)]
    best = None
    for axis in axes.columns:
        values = axes[axis].reindex(configs)
        if values.isna().any() or values.nunique() < 2:
            continue
        groups = [(f"{axis}={v}", [c for c in configs if values[c] == v]) for v in dict.fromkeys(values)]
        if max(len(g) for _, g in groups) <= MAX_PER_AXES and (best is None or len(groups) < len(best)):
            best = groups
    if best:
        return best
    return [(f"ranks {i + 1}–{min(i + MAX_PER_AXES, len(configs))}", configs[i:i + MAX_PER_AXES])
            for i in range(0, len(configs), MAX_PER_AXES)]


def learning_curves(history: pd.DataFrame, configs: list[str], config_of: dict[str, str],
                    axes: pd.DataFrame, title: str):
    """Loss and accuracy, training and validation, for the ranked `configs` (best first).
    `config_of`: run key -> configuration; `axes`: configuration -> axis values. One group of at most
    MAX_PER_AXES configurations is drawn as a 2 × 2 grid; several groups as one row of panels each."""
    if history.empty or "run_key" not in history:  # every run failed: no epoch was logged
        return None
    hist = history[history["run_key"].isin(config_of)].assign(config=lambda h: h["run_key"].map(config_of))
    if hist.empty:
        return None
    panels = [(col, label) for col, label in PANELS if col in hist and hist[col].notna().any()]
    groups = curve_groups([c for c in configs if c in set(hist["config"])], axes)
    marker = "o" if int(hist["epoch"].max()) + 1 <= MARKERS_UP_TO_EPOCHS else None
    if len(groups) == 1 and len(panels) == 4:
        fig, grid = plt.subplots(2, 2, figsize=(10.5, 6.2), sharex=True)
        rows = [list(grid.flat)]
    else:
        fig, grid = plt.subplots(len(groups), len(panels), squeeze=False, sharex=True,
                                 figsize=(3.1 * len(panels) + 3.2, 2.6 * len(groups) + 0.6))
        rows = [list(r) for r in grid]
    for axs, (group_title, group) in zip(rows, groups):
        for ax, (column, label) in zip(axs, panels):
            _draw_curves(ax, hist, group, column, marker)
            ax.set_title(label if not group_title else f"{label}\n{plain(group_title)}", fontsize=9)
        handles, labels = axs[0].get_legend_handles_labels()
        axs[len(axs) // 2 - 1 if len(rows) == 1 and len(axs) == 4 else -1].legend(
            handles, [wrapped(label) for label in labels], fontsize=7, loc="center left",
            bbox_to_anchor=(1.02, 0.5 if len(rows) > 1 else 0.0), frameon=False)
    for ax in (rows[-1] if len(rows) > 1 else rows[0][-2:]):
        ax.set_xlabel("epoch", fontsize=9)
    fig.suptitle(plain(title), fontsize=11)
    fig.tight_layout()
    return fig


def _draw_curves(ax, hist: pd.DataFrame, group: list[str], column: str, marker, accuracy: bool | None = None,
                 log: bool | None = None) -> None:
    """`accuracy`: drawn in % (default: the column ends in `acc`); bands are not clipped; `log`: a log
    scale when every value is positive (default: every column but an accuracy)."""
    accuracy = column.endswith("acc") if accuracy is None else accuracy
    log = not accuracy if log is None else log
    scale = 100.0 if accuracy else 1.0
    for i, config in enumerate(group):  # i < MAX_PER_AXES: every configuration its own colour
        band = mean_band(hist[hist["config"] == config], column) * [scale, 1, 1, scale, scale]
        if band.empty:
            continue
        x = band.index + 1
        ax.plot(x, band["mean"], color=COLORS[i], marker=marker, ms=3.5, lw=1.5, label=plain(config))
        if band["low"].notna().any():
            low, high = band["low"], band["high"]  # not clipped: an interval past 100% shows too few seeds
            ax.fill_between(x, low, high, color=COLORS[i], alpha=0.15, lw=0)
    values = hist[column].replace([np.inf, -np.inf], np.nan).dropna()
    if log and len(values) and (values > 0).all():
        ax.set_yscale("log")  # own losses differ by orders of magnitude (MSE vs cross-entropy)
    ax.grid(alpha=0.3)
    ax.tick_params(labelsize=8)
    ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))


# --- other per-epoch values: custom metrics, per-output losses and accuracies --------------------

HISTORY_KEYS = ("run_key", "epoch", "config")


def history_metrics(sc) -> pd.DataFrame:
    """The other values each epoch logged (the stores' `history_metrics` table) for the runs in
    `sc.history` (the ranked runs), wide: run_key, epoch, one column per name (`mean_confidence`,
    `val_mean_confidence`, `digit_loss`, ...). With several study directories, each run's values come
    from the store whose copy the analysis kept (`sc.history`'s `study_dir`). Empty when there are none."""
    hist = sc.history
    if hist is None or hist.empty:
        return pd.DataFrame()
    kept = set(zip(hist["run_key"], hist["study_dir"])) if "study_dir" in hist else None
    rows = []
    for d in sc.study_dirs:
        store = Store.open_readonly(d)
        try:
            rows += [r for r in store.history_metrics()
                     if (r["run_key"], str(d)) in kept] if kept is not None else store.history_metrics()
        finally:
            store.close()
    if not rows:
        return pd.DataFrame()
    long = pd.DataFrame(rows)
    long = long[long["run_key"].isin(set(hist["run_key"]))]
    if long.empty:
        return pd.DataFrame()
    wide = long.pivot_table(index=["run_key", "epoch"], columns="name", values="value", aggfunc="first",
                            dropna=False)
    wide.columns = [str(c) for c in wide.columns]
    return wide.reset_index()


def _is_accuracy(name: str) -> bool:
    return name.endswith(("acc", "accuracy"))


def metric_curves(extra: pd.DataFrame, configs: list[str], config_of: dict[str, str], axes: pd.DataFrame,
                  title: str):
    """Per-epoch curves of the values in `extra` (`history_metrics`), for the ranked `configs` (best
    first): one row of panels per name, training (`name`) beside validation (`val_name`); the mean over
    seeds with a 95% t-interval band, as the learning curves (and grouped as they are when there are more
    than MAX_PER_AXES configurations). Accuracies in %, losses on a log scale. None when nothing was
    logged beyond the learning curves' columns."""
    if extra is None or extra.empty or "run_key" not in extra:
        return None
    hist = extra[extra["run_key"].isin(config_of)].assign(config=lambda h: h["run_key"].map(config_of))
    names = [c for c in hist.columns if c not in HISTORY_KEYS and pd.to_numeric(hist[c], errors="coerce").notna().any()]
    if hist.empty or not names:
        return None
    hist = hist.assign(**{c: pd.to_numeric(hist[c], errors="coerce") for c in names})
    bases = list(dict.fromkeys(n[len("val_"):] if n.startswith("val_") else n for n in names))
    groups = curve_groups([c for c in configs if c in set(hist["config"])], axes)
    marker = "o" if int(hist["epoch"].max()) + 1 <= MARKERS_UP_TO_EPOCHS else None
    rows = [(group_title, group, base) for group_title, group in groups for base in bases]
    fig, grid = plt.subplots(len(rows), 2, squeeze=False, sharex=True, figsize=(10.5, 2.5 * len(rows) + 0.8))
    for r, (group_title, group, base) in enumerate(rows):
        for ax, column, part in ((grid[r, 0], base, "training"), (grid[r, 1], f"val_{base}", "validation")):
            if column not in names:
                ax.axis("off")
                continue
            accuracy = _is_accuracy(base)
            _draw_curves(ax, hist, group, column, marker, accuracy=accuracy, log=base.endswith("loss"))
            label = f"{base.replace('_', ' ')}, {part}" + (" (%)" if accuracy else "")
            ax.set_title(plain(label if not group_title else f"{label}\n{group_title}"), fontsize=9)
        if r == 0 or rows[r - 1][0] != group_title:  # one legend per group of configurations
            drawn = [ax for ax in grid[r] if ax.get_lines()]
            if drawn:
                handles, labels = drawn[0].get_legend_handles_labels()
                grid[r, 1].legend(handles, [wrapped(label) for label in labels], fontsize=7, loc="center left",
                                  bbox_to_anchor=(1.02, 0.5), frameon=False)
    for ax in grid[-1]:
        ax.set_xlabel("epoch", fontsize=9)
    fig.suptitle(plain(title), fontsize=11)
    fig.tight_layout()
    return fig


# --- every run's value ---------------------------------------------------------------------------


def metric_by_run(comparisons: list[tuple[str, object]], metric):
    """One panel per comparison: each run's metric value as a point per configuration (best at the
    top), the mean as a bar and its 95% interval as a line."""
    comparisons = [(t, c) for t, c in comparisons if c is not None and not c.ranking.empty]
    if not comparisons:
        return None
    scale = 100.0 if metric.percent else 1.0
    def row_height(c) -> float:  # a wrapped configuration label takes more lines: every row gets their room
        lines = max((wrapped(plain(config)).count("\n") + 1 for config in c.ranking["config"]), default=1)
        return 0.12 * lines + 0.2  # 0.32 for one line

    heights = [max(1.6, row_height(c) * len(c.ranking) + 1.0) for _, c in comparisons]
    fig, axs = plt.subplots(len(comparisons), 1, figsize=(9, sum(heights)), squeeze=False,
                            gridspec_kw={"height_ratios": heights})
    rng = np.random.default_rng(0)  # jitter only; fixed so the figure is reproducible
    for ax, (title, c) in zip(axs[:, 0], comparisons):
        configs = list(c.ranking["config"])
        for y, r in enumerate(c.ranking.itertuples()):
            values = c.values[r.config].dropna().to_numpy(float) * scale if r.config in c.values else np.array([])
            ax.scatter(values, y + rng.uniform(-0.15, 0.15, len(values)), s=14, color=COLORS[0], alpha=0.7,
                       edgecolor="none", zorder=3)
            if not fmt.missing(r.mean):
                ax.plot([r.mean * scale] * 2, [y - 0.3, y + 0.3], color="black", lw=2, zorder=4)
            if not (fmt.missing(r.ci_low) or fmt.missing(r.ci_high)):
                low, high = r.ci_low * scale, r.ci_high * scale  # not clipped, as in the tables
                ax.plot([low, high], [y, y], color="black", lw=1, zorder=2)
        ax.set_yticks(range(len(configs)), [wrapped(plain(c)) for c in configs], fontsize=7)
        ax.set_ylim(len(configs) - 0.5, -0.5)  # best at the top
        ax.set_xlabel(fmt.heading(metric), fontsize=9)
        ax.set_title(plain(title), fontsize=9)
        ax.grid(axis="x", alpha=0.3)
    fig.suptitle("Every run (points), mean (bar) and 95% interval of the mean (line)", fontsize=10)
    fig.tight_layout()
    return fig


# --- critical difference -------------------------------------------------------------------------


def critical_difference(c, title: str):
    """Demšar's diagram: mean ranks on an axis spanning 1…k, configurations the Nemenyi test cannot tell
    apart joined by a bar, and the critical difference drawn above the axis's tick labels (as Orange
    and autorank draw it). None where the Friedman test does not apply (no post-hoc test then)."""
    if c is None or not c.friedman or c.nemenyi is None or len(c.ranking) < 3:
        return None
    import matplotlib.transforms as mtransforms
    import scikit_posthocs as sp

    names = {config: plain(config) for config in c.ranking["config"]}
    ranks = c.ranking.set_index("config")["mean_rank"].rename(index=names)
    sig = c.nemenyi.rename(index=names, columns=names)
    k = len(ranks)
    fig, ax = plt.subplots(figsize=(9, 0.28 * k + 2.0))
    cd = None if fmt.missing(c.critical_difference) else float(c.critical_difference)
    sp.critical_difference_diagram(ranks, sig, ax=ax, alpha=c.alpha, color_palette=["black"] * k,
                                   label_props={"fontsize": 7})
    ax.set_xlim(1, k)  # the whole scale of mean ranks, not just the span of the data
    ax.set_xticks(range(1, k + 1))
    ax.tick_params(axis="x", labelsize=8)
    if cd is not None:  # above the tick labels: offset from the axis line in points, not in data units
        above = mtransforms.offset_copy(ax.transData, fig=fig, y=26, units="points")
        start = 1.0
        ax.plot([start, start + cd], [0, 0], color="black", lw=1.5, transform=above, clip_on=False)
        for x in (start, start + cd):
            ax.plot([x, x], [0, 0], marker="|", ms=6, color="black", transform=above, clip_on=False)
        ax.text(start + cd / 2, 0, f"CD = {cd:.2f}", ha="center", va="bottom", fontsize=8,
                transform=mtransforms.offset_copy(ax.transData, fig=fig, y=30, units="points"), clip_on=False)
    ax.set_title(f"{plain(title)}: mean ranks (1 = best), Nemenyi α = {c.alpha:g}", fontsize=9, pad=44)
    return fig


def performance_profiles(agg, metric):
    """rliable's performance profiles: per configuration, the share of its runs (all cells pooled) scoring
    better than τ, against τ; the best IQM first, at most MAX_PER_AXES configurations."""
    if agg is None or agg.profiles.empty:
        return None
    scale = 100.0 if metric.percent else 1.0
    fig, ax = plt.subplots(figsize=(8, 4.2), layout="constrained")
    for i, config in enumerate(list(agg.table["config"])[:MAX_PER_AXES]):
        p = agg.profiles[agg.profiles["config"] == config]
        ax.plot(p["tau"] * scale, p["fraction"], color=COLORS[i], lw=1.5, label=wrapped(plain(config)))
    ax.set_xlabel(f"{fmt.heading(metric)} threshold τ", fontsize=9)
    ax.set_ylabel("share of runs " + ("above" if metric.higher_is_better else "below") + " τ", fontsize=9)
    ax.grid(alpha=0.3)
    ax.tick_params(labelsize=8)
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False)
    ax.set_title("Performance profiles (runs of every cell pooled)", fontsize=9)
    return fig


# --- heatmaps ------------------------------------------------------------------------------------


def _tick_labels(values, width: int = 16) -> list[str]:
    """Axis values as tick labels: paths cut to their file names (unless two would look alike), wrapped to
    `width` characters."""
    import textwrap

    from ..analysis.names import display_names

    shown = display_names(str(x) for x in values)
    return ["\n".join(textwrap.wrap(plain(shown[str(x)]), width, break_long_words=True, break_on_hyphens=False))
            or plain(shown[str(x)]) for x in values]


def heatmap(parts: list[tuple[str, pd.DataFrame]], a: str, b: str, metric, per_column: bool = False):
    """Axis `a` × axis `b` of configuration means, one panel per combination of the other axes.
    `parts`: (title, DataFrame indexed by a's values, columns b's values, of means). With `per_column`
    (the columns are cells, e.g. datasets, whose values do not compare) each column has its own colour
    scale, best brightest, and no colour bar; otherwise one scale per panel, with its bar."""
    scale = 100.0 if metric.percent else 1.0
    n = len(parts)
    cols = min(n, 3)
    rows = math.ceil(n / cols)
    first = parts[0][1]
    label_w = max((len(line) for _, t in parts for x in _tick_labels(t.index, 28) for line in x.split("\n")),
                  default=8)
    w = 1.1 * first.shape[1] + 0.07 * label_w + (1.0 if per_column else 1.8)
    h = 0.45 * first.shape[0] + 1.6
    fig, axs = plt.subplots(rows, cols, figsize=(w * cols, h * rows), squeeze=False, layout="constrained")
    cmap = plt.get_cmap("viridis")
    for ax, (title, t) in zip(axs.flat, parts):
        data = t.to_numpy(float) * scale
        oriented = data if metric.higher_is_better else -data
        if per_column:  # each column from its worst (dark) to its best (bright)
            low, high = np.nanmin(oriented, axis=0), np.nanmax(oriented, axis=0)
            span = np.where(high > low, high - low, 1.0)
            shade = (oriented - low) / span
            shade = np.where(np.isfinite(shade), shade, np.nan)
            ax.imshow(shade, cmap=cmap, vmin=0, vmax=1, aspect="auto")
        else:
            im = ax.imshow(data, cmap=cmap if metric.higher_is_better else cmap.reversed(), aspect="auto")
            finite = oriented[np.isfinite(oriented)]
            low_all, high_all = (finite.min(), finite.max()) if finite.size else (0.0, 1.0)
            shade = (oriented - low_all) / (high_all - low_all if high_all > low_all else 1.0)
            fig.colorbar(im, ax=ax, shrink=0.8).ax.tick_params(labelsize=7)
        for (i, j), v in np.ndenumerate(data):
            if np.isfinite(v):
                dark = shade[i, j] < 0.5  # viridis is dark at its low end
                ax.text(j, i, f"{v:.2f}" if metric.percent else f"{v:.3g}", ha="center", va="center", fontsize=7,
                        color="white" if dark else "black")
        ax.set_xticks(range(t.shape[1]), _tick_labels(t.columns), fontsize=7)
        ax.set_yticks(range(t.shape[0]), _tick_labels(t.index, 28), fontsize=7)
        ax.set_xlabel(plain(b) + (" (colour: each column's own scale)" if per_column else ""), fontsize=8)
        ax.set_ylabel(plain(a), fontsize=8)
        ax.set_title(plain(title), fontsize=8)
    for ax in list(axs.flat)[n:]:
        ax.axis("off")
    fig.suptitle(f"{fmt.heading(metric)}: mean over seeds", fontsize=10)
    return fig


# --- learning-rate search ------------------------------------------------------------------------


def learning_rate_search(table: pd.DataFrame, metric_name: str):
    """The search's metric against the rate per configuration; a star at the chosen rate."""
    if table.empty:
        return None
    labels = list(dict.fromkeys(table["label"]))
    per_axes = [labels[i:i + MAX_PER_AXES] for i in range(0, len(labels), MAX_PER_AXES)]
    fig, axs = plt.subplots(len(per_axes), 1, figsize=(9, 4.2 * len(per_axes)), squeeze=False)
    for ax, group in zip(axs[:, 0], per_axes):
        for i, label in enumerate(group):
            g = table[table["label"] == label]
            finite = g[np.isfinite(g["value"].astype(float))]
            ax.plot(finite["learning_rate"], finite["value"], "o-", color=COLORS[i], label=plain(label), ms=3, lw=1.2)
            best = g[g["chosen"]]
            ax.plot(best["learning_rate"], best["value"], "*", color=COLORS[i], ms=14, mec="black")
        ax.set_xscale("log")
        ax.set_xlabel("learning rate")
        ax.set_ylabel(metric_name.replace("_", " "))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False)
    axs[0, 0].set_title("Learning-rate search (star: chosen on validation; diverged rates omitted)")
    fig.tight_layout()
    return fig
