"""Progress for long commands: a rich bar on a terminal, plain periodic lines otherwise.

Both reporters take the same calls from the import loop: `update()` (cheap, called every few
thousand lines; the reporter decides when to draw), `log()` for a line that must not break
the bar (a refused line, a warning) and `close()`. The text of the plain lines and of the
summary is built by pure functions, tested on their own.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, TextIO

from analytics.cli._escape import printable

if TYPE_CHECKING:
    from rich.progress import Progress as RichProgress

__all__ = [
    "Counts",
    "PlainReporter",
    "Reporter",
    "RichReporter",
    "format_duration",
    "format_progress_line",
    "format_summary",
    "make_reporter",
]


@dataclass(frozen=True, slots=True)
class Counts:
    """A snapshot of an import's counters."""

    read: int
    sent: int
    refused: int
    position: int  # bytes of input consumed so far, over every file
    total: int | None  # bytes of input in all, when known (not for stdin)


def format_duration(seconds: float) -> str:
    """`0.42s`, `12.3s`, `4m05s`, `1h02m`."""
    if seconds < 60:
        return f"{seconds:.2f}s" if seconds < 10 else f"{seconds:.1f}s"
    minutes, secs = divmod(int(seconds + 0.5), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def _eta(counts: Counts, elapsed: float) -> str:
    if not counts.total or counts.position <= 0 or elapsed <= 0:
        return ""
    fraction = min(counts.position / counts.total, 1.0)
    remaining = elapsed / fraction - elapsed
    return f", {fraction:.0%}, ETA {format_duration(remaining)}"


def format_progress_line(counts: Counts, elapsed: float) -> str:
    """One periodic line for a log file: counters, rate, share done and ETA."""
    rate = counts.sent / elapsed if elapsed > 0 else 0.0
    return (
        f"import: {counts.read:,} read, {counts.sent:,} sent, {counts.refused:,} refused,"
        f" {rate:,.0f} events/s{_eta(counts, elapsed)}"
    )


def format_summary(read: int, sent: int, refused: int, not_sent: int, duration: float) -> str:
    """The closing line of an import."""
    rate = sent / duration if duration > 0 else 0.0
    text = f"read {read:,}, sent {sent:,}, refused {refused:,}"
    if not_sent:
        text += f", not delivered {not_sent:,}"
    return f"{text} in {format_duration(duration)} ({rate:,.0f} events/s)"


class Reporter(Protocol):
    """What the import loop calls."""

    def update(self, counts: Counts) -> None:
        """New counters; drawn when the reporter sees fit."""

    def log(self, text: str) -> None:
        """Print a line (to standard error) without breaking the bar."""

    def close(self, counts: Counts) -> None:
        """Draw the final state and release the terminal."""


class PlainReporter:
    """Periodic plain lines on standard error, for logs and pipes (no escape codes)."""

    def __init__(self, interval: float, stream: TextIO | None = None, enabled: bool = True):
        """Print at most one progress line per `interval` seconds."""
        self._stream = stream if stream is not None else sys.stderr
        self._interval = interval
        self._enabled = enabled
        self._start = time.monotonic()
        self._next = self._start + interval

    def update(self, counts: Counts) -> None:
        """Print a line when the interval has passed."""
        now = time.monotonic()
        if self._enabled and now >= self._next:
            self._next = now + self._interval
            self.log(format_progress_line(counts, now - self._start))

    def log(self, text: str) -> None:
        """Print one line."""
        print(printable(text), file=self._stream, flush=True)

    def close(self, counts: Counts) -> None:
        """Nothing to release."""


class RichReporter:
    """A rich progress bar on the terminal: share of bytes read, counters, rate and ETA."""

    def __init__(self, total: int | None) -> None:
        """Start the bar (rich is imported here: other commands never pay for it)."""
        from rich.console import Console  # noqa: PLC0415
        from rich.progress import (  # noqa: PLC0415
            BarColumn,
            Progress,
            TaskProgressColumn,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self._start = time.monotonic()
        self._progress: RichProgress = Progress(
            TextColumn("importing"),
            BarColumn(),
            TaskProgressColumn(),
            TextColumn("{task.fields[stats]}"),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=Console(stderr=True, highlight=False),
            transient=False,
        )
        self._task = self._progress.add_task("import", total=total, stats="")
        self._progress.start()

    def update(self, counts: Counts) -> None:
        """Move the bar (rich redraws at its own pace)."""
        elapsed = time.monotonic() - self._start
        rate = counts.sent / elapsed if elapsed > 0 else 0.0
        stats = (
            f"{counts.read:,} read · {counts.sent:,} sent · {counts.refused:,} refused"
            f" · {rate:,.0f} events/s"
        )
        self._progress.update(self._task, completed=counts.position, stats=stats)

    def log(self, text: str) -> None:
        """Print above the bar: no markup, control characters escaped."""
        self._progress.console.print(printable(text), markup=False, highlight=False, soft_wrap=True)

    def close(self, counts: Counts) -> None:
        """Draw the last state and stop the bar."""
        self.update(counts)
        self._progress.stop()


def make_reporter(enabled: bool, interval: float, total: int | None) -> Reporter:
    """A bar when standard error is a terminal, plain lines otherwise."""
    if enabled and sys.stderr.isatty():
        return RichReporter(total)
    return PlainReporter(interval, enabled=enabled)
