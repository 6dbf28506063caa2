"""The client with spool=PATH: events go to disk before they are sent, and survive restarts.

The storage itself is tested in tests/spool; the fault suite (tests/faults) kills real
producers. These tests cover the client side: when events reach the spool, what flush and
shutdown report, the restart, and the fall back to memory.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest

from analytics._spool import Spool, SpoolError

from .conftest import ScriptedServer, Step, wait_until


def stored_in(path: Path) -> int:
    spool = Spool(path)
    try:
        return spool.pending()
    finally:
        spool.close()


def test_spooled_client_delivers_and_empties_the_spool(
    collector: Any, make_client: Any, tmp_path: Path
) -> None:
    """With a spool, events still reach the collector once each, and the spool ends empty."""
    path = tmp_path / "spool.db"
    client = make_client("k", host=collector.url, spool=str(path))
    for i in range(500):
        client.track("u", "e", {"i": i})
    assert client.flush(timeout=10.0)
    assert collector.store.count() == 500
    assert client.shutdown(timeout=5.0)
    assert stored_in(path) == 0


def test_events_reach_the_spool_while_the_sender_backs_off(
    server: ScriptedServer, make_client: Any, tmp_path: Path
) -> None:
    """During a long backoff the spooler still moves new events to disk within its interval."""
    server.script = [Step(429, {"Retry-After": "300"})] * 100
    path = tmp_path / "spool.db"
    client = make_client("k", host=server.url, spool=str(path), spool_interval=0.1)
    client.track("u", "first")
    assert server.wait_for_messages(1, timeout=10.0)  # the sender is now waiting 300 s
    for i in range(50):
        client.track("u", "later", {"i": i})
    assert wait_until(lambda: not client._sender.queue, timeout=5.0)
    assert client.stats.queued == 51  # all of them on disk, none delivered
    assert stored_in(path) == 51


def test_shutdown_in_an_outage_keeps_events_on_disk_for_the_next_start(
    server: ScriptedServer, collector: Any, make_client: Any, tmp_path: Path
) -> None:
    """shutdown() during an outage leaves the events in the spool; the next client sends them."""
    server.script = [Step(503)] * 1000
    path = tmp_path / "spool.db"
    failures: list[str] = []
    first = make_client(
        "k", host=server.url, spool=str(path), on_failure=lambda d, e: failures.append(e.reason)
    )
    for i in range(30):
        first.track("u", "e", {"i": i})
    assert first.shutdown(timeout=1.0) is False
    assert failures == []  # not failed: kept
    assert stored_in(path) == 30
    second = make_client("k", host=collector.url, spool=str(path))
    assert second.flush(timeout=10.0)  # sends the leftovers without any new call
    assert collector.store.count() == 30
    assert stored_in(path) == 0


def test_a_corrupt_spool_falls_back_to_memory(
    collector: Any, make_client: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A spool file that is not a database is reported once; events go through memory."""
    path = tmp_path / "spool.db"
    path.write_bytes(b"this is not a database" * 100)
    with caplog.at_level(logging.ERROR, logger="analytics"):
        client = make_client("k", host=collector.url, spool=str(path))
    assert len([r for r in caplog.records if "spool" in r.getMessage()]) == 1
    client.track("u", "e")
    assert client.flush(timeout=10.0)
    assert collector.store.count() == 1


def test_a_spool_that_fails_later_falls_back_to_memory(
    server: ScriptedServer, make_client: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """When writing fails (disk full ...), new events go through memory, and the chunks
    already on disk are still sent: nothing is stranded."""
    server.script = [Step(429, {"Retry-After": "300"})] * 1000  # hold everything on disk
    path = tmp_path / "spool.db"
    client = make_client("k", host=server.url, spool=str(path), spool_interval=0.05)
    for i in range(10):
        client.track("u", "before", {"i": i})
    assert wait_until(lambda: not client._sender.queue and stored_in(path) == 10)
    spool = client._sender.spool

    def full(items: list[bytes]) -> int:
        raise SpoolError("database or disk is full")

    spool.append = full
    with caplog.at_level(logging.ERROR, logger="analytics"):
        for i in range(20):
            client.track("u", "after", {"i": i})
        server.script.clear()  # the collector recovers
        assert client.flush(timeout=10.0)
    events = [m["event"] for m in server.messages()]
    assert events.count("before") >= 10  # at least once: retried chunks may repeat
    assert {m["properties"]["i"] for m in server.messages() if m["event"] == "after"} == set(
        range(20)
    )
    assert client.stats.unspooled == 20
    assert client._sender.writable is False
    assert stored_in(path) == 0
    assert len([r for r in caplog.records if "cannot write to the spool" in r.getMessage()]) == 1


def test_the_size_bound_drops_the_oldest_and_counts_them(
    server: ScriptedServer, make_client: Any, tmp_path: Path
) -> None:
    """Past spool_max_bytes the oldest events are dropped and counted as spool_full."""
    server.script = [Step(429, {"Retry-After": "300"})] * 100
    client = make_client(
        "k",
        host=server.url,
        spool=str(tmp_path / "s.db"),
        spool_max_bytes=20_000,
        spool_interval=0.05,
        flush_at=1000,
    )
    client.track("u", "first")
    assert server.wait_for_messages(1, timeout=10.0)
    for i in range(10):  # ten chunks of ~10 KB each, through the spooler
        for j in range(40):
            client.track("u", "e", {"i": i, "j": j, "pad": "x" * 200})
        assert wait_until(lambda: not client._sender.queue, timeout=5.0)
    assert client.stats.dropped.get("spool_full", 0) > 0
    assert stored_in(tmp_path / "s.db") < 400
