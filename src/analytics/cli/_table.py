"""Showing stored events as a table: pure row building and plain-text layout."""

from __future__ import annotations

import shutil
import sys
from collections.abc import Mapping, Sequence
from typing import Any

import orjson

from analytics.cli._escape import printable

__all__ = ["COLUMNS", "event_rows", "format_table", "print_table"]

COLUMNS = ("type", "user", "event", "timestamp", "receivedAt", "details")
DETAILS_WIDTH = 64  # the last column's width when the output is not a terminal
MIN_LAST = 12


def _details(message: Mapping[str, Any]) -> str:
    """The message's own payload, compact: properties, traits, groupId, previousId."""
    parts = []
    for key in ("properties", "traits"):
        value = message.get(key)
        if value:
            parts.append(orjson.dumps(value).decode())
    for key in ("groupId", "previousId", "category"):
        if message.get(key):
            parts.append(f"{key}={message[key]}")
    return " ".join(parts)


def event_rows(messages: Sequence[Mapping[str, Any]]) -> list[tuple[str, ...]]:
    """One row of `COLUMNS` per stored message (control characters escaped)."""
    rows: list[tuple[str, ...]] = []
    for message in messages:
        user = message.get("userId") or message.get("anonymousId") or ""
        what = message.get("event") or message.get("name") or ""
        cells = (
            message.get("type", ""),
            user,
            what,
            message.get("timestamp", ""),
            message.get("receivedAt", ""),
            _details(message),
        )
        rows.append(tuple(printable(str(cell)) for cell in cells))
    return rows


def _cut(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def format_table(
    rows: Sequence[Sequence[str]], columns: Sequence[str] = COLUMNS, width: int | None = None
) -> str:
    """A plain-text table with a header and aligned columns.

    With `width`, the last column is cut (with an ellipsis) so that lines fit; the others
    are never cut.
    """
    widths = [len(c) for c in columns]
    for row in rows:
        widths = [max(w, len(cell)) for w, cell in zip(widths, row, strict=True)]
    if width is not None:
        room = width - sum(widths[:-1]) - 2 * (len(widths) - 1)
        widths[-1] = max(min(widths[-1], room), MIN_LAST)
    cut_rows = [[*row[:-1], _cut(row[-1], widths[-1])] for row in rows]
    lines = [
        "  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip(),
        "  ".join("-" * w for w in widths),
    ]
    for row in cut_rows:
        lines.append("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
    return "\n".join(lines)


def print_table(rows: Sequence[Sequence[str]], title: str) -> None:
    """Print the table, fitted to the terminal when there is one."""
    width = shutil.get_terminal_size().columns if sys.stdout.isatty() else None
    text = format_table(rows, width=width)
    if width is None:
        text = format_table([[*r[:-1], _cut(r[-1], DETAILS_WIDTH)] for r in rows])
    print(title)
    print(text)
