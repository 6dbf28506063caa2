"""Time, behind a small protocol so tests can replace it (see `analytics.testing.FakeClock`)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Protocol

__all__ = ["Clock", "SystemClock"]


class Clock(Protocol):
    """What the sender needs of time: a monotonic reading and a retry wait."""

    def monotonic(self) -> float:
        """Seconds on a monotonic clock."""
        ...

    def wait(self, cond: threading.Condition, seconds: float, stop: Callable[[], bool]) -> None:
        """Wait ``seconds`` on ``cond`` (held by the caller), or until ``stop()`` holds."""
        ...


class SystemClock:
    """The real clock: `time.monotonic` and `threading.Condition.wait_for`."""

    def monotonic(self) -> float:
        """Seconds on `time.monotonic`."""
        return time.monotonic()

    def wait(self, cond: threading.Condition, seconds: float, stop: Callable[[], bool]) -> None:
        """Wait on the condition; a shutdown deadline notifies it and makes ``stop()`` true."""
        cond.wait_for(stop, seconds)
