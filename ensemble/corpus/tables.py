"""Grid tables read as sentences: one line per row, so a row can be found and quoted.

The language reference keeps some of its most asked-for facts in reST grid tables (what a
list's methods do, operator precedence, format-spec types). Drawn with `+---+` and `|`, a
row's words are scattered over several lines and interleaved with the next column's, so a
search engine sees them and a writer can quote nothing. Each row becomes one line instead:
`"s.remove(x)": remove the first item from *s* where "s[i]" is equal to *x* (3).`
"""

from __future__ import annotations

import re

_BORDER = re.compile(r"^(\s*)\+(?:[-=]+\+)+\s*$")
_HEADER_RULE = re.compile(r"^\s*[|+](?:=+[|+])+\s*$")


def flatten_tables(text: str) -> str:
    """Return `text` with every well-formed grid table replaced by one line per row.

    A block that does not parse as a grid table (ragged borders, cells spanning columns in a
    way the column rule cannot follow) is left exactly as it was.
    """
    lines = text.split("\n")
    out: list[str] = []
    i = 0
    while i < len(lines):
        if not _BORDER.match(lines[i]):
            out.append(lines[i])
            i += 1
            continue
        end = i + 1
        while end < len(lines) and lines[end].strip().startswith(("+", "|")):
            end += 1
        block = lines[i:end]
        rows = _rows(block)
        out.extend(block if rows is None else [_sentence(row) for row in rows])
        i = end
    return "\n".join(out)


def _rows(block: list[str]) -> list[list[str]] | None:
    """The body rows of a grid table as cell texts, or None when `block` is not one."""
    border = _BORDER.match(block[0])
    if border is None or not _BORDER.match(block[-1]):
        return None
    cuts = [m.start() for m in re.finditer(r"\+", block[0])]
    rows: list[list[str]] = []
    cells: list[list[str]] = [[] for _ in cuts[:-1]]
    for line in block[1:]:
        if _HEADER_RULE.match(line):  # under a header row: the header names columns, skip it
            cells = [[] for _ in cuts[:-1]]
            continue
        if _BORDER.match(line):
            texts = [" ".join(" ".join(c).split()) for c in cells]
            if any(texts):
                rows.append(texts)
            cells = [[] for _ in cuts[:-1]]
            continue
        if len(line.rstrip()) > cuts[-1] + 1:  # wider than its borders: not this table's row
            return None
        for n, (start, stop) in enumerate(zip(cuts, cuts[1:], strict=False)):
            piece = line[start + 1 : stop].strip(" |")
            if piece:
                cells[n].append(piece)
    return rows or None


def _sentence(cells: list[str]) -> str:
    """One row as a line: its first cell, a colon, the others; ending like a sentence."""
    first, rest = cells[0], " ".join(c for c in cells[1:] if c)
    line = f"{first}: {rest}" if first and rest else first or rest
    return line if line.endswith((".", "!", "?", ":")) else line + "."
