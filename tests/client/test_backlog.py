"""A long backlog (an outage, a slow collector) is compressed in memory, and nothing is lost."""

from __future__ import annotations

import time
from typing import Any

import analytics

from .conftest import ScriptedServer, Step, wait_until


def backlog_client(make_client: Any, server: ScriptedServer, **kwargs: Any) -> analytics.Client:
    """A client whose first request is held, so what follows piles up; compaction at 1,000."""
    server.script = [Step(hold=True)]
    client: analytics.Client = make_client("k", host=server.url, flush_at=10, **kwargs)
    client._sender.compact_at = 1000
    client.track("u", "first")
    assert server.request_started.wait(10.0)
    return client


def test_a_backlog_is_compressed_and_then_delivered_once(
    server: ScriptedServer, make_client: Any
) -> None:
    """Past compact_at, the oldest messages are kept as compressed batches; all arrive once."""
    client = backlog_client(make_client, server)
    for i in range(5000):
        client.track("u", "e", {"i": i, "pad": "x" * 100})
    sender = client._sender
    # The compactor stops once half of compact_at (500) are left as they are.
    assert wait_until(lambda: len(sender.queue) <= 500)
    assert client.stats.queued == 5001  # compressed ones count; so does the one in flight
    assert sender._blocked == 5000 - len(sender.queue) >= 4500
    compressed = sum(len(block[1]) for block in list(sender._blocks))
    assert compressed < sender._blocked * 60  # ~200 bytes each as JSON: well under a third
    server.release.set()
    assert client.flush(timeout=20.0)
    ids = [m["messageId"] for m in server.messages()]
    assert len(ids) == len(set(ids)) == 5001
    assert sorted(m["properties"]["i"] for m in server.messages()[1:]) == list(range(5000))


def test_compressed_messages_count_against_max_queue_size(
    server: ScriptedServer, make_client: Any
) -> None:
    """max_queue_size bounds every queued message, compressed or not."""
    client = backlog_client(make_client, server, max_queue_size=3000)
    accepted = [client.track("u", "e", {"i": i})[0] for i in range(3500)]
    assert wait_until(lambda: client._sender._blocked > 0)
    assert sum(accepted) == 3000  # the queue's bound; the held first message is in flight
    assert client.stats.dropped == {"queue_full": 500}
    server.release.set()
    assert client.flush(timeout=20.0)
    assert len(server.messages()) == 3001


def test_shutdown_in_an_outage_reports_compressed_messages_as_failed(
    server: ScriptedServer, make_client: Any
) -> None:
    """At the shutdown deadline every undelivered message, compressed or not, is reported."""
    failed: list[int] = []
    client = backlog_client(make_client, server, on_failure=lambda d, e: failed.append(len(d)))
    for i in range(3000):
        client.track("u", "e", {"i": i})
    assert wait_until(lambda: client._sender._blocked > 0)
    start = time.monotonic()
    assert client.shutdown(timeout=0.5) is False  # the held request is still in flight
    assert time.monotonic() - start < 5.0
    server.release.set()  # it ends; everything after it is past the deadline
    assert wait_until(lambda: sum(failed) + len(server.messages()) == 3001)
    assert client.stats.failed == sum(failed) == 3000
