"""The debugger's stream over real HTTP on 127.0.0.1: backlog, live events, resume by
``Last-Event-ID``, refusals, counters, a stalled viewer, access, and ``--workers``."""

from __future__ import annotations

import queue
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from aiohttp import web
from collector_http import KEY, batch, post, request, track
from sse_client import Stream

from analytics.collector import CollectorServer
from analytics.collector._refusal_ring import key_label

TOKEN = "an-admin-token-for-the-tests"


@pytest.fixture
def collector_db(any_collector_db: Callable[[int], Any]) -> Callable[[int], Any]:
    """The stream reads stored events back by seq: over both stores."""
    return any_collector_db


def test_a_new_stream_starts_with_the_stored_events_then_gets_new_ones(
    collector: CollectorServer,
) -> None:
    post(collector.url, "/v1/batch", batch([track(1), track(2), track(3)]))
    with Stream(collector.url) as stream:
        assert stream.status == 200
        assert stream.response.headers["Content-Type"] == "text/event-stream"
        first = stream.next()
        assert first.event == "batch"
        assert [e["seq"] for e in first.data["events"]] == [1, 2, 3]
        assert first.data["events"][0]["message"] == collector.store.events()[0]
        assert first.data["events"][0]["key"] == key_label(KEY)
        post(collector.url, "/v1/batch", batch([track(4), track(5)]))
        stream.until(lambda s: s.seqs[-1:] == [5])
        assert stream.seqs == [1, 2, 3, 4, 5]
        assert stream.messages[-1].id == "5.0"


