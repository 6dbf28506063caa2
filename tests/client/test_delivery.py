"""End-to-end delivery over real HTTP on 127.0.0.1: the collector, or a scripted server."""

from __future__ import annotations

import base64
import logging
import threading
from typing import Any

import pytest

import analytics
from analytics.testing import FakeClock, MemoryTransport, Reply

from .conftest import Calls, ScriptedServer, Step, wait_until


def settled(client: analytics.Client, sent: int) -> bool:
    """True once ``sent`` messages were delivered and nothing is queued or in flight."""
    stats = client.stats
    return stats.sent == sent and stats.queued == 0


def test_events_reach_the_collector(collector: Any, make_client: Any) -> None:
    """The seed's calls arrive at our collector, each stored once with its messageId."""
    client = make_client("key", host=collector.url)
    ids = [
        client.identify("ilya@segment.io", {"subscriptionPlan": "Free", "friends": 30})[1],
        client.track("calvin@segment.io", "Made a Comment", {"thatAided": "No-One"})[1],
        client.page("u", "Docs", "Intro")[1],
        client.screen("u", name="Home")[1],
        client.group("u", "g1", {"name": "Acme"})[1],
        client.alias("old", "u")[1],
    ]
    assert client.flush(timeout=10.0)
    stored = collector.store.events()
    assert sorted(e["messageId"] for e in stored) == sorted(m["messageId"] for m in ids)
    by_type = {e["type"]: e for e in stored}
    assert by_type["track"]["properties"] == {"thatAided": "No-One"}
    assert by_type["identify"]["traits"]["friends"] == 30
    assert client.stats.sent == 6


def test_request_shape_auth_and_headers(server: ScriptedServer, make_client: Any) -> None:
    """POST /v1/batch with Basic auth (key + colon), body writeKey and sentAt, JSON content type."""
    client = make_client("my-key", host=server.url)
    client.track("u", "e")
    assert client.flush(timeout=10.0)
    request = server.requests[0]
    assert request.path == "/v1/batch"
    assert request.headers["Authorization"] == "Basic " + base64.b64encode(b"my-key:").decode()
    assert request.headers["Content-Type"] == "application/json"
    assert request.headers["User-Agent"].startswith("analytics-python/")
    assert request.body["writeKey"] == "my-key"
    assert request.body["sentAt"].endswith("Z")
    assert "X-Retry-Count" not in request.headers


def test_gzip_bodies(server: ScriptedServer, make_client: Any) -> None:
    """gzip=True compresses the body and says so in Content-Encoding."""
    client = make_client("k", host=server.url, gzip=True)
    client.track("u", "e", {"n": 1})
    assert client.flush(timeout=10.0)
    assert server.requests[0].headers["Content-Encoding"] == "gzip"
    assert server.messages()[0]["properties"] == {"n": 1}


def test_first_message_is_sent_at_once_then_batches(
    server: ScriptedServer, make_client: Any
) -> None:
    """The first message flushes at once; later ones wait for flush_at (seed behaviour)."""
    client = make_client("k", host=server.url, flush_at=5, flush_after=3600)
    client.track("u", "first")
    assert wait_until(lambda: settled(client, 1))
    for i in range(4):
        client.track("u", f"e{i}")
    assert client.stats.queued == 4  # not sent: fewer than flush_at queued since
    client.track("u", "e4")
    assert server.wait_for_messages(6, timeout=10.0)
    assert [m["event"] for m in server.messages()] == ["first", "e0", "e1", "e2", "e3", "e4"]
    assert [len(r.body["batch"]) for r in server.requests] == [1, 5]  # the four waited


def test_a_trickle_during_a_request_waits_for_flush_at(
    server: ScriptedServer, make_client: Any
) -> None:
    """Messages that arrive while a request is in flight are not sent one or two at a time:
    they wait until flush_at are queued (Segment allows 1,000 requests/s per workspace)."""
    client = make_client("k", host=server.url, flush_at=10, flush_after=3600)
    client.track("u", "first")
    assert wait_until(lambda: settled(client, 1))
    server.script = [Step(delay=0.5)]
    server.request_started.clear()
    for i in range(10):
        client.track("u", "batch", {"i": i})
    assert server.request_started.wait(10.0)  # the batch of 10 is in flight now
    for i in range(5):
        client.track("u", "trickle", {"i": i})
    assert server.wait_for_messages(11, timeout=10.0)
    assert wait_until(lambda: client.stats.sent == 11)
    assert client.stats.queued == 5
    for i in range(5, 10):
        client.track("u", "trickle", {"i": i})
    assert server.wait_for_messages(21, timeout=10.0)
    assert [len(r.body["batch"]) for r in server.requests] == [1, 10, 10]


