"""A small Server-Sent Events reader for the debugger stream (stdlib http.client)."""

from __future__ import annotations

import http.client
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import orjson


@dataclass
class Message:
    id: str | None
    event: str | None
    data: Any


class Stream:
    """``GET /debugger/stream`` kept open; :meth:`until` reads its messages."""

    def __init__(self, url: str, headers: dict[str, str] | None = None, timeout: float = 5.0):
        parts = urlsplit(url)
        self.conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
        self.conn.request("GET", "/debugger/stream", headers=headers or {})
        self.response = self.conn.getresponse()
        self.status = self.response.status
        self.messages: list[Message] = []

    def next(self) -> Message:
        """The next message with data (comments and ``retry:`` lines are skipped)."""
        fields: dict[str, str] = {}
        while True:
            line = self.response.readline()
            if not line:
                raise ConnectionError("the stream ended")
            text = line.decode().rstrip("\n")
            if text == "":
                if "data" in fields:
                    message = Message(
                        fields.get("id"), fields.get("event"), orjson.loads(fields["data"])
                    )
                    self.messages.append(message)
                    return message
                fields = {}
                continue
            name, _, value = text.partition(": ")
            fields[name] = value

    def until(self, done: Callable[[Stream], bool], timeout: float = 10.0) -> Stream:
        """Read messages until ``done(self)``; fail after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while not done(self):
            if time.monotonic() > deadline:
                raise AssertionError(f"the stream did not get there within {timeout} s")
            self.next()
        return self

    @property
    def seqs(self) -> list[int]:
        return [e["seq"] for m in self.messages for e in m.data["events"]]

    @property
    def refused(self) -> list[dict[str, Any]]:
        return [r for m in self.messages for r in m.data["refused"]]

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> Stream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
