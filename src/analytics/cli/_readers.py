"""Reading import input: files or standard input, as numbered lines or CSV rows.

Lines are read in large chunks (`readlines(hint)`), which is several times faster than
line-by-line reads; each reader knows how many bytes it has consumed, for the progress bar.
"""

from __future__ import annotations

import csv
import io
import os
import sys
from collections.abc import Iterator
from typing import BinaryIO

from analytics.cli._mapping import LineError

__all__ = [
    "CHUNK_BYTES",
    "CsvReader",
    "LineReader",
    "display_name",
    "guess_format",
    "input_size",
    "open_input",
]

CHUNK_BYTES = 1 << 20
BOM = b"\xef\xbb\xbf"
STDIN = "-"


def display_name(path: str) -> str:
    """How a source is named in messages: `<stdin>` for `-`."""
    return "<stdin>" if path == STDIN else path


def guess_format(path: str) -> str:
    """The input format from a file name: `.csv` -> csv, `.log`/`.txt` -> log, else jsonl."""
    lower = path.lower()
    if lower.endswith(".csv"):
        return "csv"
    if lower.endswith((".log", ".txt")):
        return "log"
    return "jsonl"


def input_size(path: str) -> int | None:
    """The size in bytes of a regular file; None for stdin, pipes and devices."""
    if path == STDIN:
        return None
    try:
        info = os.stat(path)
    except OSError:
        return None
    return info.st_size if os.path.isfile(path) else None


def open_input(path: str) -> BinaryIO:
    """Open a source for binary reading (`-` is standard input, left open at the end)."""
    if path == STDIN:
        return sys.stdin.buffer
    return open(path, "rb")


class LineReader:
    """Non-blank lines with their 1-based line numbers, as bytes (newline included)."""

    def __init__(self, stream: BinaryIO, chunk: int = CHUNK_BYTES) -> None:
        """Read from `stream` in chunks of about `chunk` bytes."""
        self._stream = stream
        self._chunk = chunk
        self.consumed = 0

    def __iter__(self) -> Iterator[tuple[int, bytes]]:
        """Yield (line number, line) for every line that is not blank."""
        lineno = 0
        while True:
            lines = self._stream.readlines(self._chunk)
            if not lines:
                return
            self.consumed += sum(map(len, lines))
            if lineno == 0 and lines[0].startswith(BOM):  # files saved by some Windows tools
                lines[0] = lines[0][len(BOM) :]
            for line in lines:
                lineno += 1
                if not line.isspace():
                    yield lineno, line


class CsvReader:
    """CSV rows after the header, with the line number where each row ends.

    Text is decoded as UTF-8 (a byte-order mark is skipped); undecodable bytes are kept as
    surrogates so one bad row does not end the file: encoding that row fails later, and it
    is reported on its own.
    """

    def __init__(self, stream: BinaryIO) -> None:
        """Wrap `stream`; the header is read by `header()`."""
        self._stream = stream
        self._text = io.TextIOWrapper(
            stream, encoding="utf-8-sig", errors="surrogateescape", newline=""
        )
        self._rows = csv.reader(self._text)
        self.consumed = 0

    def header(self) -> list[str] | None:
        """The header row, stripped; None for an empty file."""
        for row in self._rows:
            if row:
                return [cell.strip() for cell in row]
        return None

    def __iter__(self) -> Iterator[tuple[int, list[str] | LineError]]:
        """Yield (line number, row) for every non-empty row; a row the csv module cannot
        parse (e.g. a field over its size limit) comes as a LineError in place of the row."""
        rows = self._rows
        count = 0
        while True:
            count += 1
            if count & 1023 == 0:
                self._measure()
            try:
                row = next(rows)
            except StopIteration:
                break
            except csv.Error as exc:
                yield rows.line_num, LineError(f"unreadable CSV row: {exc}")
                continue
            if row:
                yield rows.line_num, row
        self._measure()

    def detach(self) -> None:
        """Let go of the binary stream without closing it (stdin stays usable)."""
        self._text.detach()

    def _measure(self) -> None:
        try:
            self.consumed = self._stream.tell()
        except (OSError, ValueError):
            self.consumed = 0
