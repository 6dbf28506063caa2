"""Helpers for testing code that uses `analytics`: record messages in memory, no network.

`capture` is a context manager::

    from analytics.testing import capture

    def test_signup_is_tracked():
        with capture() as messages:
            signup("ada@example.com")            # calls analytics.track(...)
        assert messages.events() == ["Signed Up"]
        assert messages[0]["userId"] == "ada@example.com"

Inside the block the client validates and encodes every call exactly as it would for the
network, and the capture records the decoded JSON, which is what the collector would receive;
nothing is queued or sent. With pytest, the ``analytics_capture`` fixture (registered by this
package's pytest plugin entry point) does the same for the default client.

`FakeClock` replaces the client's clock (``Client(..., clock=FakeClock())``): backoff waits
return at once and advance its time, and it records every wait, so retry timing is tested
without sleeping.

Not thread-safe beyond what a list gives: appends from many threads are safe, but read the
captured messages after the calls you test have returned.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import orjson

import analytics
from analytics._client import Client

__all__ = ["Capture", "FakeClock", "analytics_capture", "capture"]


class Capture:
    """The messages recorded by `capture`, oldest first, as the collector would receive them."""

    def __init__(self) -> None:
        """An empty record."""
        self.messages: list[dict[str, Any]] = []

    def __len__(self) -> int:
        """How many messages were recorded."""
        return len(self.messages)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        """The recorded messages, oldest first."""
        return iter(self.messages)

    def __getitem__(self, index: int) -> dict[str, Any]:
        """The message at ``index``."""
        return self.messages[index]

    def of_type(self, kind: str) -> list[dict[str, Any]]:
        """The messages of one type (``track``, ``identify`` ...)."""
        return [m for m in self.messages if m["type"] == kind]

    def events(self) -> list[str]:
        """The event names of the recorded track messages, in order."""
        return [m["event"] for m in self.messages if m["type"] == "track"]

    def clear(self) -> None:
        """Forget what was recorded so far."""
        self.messages.clear()


@contextmanager
def capture(client: Client | None = None) -> Iterator[Capture]:
    """Record the messages of ``client`` (default: the module-level default client) in memory.

    When no default client exists yet, one is made for the block (``send=False``, write key
    ``"test"``) and removed afterwards.
    """
    made = False
    if client is None:
        client = analytics.default_client
        if client is None:
            client = analytics.default_client = Client("test", send=False, flush_at_exit=False)
            made = True
    record = Capture()
    loads = orjson.loads
    previous = client._tap
    client._tap = lambda data: record.messages.append(loads(data))
    try:
        yield record
    finally:
        client._tap = previous
        if made:
            analytics.default_client = None


class FakeClock:
    """A clock for tests: waits return at once and advance time; each wait is recorded.

    A wait is cut short (and returns True) only if the interrupt Event is already set.
    """

    def __init__(self, start: float = 1000.0) -> None:
        """Start at ``start`` seconds."""
        self.now = start
        self.waits: list[float] = []
        self._lock = threading.Lock()

    def monotonic(self) -> float:
        """The fake time."""
        return self.now

    def sleep(self, interrupt: threading.Event, seconds: float) -> bool:
        """Record the wait and advance time by it (unless ``interrupt`` is set)."""
        with self._lock:
            self.waits.append(seconds)
            if interrupt.is_set():
                return True
            self.now += seconds
            return False

    def advance(self, seconds: float) -> None:
        """Move time forward."""
        with self._lock:
            self.now += seconds


try:  # the pytest fixture, when pytest is what runs us
    import pytest
except ImportError:  # pragma: no cover - pytest is optional
    pass
else:

    @pytest.fixture
    def analytics_capture() -> Iterator[Capture]:
        """Record what the default client would send during the test (see `capture`)."""
        with capture() as record:
            yield record
