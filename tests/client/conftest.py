"""Fixtures for the client tests: a small scripted HTTP server on 127.0.0.1, and the buffers.

The scripted server answers each request with the next step of its script (status, headers,
delay, or a dropped connection) and then 200, and records every request it got, decoded.
End-to-end delivery to the real collector uses the ``collector`` fixture of tests/conftest.py.

``buffer`` runs a test once per buffer a client can have: ``memory`` (the default) and
``spool`` (``spool=tmp_path/"s.db"``); the test passes ``**buffer.options`` to the client and
asserts each buffer's promise where they differ (a spool keeps what a deadline cut on disk).
"""

from __future__ import annotations

import gzip
import http.server
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

import analytics
from analytics._spool import Spool


def wait_until(predicate: Callable[[], bool], timeout: float = 10.0) -> bool:
    """Check ``predicate`` until it holds or ``timeout`` passes (bounded; 20 ms steps)."""
    deadline = time.monotonic() + timeout
    pause = threading.Event()
    while time.monotonic() < deadline:
        if predicate():
            return True
        pause.wait(0.02)
    return bool(predicate())


@dataclass
class Step:
    """One scripted answer."""

    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0  # seconds before answering (waits on an Event, so stop() cuts it short)
    reset: bool = False  # close the connection without answering
    hold: bool = False  # answer only once the test sets server.release (at most 30 s)


@dataclass
class Received:
    """One request as the server saw it."""

    path: str
    headers: dict[str, str]
    body: dict[str, Any]


class ScriptedServer:
    """A threaded HTTP server on 127.0.0.1 that follows a script and records requests."""

    def __init__(self) -> None:
        self.script: list[Step] = []
        self.requests: list[Received] = []
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self.request_started = threading.Event()  # set when a request arrives (before any delay)
        self.release = threading.Event()  # lets held requests (Step(hold=True)) answer
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                server.request_started.set()
                raw = self.rfile.read(int(self.headers["Content-Length"]))
                if self.headers.get("Content-Encoding") == "gzip":
                    raw = gzip.decompress(raw)
                with server._cond:
                    step = server.script.pop(0) if server.script else Step()
                if step.delay:
                    server._stop.wait(step.delay)
                if step.hold:
                    server.release.wait(30.0)
                if step.reset:
                    self.connection.setsockopt(
                        socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00"
                    )
                    self.close_connection = True
                    with server._cond:
                        server._cond.notify_all()
                    return
                with server._cond:
                    server.requests.append(Received(self.path, dict(self.headers), json.loads(raw)))
                    server._cond.notify_all()
                body = b'{"success": true}' if step.status < 300 else b'{"success": false}'
                self.send_response(step.status)
                for key, value in step.headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self._httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}"
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()

    def messages(self) -> list[dict[str, Any]]:
        """Every message received, in arrival order, duplicates included."""
        with self._cond:
            return [m for r in self.requests for m in r.body["batch"]]

    def wait_for_messages(self, count: int, timeout: float = 10.0) -> bool:
        """Wait (bounded) until at least ``count`` messages arrived."""
        with self._cond:
            return self._cond.wait_for(
                lambda: sum(len(r.body["batch"]) for r in self.requests) >= count, timeout
            )

    def stop(self) -> None:
        self._stop.set()
        self.release.set()
        self._httpd.shutdown()
        self._httpd.server_close()


@pytest.fixture
def server() -> Iterator[ScriptedServer]:
    """A scripted server, stopped after the test."""
    srv = ScriptedServer()
    yield srv
    srv.stop()


@pytest.fixture
def make_client() -> Iterator[Any]:
    """Make clients that are shut down (bounded) after the test."""
    clients: list[analytics.Client] = []

    def make(*args: Any, **kwargs: Any) -> analytics.Client:
        kwargs.setdefault("flush_at_exit", False)
        client = analytics.Client(*args, **kwargs)
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.shutdown(timeout=2.0)


@pytest.fixture(autouse=True)
def _reset_default_client() -> Iterator[None]:
    """Each test starts and ends without a module-level default client or callbacks."""
    yield
    client = analytics.default_client
    analytics.default_client = None
    analytics._success.clear()
    analytics._failure.clear()
    analytics.write_key = None
    analytics.host = None
    if client is not None:
        client.shutdown(timeout=2.0)


@dataclass(frozen=True)
class BufferKind:
    """Which buffer a parametrized test runs over, and the client options that choose it."""

    name: str
    path: Path | None  # the spool file, for the spool buffer

    @property
    def options(self) -> dict[str, Any]:
        """Keyword arguments for `analytics.Client`."""
        return {} if self.path is None else {"spool": str(self.path)}

    @property
    def durable(self) -> bool:
        """True for the spool: what a deadline cuts stays on disk instead of failing."""
        return self.path is not None

    def stored(self) -> int:
        """Messages waiting in the spool file (0 for memory)."""
        return 0 if self.path is None or not self.path.exists() else stored_in(self.path)


@pytest.fixture(params=["memory", "spool"])
def buffer(request: pytest.FixtureRequest, tmp_path: Path) -> BufferKind:
    """Each buffer in turn: memory, then a spool file in the test's tmp_path."""
    name: str = request.param
    return BufferKind(name, tmp_path / "s.db" if name == "spool" else None)


def stored_in(path: Path) -> int:
    """Messages waiting in a spool file, read with a connection of its own."""
    spool = Spool(path)
    try:
        return spool.pending()
    finally:
        spool.close()


@pytest.fixture
def dead_sender(monkeypatch: pytest.MonkeyPatch) -> None:
    """Sender threads started from now on end at once, as if they had died.

    The seam is public: `threading.Thread.run`, for the thread the client names
    ``analytics-sender`` (the name shown in thread dumps). Other threads run as usual.
    """
    real_run = threading.Thread.run

    def run(self: threading.Thread) -> None:
        if self.name != "analytics-sender":
            real_run(self)

    monkeypatch.setattr(threading.Thread, "run", run)


@pytest.fixture
def unstartable_sender(monkeypatch: pytest.MonkeyPatch) -> None:
    """Sender threads cannot be started (``RuntimeError``, as during interpreter shutdown)."""
    real_start = threading.Thread.start

    def start(self: threading.Thread) -> None:
        if self.name == "analytics-sender":
            raise RuntimeError("can't create new thread at interpreter shutdown")
        real_start(self)

    monkeypatch.setattr(threading.Thread, "start", start)


class Calls:
    """Callbacks recorded from the sender thread, with a bounded wait for them."""

    def __init__(self) -> None:
        self.calls: list[tuple[list[dict[str, Any]], Any]] = []
        self._cond = threading.Condition()

    def __call__(self, data: list[dict[str, Any]], info: Any) -> None:
        with self._cond:
            self.calls.append((data, info))
            self._cond.notify_all()

    def messages(self) -> list[dict[str, Any]]:
        """Every message passed to the callback, in call order."""
        with self._cond:
            return [m for data, _ in self.calls for m in data]

    def reasons(self) -> list[str]:
        """``error.reason`` of each call (for an on_failure gate)."""
        with self._cond:
            return [info.reason for _, info in self.calls]

    def wait_for_messages(self, count: int, timeout: float = 10.0) -> bool:
        """Wait (bounded) until the callback got at least ``count`` messages."""
        with self._cond:
            return self._cond.wait_for(lambda: len(self.messages()) >= count, timeout)