def test_flush_after_sends_a_partial_batch(server: ScriptedServer, make_client: Any) -> None:
    """Messages fewer than flush_at are sent when flush_after passes."""
    client = make_client("k", host=server.url, flush_at=100, flush_after=0.2)
    client.track("u", "first")
    assert server.wait_for_messages(1, timeout=10.0)
    client.track("u", "second")
    assert server.wait_for_messages(2, timeout=10.0)


def test_under_load_a_batch_takes_everything_queued(
    server: ScriptedServer, make_client: Any
) -> None:
    """flush_at decides when to send, not how big a batch is: a backlog goes in large batches."""
    server.script = [Step(delay=0.3)]  # hold the first request so a backlog forms
    client = make_client("k", host=server.url, flush_at=20)
    for i in range(1000):
        client.track("u", "e", {"i": i})
    assert client.flush(timeout=10.0)
    sizes = [len(r.body["batch"]) for r in server.requests]
    assert sum(sizes) == 1000
    assert max(sizes) > 20


def test_retry_on_503_then_success_keeps_message_ids(
    server: ScriptedServer, make_client: Any
) -> None:
    """A 503 is retried with X-Retry-Count and the same messageIds; nothing is lost."""
    server.script = [Step(503), Step(503)]
    clock = FakeClock()
    client = make_client("k", host=server.url, clock=clock)
    _, msg = client.track("u", "e")
    assert client.flush(timeout=10.0)
    assert [r.headers.get("X-Retry-Count") for r in server.requests] == [None, "1", "2"]
    assert {m["messageId"] for m in server.messages()} == {msg["messageId"]}
    assert clock.waits == pytest.approx([0.5, 1.0], rel=0.11)
    assert client.stats.retried == 2
    assert client.stats.sent == 1


def test_retry_after_is_honoured(server: ScriptedServer, make_client: Any) -> None:
    """A 429 with Retry-After waits that long (on the injected clock)."""
    server.script = [Step(429, {"Retry-After": "7"})]
    clock = FakeClock()
    client = make_client("k", host=server.url, clock=clock)
    client.track("u", "e")
    assert client.flush(timeout=10.0)
    assert clock.waits == [7.0]


def test_final_failure_reaches_on_failure_and_on_error(
    server: ScriptedServer, make_client: Any
) -> None:
    """A 400 is not retried; on_failure gets the messages and the reason; so does on_error."""
    server.script = [Step(400)]
    failures = Calls()
    errors = Calls()
    client = make_client("k", host=server.url, on_failure=failures, on_error=errors)
    client.track("u", "doomed")
    assert client.flush(timeout=10.0) is False
    assert len(server.requests) == 1
    assert failures.wait_for_messages(1)
    ((data, error),) = failures.calls
    assert data[0]["event"] == "doomed"
    assert (error.reason, error.status) == ("http_error", 400)
    assert wait_until(lambda: len(errors.calls) == 1)
    ((exc, batch),) = errors.calls  # Segment's order: on_error(exception, batch)
    assert exc is error
    assert batch == data
    assert (client.stats.sent, client.stats.failed) == (0, 1)


def test_retries_exhausted_is_reported(server: ScriptedServer, make_client: Any) -> None:
    """After max_retries the batch fails with reason retries_exhausted."""
    server.script = [Step(500)] * 3
    failures = Calls()
    client = make_client(
        "k", host=server.url, max_retries=2, clock=FakeClock(), on_failure=failures
    )
    client.track("u", "e")
    assert client.flush(timeout=10.0) is False
    assert failures.wait_for_messages(1)
    assert failures.reasons() == ["retries_exhausted"]
    assert len(server.requests) == 3


def test_on_success_gets_data_and_response(server: ScriptedServer, make_client: Any) -> None:
    """on_success(data, response) runs after delivery with the decoded messages."""
    seen = Calls()
    client = make_client("k", host=server.url)
    client.on_success(seen)
    client.track("u", "e")
    assert client.flush(timeout=10.0)
    assert seen.wait_for_messages(1)
    ((data, response),) = seen.calls
    assert data[0]["event"] == "e"
    assert response.status == 200


