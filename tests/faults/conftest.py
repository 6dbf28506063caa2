"""The fault suite's fixtures and its results table.

Every case records one row (fault, sent, stored, lost, stored twice, resent, time to
recover). The rows are appended to a results file (``$FAULT_RESULTS``, else
``fault-results.txt`` in pytest's base temp directory) and printed in the terminal summary,
so the table shows with or without ``-s``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from .harness import Outcome


@dataclass
class Row:
    """One line of the fault table."""

    fault: str
    sent: int
    stored: int
    lost: int
    twice: int
    resent: int
    recover: float | None
    note: str = ""

    def cells(self) -> list[str]:
        """The row as table cells."""
        recover = "-" if self.recover is None else f"{self.recover:.2f}"
        return [
            self.fault,
            str(self.sent),
            str(self.stored),
            str(self.lost),
            str(self.twice),
            str(self.resent),
            recover,
            self.note,
        ]


HEADER = ["fault", "sent", "stored", "lost", "twice", "resent", "recover_s", "note"]
_rows: list[Row] = []
_results_path: list[Path] = []


def _table(rows: list[Row]) -> list[str]:
    cells = [HEADER] + [r.cells() for r in rows]
    widths = [max(len(c[i]) for c in cells) for i in range(len(HEADER))]
    lines = [
        "| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |"
        for row in cells
    ]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return lines


@pytest.fixture(scope="session")
def results_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the rows are written."""
    path = Path(
        os.environ.get("FAULT_RESULTS") or tmp_path_factory.getbasetemp() / "fault-results.txt"
    )
    path.write_text("\t".join(HEADER) + "\n")
    _results_path.append(path)
    return path


@pytest.fixture
def record(results_file: Path) -> Callable[..., Row]:
    """``record(fault, outcome, resent=..., recover=..., note=...)`` adds the case's row."""

    def add(fault: str, out: Outcome, *, resent: int, recover: float | None, note: str = "") -> Row:
        row = Row(
            fault,
            len(out.sent),
            len(set(out.stored)),
            len(out.lost),
            out.stored_twice,
            resent,
            recover,
            note,
        )
        _rows.append(row)
        with results_file.open("a") as f:
            f.write("\t".join(row.cells()) + "\n")
        return row

    return add


@pytest.fixture
def cleanup() -> Iterator[list[Any]]:
    """Objects with a stop()/finish() to end after the test, newest first (bounded)."""
    items: list[Any] = []
    yield items
    for item in reversed(items):
        if hasattr(item, "proc"):
            if item.proc.poll() is None:
                item.proc.kill()
            item.finish(10)
        else:
            item.stop()


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """Print the fault table at the end of the run."""
    if not _rows:
        return
    terminalreporter.section("fault suite: sent vs stored messageIds")
    for line in _table(_rows):
        terminalreporter.write_line(line)
    if _results_path:
        terminalreporter.write_line(f"(rows also in {_results_path[0]})")
