"""A small scripted HTTP proxy for the faults the collector cannot produce by itself.

Each request to the proxy gets the action that ``proxy.plan(n)`` returns for it (``n`` counts
requests from 0): forward to the collector and relay its answer, answer a chosen status
(with headers, e.g. Retry-After), reset the connection before or after forwarding, or
forward and then answer only after a delay longer than the client's timeout. Tests switch
the plan while a producer runs; ``stop()`` cuts every delay short.
"""

from __future__ import annotations

import http.client
import http.server
import socket
import struct
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

#: Headers relayed from the client to the collector.
_FORWARDED = ("Content-Type", "Content-Encoding", "Authorization", "User-Agent", "X-Retry-Count")


@dataclass(frozen=True)
class Action:
    """What the proxy does with one request."""

    kind: str = "forward"  # forward | status | reset | forward_then_reset | forward_slowly
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0  # forward_slowly: seconds before the answer


FORWARD = Action()
Plan = Callable[[int], Action]


class FaultProxy:
    """A threaded HTTP server on 127.0.0.1 that forwards to ``upstream`` or injects faults."""

    def __init__(self, upstream: str, plan: Plan = lambda _n: FORWARD) -> None:
        """Listen on a free port; ``upstream`` is ``http://127.0.0.1:PORT`` of the collector."""
        self.upstream = upstream.removeprefix("http://").rstrip("/")
        self.plan = plan
        self.counts: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._n = 0
        self._stop = threading.Event()
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                proxy._handle(self)

            def log_message(self, *args: object) -> None:
                pass

        class Server(http.server.ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, request: object, client_address: object) -> None:
                pass  # resets we cause ourselves end in socket errors: expected

        self._httpd = Server(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}"
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()

    def _handle(self, req: http.server.BaseHTTPRequestHandler) -> None:
        with self._lock:
            n, self._n = self._n, self._n + 1
            action = self.plan(n)
            self.counts[action.kind if action.kind != "status" else str(action.status)] += 1
        if action.kind == "reset":  # mid-request: part of the body read, no answer
            req.rfile.read(min(1024, int(req.headers.get("Content-Length", "0"))))
            _reset(req)
            return
        body = req.rfile.read(int(req.headers.get("Content-Length", "0")))
        if action.kind == "status":
            _answer(req, action.status, b'{"success": false}', action.headers)
            return
        try:
            status, answer, headers = self._forward(req, body)
        except OSError:
            _answer(req, 502, b'{"success": false}', {})
            return
        if action.kind == "forward_then_reset":  # stored, but the client never hears it
            _reset(req)
            return
        if action.kind == "forward_slowly":
            self._stop.wait(action.delay)
        _answer(req, status, answer, headers)

    def _forward(
        self, req: http.server.BaseHTTPRequestHandler, body: bytes
    ) -> tuple[int, bytes, dict[str, str]]:
        conn = http.client.HTTPConnection(self.upstream, timeout=10)
        try:
            headers = {k: v for k in _FORWARDED if (v := req.headers.get(k)) is not None}
            conn.request("POST", req.path, body=body, headers=headers)
            resp = conn.getresponse()
            data = resp.read()
            retry_after = resp.getheader("Retry-After")
            return resp.status, data, {"Retry-After": retry_after} if retry_after else {}
        finally:
            conn.close()

    def stop(self) -> None:
        """Stop serving and cut delays short."""
        self._stop.set()
        self._httpd.shutdown()
        self._httpd.server_close()


def _answer(
    req: http.server.BaseHTTPRequestHandler, status: int, body: bytes, headers: dict[str, str]
) -> None:
    try:
        req.send_response(status)
        for key, value in headers.items():
            req.send_header(key, value)
        req.send_header("Content-Type", "application/json")
        req.send_header("Content-Length", str(len(body)))
        req.end_headers()
        req.wfile.write(body)
    except OSError:
        req.close_connection = True  # the client gave up (timed out): nothing to answer


def _reset(req: http.server.BaseHTTPRequestHandler) -> None:
    """Close with SO_LINGER 0: the client sees ECONNRESET, not a clean end of stream."""
    req.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    req.close_connection = True
    req.connection.close()
