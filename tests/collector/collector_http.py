"""Small HTTP helpers for the collector tests (stdlib http.client and raw sockets only)."""

from __future__ import annotations

import base64
import gzip
import http.client
import socket
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import orjson

KEY = "test-key"


@dataclass
class Reply:
    status: int
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def json(self) -> Any:
        return orjson.loads(self.body)


def basic(key: str, colon: bool = True) -> str:
    raw = f"{key}:" if colon else key
    return "Basic " + base64.b64encode(raw.encode()).decode()


def post(
    url: str,
    path: str,
    body: Any,
    *,
    key: str | None = KEY,
    headers: dict[str, str] | None = None,
    compress: bool = False,
    timeout: float = 10.0,
) -> Reply:
    """POST ``body`` (bytes as-is, anything else as JSON) with Basic auth ``key``."""
    data = body if isinstance(body, bytes) else orjson.dumps(body)
    all_headers = {"Content-Type": "application/json"}
    if key is not None:
        all_headers["Authorization"] = basic(key)
    if compress:
        data = gzip.compress(data)
        all_headers["Content-Encoding"] = "gzip"
    all_headers.update(headers or {})
    return request(url, "POST", path, data, all_headers, timeout=timeout)


def request(
    url: str,
    method: str,
    path: str,
    data: bytes | None = None,
    headers: dict[str, str] | None = None,
    *,
    timeout: float = 10.0,
) -> Reply:
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
    try:
        conn.request(method, path, body=data, headers=headers or {})
        resp = conn.getresponse()
        return Reply(resp.status, resp.read(), {k.lower(): v for k, v in resp.getheaders()})
    finally:
        conn.close()


def raw_connect(url: str, timeout: float = 10.0) -> socket.socket:
    parts = urlsplit(url)
    assert parts.hostname is not None
    assert parts.port is not None
    return socket.create_connection((parts.hostname, parts.port), timeout=timeout)


def read_status(sock: socket.socket) -> int:
    """Read a response head from ``sock`` and return its status code."""
    data = b""
    while b"\r\n" not in data:
        chunk = sock.recv(4096)
        if not chunk:
            raise ConnectionError("closed before a status line")
        data += chunk
    return int(data.split(b" ", 2)[1])


def track(i: int = 0, **extra: Any) -> dict[str, Any]:
    msg: dict[str, Any] = {
        "type": "track",
        "userId": f"user-{i}",
        "event": "Song Played",
        "messageId": f"msg-{i}",
        "properties": {"i": i},
        "timestamp": "2024-05-01T12:00:00.000Z",
    }
    msg.update(extra)
    return msg


def batch(messages: list[Any], **extra: Any) -> dict[str, Any]:
    return {"batch": messages, "sentAt": "2024-05-01T12:00:00.000Z", **extra}