def test_every_event_stored_once_the_stream_is_open_reaches_it(
    collector: CollectorServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A page says "Live" when the stream's headers arrive; every event stored after that
    reaches the stream, however slow the read of the stream's starting position (a worker
    thread of a loaded machine). Made deterministic: when the headers went out before that
    read, the read waits until the client has stored 300 events (more than the backlog)."""
    headers_sent, posted = threading.Event(), threading.Event()
    real_prepare = web.StreamResponse.prepare

    async def prepare(self: web.StreamResponse, request: web.BaseRequest) -> Any:
        writer = await real_prepare(self, request)
        if request.path == "/debugger/stream":
            headers_sent.set()
        return writer

    real_last_seq = type(collector.store).last_seq

    def last_seq(store: Any) -> int:
        if headers_sent.is_set():
            posted.wait(10.0)
        return real_last_seq(store)

    monkeypatch.setattr(web.StreamResponse, "prepare", prepare)
    monkeypatch.setattr(type(collector.store), "last_seq", last_seq)
    with Stream(collector.url) as stream:  # returns once the headers arrived
        for start in (1, 151):
            post(collector.url, "/v1/batch", batch([track(i) for i in range(start, start + 150)]))
        posted.set()
        stream.until(lambda s: s.seqs[-1:] == [300])
        assert stream.seqs == list(range(1, 301))


def test_last_event_id_resumes_after_the_events_already_seen(collector: CollectorServer) -> None:
    post(collector.url, "/v1/batch", batch([track(i) for i in range(1, 6)]))
    with Stream(collector.url, {"Last-Event-ID": "3.0"}) as stream:
        assert [e["seq"] for e in stream.next().data["events"]] == [4, 5]


def test_a_refused_message_is_shown_with_its_reason_and_field_never_its_key(
    collector: CollectorServer,
) -> None:
    secret = "a-secret-write-key"
    bad = {**track(1), "timestamp": "yesterday", "writeKey": secret}
    with Stream(collector.url) as stream:
        stream.next()
        reply = post(
            collector.url, "/v1/batch", batch([{**track(2), "writeKey": secret}, bad]), key=None
        )
        assert reply.status == 200
        assert reply.json["refused"][0]["code"] == "invalid_timestamp"
        stream.until(lambda s: bool(s.refused))
        (refusal,) = stream.refused
        assert refusal["code"] == "invalid_timestamp"
        assert refusal["field"] == "timestamp"
        assert refusal["index"] == 1
        assert refusal["key"] == key_label(secret)
        assert refusal["message"] == {k: v for k, v in bad.items() if k != "writeKey"}
        assert all(secret not in repr(m.data) for m in stream.messages)


def test_a_request_refused_whole_is_shown_and_the_counters_follow(
    collector: CollectorServer,
) -> None:
    post(collector.url, "/v1/batch", batch([track(1)]))
    post(collector.url, "/v1/batch", batch([track(1)]))  # a duplicate
    assert post(collector.url, "/v1/batch", b"{not json").status == 400
    with Stream(collector.url) as stream:
        first = stream.next()
        (refusal,) = first.data["refused"]
        assert refusal["status"] == 400
        assert refusal["message"] is None
        assert first.data["stats"] == {"stored": 1, "rate": 0.0, "duplicates": 1, "refused": 1}


def _stalled_viewer(url: str) -> socket.socket:
    """A stream that is never read (a tiny receive buffer fills at once)."""
    parts = urlsplit(url)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.settimeout(10.0)
    sock.connect((parts.hostname, parts.port))
    sock.sendall(b"GET /debugger/stream HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    return sock


def _ended(sock: socket.socket) -> bool:
    """Whether the server ends the connection (read what is left; False on a timeout)."""
    try:
        while sock.recv(65536):
            pass
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False
    return True


def test_a_stalled_viewer_is_dropped_and_ingestion_goes_on(
    collector_factory: Callable[..., CollectorServer],
) -> None:
    server = collector_factory()
    server.debugger.interval = 0.02
    server.debugger.queue_messages = 3
    stalled = _stalled_viewer(server.url)
    with Stream(server.url) as live:
        live.next()
        sent = 0
        for round_ in range(300):  # bounded; each round is one tick's worth of events
            reply = post(
                server.url, "/v1/batch", batch([track(round_ * 200 + i) for i in range(200)])
            )
            assert reply.status == 200
            sent += 200
            if server.debugger.dropped:
                break
        assert server.debugger.dropped == 1
        live.until(lambda s: s.seqs[-1:] == [sent], timeout=20.0)  # the live viewer kept up
    assert _ended(stalled)  # its connection was cut, not left hanging
    stalled.close()


def test_stopping_the_server_ends_open_streams_at_once(
    collector_factory: Callable[..., CollectorServer],
) -> None:
    server = collector_factory(shutdown_timeout=30.0)
    with Stream(server.url) as stream:
        stream.next()
        started = time.monotonic()
        server.stop(timeout=30.0)
        assert time.monotonic() - started < 10.0  # not the 30 s shutdown deadline
        with pytest.raises(ConnectionError):
            stream.until(lambda s: False)


def test_the_page_and_stream_need_the_admin_token_once_one_is_given(
    collector_factory: Callable[..., CollectorServer],
) -> None:
    server = collector_factory(admin_token=TOKEN)
    page = request(server.url, "GET", "/")
    assert page.status == 401
    assert b'name="token"' in page.body  # the token form
    assert request(server.url, "GET", "/debugger/app.css").status == 200  # no data in it
    with Stream(server.url) as stream:
        assert stream.status == 401
    with Stream(server.url, {"Authorization": f"Bearer {TOKEN}"}) as stream:
        assert stream.status == 200
        assert stream.next().event == "batch"
    login = request(server.url, "GET", f"/?token={TOKEN}")
    assert login.status == 303
    cookie = login.headers["set-cookie"].split(";", 1)[0]
    assert request(server.url, "GET", "/", headers={"Cookie": cookie}).status == 200


def test_an_open_page_refuses_a_foreign_host_header(collector: CollectorServer) -> None:
    assert request(collector.url, "GET", "/").status == 200
    assert request(collector.url, "GET", "/", headers={"Host": "rebound.example"}).status == 403
    with Stream(collector.url, {"Host": "rebound.example:8088"}) as stream:
        assert stream.status == 403


SERVE = "from analytics.collector._cli import serve_command; serve_command()"


def _lines(proc: subprocess.Popen[str]) -> queue.Queue[str]:
    """``proc``'s stdout lines, read by a thread (get them with a timeout)."""
    lines: queue.Queue[str] = queue.Queue()

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.put(line)

    threading.Thread(target=read, daemon=True).start()
    return lines


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="--workers needs Linux")
def test_with_workers_a_viewer_sees_every_process_events_and_refusals(tmp_path: Path) -> None:
    db = tmp_path / "w.db"
    proc = subprocess.Popen(
        [sys.executable, "-u", "-c", SERVE, "--port", "0", "--workers", "2", "--db", str(db)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        lines = _lines(proc)
        url = lines.get(timeout=60.0).split("Listening on ", 1)[1].split(" ", 1)[0]
        assert lines.get(timeout=10.0).strip() == f"Live events page: {url}/"
        with Stream(url) as stream:
            stream.next()
            pids = set()
            for i in range(40):  # each request on its own connection: the kernel spreads them
                bad = {**track(1000 + i), "timestamp": "nope"}
                assert post(url, "/v1/batch", batch([track(i), bad])).status == 200
                pids.add(request(url, "GET", "/health").json["pid"])
            assert len(pids) == 2, "both processes should have answered"
            stream.until(lambda s: len(s.seqs) == 40 and len(s.refused) == 40, timeout=20.0)
            assert stream.seqs == list(range(1, 41))
            assert sorted(r["message"]["messageId"] for r in stream.refused) == sorted(
                f"msg-{1000 + i}" for i in range(40)
            )
    finally:
        proc.terminate()
        proc.communicate(timeout=30)


def test_a_failing_debugger_never_fails_a_request(
    collector: CollectorServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*_args: object, **_kwargs: object) -> None:
        raise RuntimeError("the ring is broken")

    monkeypatch.setattr(collector.debugger.ring, "add", broken)
    reply = post(collector.url, "/v1/batch", batch([track(1), {**track(2), "timestamp": "x"}]))
    assert reply.status == 200
    assert reply.json["stored"] == 1
    assert post(collector.url, "/v1/batch", b"{not json").status == 400
