"""Connection-level defences: timeouts, a connection cap and a budget of body bytes in flight.

Why: aiohttp alone keeps a connection that never finishes its headers, or idles between
requests, for an hour; it accepts connections until the process runs out of file descriptors
(then every request times out and asyncio logs a traceback per failed ``accept``); and many
slow bodies held at once can take gigabytes. Measured before this module: 1,100 idle
connections at a soft limit of 1,024 file descriptors made normal requests time out.

What:

- **Header timeout** (``header_timeout``, 10 s): from the connection's start, or from the first
  byte of a later request, the request line and headers must arrive within it. A partial
  request is answered 408 (the JSON error body), a silent connection is closed.
- **Idle timeout** (``idle_timeout``, 30 s): a keep-alive connection with no request in
  progress is closed after it. The body itself is bounded by ``read_timeout`` (._body).
- **Connection cap** (``max_connections``, 1,000, never more than the open-file limit minus
  :data:`FD_RESERVE`, :data:`REFUSING_MAX` and :data:`ACCEPT_BATCH`, so that accepting does
  not run out of descriptors): a
  connection past it is answered ``503`` with ``Retry-After`` and closed (clients retry 503).
  With :data:`REFUSING_MAX` refusals already in progress, new connections are closed at once.
- **Body bytes in flight** (``max_body_bytes``, 64 MiB): each request reserves its
  ``Content-Length`` (or the largest body allowed) before its body is read; a request that
  does not fit is answered ``503`` with ``Retry-After`` and nothing of it is read.
- :func:`raise_fd_limit` raises the soft open-file limit to the hard one at start.

Every connection goes through :class:`_Connection`, a thin protocol in front of aiohttp's
request handler; the application tells it when a request starts and ends (:meth:`Guard.busy`).
Protocol errors (a malformed request line or header) are answered with the JSON error body,
logged as one redacted line (:class:`_Handler`, :mod:`._logfilter`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any, cast

import orjson
from aiohttp import web

from analytics.collector._logfilter import redact
from analytics.collector._validate import RequestError

if sys.platform != "win32":
    import resource

__all__ = [
    "ACCEPT_BATCH",
    "DEFAULT_SERVER_LIMITS",
    "FD_RESERVE",
    "REFUSING_MAX",
    "RETRY_AFTER_SECONDS",
    "BodyBudget",
    "Guard",
    "ServerLimits",
    "error_body",
    "raise_fd_limit",
]

log = logging.getLogger("analytics.collector")

#: File descriptors kept for the database, its WAL, logs and pipes (not for connections).
FD_RESERVE = 64
#: Connections being answered 503 at once; past it, new ones are closed without an answer.
REFUSING_MAX = 64
#: Connections asyncio accepts in one go, before any is counted (its ``backlog`` argument):
#: they hold descriptors too, so they are kept out of the cap.
ACCEPT_BATCH = 64
RETRY_AFTER_SECONDS = 2
_REFUSAL_LINGER = 2.0  # seconds a refused connection may take to read its 503


@dataclass(frozen=True, slots=True, kw_only=True)
class ServerLimits:
    """Connection limits of one collector process (see the module docstring)."""

    max_connections: int = 1000
    max_body_bytes: int = 64 * 1024 * 1024
    header_timeout: float = 10.0
    idle_timeout: float = 30.0

    def __post_init__(self) -> None:
        for name in ("max_connections", "max_body_bytes", "header_timeout", "idle_timeout"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be above 0")


DEFAULT_SERVER_LIMITS = ServerLimits()


def error_body(code: str, message: str) -> dict[str, Any]:
    """The error body SPEC 4.1 recommends (Python, Ruby and Java clients can all read it)."""
    return {"success": False, "code": code, "message": message, "error": message}


def raw_response(status: int, code: str, message: str, *, retry_after: bool = False) -> bytes:
    """A complete HTTP/1.1 error response that closes the connection, as bytes."""
    body = orjson.dumps(error_body(code, message))
    head = [
        f"HTTP/1.1 {status} {HTTPStatus(status).phrase}",
        "Content-Type: application/json",
        f"Content-Length: {len(body)}",
        "Connection: close",
    ]
    if retry_after:
        head.append(f"Retry-After: {RETRY_AFTER_SECONDS}")
    return ("\r\n".join(head) + "\r\n\r\n").encode("ascii") + body


def raise_fd_limit() -> int:
    """Raise the soft open-file limit to the hard one; return the soft limit now in force.

    A common soft default is 1,024 while the hard limit is far higher: without this, the
    connection cap would be cut to fit the soft limit.
    """
    if sys.platform == "win32":
        return 1 << 16
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != soft:
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            log.debug("could not raise the open-file limit from %d to %d", soft, target)
    return soft if soft != resource.RLIM_INFINITY else 1 << 20


class BodyBudget:
    """Bytes of request bodies being read at once, bounded (``max_body_bytes``)."""

    def __init__(self, limit: int | None = None) -> None:
        self.limit = limit
        self.used = 0

    @contextlib.contextmanager
    def reserve(self, size: int) -> Iterator[None]:
        """Hold ``size`` bytes while the body is read.

        Raises:
            RequestError: 503 ``overloaded`` when they do not fit (nothing was read).
        """
        if self.limit is not None and self.used + size > self.limit:
            raise RequestError(503, "overloaded", "too many request bodies in flight; retry later")
        self.used += size
        try:
            yield
        finally:
            self.used -= size


class _Handler(web.RequestHandler):
    """aiohttp's request handler, answering protocol errors with the JSON error body and one
    redacted log line (aiohttp's own answer is plain text and logs a traceback that may
    quote the request's ``Authorization`` header)."""

    def handle_error(
        self,
        request: Any,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        text = message or getattr(exc, "message", None) or str(exc or "")
        lines = [line for line in str(text).splitlines() if line.strip(" ^")]
        first = redact(" ".join(" ".join(lines).split()))[:200] or HTTPStatus(status).phrase
        log.warning("bad request from %s: %d %s", request.remote, status, first)
        if request.writer.output_size > 0:
            raise ConnectionError("the response was already started; cannot send the error")
        code = "bad_request" if status < 500 else "internal_error"
        text = first if status < 500 else "the collector failed on this request"
        response = web.Response(
            status=status,
            body=orjson.dumps(error_body(code, text)),
            content_type="application/json",
        )
        response.force_close()
        return response


class _Connection(asyncio.Protocol):
    """One connection: aiohttp's handler behind header and idle deadlines."""

    def __init__(self, guard: Guard, inner: web.RequestHandler) -> None:
        self._guard = guard
        self._inner = inner
        self._transport: asyncio.Transport | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._state = "header"  # header: waiting for a request; busy; idle: between requests
        self._bytes = False  # bytes of the pending request arrived

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # a stream server's transport
        self._guard.opened(transport, self)
        self._inner.connection_made(transport)
        self._arm(self._guard.limits.header_timeout)

    def data_received(self, data: bytes) -> None:
        if self._state == "idle" and data:
            self._state = "header"
            self._arm(self._guard.limits.header_timeout)
        self._bytes = self._bytes or bool(data)
        self._inner.data_received(data)

    def eof_received(self) -> None:
        self._inner.eof_received()

    def pause_writing(self) -> None:
        self._inner.pause_writing()

    def resume_writing(self) -> None:
        self._inner.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel()
        if self._transport is not None:
            self._guard.closed(self._transport)
        self._inner.connection_lost(exc)

    def started(self) -> None:
        """A request's handler started: its own timeouts apply now."""
        self._state = "busy"
        self._cancel()

    def finished(self) -> None:
        """The handler returned: the connection is idle until the next request."""
        self._state = "idle"
        self._bytes = False
        self._arm(self._guard.limits.idle_timeout)

    def _arm(self, delay: float) -> None:
        self._cancel()
        self._timer = asyncio.get_running_loop().call_later(delay, self._expire)

    def _cancel(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _expire(self) -> None:
        self._timer = None
        transport = self._transport
        if self._state == "busy" or transport is None or transport.is_closing():
            return
        if self._state == "header" and self._bytes:
            seconds = self._guard.limits.header_timeout
            transport.write(
                raw_response(408, "header_timeout", f"headers not received within {seconds:g} s")
            )
        transport.close()


class _Refusal(asyncio.Protocol):
    """A connection past the cap: answered 503 + ``Retry-After`` at once, then closed."""

    def __init__(self, guard: Guard) -> None:
        self._guard = guard
        self._transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)
        self._guard.refusing += 1
        message = "the collector has too many connections; retry later"
        self._transport.write(raw_response(503, "overloaded", message, retry_after=True))
        # Read (and drop) the request before closing, so the client sees the 503, not a reset.
        asyncio.get_running_loop().call_later(_REFUSAL_LINGER, self._transport.close)

    def data_received(self, data: bytes) -> None:
        """The request is not read."""

    def eof_received(self) -> bool:
        return False  # close

    def connection_lost(self, exc: Exception | None) -> None:
        self._guard.refusing -= 1


async def listen(
    sock: socket.socket, factory: Callable[[], asyncio.Protocol], backlog: int
) -> asyncio.AbstractServer:
    """Serve ``sock`` with ``factory``: asyncio accepts at most :data:`ACCEPT_BATCH`
    connections per wake-up, while the kernel still queues ``backlog`` of them.

    asyncio uses one ``backlog`` for both. A large batch accepted at once can exhaust the
    descriptors before any connection is counted, and on Python 3.11 each failed ``accept()``
    of the batch then schedules its own retry (1,024 of them, measured).
    """
    server = await asyncio.get_running_loop().create_server(
        factory, sock=sock, backlog=ACCEPT_BATCH
    )
    sock.listen(backlog)  # asyncio's listen(ACCEPT_BATCH) would shorten the kernel queue
    return server


class Guard:
    """The connections of one server: the cap, their deadlines and the body budget."""

    def __init__(self, limits: ServerLimits, fd_limit: int) -> None:
        self.limits = limits
        room = fd_limit - FD_RESERVE - REFUSING_MAX - ACCEPT_BATCH
        self.max_connections = max(1, min(limits.max_connections, room))
        self.budget = BodyBudget(limits.max_body_bytes)
        self.refusing = 0
        self.refused = 0
        self._open: dict[asyncio.BaseTransport, _Connection] = {}
        # Counted when the protocol is made: asyncio makes a whole accept batch's protocols
        # before any of their connection_made() runs.
        self._admitted = 0

    @property
    def connections(self) -> int:
        """Connections being served (refusals not included)."""
        return self._admitted

    def protocol_factory(
        self, server: web.Server, handler_args: dict[str, Any]
    ) -> Callable[[], asyncio.Protocol]:
        """What ``loop.create_server`` calls for each accepted connection."""
        loop = asyncio.get_running_loop()

        def make() -> asyncio.Protocol:
            if self._admitted >= self.max_connections:
                self.refused += 1
                if self.refusing >= REFUSING_MAX:
                    return _Dropped()
                return _Refusal(self)
            self._admitted += 1
            return _Connection(self, _Handler(server, loop=loop, **handler_args))

        return make

    def opened(self, transport: asyncio.BaseTransport, conn: _Connection) -> None:
        self._open[transport] = conn

    def closed(self, transport: asyncio.BaseTransport) -> None:
        self._open.pop(transport, None)
        self._admitted -= 1

    @contextlib.contextmanager
    def busy(self, transport: asyncio.BaseTransport | None) -> Iterator[None]:
        """A request is being handled on ``transport``: no header or idle deadline runs."""
        conn = self._open.get(transport) if transport is not None else None
        if conn is not None:
            conn.started()
        try:
            yield
        finally:
            if conn is not None and transport is not None and not transport.is_closing():
                conn.finished()


class _Dropped(asyncio.Protocol):
    """Far past the cap: close at once, without reading or answering."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport.close()
