"""flush, shutdown, exit and fork: bounded, never hanging, nothing lost or sent twice.

Each lifecycle test runs over both buffers (the ``buffer`` fixture: memory, and a spool file).
Where their promises differ it asserts each one: at a shutdown or exit deadline, the memory
buffer reports what it could not deliver to ``on_failure`` (reason ``shutdown_timeout``); the
spool keeps it on disk for the next start and reports nothing.
"""

from __future__ import annotations

import gc
import os
import re
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
import weakref
from pathlib import Path
from typing import Any

import orjson
import pytest

import analytics
from analytics._retry import Outcome
from analytics.testing import FakeClock, MemoryTransport, Reply

from .conftest import BufferKind, Calls, ScriptedServer, Step, stored_in, wait_until

#: Extra seconds any bounded call may take on a loaded 2-core machine.
SLACK = 3.0


def run_script(code: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    """Run a Python program in a fresh interpreter (bounded)."""
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def assert_cut(buffer: BufferKind, failures: Calls, client: analytics.Client, count: int) -> None:
    """What a deadline cut: kept on disk by a spool; reported failed from memory."""
    if buffer.durable:
        assert failures.calls == []
        assert client.stats.failed == 0
        assert buffer.stored() == count
    else:
        assert set(failures.reasons()) == {"shutdown_timeout"}
        assert len(failures.messages()) == client.stats.failed == count


def test_flush_timeout_is_bounded_during_an_outage(
    server: ScriptedServer, make_client: Any, buffer: BufferKind
) -> None:
    """flush(timeout) returns False by its timeout while the collector answers 503, and
    fails nothing: the retry budget is not spent by flushing."""
    server.script = [Step(503)] * 1000
    failures = Calls()
    client = make_client("k", host=server.url, on_failure=failures, **buffer.options)
    client.track("u", "e")
    start = time.monotonic()
    assert client.flush(timeout=0.5) is False
    assert time.monotonic() - start < 0.5 + SLACK
    assert client.stats.failed == 0
    assert client.stats.queued == 1
    assert failures.calls == []


def test_shutdown_is_bounded_during_an_outage(
    server: ScriptedServer, make_client: Any, buffer: BufferKind
) -> None:
    """shutdown(timeout) stops at its deadline; what is left is reported (memory) or kept
    on disk (spool)."""
    server.script = [Step(503)] * 1000
    failures = Calls()
    client = make_client("k", host=server.url, on_failure=failures, **buffer.options)
    for i in range(5):
        client.track("u", "e", {"i": i})
    start = time.monotonic()
    assert client.shutdown(timeout=1.0) is False
    assert time.monotonic() - start < 1.0 + SLACK
    assert_cut(buffer, failures, client, 5)
    assert client.stats.sent == 0


def test_shutdown_interrupts_a_long_retry_after(
    server: ScriptedServer, make_client: Any, buffer: BufferKind
) -> None:
    """A Retry-After of 300 s does not hold shutdown: the wait is cut at the deadline."""
    server.script = [Step(429, {"Retry-After": "300"})] * 100
    failures = Calls()
    client = make_client("k", host=server.url, on_failure=failures, **buffer.options)
    client.track("u", "e")
    assert server.wait_for_messages(1, timeout=10.0)
    start = time.monotonic()
    assert client.shutdown(timeout=1.0) is False
    assert time.monotonic() - start < 1.0 + SLACK
    assert len(server.requests) == 1  # not retried early: the wait was cut, not shortened
    assert_cut(buffer, failures, client, 1)


def test_flush_never_shortens_a_retry_after(make_client: Any, buffer: BufferKind) -> None:
    """Behaviour changed on purpose: flush() used to retry a batch waiting on Retry-After at
    once (burning the budget when called often); now it waits for the schedule, and only
    shutdown's deadline cuts the wait."""
    transport = MemoryTransport(Reply(429, retry_after=120))
    failures = Calls()
    client = make_client("k", transport=transport, on_failure=failures, **buffer.options)
    client.track("u", "e")
    assert transport.wait_for(lambda t: len(t.requests) == 1)
    for _ in range(10):  # a web app flushing at the end of every request
        assert client.flush(timeout=0.05) is False
    assert len(transport.requests) == 1
    assert (client.stats.queued, client.stats.failed) == (1, 0)
    assert client.shutdown(timeout=0.5) is False
    assert_cut(buffer, failures, client, 1)


def test_shutdown_is_idempotent_and_later_calls_are_dropped(
    server: ScriptedServer, make_client: Any, buffer: BufferKind
) -> None:
    """A second shutdown does nothing; calls after shutdown are dropped as shut_down."""
    failures = Calls()
    client = make_client("k", host=server.url, on_failure=failures, **buffer.options)
    client.track("u", "e")
    assert client.shutdown(timeout=5.0)
    assert client.shutdown(timeout=5.0)
    assert not client.track("u", "late")[0]
    assert not client.track("u", "late")[0]
    assert client.stats.dropped == {"shut_down": 2}
    assert failures.reasons() == ["shut_down", "shut_down"]
    assert [m["event"] for m in server.messages()] == ["e"]
    assert buffer.stored() == 0


def test_send_false_never_hangs_and_sends_nothing(
    server: ScriptedServer, buffer: BufferKind
) -> None:
    """send=False: calls are validated and return; flush and shutdown return at once
    (Segment #85); nothing is sent or stored."""
    client = analytics.Client(
        "k", host=server.url, send=False, flush_at_exit=False, **buffer.options
    )
    assert client.track("u", "e")[0]
    with pytest.raises(analytics.InvalidEventError):
        client.track("u", "")
    start = time.monotonic()
    assert client.flush(async_=False)
    assert client.shutdown(timeout=1.0)
    assert time.monotonic() - start < SLACK
    assert server.requests == []
    assert buffer.stored() == 0


@pytest.mark.usefixtures("unstartable_sender")
def test_without_a_sender_thread_flush_returns_and_shutdown_delivers(
    server: ScriptedServer, make_client: Any, buffer: BufferKind
) -> None:
    """When no thread can be started (interpreter shutdown), flush returns at once instead of
    waiting its timeout, and shutdown delivers on the calling thread."""
    client = make_client("k", host=server.url, **buffer.options)
    assert client.track("u", "e")[0]
    start = time.monotonic()
    assert client.flush(timeout=5.0) is False
    assert time.monotonic() - start < 4.0
    assert client.shutdown(timeout=5.0)
    assert [m["event"] for m in server.messages()] == ["e"]
    assert buffer.stored() == 0


@pytest.mark.usefixtures("dead_sender")
def test_a_dead_sender_thread_does_not_hang_flush_and_shutdown_delivers(
    server: ScriptedServer, make_client: Any, buffer: BufferKind
) -> None:
    """If the thread died, flush returns at once; shutdown still delivers what is queued
    (on its own thread, within its deadline) rather than reporting it cut."""
    failures = Calls()
    client = make_client("k", host=server.url, on_failure=failures, **buffer.options)
    assert client.track("u", "e")[0]
    start = time.monotonic()
    assert client.flush(timeout=5.0) is False
    assert time.monotonic() - start < 4.0
    assert client.shutdown(timeout=5.0)
    assert time.monotonic() - start < 5.0 + SLACK
    assert [m["event"] for m in server.messages()] == ["e"]
    assert failures.calls == []
    assert buffer.stored() == 0


def test_a_message_queued_as_the_sender_stops_is_delivered_not_failed(
    make_client: Any, buffer: BufferKind
) -> None:
    """A track() that passed the "shut down?" check just before shutdown() and reached the
    buffer after the sender thread's last take (a race on a busy machine, its interleaving
    forced here): shutdown delivers it within its deadline, it is not reported cut."""
    transport = MemoryTransport()
    failures = Calls()
    client = make_client("k", transport=transport, on_failure=failures, **buffer.options)
    client.track("u", "first")
    assert client.flush(timeout=5.0)
    sender = client._sender
    deadline = sender.clock.monotonic() + 10.0
    sender.begin_shutdown(deadline)  # the thread takes what waits, then stops
    thread = sender._thread
    thread.join(10.0)
    assert not thread.is_alive()
    late = orjson.dumps({"type": "track", "userId": "u", "event": "late", "messageId": "m-late"})
    assert sender.buffer.put(late) == 1  # the late put, after the thread's last take
    assert sender.finish_shutdown(deadline)
    assert [m["event"] for m in transport.delivered] == ["first", "late"]
    assert failures.calls == []
    assert (client.stats.sent, client.stats.failed, client.stats.queued) == (2, 0, 0)
    assert buffer.stored() == 0


def test_a_spool_locked_through_shutdown_sends_from_memory(
    server: ScriptedServer, make_client: Any, tmp_path: Path
) -> None:
    """Another process holds the spool's write lock from before the events until after
    shutdown: the sender can neither stage nor lease, and closing the spool cannot stage
    either, so the events are still in memory when the thread stops; shutdown sends them
    from memory (counted in ``unspooled``) rather than reporting them cut."""
    path = tmp_path / "s.db"
    failures = Calls()
    client = make_client("k", host=server.url, spool=str(path), on_failure=failures)
    other = sqlite3.connect(path, isolation_level=None, timeout=10.0)
    other.execute("BEGIN EXCLUSIVE")  # held past the spool's 2 s busy timeout, many times
    try:
        for i in range(5):
            client.track("u", "e", {"i": i})
        assert client.shutdown(timeout=30.0)
    finally:
        other.execute("ROLLBACK")
        other.close()
    assert sorted(m["properties"]["i"] for m in server.messages()) == list(range(5))
    assert failures.calls == []
    assert (client.stats.sent, client.stats.unspooled) == (5, 5)
    assert stored_in(path) == 0


class RaisingTransport(MemoryTransport):
    """A transport with a bug: its first send raises ``exc``; later ones answer 200."""

    def __init__(self, exc: BaseException) -> None:
        super().__init__()
        self.exc = exc
        self.raised = False

    def send(self, body: bytes, retry_count: int, timeout: float | None = None) -> Outcome:
        if not self.raised:
            self.raised = True
            raise self.exc
        return super().send(body, retry_count, timeout)


class Stray(BaseException):
    """Not an Exception: what a stray SystemExit-like error in a transport looks like."""


@pytest.mark.parametrize("exc", [RuntimeError("boom"), Stray("exit")], ids=["Exception", "Base"])
def test_a_transport_bug_fails_the_batch_and_delivery_goes_on(
    make_client: Any, buffer: BufferKind, exc: BaseException
) -> None:
    """An unexpected exception while sending reports the batch as failed (internal_error),
    once; the next batch is delivered; nothing is silently lost or counted as queued."""
    transport = RaisingTransport(exc)
    failures = Calls()
    client = make_client("k", transport=transport, on_failure=failures, **buffer.options)
    client.track("u", "lost")
    assert failures.wait_for_messages(1)
    client.track("u", "kept")
    assert client.flush(timeout=5.0)
    assert [m["event"] for m in transport.delivered] == ["kept"]
    assert [m["event"] for m in failures.messages()] == ["lost"]
    assert failures.reasons() == ["internal_error"]
    assert (client.stats.sent, client.stats.failed, client.stats.queued) == (1, 1, 0)
    assert client.shutdown(timeout=2.0)


def test_flush_returns_after_the_callbacks_of_what_it_waited_for(
    make_client: Any, buffer: BufferKind
) -> None:
    """When flush(timeout) says the queue is settled, on_success has run for it: a caller may
    read what its callbacks recorded right after flush returns."""
    transport = MemoryTransport()
    done: list[str] = []
    slow = threading.Event()

    def on_success(data: list[dict[str, Any]], response: Any) -> None:
        slow.wait(0.5)  # a callback that takes a while (never set: a bounded pause)
        done.extend(m["event"] for m in data)

    client = make_client("k", transport=transport, on_success=on_success, **buffer.options)
    client.track("u", "e")
    assert client.flush(timeout=10.0)
    assert done == ["e"]


def test_context_manager_shuts_down(server: ScriptedServer, buffer: BufferKind) -> None:
    """with Client(...) as c: delivers, then the client refuses new calls."""
    with analytics.Client("k", host=server.url, flush_at_exit=False, **buffer.options) as client:
        client.track("u", "e")
    assert [m["event"] for m in server.messages()] == ["e"]
    assert client.track("u", "late")[0] is False
    assert client.stats.dropped == {"shut_down": 1}
    assert buffer.stored() == 0


def test_a_shut_down_client_can_be_garbage_collected(
    server: ScriptedServer, buffer: BufferKind
) -> None:
    """Neither the thread, atexit nor the fork hook keeps a shut-down client alive."""
    client = analytics.Client("k", host=server.url, flush_at_exit=False, **buffer.options)
    client.track("u", "e")
    assert client.shutdown(timeout=5.0)
    ref = weakref.ref(client)
    del client
    gc.collect()
    assert ref() is None


def spool_arg(buffer: BufferKind) -> str:
    """The ``spool=`` argument for a script, or nothing."""
    return "" if buffer.path is None else f", spool={str(buffer.path)!r}"


def test_exit_without_flush_delivers(server: ScriptedServer, buffer: BufferKind) -> None:
    """A script that never flushes still delivers everything at exit (bounded drain)."""
    result = run_script(f"""
        import analytics
        analytics.init("k", host={server.url!r}{spool_arg(buffer)})
        for i in range(550):
            analytics.track(user_id="u", event="e", properties={{"i": i}})
    """)
    assert result.returncode == 0, result.stderr
    assert server.wait_for_messages(550, timeout=10.0)
    assert sorted(m["properties"]["i"] for m in server.messages()) == list(range(550))
    assert buffer.stored() == 0


def test_exit_during_an_outage_is_bounded(server: ScriptedServer, buffer: BufferKind) -> None:
    """With the collector answering 503, exit waits exit_timeout, then says what was lost
    (memory) or what stays in the spool for the next start (spool)."""
    server.script = [Step(503)] * 10_000
    start = time.monotonic()
    result = run_script(f"""
        import logging, analytics
        logging.basicConfig()
        analytics.init("k", host={server.url!r}, exit_timeout=1.0{spool_arg(buffer)})
        for i in range(50):
            analytics.track(user_id="u", event="e")
    """)
    elapsed = time.monotonic() - start
    assert result.returncode == 0, result.stderr
    assert elapsed < 20.0
    assert "Traceback" not in result.stderr
    if buffer.durable:
        assert "50 message(s) stay in the spool" in result.stderr
        assert "not delivered" not in result.stderr
        assert buffer.stored() == 50
    else:
        lost = re.findall(r"(\d+) message\(s\) not delivered", result.stderr)
        assert sum(map(int, lost)) == 50


def test_flush_at_exit_false_skips_the_drain(server: ScriptedServer, buffer: BufferKind) -> None:
    """flush_at_exit=False leaves at exit at once without sending the queue."""
    result = run_script(f"""
        import analytics
        c = analytics.Client("k", host={server.url!r}, flush_at_exit=False, flush_at=100,
                             flush_after=3600{spool_arg(buffer)})
        c.track(user_id="u", event="first")  # sent at once
        assert c.flush(timeout=10.0)
        c.track(user_id="u", event="late")  # fewer than flush_at: waits for flush_after
    """)
    assert result.returncode == 0, result.stderr
    assert [m["event"] for m in server.messages()] == ["first"]


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_fork_child_delivers_its_own_and_not_the_parents(
    server: ScriptedServer, make_client: Any, buffer: BufferKind
) -> None:
    """After fork the child sends its own events and the parent's queued ones are sent once.

    From memory, the child never sends the parent's (its queue starts empty). A spool file is
    shared: the parent's events may be staged to it and leased by either process, so only
    "each exactly once" is promised there.
    """
    client = make_client("k", host=server.url, flush_at=1000, flush_after=3600, **buffer.options)
    client.track("p", "warmup")
    assert client.flush(timeout=10.0)
    for i in range(10):
        client.track("p", "parent", {"i": i})
    pid = os.fork()
    if pid == 0:  # the child: report through the exit code only
        code = 1
        try:
            for i in range(10):
                client.track("c", "child", {"i": i})
            delivered = client.flush(timeout=10.0)
            mine = client.stats.sent == 10 or buffer.durable
            code = 0 if delivered and mine else 2
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert client.flush(timeout=10.0)
    messages = server.messages()
    ids = [m["messageId"] for m in messages]
    assert len(ids) == len(set(ids)) == 21
    assert sum(m["event"] == "child" for m in messages) == 10
    assert sum(m["event"] == "parent" for m in messages) == 10
    assert buffer.stored() == 0


def test_module_level_api_seed_style(server: ScriptedServer) -> None:
    """analytics.init + track + flush(async_=False), with on_success registered on the module."""
    seen = Calls()
    analytics.on_success(seen)
    analytics.init("k", host=server.url, flush_at_exit=False)
    ok, msg = analytics.track(user_id="ilya@segment.io", event="Played a Song")
    assert ok
    assert msg["event"] == "Played a Song"
    assert analytics.flush(**{"async": False})
    assert seen.wait_for_messages(1)
    assert [m["messageId"] for m in seen.messages()] == [msg["messageId"]]
    assert analytics.shutdown(timeout=5.0)


def test_module_level_api_segment_style(server: ScriptedServer) -> None:
    """Segment 2.x: set analytics.write_key/host, call track, flush(), join()."""
    errors: list[Any] = []
    analytics.write_key = "seg-key"
    analytics.host = server.url
    analytics.on_error = lambda e, batch: errors.append(e)
    try:
        assert analytics.identify("u1", {"email": "a@b.c"})[0]
        assert analytics.flush(timeout=10.0)
        assert analytics.default_client is not None
        assert analytics.join(timeout=5.0)
    finally:
        analytics.on_error = None
    assert server.requests[0].body["writeKey"] == "seg-key"
    assert errors == []


def test_module_level_call_without_a_key_is_a_config_error() -> None:
    """Calling track before init names the fix."""
    with pytest.raises(analytics.ConfigError, match="init"):
        analytics.track("u", "e")


def test_capture_records_without_network(server: ScriptedServer, make_client: Any) -> None:
    """testing.capture() records exactly what would be sent and sends nothing."""
    from analytics.testing import capture

    client = make_client("k", host=server.url)
    with capture(client) as messages:
        client.track("u", "Signed Up", {"plan": "pro"})
        client.identify("u", {"email": "a@b.c"})
    assert messages.events() == ["Signed Up"]
    assert messages.of_type("identify")[0]["traits"] == {"email": "a@b.c"}
    assert len(messages) == 2
    assert client.flush(timeout=5.0)
    assert server.requests == []


def test_capture_fixture_on_the_default_client(analytics_capture: Any) -> None:
    """The analytics_capture pytest fixture records module-level calls without any init."""
    analytics.track(user_id="u", event="Checked Out")
    assert analytics_capture.events() == ["Checked Out"]
    assert analytics_capture[0]["userId"] == "u"


def test_fake_clock_records_backoff(
    server: ScriptedServer, make_client: Any, buffer: BufferKind
) -> None:
    """The injected clock sees every backoff, with no real sleeping, over either buffer."""
    server.script = [Step(503)] * 4
    clock = FakeClock()
    client = make_client("k", host=server.url, clock=clock, **buffer.options)
    client.track("u", "e")
    assert client.flush(timeout=10.0)
    assert clock.waits == pytest.approx([0.5, 1, 2, 4], rel=0.11)
    assert wait_until(lambda: client.stats.queued == 0)
    assert len(server.messages()) == 5
