"""Tables in the terminal: `print_table` is how every command prints rows (rich, wrapped to the width)."""

from __future__ import annotations

import os


def terminal_console():
    """The console every command prints through. `markup=False`: names, labels and paths are the user's
    text, printed as they are (`-o 'res [v2]'`); styles are given as `Text` styles, never as markup.
    Its width: the terminal's, or $COLUMNS where set (a terminal or a file); a file or a pipe without
    $COLUMNS gets 200 columns, so that a log keeps each table's rows on one line."""
    from rich.console import Console

    console = Console(highlight=False, markup=False)
    if not console.is_terminal and not os.environ.get("COLUMNS", "").strip().isdigit():
        console = Console(highlight=False, markup=False, width=200)
    return console


# A table's frame: one space of padding each side of a cell and a rule between columns (rich's default box).
_CELL_FRAME = 3


def _min_width(text: str) -> int:
    """The narrowest a cell may be without splitting a token: its longest word, or the whole cell for
    a number, an interval or a dash (no letters: "78.97 ± 1.45", "[76.67, 81.27]" stay on one line)."""
    if not any(c.isalpha() for c in text):
        return len(text)
    return max((len(w) for w in text.split()), default=0)


def _column_widths(header: list[str], rows: list[list[str]], width: int) -> list[int] | None:
    """Column widths that fit `width` with no token split (the widest columns narrowed first, none below
    its longest token), or None when even that does not fit."""
    columns = list(zip(header, *rows)) if rows else [(h,) for h in header]
    lows = [max(_min_width(c) for c in col) for col in columns]
    widths = [max(max(len(c) for c in col), 1) for col in columns]
    room = width - _CELL_FRAME * len(header) - 1
    if sum(lows) > room:
        return None
    # first wrap long headers over their cells (a header may take several lines), then narrow the widest
    cells = [max([len(c) for c in col[1:]] + [_min_width(col[0])]) for col in columns]
    for floor in (cells, lows):
        while sum(widths) > room and any(w > f for w, f in zip(widths, floor)):
            i = max((i for i in range(len(widths)) if widths[i] > floor[i]), key=lambda i: widths[i])
            widths[i] -= 1
    return widths


def _wrap(atoms: list[str], width: int, first: str = "", rest: str = "") -> str:
    """Whole `atoms` filled into lines of `width` (a too-long atom gets a line of its own, unbroken);
    `first`/`rest`: the first line's and the other lines' indent."""
    lines, line = [], first
    for atom in atoms:
        if line.strip() and len(line) + 1 + len(atom) > width:
            lines.append(line)
            line = rest + atom
        else:
            line = f"{line} {atom}" if line.strip() else line + atom
    return "\n".join([*lines, line])


def print_table(console, title: str, header: list[str], rows: list[list[str]], *, caption: str = "",
                key_columns: int = 1) -> None:
    """A table at the console's width, every token whole: a rich table whose columns are narrowed down
    to their longest token; when the console is narrower than that, a compact layout, one block per
    row: its first `key_columns` cells as a heading, then the other columns as "header: value" pieces,
    filled into indented lines (a line each where a value is long)."""
    from rich.table import Table
    from rich.text import Text

    widths = _column_widths(header, rows, console.width)
    if widths is not None:
        t = Table(title=Text(title), caption=Text(caption) if caption else None, title_justify="left",
                  caption_justify="left")
        for name, w in zip(header, widths):
            t.add_column(Text(name), width=w, overflow="fold")
        for row in rows:
            t.add_row(*(Text(c) for c in row))
        console.print(t)
        return
    width = max(console.width, 20)
    console.print(Text(_wrap(title.split(), width), style="bold"), soft_wrap=True)
    for row in rows:
        head = [w for c in row[:key_columns] if c for w in c.split()]
        console.print(Text(_wrap(head or ["–"], width, "", "  "), style="bold"), soft_wrap=True)
        pieces = []  # "header: value", the header's last word kept with the value's first piece
        for name, cell in zip(header[key_columns:], row[key_columns:]):
            if cell:
                value = [cell] if not any(c.isalpha() for c in cell) else cell.split()  # a number stays whole
                words = [name] if len(name) <= 24 else name.split()  # a short header stays whole
                pieces.append([*words[:-1], f"{words[-1] if words else ''}: {value[0]}", *value[1:]])
        if any(len(c) > 40 for c in row[key_columns:]):  # long values: a line each
            for piece in pieces:
                console.print(Text(_wrap(piece, width, "    ", "        ")), soft_wrap=True)
        elif pieces:  # short ones: filled together, "·" between them
            atoms = [a for p in pieces for a in [*p[:-1], p[-1] + " ·"]]
            atoms[-1] = atoms[-1].removesuffix(" ·")
            console.print(Text(_wrap(atoms, width, "    ", "    ")), soft_wrap=True)
    if caption:
        console.print(Text(_wrap(caption.split(), width)), soft_wrap=True)
