"""The store-neutral form of a validated, enriched message: what every store receives.

Validation (:mod:`._messages`) ends with a :class:`Message` per accepted item; each store maps
it to its own rows (the SQLite store adds its dedupe hash in :mod:`._schema`, the PostgreSQL
store copies it into typed columns and ``jsonb`` in :mod:`._pg`). The typed fields are the ones
people filter on; ``body`` is the whole stored message as compact JSON (UTF-8 bytes).
"""

from __future__ import annotations

from typing import Any, NamedTuple

__all__ = ["Message", "to_message"]


class Message(NamedTuple):
    """One message to store; ids are text (an integer id as its decimal form)."""

    write_key: str
    message_id: str
    type: str
    user_id: str | None
    anonymous_id: str | None
    event: str | None  # track messages only
    timestamp: str  # corrected client time, UTC, ...Z (._enrich)
    received_at: str  # collector clock, UTC, ...Z
    body: bytes


def _text(value: Any) -> str | None:
    return value if value is None or type(value) is str else str(value)


def to_message(msg: dict[str, Any], write_key: str, body: bytes) -> Message:
    """The :class:`Message` of an enriched message ``msg`` whose compact JSON is ``body``.

    Runs for every stored message: plain tuple construction, no per-field helper calls for
    the fields that are always strings.
    """
    kind = msg["type"]
    return Message(
        write_key,
        msg["messageId"],
        kind,
        _text(msg.get("userId")),
        _text(msg.get("anonymousId")),
        msg.get("event") if kind == "track" else None,
        msg["timestamp"],
        msg["receivedAt"],
        body,
    )
