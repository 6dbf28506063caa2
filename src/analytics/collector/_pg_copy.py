"""What the PostgreSQL store sends: the messages of a group commit as ``COPY`` data.

Built before the store's copy turn (:mod:`._pg`), so the Python work of one group overlaps
the previous group's ``COPY`` on the other writer connection; inside the turn the data only
goes over the wire.

- Keys (:func:`key_data`): PostgreSQL's binary ``COPY`` format, 34 bytes a key (a 16-byte
  ``uuid`` and an 8-byte ``timestamptz``), nothing for the server to parse.
- Events (:func:`event_data`): the text ``COPY`` format: tab-separated, ``\\N`` for NULL, a
  backslash, tab, newline or carriage return inside a value escaped. A body is compact JSON
  from orjson, which escapes every control character itself, so only its backslashes are
  doubled. ``tests/collector/test_collector_pg.py`` copies values full of these characters
  and reads them back unchanged.

PostgreSQL text cannot hold the NUL character: a message containing one is stored with U+FFFD
in its place (typed columns and ``body``).
"""

from __future__ import annotations

import re
import struct
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta, timezone
from typing import Any

import orjson

from analytics._wire import parse_timestamp
from analytics.collector._pg_schema import dedupe_key
from analytics.collector._validated import Message

__all__ = ["COPY_EVENTS", "COPY_KEYS", "Firsts", "event_data", "first_copies", "key_data"]

COPY_KEYS = "COPY event_keys (key, received_at) FROM STDIN (FORMAT binary)"
COPY_EVENTS = (
    "COPY events (write_key, message_id, type, user_id, anonymous_id, event, timestamp,"
    " received_at, body) FROM STDIN"
)
#: Dedupe key -> (batch number, message) of the first copy of each message of a group.
Firsts = dict[bytes, tuple[int, Message]]

_BINARY_HEAD = b"PGCOPY\n\xff\r\n\x00" + bytes(8)  # signature, flags, no header extension
_BINARY_TAIL = b"\xff\xff"
_KEY_ROW = struct.Struct("!hi16siq")  # 2 fields: 16-byte uuid, 8-byte timestamptz
_PG_EPOCH = datetime(2000, 1, 1, tzinfo=timezone.utc)
_MICROSECOND = timedelta(microseconds=1)
_NULL = "\\N"
_SPECIAL = re.compile(r"[\\\t\n\r]")
_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def first_copies(batches: Sequence[Sequence[Message]]) -> Firsts:
    """The first copy of each message, by dedupe key, in arrival order.

    A key repeated within one call is stored once (its first copy), as across calls.
    """
    firsts: Firsts = {}
    for number, messages in enumerate(batches):
        for msg in messages:
            m = _nul_free(msg) if b"\\" in msg.body and b"\\u0000" in msg.body else msg
            firsts.setdefault(dedupe_key(m.write_key, m.message_id), (number, m))
    return firsts


def key_data(keys: Sequence[bytes], firsts: Firsts) -> bytes:
    """The binary COPY data of ``keys`` (in this order) and their receive times."""
    micros: dict[str, int] = {}  # a request's messages share one receive time
    rows = [_BINARY_HEAD]
    for key in keys:
        stamp = firsts[key][1].received_at
        at = micros.get(stamp)
        if at is None:
            at = micros[stamp] = (parse_timestamp(stamp) - _PG_EPOCH) // _MICROSECOND
        rows.append(_KEY_ROW.pack(2, 16, key, 8, at))
    rows.append(_BINARY_TAIL)
    return b"".join(rows)


def event_data(messages: Iterable[Message]) -> bytes:
    """The text COPY data of ``messages``, one line each, in :data:`COPY_EVENTS` order."""
    out: list[bytes] = []
    for wk, mid, kind, user, anon, event, timestamp, received, body in messages:
        if _SPECIAL.search(f"{wk}{mid}{kind}{user}{anon}{event}"):
            fields = (_text(wk), _text(mid), _text(kind), _text(user), _text(anon), _text(event))
        else:
            fields = (
                wk,
                mid,
                kind,
                _NULL if user is None else user,
                _NULL if anon is None else anon,
                _NULL if event is None else event,
            )
        out.append("\t".join((*fields, timestamp, received, "")).encode())
        out.append(body.replace(b"\\", b"\\\\") if b"\\" in body else body)
        out.append(b"\n")
    return b"".join(out)


def _text(value: str | None) -> str:
    return _NULL if value is None else value.translate(_ESCAPES)


def _no_nul(value: str) -> str:
    return value.replace("\0", "\ufffd")


def _nul_free(m: Message) -> Message:
    """``m`` with every NUL character (which PostgreSQL text refuses) replaced by U+FFFD."""
    body = orjson.dumps(_clean(orjson.loads(m.body)))
    return m._replace(
        write_key=_no_nul(m.write_key),
        message_id=_no_nul(m.message_id),
        type=_no_nul(m.type),
        user_id=_no_nul(m.user_id) if m.user_id is not None else None,
        anonymous_id=_no_nul(m.anonymous_id) if m.anonymous_id is not None else None,
        event=_no_nul(m.event) if m.event is not None else None,
        body=body,
    )


def _clean(value: Any) -> Any:
    if isinstance(value, str):
        return _no_nul(value)
    if isinstance(value, list):
        return [_clean(v) for v in value]
    if isinstance(value, dict):
        return {_no_nul(k): _clean(v) for k, v in value.items()}
    return value
