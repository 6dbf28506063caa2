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

`MemoryTransport` replaces the network (``Client(key, transport=MemoryTransport(...))``): it
answers each request with the next scripted `Reply` (a status, a delay, a ``Retry-After``, a
network error, per-message refusals), then with 200, and records every request, so delivery,
retries and callbacks are tested without a server.

`FakeClock` replaces the client's clock (``Client(..., clock=FakeClock())``): backoff waits
return at once and advance its time, and it records every wait, so retry timing is tested
without sleeping.

Not thread-safe beyond what a list gives: appends from many threads are safe, but read the
captured messages after the calls you test have returned.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import orjson

import analytics
from analytics._client import Client
from analytics._retry import Outcome

__all__ = [
    "AsyncMemoryTransport",
    "Capture",
    "FakeClock",
    "MemoryTransport",
    "Reply",
    "Request",
    "analytics_capture",
    "capture",
]


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
    client._set_tap(lambda data: record.messages.append(loads(data)))
    try:
        yield record
    finally:
        client._set_tap(previous)
        if made:
            analytics.default_client = None


@dataclass(frozen=True)
class Reply:
    """One scripted answer of a `MemoryTransport`.

    Args:
        status: the HTTP status (ignored when ``error`` is set).
        retry_after: the ``Retry-After`` seconds the answer carries, if any.
        refuse: per-message refusals of a 2xx, by index in the batch: ``{0: "invalid_field"}``
            (our collector's format: the others are delivered).
        error: a network error instead of an answer (e.g. ``"ConnectionResetError"``).
        delay: real seconds before answering (cut short by the request's timeout, or by
            `MemoryTransport.release`).
        hold: answer only once `MemoryTransport.release` is called (bounded by the timeout).
    """

    status: int = 200
    retry_after: float | None = None
    refuse: Mapping[int, str] = field(default_factory=dict)
    error: str = ""
    delay: float = 0.0
    hold: bool = False


@dataclass(frozen=True)
class Request:
    """One request a `MemoryTransport` received."""

    batch: list[dict[str, Any]]
    retry_count: int
    timeout: float | None
    at: float  # time.monotonic() when it arrived
    body: dict[str, Any]


class MemoryTransport:
    """A transport that answers from a script and records requests (thread-safe).

    ``MemoryTransport(Reply(503), Reply(429, retry_after=2))`` answers 503, then 429, then 200
    to every later request. `delivered` lists the messages of 2xx answers that were not
    refused; `wait_for` waits (bounded) for a condition on what was received.
    """

    def __init__(self, *replies: Reply, default: Reply | None = None) -> None:
        """Answer with ``replies`` in order, then with ``default`` (200)."""
        self.script: deque[Reply] = deque(replies)
        self.default = default or Reply()
        self.requests: list[Request] = []
        self.delivered: list[dict[str, Any]] = []
        self.closed = False
        self._cond = threading.Condition()
        self._released = False

    def send(self, body: bytes, retry_count: int, timeout: float | None = None) -> Outcome:
        """Record the request and answer with the next scripted reply."""
        payload, reply, wait = self._receive(body, retry_count, timeout)
        if wait > 0:
            with self._cond:
                self._cond.wait_for(lambda: self._released, wait)
        return self._answer(payload, reply)

    def _receive(
        self, body: bytes, retry_count: int, timeout: float | None
    ) -> tuple[dict[str, Any], Reply, float]:
        """Record a request; its reply and how long to wait before answering."""
        payload = orjson.loads(body)
        with self._cond:
            reply = self.script.popleft() if self.script else self.default
            self.requests.append(
                Request(payload["batch"], retry_count, timeout, time.monotonic(), payload)
            )
            self._cond.notify_all()
        wait = 30.0 if reply.hold else reply.delay
        if timeout is not None and wait > timeout:
            wait, reply = timeout, Reply(error="TimeoutError: read timed out")
        return payload, reply, 0.0 if self._released else wait

    def _answer(self, payload: dict[str, Any], reply: Reply) -> Outcome:
        if reply.error:
            return Outcome(None, error=reply.error)
        refused = [
            {"index": i, "code": code, "reason": f"scripted refusal ({code})"}
            for i, code in sorted(reply.refuse.items())
        ]
        if 200 <= reply.status < 300:
            with self._cond:
                self.delivered.extend(
                    m for i, m in enumerate(payload["batch"]) if i not in reply.refuse
                )
                self._cond.notify_all()
        answer: dict[str, Any] = (
            {"success": True, "refused": refused} if refused else {"success": True}
        )
        return Outcome(reply.status, retry_after=reply.retry_after, body=orjson.dumps(answer))

    def release(self) -> None:
        """Let every held or delayed request answer now (and later ones at once)."""
        with self._cond:
            self._released = True
            self._cond.notify_all()

    def wait_for(self, predicate: Callable[[MemoryTransport], bool], timeout: float = 10.0) -> bool:
        """Wait up to ``timeout`` seconds until ``predicate(self)`` holds; True if it did."""
        with self._cond:
            return self._cond.wait_for(lambda: predicate(self), timeout)

    def close(self) -> None:
        """Record that the client closed it."""
        self.closed = True


class AsyncMemoryTransport(MemoryTransport):
    """`MemoryTransport` for `analytics.AsyncClient`: the same script and records; delays and
    holds are awaited on the loop (``asyncio.sleep``), never blocking it."""

    async def send(  # type: ignore[override]
        self, body: bytes, retry_count: int, timeout: float | None = None
    ) -> Outcome:
        """Record the request and answer with the next scripted reply."""
        import asyncio  # noqa: PLC0415

        payload, reply, wait = self._receive(body, retry_count, timeout)
        end = time.monotonic() + wait
        while not self._released and time.monotonic() < end:
            await asyncio.sleep(min(0.01, end - time.monotonic()))
        return self._answer(payload, reply)

    async def close(self) -> None:  # type: ignore[override]
        """Record that the client closed it."""
        self.closed = True


class FakeClock:
    """A clock for tests: retry waits return at once and advance time; each is recorded.

    A wait ends early (time does not advance) only when its stop condition already holds (a
    shutdown deadline was set).
    """

    def __init__(self, start: float = 1000.0) -> None:
        """Start at ``start`` seconds."""
        self.now = start
        self.waits: list[float] = []
        self._lock = threading.Lock()

    def monotonic(self) -> float:
        """The fake time."""
        return self.now

    def wait(self, cond: threading.Condition, seconds: float, stop: Callable[[], bool]) -> None:
        """Record the wait and advance time by it (unless ``stop()`` holds already)."""
        with self._lock:
            self.waits.append(seconds)
            if not stop():
                self.now += seconds

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
