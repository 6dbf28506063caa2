"""AsyncClient (issue 16): the same calls as Client, delivery from a task on the loop, no
blocking call on the loop, loop shutdown and process exit drain it."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import os
import subprocess
import sys
import textwrap
import threading
from pathlib import Path
from typing import Any

import pytest

import analytics
from analytics.testing import AsyncMemoryTransport, Reply

from .conftest import ScriptedServer, Step

CALLS = ("identify", "track", "page", "screen", "group", "alias", "enqueue")


@pytest.mark.parametrize("name", CALLS)
def test_the_calls_have_the_same_signatures_as_clients(name: str) -> None:
    assert inspect.signature(getattr(analytics.AsyncClient, name)) == inspect.signature(
        getattr(analytics.Client, name)
    )


def test_the_options_are_clients() -> None:
    assert inspect.signature(analytics.AsyncClient.__init__) == inspect.signature(
        analytics.Client.__init__
    )


def test_importing_analytics_does_not_import_the_async_machinery() -> None:
    code = "import analytics, sys; print(sorted(m for m in sys.modules if 'aiohttp' in m or m == 'asyncio' or m == 'analytics._async'))"
    out = subprocess.run(
        [sys.executable, "-c", code], check=True, capture_output=True, text=True, timeout=30
    )
    assert out.stdout.strip() == "[]"


def test_delivers_to_the_collector_and_returns_what_client_returns(collector: Any) -> None:
    async def main() -> tuple[bool, dict[str, Any], Any]:
        async with analytics.AsyncClient("k", host=collector.url, flush_at=50) as client:
            for i in range(1000):
                client.track(user_id=f"u{i}", event="Played", properties={"i": i})
            queued, message = client.identify("u1", {"plan": "pro"})
            ok = await client.flush(timeout=10.0)
            return ok and queued, message, client.stats

    ok, message, stats = asyncio.run(main())
    assert ok
    assert message["type"] == "identify"
    assert message["anonymousId"] is None  # the keys Segment's message has
    assert (stats.sent, stats.failed, stats.queued) == (1001, 0, 0)
    assert collector.store.count() == 1001


def test_flush_waits_out_retry_after_and_shutdown_cuts_it() -> None:
    transport = AsyncMemoryTransport(Reply(429, retry_after=60.0))
    failures: list[str] = []

    async def main() -> tuple[bool, bool, int]:
        client = analytics.AsyncClient(
            "k",
            transport=transport,
            on_failure=lambda data, e: failures.append(e.reason),
            flush_at_exit=False,
        )
        client.track("u", "e")
        flushed = await client.flush(timeout=0.3)
        requests = len(transport.requests)
        return flushed, await client.shutdown(timeout=0.2), requests

    flushed, shut, requests = asyncio.run(main())
    assert (flushed, shut, requests) == (False, False, 1)
    assert failures == ["shutdown_timeout"]
    assert transport.closed


def test_refusals_and_redirects_are_failures() -> None:
    transport = AsyncMemoryTransport(Reply(200, refuse={0: "invalid_field"}), Reply(302))
    failed: list[tuple[str, str]] = []

    async def main() -> Any:
        client = analytics.AsyncClient(
            "k",
            transport=transport,
            flush_at=3,
            flush_at_exit=False,
            on_failure=lambda data, e: failed.extend((e.reason, m["event"]) for m in data),
        )
        client.track("u", "first")  # goes alone: the first message is sent at once
        await client.flush(timeout=5.0)
        for event in ("a", "b", "c"):
            client.track("u", event)
        ok = await client.flush(timeout=5.0)
        await client.shutdown(timeout=1.0)
        return ok, client.stats

    ok, stats = asyncio.run(main())
    assert ok is False
    assert (stats.sent, stats.failed) == (0, 4)
    assert sorted(failed) == [("http_error", e) for e in "abc"] + [("invalid_field", "first")]


def test_the_first_call_outside_a_loop_is_a_clear_error() -> None:
    client = analytics.AsyncClient("k", transport=AsyncMemoryTransport(), flush_at_exit=False)
    with pytest.raises(RuntimeError, match="running event loop"):
        client.track("u", "e")


def test_calls_from_other_threads_are_handed_over() -> None:
    transport = AsyncMemoryTransport()

    async def main() -> bool:
        client = analytics.AsyncClient("k", transport=transport, flush_at=10, flush_at_exit=False)
        client.track("u", "from the loop")  # binds the loop

        def worker(w: int) -> None:
            for i in range(50):
                client.track(f"u{w}", "from a thread", {"i": i})

        threads = [threading.Thread(target=worker, args=(w,)) for w in range(4)]
        for t in threads:
            t.start()
        await asyncio.to_thread(lambda: [t.join(10) for t in threads])
        return await client.shutdown(timeout=5.0)

    assert asyncio.run(main())
    assert len(transport.delivered) == 201


def test_sync_mode_and_a_blocking_transport_are_refused() -> None:
    with pytest.raises(analytics.ConfigError, match="sync mode"):
        analytics.AsyncClient("k", sync_mode=True)
    from analytics.testing import MemoryTransport

    with pytest.raises(analytics.ConfigError, match="AsyncTransport"):
        analytics.AsyncClient("k", transport=MemoryTransport())


def test_loop_shutdown_drains_what_is_queued(collector: Any) -> None:
    """asyncio.run ends without flush or shutdown: the task drains before the loop closes."""
    clients: list[analytics.AsyncClient] = []

    async def main() -> None:
        client = analytics.AsyncClient("k", host=collector.url, flush_at=2500, flush_after=60)
        clients.append(client)
        for i in range(300):
            client.track(f"u{i}", "e")

    asyncio.run(main())
    assert collector.store.count() == 300
    assert clients[0].stats.sent == 300


def test_process_exit_drains_a_client_whose_loop_is_gone(server: ScriptedServer) -> None:
    code = textwrap.dedent(
        f"""
        import asyncio, analytics
        async def main():
            client = analytics.AsyncClient("k", host={server.url!r}, flush_at=2500)
            for i in range(40):
                client.track("u", "e", {{"i": i}})
        loop = asyncio.new_event_loop()
        loop.run_until_complete(main())
        loop.close()  # closed without cancelling the task: the exit hook must deliver
        """
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], check=False, capture_output=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    assert server.wait_for_messages(40, timeout=10.0)
    assert len({m["properties"]["i"] for m in server.messages()}) == 40


#: A process whose AsyncClient outlives its loop (closed without cancelling the task), so the
#: exit hook delivers; an atexit hook registered before analytics' (so it runs after it)
#: prints the client's counters and what on_failure got.
EXIT_STATS = """
import asyncio, atexit, dataclasses, json, sys
atexit.register(lambda: print(json.dumps({"failures": failures, **dataclasses.asdict(client.stats)})))
import analytics

