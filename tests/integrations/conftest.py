"""Real servers on 127.0.0.1 for the framework integrations, and a client that records.

Every server listens on a socket bound before its thread starts, so a request made right away
waits in the listen backlog instead of racing the server's start (no polling, no sleep).
``captured`` is the default client for the test, recording what it would send
(`analytics.testing.capture`).
"""

from __future__ import annotations

import asyncio
import socket
import socketserver
import threading
import urllib.request
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import pytest

import analytics
from analytics.testing import Capture, capture

CONCURRENT = 8  # requests held in flight together by the leak tests


def get(url: str, headers: dict[str, str] | None = None) -> str:
    """GET ``url`` over real HTTP with ``headers``; the body as text (raises on non-2xx)."""
    request = urllib.request.Request(url, headers=headers or {})
    with urllib.request.urlopen(request, timeout=15) as response:
        return str(response.read().decode())


def get_all(urls_and_headers: list[tuple[str, dict[str, str]]]) -> list[str]:
    """Make all the requests at once, each on its own thread; their bodies in order."""
    with ThreadPoolExecutor(len(urls_and_headers)) as pool:
        return list(pool.map(lambda pair: get(*pair), urls_and_headers))


@pytest.fixture
def captured() -> Iterator[Capture]:
    """A fresh default client for the test (send=False) whose messages are recorded."""
    old = analytics.default_client
    client = analytics.default_client = analytics.Client("test", send=False, flush_at_exit=False)
    try:
        with capture(client) as record:
            yield record
    finally:
        analytics.default_client = old
        client.shutdown()


def listening_socket() -> socket.socket:
    """A TCP socket listening on 127.0.0.1 on a free port."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    return sock


@pytest.fixture
def serve_asgi() -> Iterator[Callable[[Any], str]]:
    """``serve_asgi(app)`` runs uvicorn in a thread on 127.0.0.1; returns its base URL."""
    import uvicorn

    running: list[tuple[uvicorn.Server, threading.Thread, socket.socket]] = []

    def serve(app: Any) -> str:
        sock = listening_socket()
        # proxy_headers=False: uvicorn would otherwise itself take the client address from
        # X-Forwarded-For when the peer is 127.0.0.1, and the tests check what *we* do with it.
        config = uvicorn.Config(
            app, lifespan="off", log_level="warning", access_log=False, proxy_headers=False
        )
        server = uvicorn.Server(config)
        thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
        thread.start()
        running.append((server, thread, sock))
        host, port = sock.getsockname()
        return f"http://{host}:{port}"

    yield serve
    for server, thread, sock in running:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()
        assert not thread.is_alive(), "uvicorn did not stop within 10 s"


class _ThreadingWSGIServer(WSGIServer):
    """wsgiref's server, one thread per request (the leak tests hold requests in flight)."""

    daemon_threads = True

    def process_request(self, request: Any, client_address: Any) -> None:
        threading.Thread(target=self._handle, args=(request, client_address), daemon=True).start()

    def _handle(self, request: Any, client_address: Any) -> None:
        try:
            self.finish_request(request, client_address)
        except Exception:
            self.handle_error(request, client_address)
        finally:
            self.shutdown_request(request)


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, *args: Any) -> None:
        """No access log on the test's stderr."""


@pytest.fixture
def serve_forever() -> Iterator[Callable[[socketserver.TCPServer], str]]:
    """``serve_forever(server)``: run a bound socketserver-based HTTP server in a thread (it is
    shut down and closed at teardown); returns its base URL."""
    running: list[tuple[socketserver.TCPServer, threading.Thread]] = []

    def start(server: socketserver.TCPServer) -> str:
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        running.append((server, thread))
        host, port = server.server_address[:2]
        return f"http://{host!s}:{port}"

    yield start
    for server, thread in running:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


@pytest.fixture
def serve_wsgi(
    serve_forever: Callable[[socketserver.TCPServer], str],
) -> Callable[[Any], str]:
    """``serve_wsgi(app)`` serves a WSGI app (wsgiref, threaded) on 127.0.0.1; its base URL."""

    def serve(app: Any) -> str:
        return serve_forever(
            make_server(
                "127.0.0.1", 0, app, server_class=_ThreadingWSGIServer, handler_class=_QuietHandler
            )
        )

    return serve


class AsyncGate:
    """An asyncio barrier for ``parties`` coroutines of one loop (made lazily on that loop).

    Holding every request at the gate until all have arrived proves they were in flight
    together; the wait is bounded (10 s).
    """

    def __init__(self, parties: int) -> None:
        self.parties = parties
        self.arrived = 0
        self._event: asyncio.Event | None = None

    async def wait(self) -> None:
        """Return once ``parties`` coroutines have called this (TimeoutError after 10 s)."""
        if self._event is None:
            self._event = asyncio.Event()
        self.arrived += 1
        if self.arrived >= self.parties:
            self._event.set()
        await asyncio.wait_for(self._event.wait(), timeout=10)
