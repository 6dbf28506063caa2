"""Time, behind a small protocol so tests can replace it (see `analytics.testing.FakeClock`)."""

from __future__ import annotations

import threading
import time
from typing import Protocol

__all__ = ["Clock", "SystemClock"]


class Clock(Protocol):
    """What the sender needs of time: a monotonic reading and an interruptible sleep."""

    def monotonic(self) -> float:
        """Seconds on a monotonic clock."""
        ...

    def sleep(self, interrupt: threading.Event, seconds: float) -> bool:
        """Wait ``seconds`` or until ``interrupt`` is set; return True if it was set."""
        ...


class SystemClock:
    """The real clock: `time.monotonic` and `threading.Event.wait`."""

    def monotonic(self) -> float:
        """Seconds on `time.monotonic`."""
        return time.monotonic()

    def sleep(self, interrupt: threading.Event, seconds: float) -> bool:
        """Wait on the event; flush() and shutdown() set it to cut a backoff wait short."""
        return interrupt.wait(seconds)
