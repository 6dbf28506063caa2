"""Reading import input: files or standard input, as numbered lines or CSV rows.

Lines are read in large chunks (`readlines(hint)`), which is several times faster than
line-by-line reads, and handed to the import loop a block at a time (`blocks()`: one
generator step per chunk, not per line); each reader knows how many bytes it has consumed,
for the progress bar.
"""

from __future__ import annotations

import csv
import io
import itertools
import os
import sys
from collections.abc import Iterable, Iterator
from typing import BinaryIO

from analytics.cli._mapping import LineError

__all__ = [
    "CHUNK_BYTES",
    "CSV_BLOCK",
    "CsvReader",
    "LineReader",
    "display_name",
    "guess_format",
    "input_size",
    "open_input",
]

CHUNK_BYTES = 1 << 20
CSV_BLOCK = 1024  # rows per block
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
        for block in self.blocks():
            yield from block

    def blocks(self) -> Iterator[Iterable[tuple[int, bytes]]]:
        """The lines of `__iter__`, one block per chunk read."""
        lineno = 0
        while True:
            lines = self._stream.readlines(self._chunk)
            if not lines:
                return
            self.consumed += sum(map(len, lines))
            if lineno == 0 and lines[0].startswith(BOM):  # files saved by some Windows tools
                lines[0] = lines[0][len(BOM) :]
            numbered = enumerate(lines, lineno + 1)
            lineno += len(lines)
            if any(map(bytes.isspace, lines)):  # rare: ~35 ns a line to look
                yield [(n, line) for n, line in numbered if not line.isspace()]
            else:
                yield numbered


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
        while True:
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

    def blocks(self, size: int = CSV_BLOCK) -> Iterator[list[tuple[int, list[str] | LineError]]]:
        """The rows of `__iter__` in lists of `size`; `consumed` is updated after each."""
        rows = iter(self)
        while True:
            block = list(itertools.islice(rows, size))
            self._measure()
            if not block:
                return
            yield block

    def detach(self) -> None:
        """Let go of the binary stream without closing it (stdin stays usable)."""
        self._text.detach()

    def _measure(self) -> None:
        try:
            self.consumed = self._stream.tell()
        except (OSError, ValueError):
            self.consumed = 0
