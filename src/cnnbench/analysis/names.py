"""Short names for what a report names many times: cells and file names.

A dataset given by path (`npz:/data/runs/2024/x.npz`, `npz(path=/d/x.npz, limit_train=100)`) makes a
cell name that is mostly path; tables, headings and the verdict show the file's name instead (`x.npz`,
`npz(x.npz, limit_train=100)`), with as many of the path's last parts as keep two cells apart, and the
report lists the full names once. File names (figures, LaTeX labels) are slugs, unique per name whatever its length.
"""

from __future__ import annotations

import hashlib
import re

# a path: at least one "/" between name characters (a URL's scheme and host go with it)
_PATH = re.compile(r"(?:[A-Za-z]+:)?(?:[\w.~+-]*/)+[\w.+-]+")
_PREFIXED = re.compile(r"\b[a-z_]+:(?=[^\s/]*/)")  # the `npz:` of `npz:/path`


def short(name: str, parts: int = 1) -> str:
    """`name` with every path replaced by its last `parts` parts (`npz:/a/b/x.npz` -> `x.npz`)."""
    text = _PREFIXED.sub("", str(name))
    cut = _PATH.sub(lambda m: "/".join(m.group(0).rstrip("/").split("/")[-parts:]), text)
    return cut.replace("(path=", "(")


def display_names(names) -> dict[str, str]:
    """Each name -> its short form: paths cut to as few of their last parts as keep the names apart (the
    name itself where no cut does)."""
    names = list(dict.fromkeys(str(n) for n in names))
    out: dict[str, str] = {}
    left = names
    for parts in range(1, 8):
        shorts = {n: short(n, parts) for n in left}
        counts: dict[str, int] = {}
        for s in [*shorts.values(), *out.values()]:
            counts[s] = counts.get(s, 0) + 1
        out.update({n: s for n, s in shorts.items() if counts[s] == 1})
        left = [n for n in left if n not in out]
        if not left:
            break
    out.update({n: n for n in left})
    return {n: out[n] for n in names}


MAX_STEM = 60


def slug(s: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", str(s)).strip("-").lower()


def file_stems(names, fallback: str = "cell") -> dict[str, str]:
    """Each name -> a file-name part of at most MAX_STEM characters, distinct for distinct names: the slug
    of its short form, with 8 hex digits of the full name's SHA-1 where the slug had to be cut or another
    name has the same slug."""
    names = list(dict.fromkeys(str(n) for n in names))
    slugs = {n: slug(short(n)) or fallback for n in names}
    counts: dict[str, int] = {}
    for s in slugs.values():
        counts[s] = counts.get(s, 0) + 1
    out = {}
    for n, s in slugs.items():
        if len(s) > MAX_STEM or counts[s] > 1:
            digest = hashlib.sha1(n.encode("utf-8")).hexdigest()[:8]
            s = f"{s[:MAX_STEM - 9].rstrip('-')}-{digest}"
        out[n] = s
    return out
