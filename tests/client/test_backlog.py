"""A long backlog (an outage, a slow collector) is compressed in memory, and nothing is lost.

Compaction is seen through its public effects: the memory the backlog holds falls (measured
with `tracemalloc`), every message still arrives once and in order, and compressed messages
still count in ``stats.queued`` and against ``max_queue_size``. The memory buffer is also
tested as a unit of its own, with a small ``compact_at``.
"""

from __future__ import annotations

import sys
import time
import tracemalloc
from collections.abc import Iterator
from typing import Any

import orjson
import pytest

import analytics
from analytics._buffer import COMPACT_AT, MemoryBuffer
from analytics.testing import MemoryTransport, Reply

from .conftest import Calls, wait_until

#: Enough messages past the client's compaction threshold for most of them to be compressed.
BACKLOG = COMPACT_AT + COMPACT_AT // 2
#: Batches (and so compressed blocks) of ~130 messages in the unit tests, so the compactor's
#: stop at compact_at/2 is reached with a small compact_at.
BLOCK_BYTES = 20_000


@pytest.fixture
def traced() -> Iterator[Any]:
    """Bytes currently allocated by Python (tracemalloc runs during the test)."""
    tracemalloc.start()
    yield lambda: tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()


def message(i: int) -> bytes:
    """An encoded message of about 150 bytes, like a small track call."""
    return b'{"type":"track","event":"e","properties":{"i":%d,"pad":"%s"}}' % (i, b"x" * 100)


def drain(buffer: MemoryBuffer) -> list[bytes]:
    """Take and settle every batch, oldest first."""
    items: list[bytes] = []
    for _ in range(10_000):  # bounded
        batch = buffer.take()
        if batch is None:
            break
        items.extend(batch.items)
        buffer.ack(batch)
    return items


def test_a_stalled_backlog_is_compressed_and_taken_in_order(traced: Any) -> None:
    """Past compact_at, while a batch has been stuck, the oldest messages are compressed
    (all but the newest compact_at/2); every message is then taken once, in order."""
    buffer = MemoryBuffer(10_000, BLOCK_BYTES, compact_at=1000)
    buffer.delivery_started(time.monotonic() - 1.0)  # a batch in flight for a second: stalled
    base = traced()
    for i in range(5000):
        assert buffer.put(message(i)) > 0
    raw = 5000 * sys.getsizeof(message(0))  # what the queue holds uncompressed
    assert wait_until(lambda: len(buffer.queue) <= 500)
    assert wait_until(lambda: traced() - base < raw / 2)  # JSON compresses well (~5x)
    assert buffer.ready() == buffer.pending() == 5000
    mark = buffer.mark()
    assert buffer.outstanding(mark) == 5000
    assert drain(buffer) == [message(i) for i in range(5000)]
    assert buffer.outstanding(mark) == 0
    buffer.close()


def test_compressed_messages_count_against_max_size() -> None:
    """The bound counts every message held, compressed or not."""
    buffer = MemoryBuffer(3000, BLOCK_BYTES, compact_at=1000)
    buffer.delivery_started(time.monotonic() - 1.0)
    accepted = sum(buffer.put(message(i)) > 0 for i in range(3500))
    assert wait_until(lambda: len(buffer.queue) <= 500)
    assert accepted == 3000
    assert buffer.full()
    assert buffer.put(message(3500)) == -1
    assert buffer.pending() == 3000
    evicted = buffer.evict()  # shutdown takes compressed ones back too, in order
    assert evicted == [message(i) for i in range(3000)]
    assert buffer.pending() == 0
    buffer.close()


def compacted(client: analytics.Client, traced: Any, count: int, **props: Any) -> list[int]:
    """Queue ``count`` tracks and wait (bounded) until the backlog holds well under half the
    memory its encoded messages take; return every ``stats.queued`` seen meanwhile."""
    base = traced()
    msg: dict[str, Any] = {}
    for i in range(count):
        msg = client.track("u", "e", {"i": i, **props})[1]
    raw = count * sys.getsizeof(orjson.dumps(msg))  # what the queue holds uncompressed
    seen: list[int] = []

    def shrunk() -> bool:
        seen.append(client.stats.queued)
        return bool(traced() - base < raw * 0.6)

    assert wait_until(shrunk, timeout=20.0)
    return seen


def held_client(make_client: Any, transport: MemoryTransport, **kwargs: Any) -> analytics.Client:
    """A client whose first request hangs until ``transport.release()``: a backlog forms."""
    client: analytics.Client = make_client("k", transport=transport, flush_at=10, **kwargs)
    client.track("u", "first")
    assert transport.wait_for(lambda t: len(t.requests) == 1)
    return client


def test_a_backlog_is_compressed_and_then_delivered_once_in_order(
    make_client: Any, traced: Any
) -> None:
    """A client's backlog past 10,000 shrinks in memory, counts in stats.queued, and every
    message arrives once, in order, when the collector answers again."""
    transport = MemoryTransport(Reply(hold=True))
    client = held_client(make_client, transport)
    seen = compacted(client, traced, BACKLOG, pad="x" * 100)
    # Compressed ones count, while and after they are compressed; so does the one in flight.
    assert set(seen) == {BACKLOG + 1}
    transport.release()
    assert client.flush(timeout=30.0)
    delivered = transport.delivered
    assert len({m["messageId"] for m in delivered}) == len(delivered) == BACKLOG + 1
    assert [m["properties"]["i"] for m in delivered[1:]] == list(range(BACKLOG))


def test_compressed_messages_count_against_max_queue_size(make_client: Any, traced: Any) -> None:
    """max_queue_size bounds every queued message, compressed or not."""
    transport = MemoryTransport(Reply(hold=True))
    client = held_client(make_client, transport, max_queue_size=BACKLOG)
    compacted(client, traced, BACKLOG, pad="x" * 100)
    assert client.stats.dropped == {}
    assert not any(client.track("u", "e", {"i": i})[0] for i in range(500))
    assert client.stats.dropped == {"queue_full": 500}
    transport.release()
    assert client.flush(timeout=30.0)
    assert len(transport.delivered) == BACKLOG + 1


def test_shutdown_in_an_outage_reports_compressed_messages_as_failed(
    make_client: Any, traced: Any
) -> None:
    """At the shutdown deadline every undelivered message, compressed or not, is reported to
    on_failure once (shutdown_timeout); the request in flight settles on its own."""
    transport = MemoryTransport(Reply(hold=True))
    failed = Calls()
    client = held_client(make_client, transport, on_failure=failed)
    compacted(client, traced, BACKLOG, pad="x" * 100)
    start = time.monotonic()
    assert client.shutdown(timeout=0.5) is False  # the held request is still in flight
    assert time.monotonic() - start < 0.5 + 3.0
    assert client.stats.failed == len(failed.messages()) == BACKLOG
    assert set(failed.reasons()) == {"shutdown_timeout"}
    assert [m["properties"]["i"] for m in failed.messages()] == list(range(BACKLOG))
    transport.release()  # it ends; nothing after it was sent past the deadline
    assert transport.wait_for(lambda t: len(t.delivered) == 1)
    assert [m["event"] for m in transport.delivered] == ["first"]
