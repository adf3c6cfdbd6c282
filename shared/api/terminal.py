"""Text for a terminal: values made safe to print (control characters and escape sequences
written out as escapes), table cells, and plain-text tables with aligned columns."""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence

MAX_CELL = 60  # characters of one table cell; longer values end in "..."


def clean(value: object) -> str:
    """`value` as text that cannot drive a terminal: control characters (escape sequences, line
    breaks, bidi overrides and other invisible formatting) are written out as escapes."""
    text = value if isinstance(value, str) else str(value)
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() else _escape(ch) for ch in text)


def _escape(ch: str) -> str:
    code = ord(ch)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def _width(text: str) -> int:
    """Columns `text` takes in a terminal: wide East Asian characters take two, combining marks none."""
    return sum(0 if unicodedata.combining(ch) else 2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)


def fit(text: str, limit: int = MAX_CELL) -> str:
    if _width(text) <= limit:
        return text
    kept, used = [], 0
    for ch in text:
        used += _width(ch)
        if used > limit - 3:
            break
        kept.append(ch)
    return "".join(kept) + "..."


def is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def cell(value: object, limit: int = MAX_CELL) -> str:
    """One value as a table shows it: numbers with thousands separators, booleans as yes/no,
    nothing as '-', text cleaned and cut to MAX_CELL columns."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:,.2f}".rstrip("0").rstrip(".")
    return fit(clean(value), limit)


def table(headers: Sequence[str] | None, rows: Sequence[Sequence[object]], indent: str = "", limit: int = MAX_CELL) -> list[str]:
    """Plain-text columns, aligned: numbers to the right, the rest to the left; a cell is cut at
    `limit` columns."""
    texts = [[cell(value, limit) for value in row] for row in rows]
    columns = max([len(headers or ())] + [len(row) for row in rows])
    titles = [str(h).upper() for h in headers] if headers else []
    numeric = [
        any(is_number(row[i]) for row in rows if i < len(row))
        and all(is_number(row[i]) or row[i] is None for row in rows if i < len(row))
        for i in range(columns)
    ]
    widths = [max([_width(t[i]) for t in [titles, *texts] if i < len(t)] or [0]) for i in range(columns)]
    lines = []
    for row in [titles, *texts] if titles else texts:
        parts = []
        for i, text in enumerate(row):
            pad = " " * (widths[i] - _width(text))
            parts.append(pad + text if numeric[i] else text + pad)
        lines.append((indent + "  ".join(parts)).rstrip())
    return lines


def count(n: int, noun: str, plural: str | None = None) -> str:
    return f"{n:,} " + (noun if n == 1 else plural or noun + "s")