failures = []
client = analytics.AsyncClient("k", host=sys.argv[1], flush_at=2500, max_retries=0,
                               on_failure=lambda data, error: failures.append(error.reason),
                               **json.loads(sys.argv[2]))
async def main():
    for i in range(40):
        client.track("u", "e", {"i": i})
loop = asyncio.new_event_loop()
loop.run_until_complete(main())
loop.close()
"""


@pytest.mark.parametrize("spool", [False, True], ids=["memory", "spool"])
@pytest.mark.parametrize(
    ("status", "sent", "failed"), [(200, 40, 0), (400, 0, 40)], ids=["delivered", "refused"]
)
def test_the_exit_drain_counts_what_it_delivers_and_what_it_loses(
    server: ScriptedServer, tmp_path: Path, spool: bool, status: int, sent: int, failed: int
) -> None:
    """A message the exit hook delivers counts as sent; one it loses counts as failed and
    reaches on_failure (stats are the client's, whoever drained it)."""
    server.script = [Step(status)]
    options = {"spool": str(tmp_path / "s.db")} if spool else {}
    proc = subprocess.run(
        [sys.executable, "-c", EXIT_STATS, server.url, json.dumps(options)],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert len(server.messages()) == 40
    stats = json.loads(proc.stdout)
    assert (stats["sent"], stats["failed"], stats["queued"]) == (sent, failed, 0), stats
    assert stats["failures"] == ["http_error"] * (failed > 0), stats


# -- no blocking call on the loop -----------------------------------------------------------------

NO_BLOCKING = """
import asyncio, asyncio.events, json, sys, time
import analytics

LIMIT = 0.05
slow = []


def run_delay():
    # ns this thread was runnable but waiting for a CPU (Linux schedstat, field 2)
    with open("/proc/thread-self/schedstat") as f:
        return int(f.read().split()[1]) / 1e9


original = asyncio.events.Handle._run


def timed(handle):
    wall, waited, cpu = time.perf_counter(), run_delay(), time.thread_time()
    try:
        return original(handle)
    finally:
        wall, waited = time.perf_counter() - wall, run_delay() - waited
        if wall - waited >= LIMIT:  # held the loop (blocking or computing), not preempted
            slow.append(
                f"{handle!r} took {wall:.3f} s (cpu {time.thread_time() - cpu:.3f} s, "
                f"waiting for a CPU {waited:.3f} s, in {asyncio.all_tasks()})"
            )


asyncio.events.Handle._run = timed
url, spool = sys.argv[1], sys.argv[2]
options = {"spool": spool, "spool_interval": 0.05} if spool else {}
# Made before the loop, as an application does at import time (importing aiohttp takes
# ~0.1-0.3 s, once); it binds to the loop of its first call.
client = analytics.AsyncClient("k", host=url, flush_at=100, flush_at_exit=False, **options)


async def main():
    asyncio.get_running_loop().slow_callback_duration = LIMIT
    for start in range(0, 20_000, 10):  # an application yields between its requests
        for i in range(start, start + 10):
            client.track(f"u{i % 50}", "Played", {"i": i, "tags": ["a", "b"], "nested": {"x": i}})
        await asyncio.sleep(0)
    await client.flush(timeout=1.0)
    await client.shutdown(timeout=1.0)


asyncio.run(main(), debug=True)
print(json.dumps({"slow": slow, "stats": repr(client.stats)}))
"""


def _favoured() -> None:
    """Run the measured process ahead of other work on a busy machine (as root, which CI is):
    the warning measures wall time, and a process waiting for a CPU is not a blocked loop."""
    with contextlib.suppress(OSError):
        os.nice(-10)


@pytest.mark.parametrize("spooled", [False, True])
@pytest.mark.parametrize("collector_kind", ["slow", "503"])
def test_no_blocking_call_on_the_loop(
    server: ScriptedServer, tmp_path: Path, spooled: bool, collector_kind: str
) -> None:
    """20,000 events in asyncio debug mode (slow_callback_duration = 0.05 s), against a
    collector that answers after 0.2 s or with 503s, with and without a spool: no callback
    (our task, the caller's steps, aiohttp's) holds the loop for 50 ms.

    Every callback is timed like debug mode does (wall clock), minus the time the OS kept the
    runnable thread off the CPU (/proc/thread-self/schedstat): on a busy 2-core machine a
    preempted callback is not a blocked loop, while a blocking call (disk, sleep, a lock) still
    counts in full. In a fresh process, so no other test's threads compete for the GIL."""
    server.script = [Step(delay=0.2) if collector_kind == "slow" else Step(503)] * 1000
    spool = str(tmp_path / "s.db") if spooled else ""
    proc = subprocess.run(
        [sys.executable, "-c", NO_BLOCKING, server.url, spool],
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
        preexec_fn=_favoured,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["slow"] == [], "\n".join(result["slow"])
    assert server.request_started.is_set()  # it did try to deliver
