"""Counters of what the collector did, readable from any thread, with a bounded wait.

:meth:`Stats.wait_for` lets tests and tools wait for a condition on the counters (for example
"one request was aborted") without sleeping.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

__all__ = ["Counters", "Stats"]


@dataclass(frozen=True, slots=True)
class Counters:
    """A snapshot of the collector's counters."""

    requests: int = 0  # ingest requests answered or abandoned
    rejected: int = 0  # ingest requests answered 4xx
    failed: int = 0  # ingest requests answered 503 (store failure)
    aborted: int = 0  # client disconnected before the body arrived
    received: int = 0  # messages in accepted request bodies
    stored: int = 0  # new rows committed
    duplicates: int = 0  # messages acknowledged but already stored
    refused: int = 0  # messages refused by validation

    def as_dict(self) -> dict[str, int]:
        """The counters as a plain dict (for JSON)."""
        return asdict(self)


class Stats:
    """Thread-safe counters (updated on the event loop, read anywhere)."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._values = dict(Counters().as_dict())

    def add(self, **deltas: int) -> None:
        """Add ``deltas`` to the named counters and wake waiters."""
        with self._cond:
            for name, delta in deltas.items():
                self._values[name] += delta
            self._cond.notify_all()

    def snapshot(self) -> Counters:
        """The current counters."""
        with self._cond:
            return Counters(**self._values)

    def wait_for(self, predicate: Callable[[Counters], bool], timeout: float) -> bool:
        """Wait until ``predicate(snapshot)`` is true; False after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while not predicate(Counters(**self._values)):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._cond.wait(remaining)
            return True
