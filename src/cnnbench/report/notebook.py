"""The report and a study's comparison in a notebook: `ReportView` (report.html inline, in an iframe),
`comparison_html` (a `StudyComparison` as HTML), `register_notebook_html` (IPython shows comparisons so).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass
class ReportView:
    """A report.html a notebook shows inline (in an iframe: the report's own styles stay its own)."""

    path: Path
    height: int = 700

    def _repr_html_(self) -> str:
        import html

        page = self.path.read_text(encoding="utf-8")
        return (f'<iframe srcdoc="{html.escape(page, quote=True)}" style="width: 100%; height: {self.height}px; '
                f'border: 1px solid #ddd" title="{html.escape(str(self.path))}"></iframe>')


def comparison_html(sc) -> str:
    """A `StudyComparison` as HTML (what a notebook shows for `study.compare()`): the verdict, notes and
    each cell's ranked table, in the terminal tables' words (`report.tables`)."""
    import html

    from . import tables

    def table(title: str, t) -> str:
        head = "".join(f"<th>{html.escape(h)}</th>" for h in t.header)
        body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in t.text_rows())
        return (f"<table><caption style='text-align: left'><b>{html.escape(title)}</b></caption>"
                f"<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")

    parts = [f"<p><b>Verdict:</b> {html.escape(sc.verdict)}</p>"]
    parts += [f"<p><i>note: {html.escape(n)}</i></p>" for n in sc.notes]
    for cell in sc.cells:
        where = "" if len(sc.cells) == 1 else f" in {cell.name}"
        parts.append(table(f"Configurations ranked by {sc.metric.label}{where}", tables.ranking(cell.comparison,
                                                                                                 sc.metric)))
        parts += [f"<p><i>note: {html.escape(n)}</i></p>" for n in cell.comparison.notes]
    if sc.across is not None:
        parts.append(table(f"Across cells ({' × '.join(sc.cell_keys)} as blocks)", tables.ranking(sc.across,
                                                                                                   sc.metric)))
    return "\n".join(parts)


def register_notebook_html() -> None:
    """In IPython (a notebook), show a `StudyComparison` as `comparison_html` (IPython's formatter for
    a type we do not define; a terminal IPython ignores HTML)."""
    import sys

    if "IPython" not in sys.modules:
        return
    from IPython import get_ipython

    shell = get_ipython()
    if shell is not None:
        from ..analysis.evidence import StudyComparison

        shell.display_formatter.formatters["text/html"].for_type(StudyComparison, comparison_html)
