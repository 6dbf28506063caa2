"""The debugger's feed: stored events read back from the store by ``seq``, plus refusals, as
Server-Sent Events messages.

Why read the store rather than hear the writer: with ``analytics serve --workers N`` a page's
stream lands on one process, yet every process stores events. The database has them all in one
order, so one reader per process that has viewers (:class:`Tail`) polls ``seq > last`` every
:data:`INTERVAL` seconds and sees every process's events; and an SSE id made of the last ``seq``
and the last refusal position (:func:`parse_event_id`) means the same thing in every process,
so a reconnecting page resumes where it stopped, whichever process it reaches. No viewer, no
reads. Past :data:`MAX_ROWS` new rows a tick, the oldest are skipped and only counted by type
(a browser could not show them; the collector should not pay for encoding them).

PostgreSQL with several collectors: ``seq`` comes from a sequence, so a transaction may commit
rows numbered below ones another collector committed and a page already passed; an open page
then misses them (they are stored; reloading the page shows them). SQLite's writers take turns,
so its ``seq`` order is its commit order.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import orjson

from analytics.collector._refusal_ring import RefusalRing, key_label

__all__ = ["INTERVAL", "MAX_ROWS", "Cursor", "Tail", "Tailable", "parse_event_id"]

INTERVAL = 0.2  # seconds between reads of the store while someone watches
MAX_ROWS = 500  # rows sent per tick at most (2,500 events/s); older ones are counted only
BACKLOG = 200  # stored events a new page starts with
RATE_WINDOW = 2.0  # seconds the events/s figure averages over


@runtime_checkable
class Tailable(Protocol):
    """What the feed needs from a store (:class:`~._store.SQLiteStore` has it)."""

    def last_seq(self) -> int: ...
    def tail(self, after: int, limit: int) -> list[tuple[int, str, str, Any]]: ...
    def type_counts(self, after: int, upto: int) -> dict[str, int]: ...


@dataclass(frozen=True, slots=True)
class Cursor:
    """Where a stream is: the last ``seq`` and the last refusal position it was sent."""

    seq: int
    pos: int

    @property
    def event_id(self) -> str:
        """The SSE ``id`` (``Last-Event-ID`` on reconnect)."""
        return f"{self.seq}.{self.pos}"


def parse_event_id(value: str | None) -> Cursor | None:
    """The :class:`Cursor` of a ``Last-Event-ID``, None when absent or malformed."""
    if not value:
        return None
    seq, dot, pos = value.strip().partition(".")
    if not (dot and seq.isdigit() and pos.isdigit()):
        return None
    return Cursor(int(seq), int(pos))


@dataclass(slots=True)
class Read:
    """One read of the store: the rows in ``(after, upto]`` and what was skipped."""

    upto: int
    rows: list[tuple[int, str, str, Any]]
    skipped: int = 0
    skipped_types: dict[str, int] = field(default_factory=dict)


def read_range(store: Tailable, after: int, upto: int | None = None) -> Read:
    """Rows with ``after < seq <= upto`` (``upto`` None: the newest), at most :data:`MAX_ROWS`,
    the newest kept (blocking: run it off the event loop)."""
    if upto is None:
        upto = store.last_seq()
    after = min(after, upto)
    read = Read(upto, [])
    if upto - after > MAX_ROWS:
        read.skipped = upto - MAX_ROWS - after
        read.skipped_types = store.type_counts(after, upto - MAX_ROWS)
        after = upto - MAX_ROWS
    if upto > after:
        read.rows = [row for row in store.tail(after, upto - after) if row[0] <= upto]
    return read


def _event_json(row: tuple[int, str, str, Any]) -> str:
    seq, key, _kind, body = row
    label = orjson.dumps(key_label(key)).decode()
    if not isinstance(body, str):  # PostgreSQL's jsonb arrives decoded
        body = orjson.dumps(body).decode()
    return f'{{"seq":{seq},"key":{label},"message":{body}}}'


def encode(
    cursor: Cursor, read: Read, refused: list[dict[str, Any]], stats: dict[str, Any]
) -> bytes:
    """One SSE message (``event: batch``) carrying a tick's events, refusals and counters."""
    events = ",".join(_event_json(row) for row in read.rows)
    rest = orjson.dumps(
        {
            "refused": refused,
            "skipped": read.skipped,
            "skippedTypes": read.skipped_types,
            "stats": stats,
        }
    ).decode()
    data = f'{{"events":[{events}],{rest[1:]}'.replace("\n", " ")
    return f"id: {cursor.event_id}\nevent: batch\ndata: {data}\n\n".encode()


class Tail:
    """The live position of one process's feed and its events/s figure."""

    def __init__(self, ring: RefusalRing, clock: Callable[[], float]) -> None:
        self.ring = ring
        self.cursor = Cursor(0, 0)
        self._clock = clock
        self._samples: deque[tuple[float, int]] = deque()

    def stats(self) -> dict[str, Any]:
        """The header's counters: stored (the newest seq), events/s, duplicates, refusals."""
        totals = self.ring.totals()
        return {
            "stored": self.cursor.seq,
            "rate": round(self._rate(), 1),
            "duplicates": totals.duplicates,
            "refused": totals.head,
        }

    def advance(self, read: Read) -> tuple[Cursor, list[dict[str, Any]]]:
        """Move past ``read`` and the ring's new refusals; return the new cursor and them."""
        pos, refused = self.ring.since(self.cursor.pos)
        self.cursor = Cursor(read.upto, pos)
        now = self._clock()
        self._samples.append((now, read.upto))
        while len(self._samples) > 2 and now - self._samples[1][0] >= RATE_WINDOW:
            self._samples.popleft()
        return self.cursor, refused

    def _rate(self) -> float:
        if len(self._samples) < 2:
            return 0.0
        (t0, s0), (t1, s1) = self._samples[0], self._samples[-1]
        return (s1 - s0) / (t1 - t0) if t1 > t0 else 0.0

    def restart(self, seq: int) -> None:
        """Start from ``seq`` (the newest row) after a time with no viewers."""
        self.cursor = Cursor(seq, self.ring.totals().head)
        self._samples.clear()
