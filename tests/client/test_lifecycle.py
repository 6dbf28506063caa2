"""flush, shutdown, exit and fork: bounded, never hanging, nothing lost or sent twice."""

from __future__ import annotations

import gc
import os
import subprocess
import sys
import textwrap
import threading
import time
import weakref
from typing import Any

import pytest

import analytics
from analytics.testing import FakeClock

from .conftest import ScriptedServer, Step


def run_script(code: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    """Run a Python program in a fresh interpreter (bounded)."""
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_flush_timeout_is_bounded_during_an_outage(
    server: ScriptedServer, make_client: Any
) -> None:
    """flush(timeout) returns False within its timeout while the collector answers 503."""
    server.script = [Step(503)] * 1000
    client = make_client("k", host=server.url)
    client.track("u", "e")
    start = time.monotonic()
    assert client.flush(timeout=0.5) is False
    assert time.monotonic() - start < 5.0


def test_shutdown_is_bounded_during_an_outage(server: ScriptedServer, make_client: Any) -> None:
    """shutdown(timeout) gives up at its deadline, reports the rest as shutdown_timeout."""
    server.script = [Step(503)] * 1000
    reasons: list[str] = []
    client = make_client("k", host=server.url, on_failure=lambda d, e: reasons.append(e.reason))
    for i in range(5):
        client.track("u", "e", {"i": i})
    start = time.monotonic()
    assert client.shutdown(timeout=1.0) is False
    assert time.monotonic() - start < 5.0
    assert reasons == ["shutdown_timeout"]
    assert client.stats.failed == 5


def test_shutdown_interrupts_a_long_backoff(server: ScriptedServer, make_client: Any) -> None:
    """A Retry-After of 300 s does not hold shutdown: it retries at once, then gives up."""
    server.script = [Step(429, {"Retry-After": "300"})] * 100
    client = make_client("k", host=server.url)
    client.track("u", "e")
    assert server.wait_for_messages(1, timeout=10.0)
    start = time.monotonic()
    assert client.shutdown(timeout=2.0) is False
    assert time.monotonic() - start < 5.0


def test_flush_cuts_a_backoff_wait_short(server: ScriptedServer, make_client: Any) -> None:
    """flush() retries a batch waiting on a long backoff at once."""
    server.script = [Step(429, {"Retry-After": "300"})]
    client = make_client("k", host=server.url)
    client.track("u", "e")
    assert server.wait_for_messages(1, timeout=10.0)
    assert client.flush(timeout=10.0)
    assert len(server.requests) == 2


def test_shutdown_is_idempotent_and_later_calls_are_dropped(
    server: ScriptedServer, make_client: Any
) -> None:
    """A second shutdown does nothing; calls after shutdown are dropped as shut_down."""
    client = make_client("k", host=server.url)
    client.track("u", "e")
    assert client.shutdown(timeout=5.0)
    assert client.shutdown(timeout=5.0)
    assert not client.track("u", "late")[0]
    assert not client.track("u", "late")[0]
    assert client.stats.dropped == {"shut_down": 2}
    assert len(server.messages()) == 1


def test_send_false_never_hangs_and_sends_nothing(server: ScriptedServer) -> None:
    """send=False: calls are validated and return; flush and shutdown return at once (Segment #85)."""
    client = analytics.Client("k", host=server.url, send=False, flush_at_exit=False)
    assert client.track("u", "e")[0]
    assert client.flush(async_=False)
    assert client.shutdown(timeout=1.0)
    assert server.requests == []


def test_a_dead_sender_thread_does_not_hang_flush(server: ScriptedServer, make_client: Any) -> None:
    """If the thread is gone, flush returns at once and shutdown still delivers on its thread."""
    client = make_client("k", host=server.url)
    client._sender._run = lambda: None  # the thread starts and ends at once
    client.track("u", "e")
    start = time.monotonic()
    assert client.flush(timeout=5.0) is False
    assert time.monotonic() - start < 4.0
    assert client.shutdown(timeout=5.0)
    assert len(server.messages()) == 1


def test_an_internal_error_fails_the_batch_and_delivery_goes_on(
    server: ScriptedServer, make_client: Any
) -> None:
    """An unexpected exception while sending reports the batch as failed; the next is sent."""
    client = make_client("k", host=server.url)
    real_factory = client._sender._transport_factory
    calls = []

    def flaky() -> Any:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("boom")
        return real_factory()

    client._sender._transport_factory = flaky
    failed = threading.Event()
    client.on_failure(lambda data, error: failed.set())
    client.track("u", "lost")
    assert failed.wait(10.0)
    client.track("u", "kept")
    assert client.flush(timeout=5.0)
    assert [m["event"] for m in server.messages()] == ["kept"]
    assert client.stats.failed == 1


def test_context_manager_shuts_down(server: ScriptedServer) -> None:
    """with Client(...) as c: delivers and stops the thread at the end."""
    with analytics.Client("k", host=server.url, flush_at_exit=False) as client:
        client.track("u", "e")
    assert client._sender.closed
    assert len(server.messages()) == 1


def test_a_shut_down_client_can_be_garbage_collected(server: ScriptedServer) -> None:
    """Neither the thread, atexit nor the fork hook keeps a shut-down client alive."""
    client = analytics.Client("k", host=server.url, flush_at_exit=False)
    client.track("u", "e")
    client.shutdown(timeout=5.0)
    ref = weakref.ref(client)
    del client
    gc.collect()
    assert ref() is None


def test_exit_without_flush_delivers(server: ScriptedServer) -> None:
    """A script that never flushes still delivers everything at exit (bounded drain)."""
    result = run_script(f"""
        import analytics
        analytics.init("k", host={server.url!r})
        for i in range(550):
            analytics.track(user_id="u", event="e", properties={{"i": i}})
    """)
    assert result.returncode == 0, result.stderr
    assert server.wait_for_messages(550, timeout=10.0)
    assert sorted(m["properties"]["i"] for m in server.messages()) == list(range(550))


def test_exit_during_an_outage_is_bounded(server: ScriptedServer) -> None:
    """With the collector answering 503, exit waits exit_timeout, then says what was lost."""
    server.script = [Step(503)] * 10_000
    start = time.monotonic()
    result = run_script(f"""
        import logging, analytics
        logging.basicConfig()
        analytics.init("k", host={server.url!r}, exit_timeout=1.0)
        for i in range(50):
            analytics.track(user_id="u", event="e")
    """)
    assert result.returncode == 0, result.stderr
    assert time.monotonic() - start < 20.0
    assert "not delivered" in result.stderr
    assert "Traceback" not in result.stderr


def test_flush_at_exit_false_skips_the_drain(server: ScriptedServer) -> None:
    """flush_at_exit=False leaves at exit at once without sending the queue."""
    result = run_script(f"""
        import analytics
        c = analytics.Client("k", host={server.url!r}, flush_at_exit=False, flush_at=100)
        c._sender._start = lambda: None
        c.track(user_id="u", event="e")
    """)
    assert result.returncode == 0, result.stderr
    assert server.requests == []


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_fork_child_delivers_its_own_and_not_the_parents(
    server: ScriptedServer, make_client: Any
) -> None:
    """After fork the child sends its own events; the parent's queued ones are sent once."""
    client = make_client("k", host=server.url, flush_at=1000, flush_after=3600)
    client.track("p", "warmup")
    assert server.wait_for_messages(1, timeout=10.0)
    assert client._sender.idle.wait(10.0)
    for i in range(10):
        client.track("p", "parent", {"i": i})
    pid = os.fork()
    if pid == 0:  # the child: report through the exit code only
        code = 1
        try:
            for i in range(10):
                client.track("c", "child", {"i": i})
            code = 0 if client.flush(timeout=10.0) and client.stats.sent == 10 else 2
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


def test_module_level_api_seed_style(server: ScriptedServer) -> None:
    """analytics.init + track + flush(async_=False), with on_success registered on the module."""
    seen: list[int] = []
    analytics.on_success(lambda data, response: seen.append(len(data)))
    analytics.init("k", host=server.url, flush_at_exit=False)
    ok, msg = analytics.track(user_id="ilya@segment.io", event="Played a Song")
    assert ok
    assert msg["event"] == "Played a Song"
    assert analytics.flush(**{"async": False})
    assert seen == [1]
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


def test_fake_clock_records_backoff(server: ScriptedServer, make_client: Any) -> None:
    """The injected clock sees every backoff, with no real sleeping."""
    server.script = [Step(503)] * 4
    clock = FakeClock()
    client = make_client("k", host=server.url, clock=clock)
    client.track("u", "e")
    assert client.flush(timeout=10.0)
    assert clock.waits == pytest.approx([0.5, 1, 2, 4], rel=0.11)