def test_a_raising_callback_does_not_stop_delivery(
    server: ScriptedServer, make_client: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """A callback that raises is logged; the next batches are still delivered."""
    client = make_client("k", host=server.url, flush_at=1)
    client.on_success(lambda data, response: 1 / 0)
    with caplog.at_level(logging.ERROR, logger="analytics"):
        client.track("u", "a")
        assert client.flush(timeout=10.0)
        client.track("u", "b")
        assert client.flush(timeout=10.0)
        assert wait_until(lambda: caplog.text.count("callback raised") == 2)
    assert [m["event"] for m in server.messages()] == ["a", "b"]


def test_full_queue_drops_counts_logs_once_and_reports(
    make_client: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """A full queue drops the new message, counts it by reason, logs one line, calls on_failure."""
    dropped = Calls()
    transport = MemoryTransport(Reply(hold=True))  # the first request hangs: the queue fills
    client = make_client(
        "k", transport=transport, max_queue_size=10, flush_at=10, on_failure=dropped
    )
    client.track("u", "first")
    assert transport.wait_for(lambda t: len(t.requests) == 1)
    with caplog.at_level(logging.WARNING, logger="analytics"):
        results = [client.track("u", "e", {"i": i})[0] for i in range(25)]
    assert results == [True] * 10 + [False] * 15
    assert client.stats.dropped == {"queue_full": 15}
    assert dropped.reasons() == ["queue_full"] * 15  # drops call back on the calling thread
    assert [m["properties"]["i"] for m in dropped.messages()] == list(range(10, 25))
    assert len([r for r in caplog.records if "dropped" in r.getMessage()]) == 1
    transport.release()
    assert client.flush(timeout=10.0)
    assert len(transport.delivered) == 11


def test_enqueue_waits_for_room_only_when_asked(make_client: Any, server: ScriptedServer) -> None:
    """A full queue: enqueue() drops at once; enqueue(timeout=t) waits until the sender makes
    room, and the message is then delivered (the bulk-import path)."""
    server.script = [Step(hold=True)]  # the first batch waits for server.release
    client = make_client("k", host=server.url, max_queue_size=4, flush_at=4)

    def message(i: int) -> dict[str, Any]:
        return {"type": "track", "userId": "u", "event": "e", "messageId": f"m{i}"}

    assert [client.enqueue(message(i))[0] for i in range(4)] == [True] * 4
    assert server.request_started.wait(10)  # m0-m3 are in flight, held
    assert [client.enqueue(message(i))[0] for i in range(4, 8)] == [True] * 4  # full again
    assert client.enqueue(message(8))[0] is False  # no timeout: dropped at once
    done = threading.Event()
    waited: list[bool] = []
    waiter = threading.Thread(
        target=lambda: (waited.append(client.enqueue(message(9), timeout=10)[0]), done.set())
    )
    waiter.start()
    assert not done.wait(0.3)  # still full: it waits
    server.release.set()
    assert done.wait(10)
    waiter.join(10)
    assert waited == [True]
    assert client.flush(timeout=10)
    assert [m["messageId"] for m in server.messages()] == [f"m{i}" for i in (*range(8), 9)]
    assert client.stats.dropped == {"queue_full": 1}


def test_the_write_key_never_appears_in_logs(
    server: ScriptedServer, make_client: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """Debug logging of a failing delivery never shows the write key."""
    server.script = [Step(400)]
    with caplog.at_level(logging.DEBUG, logger="analytics"):
        client = make_client("super-secret-write-key", host=server.url, debug=True)
        client.track("u", "e")
        client.flush(timeout=10.0)
    assert caplog.records
    assert "super-secret-write-key" not in caplog.text


def test_sync_mode_sends_on_the_calling_thread(server: ScriptedServer, make_client: Any) -> None:
    """async_=False delivers before the call returns and reports success in its result."""
    threads: list[threading.Thread] = []
    client = make_client(
        "k",
        host=server.url,
        async_=False,
        on_success=lambda d, r: threads.append(threading.current_thread()),
    )
    ok, _ = client.track("u", "e")
    assert ok
    assert len(server.messages()) == 1
    assert threads == [threading.current_thread()]  # delivered (and told) on this thread
    server.script = [Step(400)]
    ok, _ = client.track("u", "bad")
    assert not ok
    assert (client.stats.sent, client.stats.failed) == (1, 1)


def test_sync_mode_retries_too(server: ScriptedServer, make_client: Any) -> None:
    """sync_mode=True uses the same retry policy."""
    server.script = [Step(503)]
    clock = FakeClock()
    client = make_client("k", host=server.url, sync_mode=True, clock=clock)
    assert client.track("u", "e")[0]
    assert len(server.requests) == 2
    assert len(clock.waits) == 1


def test_network_errors_are_retried(server: ScriptedServer, make_client: Any) -> None:
    """A connection reset mid-request is retried and the message arrives."""
    server.script = [Step(reset=True)]
    client = make_client("k", host=server.url, clock=FakeClock())
    client.track("u", "e")
    assert client.flush(timeout=10.0)
    assert len(server.messages()) == 1
    assert client.stats.retried == 1


def test_slow_responses_time_out_and_are_retried(server: ScriptedServer, make_client: Any) -> None:
    """A response slower than the client's timeout counts as a network error and is retried."""
    server.script = [Step(delay=5.0)]
    client = make_client("k", host=server.url, timeout=0.2, clock=FakeClock())
    client.track("u", "e")
    assert client.flush(timeout=10.0)
    assert client.stats.retried == 1
    assert server.wait_for_messages(1, timeout=10.0)
