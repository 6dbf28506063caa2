"""Showing stored events as a table: pure row building and plain-text layout, plus a rich
rendering for terminals."""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from typing import Any

import orjson

__all__ = ["COLUMNS", "event_rows", "format_table", "print_table"]

COLUMNS = ("type", "user", "event", "timestamp", "receivedAt", "details")
DETAILS_WIDTH = 64


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
    text = " ".join(parts)
    return text if len(text) <= DETAILS_WIDTH else text[: DETAILS_WIDTH - 1] + "…"


def event_rows(messages: Sequence[Mapping[str, Any]]) -> list[tuple[str, ...]]:
    """One row of `COLUMNS` per stored message."""
    rows: list[tuple[str, ...]] = []
    for message in messages:
        user = message.get("userId") or message.get("anonymousId") or ""
        what = message.get("event") or message.get("name") or ""
        rows.append(
            (
                str(message.get("type", "")),
                str(user),
                str(what),
                str(message.get("timestamp", "")),
                str(message.get("receivedAt", "")),
                _details(message),
            )
        )
    return rows


def format_table(rows: Sequence[Sequence[str]], columns: Sequence[str] = COLUMNS) -> str:
    """A plain-text table with a header and aligned columns (for logs and pipes)."""
    widths = [len(c) for c in columns]
    for row in rows:
        widths = [max(w, len(cell)) for w, cell in zip(widths, row, strict=True)]
    lines = [
        "  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip(),
        "  ".join("-" * w for w in widths),
    ]
    for row in rows:
        lines.append("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
    return "\n".join(lines)


def print_table(rows: Sequence[Sequence[str]], title: str) -> None:
    """Print the table: with rich on a terminal, as plain text otherwise."""
    if not sys.stdout.isatty():
        print(title)
        print(format_table(rows))
        return
    # rich is imported only for a terminal: `analytics demo | cat` does not pay for it.
    from rich.console import Console  # noqa: PLC0415
    from rich.table import Table  # noqa: PLC0415

    table = Table(title=title, title_justify="left")
    for column in COLUMNS:
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(*row)
    Console(highlight=False).print(table)
