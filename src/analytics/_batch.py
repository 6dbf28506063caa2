"""Batch assembly (pure): take encoded messages off the queue within SPEC §3 limits.

Items are the JSON bytes made once by the caller; a request body is made by concatenation,
so the worker never re-encodes a message and always knows the exact body size.
"""

from __future__ import annotations

from collections import deque

__all__ = [
    "MAX_BATCH_BYTES",
    "MAX_BATCH_COUNT",
    "envelope",
    "envelope_size",
    "fitting",
    "take_batch",
]

#: SPEC §3.1 REC client: an uncompressed body of at most 475,000 bytes and 2,500 messages.
MAX_BATCH_BYTES = 475_000
MAX_BATCH_COUNT = 2_500

_HEAD = b'{"batch":['
_SENT_AT = b'],"sentAt":"'
_WRITE_KEY = b'","writeKey":'


def envelope(items: list[bytes], sent_at: str, write_key_json: bytes) -> bytes:
    """The request body: ``{"batch":[...],"sentAt":...,"writeKey":...}``."""
    return b"".join(
        (_HEAD, b",".join(items), _SENT_AT, sent_at.encode(), _WRITE_KEY, write_key_json, b"}")
    )


def envelope_size(write_key_json: bytes) -> int:
    """Bytes a body adds around its items (with a 24-character sentAt)."""
    return len(_HEAD) + len(_SENT_AT) + 24 + len(_WRITE_KEY) + len(write_key_json) + 1


def take_batch(
    queue: deque[bytes], max_bytes: int, max_count: int = MAX_BATCH_COUNT
) -> list[bytes]:
    """Pop from the left of ``queue`` as many items as fit in ``max_bytes`` and ``max_count``.

    Each item costs its length plus one separating comma. An item is never larger than the
    limit (the caller refuses messages over 32,000 bytes), so every call makes progress.
    """
    items: list[bytes] = []
    size = 0
    popleft = queue.popleft
    append = items.append
    while queue and len(items) < max_count:
        cost = len(queue[0]) + 1
        if size + cost > max_bytes and items:
            break
        append(popleft())
        size += cost
    return items


def fitting(queue: deque[bytes], max_bytes: int, max_count: int = MAX_BATCH_COUNT) -> int:
    """How many items from the left of ``queue`` `take_batch` would take (nothing is popped).

    Indexes rather than iterates: other threads may append meanwhile (an iterator would fail).
    """
    count = size = 0
    limit = min(len(queue), max_count)
    while count < limit:
        cost = len(queue[count]) + 1
        if size + cost > max_bytes and count:
            break
        count += 1
        size += cost
    return count
