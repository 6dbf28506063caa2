"""What the live debugger shows besides stored events: refusals and a few shared counters.

Refusals are never stored: they live in :class:`RefusalRing`, a fixed ring of
:data:`SLOTS` records of at most :data:`SLOT_BYTES` bytes, plus the counters the stored rows
cannot give (duplicates, refusals). With ``analytics serve --workers N`` the ring is one block
of shared memory made by the first process and handed to each worker at spawn, so a viewer
connected to any process sees every process's refusals; a ring position is the same in every
process, so a reconnecting page resumes from the position it saw last. One process (the
``CollectorServer`` of tests and the demo) uses the same code on a private buffer.

Ingestion never waits on the ring: its lock is taken with a short timeout and a refusal that
cannot get it is dropped from the ring, so a process that died holding the
lock only stops the sharing, never the collector.
"""

from __future__ import annotations

import hashlib
import multiprocessing
import re
import struct
import threading
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Protocol

import orjson

__all__ = ["SLOTS", "SLOT_BYTES", "RefusalRing", "Totals", "key_label", "refusal_field"]

SLOTS = 512
SLOT_BYTES = 4096
_PREVIEW_BYTES = 1500  # with the reason and code, well within a slot
_LOCK_TIMEOUT = 0.02  # seconds; ingestion drops a refusal from the ring rather than wait
_LEN = struct.Struct("<I")
# meta: [0] ring head (refusals written), [1] duplicates, [2] refused messages
_HEAD, _DUPLICATES, _REFUSED = range(3)
_WORD = re.compile(r"[A-Za-z]+")
_FIELDS = frozenset(
    {
        "anonymousId",
        "userId",
        "previousId",
        "groupId",
        "event",
        "name",
        "type",
        "messageId",
        "timestamp",
        "originalTimestamp",
        "sentAt",
        "context",
        "properties",
        "traits",
        "integrations",
        "writeKey",
        "category",
    }
)
_KEY_CODES = frozenset({"missing_write_key", "unknown_write_key"})


@lru_cache(maxsize=256)
def key_label(key: str | None) -> str | None:
    """What the page shows for a write key: the first 6 hex digits of its SHA-256, never the
    key (``printf %s KEY | sha256sum | cut -c1-6`` tells an operator which key it is)."""
    if not key:
        return None
    return "key " + hashlib.sha256(key.encode("utf-8")).hexdigest()[:6]


def refusal_field(code: str, reason: str) -> str | None:
    """The message field a refusal is about, read from its reason ("timestamp is not
    ISO-8601" -> ``timestamp``; "userId or anonymousId is required" -> ``userId, anonymousId``)."""
    if code in _KEY_CODES:
        return "writeKey"
    names = [word for word in _WORD.findall(reason) if word in _FIELDS]
    return ", ".join(dict.fromkeys(names)) or None


class _Lock(Protocol):
    def acquire(self, blocking: bool = ..., timeout: float = ...) -> bool: ...
    def release(self) -> None: ...


@dataclass(frozen=True, slots=True)
class Totals:
    """The shared counters: refusals ever written, duplicates and refused messages."""

    head: int
    duplicates: int
    refused: int


class RefusalRing:
    """A ring of JSON refusal records (the newest :data:`SLOTS`) and the shared counters.

    ``RefusalRing()`` is private to the process; ``RefusalRing.shared()`` lives in shared
    memory and may be passed to ``spawn`` processes (as an argument of the new process).
    """

    def __init__(self, buf: Any = None, meta: Any = None, lock: _Lock | None = None) -> None:
        self._buf = buf if buf is not None else bytearray(SLOTS * SLOT_BYTES)
        self._meta = meta if meta is not None else [0, 0, 0]
        self._lock: _Lock = lock if lock is not None else threading.Lock()
        self._view = memoryview(self._buf).cast("B")

    @classmethod
    def shared(cls) -> RefusalRing:
        """A ring in shared memory for the processes of ``analytics serve --workers``."""
        ctx = multiprocessing.get_context("spawn")
        buf = ctx.RawArray("c", SLOTS * SLOT_BYTES)
        return cls(buf, ctx.RawArray("q", 3), ctx.Lock())

    def __getstate__(self) -> tuple[Any, Any, Any]:
        return (self._buf, self._meta, self._lock)

    def __setstate__(self, state: tuple[Any, Any, Any]) -> None:
        self.__init__(*state)  # type: ignore[misc]

    def add(self, records: list[dict[str, Any]], *, refused: int = 0, duplicates: int = 0) -> None:
        """Append ``records`` and add to the counters (never waits more than a moment)."""
        encoded = [_encode(record) for record in records]
        if not self._lock.acquire(True, _LOCK_TIMEOUT):
            return
        try:
            meta = self._meta
            meta[_DUPLICATES] += duplicates
            meta[_REFUSED] += refused
            for data in encoded:
                start = (meta[_HEAD] % SLOTS) * SLOT_BYTES
                self._view[start : start + len(data)] = data
                meta[_HEAD] += 1
        finally:
            self._lock.release()

    def totals(self) -> Totals:
        """The counters as they are now (lock-free reads of whole words)."""
        meta = self._meta
        return Totals(meta[_HEAD], meta[_DUPLICATES], meta[_REFUSED])

    def since(self, position: int) -> tuple[int, list[dict[str, Any]]]:
        """The records after ``position`` still in the ring, and the newest position.

        A record's position (1-based) is ``pos`` in it. Returns ``(position, [])`` when the
        lock is busy (the caller asks again on its next tick).
        """
        if not self._lock.acquire(True, _LOCK_TIMEOUT):
            return position, []
        try:
            head = self._meta[_HEAD]
            first = max(position, head - SLOTS)
            raw = [self._slot(pos) for pos in range(first, head)]
        finally:
            self._lock.release()
        records = []
        for pos, data in zip(range(first + 1, head + 1), raw, strict=True):
            record = orjson.loads(data)
            record["pos"] = pos
            records.append(record)
        return head, records

    def _slot(self, pos: int) -> bytes:
        start = (pos % SLOTS) * SLOT_BYTES
        (size,) = _LEN.unpack_from(self._view, start)
        return bytes(self._view[start + _LEN.size : start + _LEN.size + size])


def _encode(record: dict[str, Any]) -> bytes:
    """A length-prefixed slot; a message too large for it is kept as a text preview."""
    room = SLOT_BYTES - _LEN.size
    try:
        data = orjson.dumps(record)
    except orjson.JSONEncodeError:  # a refused message nested deeper than orjson writes (254)
        data = orjson.dumps({**record, "message": None, "preview": "(nested too deep to show)"})
    if len(data) > room:
        text = orjson.dumps(record.get("message"))[:_PREVIEW_BYTES]
        preview = text.decode("utf-8", "ignore") + " ..."
        data = orjson.dumps({**record, "message": None, "preview": preview})
    if len(data) > room:  # only a huge reason could do this; ours are one line
        data = orjson.dumps({"code": record.get("code"), "reason": "(too large to show)"})
    return _LEN.pack(len(data)) + data
