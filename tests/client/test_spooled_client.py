"""The client with spool=PATH: events go to disk before they are sent, and survive restarts.

The storage itself is tested in tests/spool; the fault suite (tests/faults) kills real
producers. These tests cover the client side: when events reach the spool, what flush and
shutdown report, the restart, and the fall back to memory.
"""

from __future__ import annotations

import asyncio
import json
import logging
import subprocess
import sys
import textwrap
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import analytics
from analytics.testing import AsyncMemoryTransport, MemoryTransport, Reply

from .conftest import ScriptedServer, Step, stored_in, wait_until


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
    assert wait_until(lambda: stored_in(path) == 51, timeout=5.0)  # no flush: the spooler
    assert client.stats.queued == 51  # all of them on disk, none delivered
    assert len(server.requests) == 1


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


def holding_a_chunk(make_client: Any, path: Path) -> Any:
    """A client holding the one chunk of the spool ``path`` (rate-limited, it waits out a
    Retry-After of 60 s) until it is shut down, which gives the chunk back."""
    limited = MemoryTransport(Reply(429, retry_after=60))
    holder = make_client("k", transport=limited, spool=str(path), spool_interval=0.05)
    holder.track("u", "held")
    assert limited.wait_for(lambda t: len(t.requests) == 1)
    return holder


def give_back_when_nothing_is_free(buffer: Any, holder: Any, armed: threading.Event) -> None:
    """The first take of ``buffer`` that finds nothing free once ``armed`` is set shuts
    ``holder`` down: its chunk is given back just after a round that found it held."""
    take = buffer.take

    def take_then_give_back() -> Any:
        batch = take()
        if batch is None and armed.is_set() and holder.stats.queued:
            holder.shutdown(timeout=5.0)
        return batch

    buffer.take = take_then_give_back


def test_a_flush_takes_a_chunk_another_client_gives_back_meanwhile(
    make_client: Any, tmp_path: Path
) -> None:
    """Two clients share a spool. The first holds a chunk; the second's flush finds nothing
    it can take; then the first shuts down and gives the chunk back: the second's flush,
    still waiting, takes and delivers it (it waited for its flush_after). This is what made
    the outage test above flaky: a first client whose thread ended just after its shutdown's
    grace still held its chunk when the second flushed."""
    path = tmp_path / "spool.db"
    holder = holding_a_chunk(make_client, path)
    transport = MemoryTransport()
    second = make_client("k", transport=transport, spool=str(path), flush_after=60)
    flushing = threading.Event()
    give_back_when_nothing_is_free(second._sender.buffer, holder, flushing)
    flushing.set()
    assert second.flush(timeout=10.0)
    assert [m["event"] for m in transport.delivered] == ["held"]
    assert stored_in(path) == 0


def test_an_async_clients_flush_takes_a_chunk_given_back_meanwhile(
    make_client: Any, tmp_path: Path
) -> None:
    """The same with an AsyncClient flushing (its I/O thread takes from the spool)."""
    path = tmp_path / "spool.db"
    holder = holding_a_chunk(make_client, path)
    transport = AsyncMemoryTransport()
    armed = threading.Event()
    armed.set()

    async def main() -> bool:
        second = analytics.AsyncClient(
            "k", transport=transport, spool=str(path), flush_after=60, flush_at_exit=False
        )
        give_back_when_nothing_is_free(second._sender.buffer, holder, armed)
        ok = await second.flush(timeout=10.0)  # binds this loop: its first round is the flush's
        await second.shutdown(timeout=5.0)
        return ok

    assert asyncio.run(main())
    assert [m["event"] for m in transport.delivered] == ["held"]
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


#: A producer whose spool file stops growing (RLIMIT_FSIZE: writes past its size fail, as on a
#: full disk) once 10 events are on disk; it then sends 20 more and reports its counters.
DISK_FULL_PRODUCER = """
import json, logging, os, resource, signal, sys, time
import analytics
from analytics._spool import Spool

logging.basicConfig(level=logging.ERROR, format="%(levelname)s %(message)s")
path, host = sys.argv[1], sys.argv[2]
client = analytics.Client("k", host=host, spool=path, spool_interval=0.05, flush_at=1000,
                          flush_after=3600, flush_at_exit=False)
client.track(user_id="u", event="warmup")
assert client.flush(timeout=10.0)
for i in range(10):
    client.track(user_id="u", event="before", properties={"i": i})

def stored():
    spool = Spool(path)
    try:
        return spool.pending()
    finally:
        spool.close()

end = time.monotonic() + 10.0
while stored() < 10 and time.monotonic() < end:  # the spooler stages them (bounded poll)
    time.sleep(0.02)
assert stored() == 10
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
size = max(os.path.getsize(p) for p in (path, path + "-wal") if os.path.exists(p))
resource.setrlimit(resource.RLIMIT_FSIZE, (size, resource.RLIM_INFINITY))
for i in range(20):
    client.track(user_id="u", event="after", properties={"i": i})
flushed = client.flush(timeout=10.0)
resource.setrlimit(resource.RLIMIT_FSIZE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
stats = client.stats
shut = client.shutdown(timeout=5.0)
print(json.dumps({"flushed": flushed, "shutdown": shut, "sent": stats.sent,
                  "unspooled": stats.unspooled, "failed": stats.failed}))
"""


@pytest.mark.skipif(sys.platform != "linux", reason="RLIMIT_FSIZE semantics of Linux")
def test_a_spool_that_fails_later_falls_back_to_memory(
    server: ScriptedServer, make_client: Any, tmp_path: Path
) -> None:
    """When writing to the spool fails (disk full), it is said once at ERROR, new events go
    through memory (counted as unspooled), and the chunks already on disk stay there: the
    next client sends them. Nothing is stranded or lost."""
    path = tmp_path / "spool.db"
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(DISK_FULL_PRODUCER), str(path), server.url],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report == {
        "flushed": True,
        "shutdown": False,  # ten events stay in the spool
        "sent": 21,
        "unspooled": 20,
        "failed": 0,
    }
    errors = [line for line in result.stderr.splitlines() if line.startswith("ERROR")]
    assert len(errors) == 1, result.stderr
    assert "spool" in errors[0]
    assert [m["event"] for m in server.messages()] == ["warmup"] + ["after"] * 20
    assert stored_in(path) == 10
    second = make_client("k", host=server.url, spool=str(path))
    assert second.flush(timeout=10.0)  # the leftovers, without any new call
    before = [m["properties"]["i"] for m in server.messages() if m["event"] == "before"]
    assert before == list(range(10))
    assert stored_in(path) == 0


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
    path = tmp_path / "s.db"

    def accounted(expected: int) -> Callable[[], bool]:
        """Every message so far is on disk or dropped as spool_full (none still in memory)."""
        return lambda: stored_in(path) + client.stats.dropped.get("spool_full", 0) == expected

    for i in range(10):  # ten chunks of ~10 KB each, through the spooler
        for j in range(40):
            client.track("u", "e", {"i": i, "j": j, "pad": "x" * 200})
        assert wait_until(accounted(1 + 40 * (i + 1)), timeout=5.0)
    dropped = client.stats.dropped.get("spool_full", 0)
    assert dropped > 0
    assert stored_in(path) == 401 - dropped < 400
