"""Escaping user strings (configuration names, descriptions, paths) for each output format.

HTML is escaped by Jinja2's autoescaping. Markdown renderers pass HTML through, so a name holding
`<script>` must not reach them as markup, and `|`, backticks, `*`, `_`, brackets would otherwise
break a table or start emphasis, code or a link. LaTeX has its own ten special characters.
"""

from __future__ import annotations

import re

_MD_HTML = {"&": "&amp;", "<": "&lt;", ">": "&gt;"}
_MD_PUNCT = re.compile(r"([\\`*_\[\]|#~!])")


def markdown(s) -> str:
    """`s` as literal Markdown text on one line (a newline would end a table row)."""
    s = "".join(_MD_HTML.get(ch, ch) for ch in str(s))
    return _MD_PUNCT.sub(r"\\\1", s).replace("\r", " ").replace("\n", " ")


def markdown_fence(text: str) -> str:
    """A fence longer than any run of backticks in `text`, so the block cannot be closed early."""
    longest = max((len(m) for m in re.findall(r"`+", text)), default=0)
    return "`" * max(3, longest + 1)


_TEX = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{",
        "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "<": r"\textless{}",
        ">": r"\textgreater{}", "|": r"\textbar{}"}


def latex(s) -> str:
    return "".join(_TEX.get(ch, ch) for ch in str(s)).replace("\n", " ")
