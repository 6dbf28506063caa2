"""Delivery truth (issue 10): each case lost events while the client reported them sent, or
broke a promise of the README. End to end over real HTTP where the case is about delivery."""

from __future__ import annotations

import http.server
import json
import logging
import math
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import analytics
from analytics._retry import Outcome
from analytics.testing import MemoryTransport

from .conftest import ScriptedServer, Step, wait_until


class RefusingCollector:
    """A real HTTP server that answers 200 and lists as refused every message whose event is
    "bad" (our collector's format), like a collector that validates more strictly."""

    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []

        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                batch = json.loads(self.rfile.read(int(self.headers["Content-Length"])))["batch"]
                outer.received.extend(batch)
                refused = [
                    {"index": i, "code": "invalid_event", "reason": "event is bad"}
                    for i, m in enumerate(batch)
                    if m.get("event") == "bad"
                ]
                body = json.dumps({"success": True, "refused": refused}).encode()
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self._httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}"
        threading.Thread(target=self._httpd.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()


@pytest.fixture
def refusing() -> Iterator[RefusingCollector]:
    srv = RefusingCollector()
    yield srv
    srv.stop()


# -- flush() never burns the retry budget ---------------------------------------------------------


def test_flush_during_a_rate_limit_waits_out_retry_after(
    server: ScriptedServer, make_client: Any
) -> None:
    """Before: each flush() cut the Retry-After wait: 31 requests in 1.5 s, then dropped."""
    server.script = [Step(429, headers={"Retry-After": "120"})]
    failures: list[str] = []
    client = make_client(
        "k", host=server.url, flush_at=1, on_failure=lambda d, e: failures.append(e.reason)
    )
    client.track("u", "e")
    assert wait_until(lambda: len(server.requests) == 1)
    results = [client.flush(timeout=0.05) for _ in range(10)]  # a web app flushing per request
    assert results == [False] * 10
    assert len(server.requests) == 1  # still waiting out the 120 s
    stats = client.stats
    assert (stats.sent, stats.failed, stats.retried, stats.queued) == (0, 0, 1, 1)
    assert failures == []
    assert client.shutdown(timeout=0.2) is False  # only shutdown cuts the wait: reported
    assert failures == ["shutdown_timeout"]


def test_flush_during_an_outage_keeps_the_backoff_schedule(
    server: ScriptedServer, make_client: Any
) -> None:
    """Before: flush() every 50 ms during 503s dropped the batch after 0.5 s and 11 requests."""
    server.script = [Step(503)] * 50
    client = make_client("k", host=server.url, flush_at=1)
    client.track("u", "e")
    assert wait_until(lambda: len(server.requests) == 1)
    for _ in range(10):
        client.flush(timeout=0.05)
    # 0.5 s of flushing: the backoff (0.5 s, then 1 s) allows at most two more attempts.
    assert len(server.requests) <= 3
    assert client.stats.failed == 0


# -- only a 2xx is delivery -------------------------------------------------------------------------


@pytest.mark.parametrize("status", [301, 302, 307, 308])
def test_a_redirect_is_a_failure_not_a_delivery(
    server: ScriptedServer, collector: Any, make_client: Any, status: int
) -> None:
    """Before: flush() True and stats.sent == 1 while nothing was stored."""
    server.script = [Step(status, headers={"Location": collector.url + "/v1/batch"})]
    failures: list[tuple[str, int | None]] = []
    client = make_client(
        "k", host=server.url, on_failure=lambda d, e: failures.append((e.reason, e.status))
    )
    client.track("u", "e")
    assert client.flush(timeout=10.0) is False
    assert (client.stats.sent, client.stats.failed) == (0, 1)
    assert failures == [("http_error", status)]
    assert collector.store.count() == 0  # never followed


def test_refusals_inside_a_200_are_failures_of_those_messages(
    refusing: RefusingCollector, make_client: Any
) -> None:
    """Before: a message refused inside a 200 was counted sent and flush() said True."""
    failed: list[tuple[str, list[str]]] = []
    sent: list[str] = []
    client = make_client(
        "k",
        host=refusing.url,
        flush_at=50,
        on_failure=lambda data, e: failed.append((e.reason, [m["event"] for m in data])),
        on_success=lambda data, r: sent.extend(m["event"] for m in data),
    )
    for event in ("good", "bad", "fine", "bad"):
        client.track("u", event)
    assert client.flush(timeout=10.0) is False
    assert len(refusing.received) == 4
    assert (client.stats.sent, client.stats.failed) == (2, 2)
    assert sorted(sent) == ["fine", "good"]
    assert [reason for reason, _ in failed] == ["invalid_event"] * len(failed)
    assert sorted(e for _, events in failed for e in events) == ["bad", "bad"]
    client.track("u", "good")
    assert client.flush(timeout=10.0) is True  # only this flush's messages count


# -- the spool survives contention -----------------------------------------------------------------


def test_a_lock_held_by_another_process_does_not_turn_the_spool_off(
    collector: Any, make_client: Any, tmp_path: Path
) -> None:
    """Before: a sibling holding the SQLite lock for 3 s disabled the spool for good (new
    events in memory only, stats.unspooled growing), and reading client.stats could do it."""
    path = tmp_path / "spool.db"
    client = make_client("k", host=collector.url, spool=str(path), spool_interval=0.1)
    client.track("u", "before")
    assert client.flush(timeout=10.0)
    other = sqlite3.connect(path, isolation_level=None, timeout=10.0)
    other.execute("BEGIN EXCLUSIVE")  # a sibling worker holds the write lock ...
    try:
        for i in range(5):
            client.track("u", "during", {"i": i})
        deadline = time.monotonic() + 3.0  # ... for 3 s, past the 2 s busy timeout
        while time.monotonic() < deadline:
            assert client.stats.unspooled == 0  # reading stats during the lock is harmless
            threading.Event().wait(0.25)
    finally:
        other.execute("ROLLBACK")
        other.close()
    for i in range(5):
        client.track("u", "after", {"i": i})
    assert client.flush(timeout=15.0)
    assert collector.store.count() == 11
    assert client.stats.unspooled == 0  # every event went through the spool file


# -- no lost wake-up -------------------------------------------------------------------------------


def test_reaching_flush_at_always_wakes_the_sender() -> None:
    """flush_at messages are sent without flush() and long before flush_after, every time."""
    transport = MemoryTransport()
    client = analytics.Client(
        "k", transport=transport, flush_at=5, flush_after=60.0, flush_at_exit=False
    )
    try:
        client.track("u", "start")  # the first message starts the thread and goes at once
        assert transport.wait_for(lambda t: len(t.delivered) == 1)
        for round_ in range(200):
            puts = [
                threading.Thread(target=client.track, args=("u", "e", {"r": round_, "i": i}))
                for i in range(5)
            ]
            for t in puts:
                t.start()
            for t in puts:
                t.join(5.0)
            want = 1 + 5 * (round_ + 1)
            assert transport.wait_for(lambda t, want=want: len(t.delivered) == want, 5.0), round_
    finally:
        client.shutdown(timeout=2.0)


# -- bounded means bounded -------------------------------------------------------------------------


def test_exit_drains_every_client_in_parallel_within_one_exit_timeout(
    server: ScriptedServer,
) -> None:
    """Before: three clients at exit drained one after another: 3 x exit_timeout."""
    server.script = [Step(hold=True)] * 10
    code = textwrap.dedent(
        f"""
        import analytics
        clients = [analytics.Client("k", host={server.url!r}, exit_timeout=1.0) for _ in range(3)]
        for c in clients:
            c.track("u", "e")
        """
    )
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-c", code], check=False, capture_output=True, timeout=30
    )
    elapsed = time.monotonic() - started
    assert proc.returncode == 0, proc.stderr
    assert elapsed < 2.5, elapsed  # one exit_timeout (+ start-up), not three


@pytest.mark.parametrize("spooled", [False, True])
def test_shutdown_returns_by_its_timeout(
    server: ScriptedServer, make_client: Any, tmp_path: Path, spooled: bool
) -> None:
    """Before: a spooled shutdown(0.2) took 0.74 s (a hard-coded join, late spool writes)."""
    server.script = [Step(hold=True)] * 10
    spool = {"spool": str(tmp_path / "s.db")} if spooled else {}
    client = make_client("k", host=server.url, **spool)
    for i in range(100):
        client.track("u", "e", {"i": i})
    assert server.request_started.wait(10.0)
    started = time.monotonic()
    assert client.shutdown(timeout=0.2) is False
    assert time.monotonic() - started < 0.2 + 0.1 + 0.25  # the deadline, GRACE, scheduling


# -- accounting ------------------------------------------------------------------------------------


def test_spool_full_drops_are_reported_to_on_failure(
    server: ScriptedServer, make_client: Any, tmp_path: Path
) -> None:
    """Before: spool_full drops were counted but never passed to on_failure."""
    server.script = [Step(503)] * 1000
    failed: list[str] = []
    client = make_client(
        "k",
        host=server.url,
        spool=str(tmp_path / "s.db"),
        spool_max_bytes=20_000,
        spool_interval=0.05,
        on_failure=lambda data, e: failed.extend(e.reason for _ in data),
    )
    for i in range(400):
        client.track("u", "e", {"i": i, "pad": "x" * 100})
        if i % 50 == 49:
            client.flush(timeout=0.01)  # stages what is queued into the spool
    assert wait_until(lambda: client.stats.dropped.get("spool_full", 0) > 0)
    dropped = client.stats.dropped["spool_full"]
    assert failed.count("spool_full") == dropped


class ByEventTransport:
    """Answers 200, refusing messages whose event is "bad" (one request per sync call)."""

    def send(self, body: bytes, retry_count: int, timeout: float | None = None) -> Outcome:
        batch = json.loads(body)["batch"]
        refused = [
            {"index": i, "code": "invalid_event", "reason": "bad"}
            for i, m in enumerate(batch)
            if m["event"] == "bad"
        ]
        return Outcome(200, body=json.dumps({"refused": refused}).encode())

    def close(self) -> None:
        pass


def test_sync_mode_results_are_per_call_across_threads() -> None:
    """Before: sync mode computed its result from a shared counter's difference (racy)."""
    client = analytics.Client(
        "k", sync_mode=True, transport=ByEventTransport(), flush_at_exit=False
    )
    results: dict[tuple[int, int], tuple[str, bool]] = {}

    def call(worker: int) -> None:
        for i in range(200):
            event = "bad" if (worker + i) % 3 == 0 else "good"
            results[worker, i] = (event, client.track("u", event)[0])

    threads = [threading.Thread(target=call, args=(w,)) for w in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30.0)
    assert len(results) == 800
    assert all(ok == (event == "good") for event, ok in results.values())
    bad = sum(event == "bad" for event, _ in results.values())
    assert (client.stats.sent, client.stats.failed) == (800 - bad, bad)


# -- no global side effects; options checked by type -----------------------------------------------


def test_a_clients_log_options_apply_to_its_own_records_only(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Before: log=False on one client silenced all of them, and every client set the level
    of the application's `analytics` logger."""
    shared = logging.getLogger("analytics")
    level_before = shared.level
    quiet = analytics.Client("k", transport=MemoryTransport(), log=False, flush_at_exit=False)
    loud = analytics.Client(
        "k", transport=MemoryTransport(), log_level=logging.DEBUG, flush_at_exit=False
    )
    assert shared.level == level_before
    assert not shared.disabled
    with caplog.at_level(logging.DEBUG, logger="analytics"):
        for client in (quiet, loud):
            client.shutdown(timeout=1.0)
            client.track("u", "after shutdown")  # dropped: logs a warning
    assert len([r for r in caplog.records if "dropped" in r.getMessage()]) == 1


def test_a_write_key_with_a_colon_is_refused_at_construction() -> None:
    """Issue 14, case 7: the client sent Basic "k:colon:", so any collector read the key "k"."""
    with pytest.raises(analytics.ConfigError, match="':'"):
        analytics.Client("k:colon")


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("send", "no"),
        ("gzip", 1),
        ("sync_mode", "yes"),
        ("async_", "no"),
        ("debug", "true"),
        ("proxies", 123),
        ("proxies", {"https": 3128}),
        ("flush_after", math.inf),
        ("timeout", math.inf),
        ("timeout", math.nan),
        ("log_level", "DEBUG"),
    ],
)
def test_options_are_checked_by_type(option: str, value: object) -> None:
    with pytest.raises(analytics.ConfigError, match=option.rstrip("_")):
        analytics.Client("k", **{option: value})


# -- callbacks cannot kill delivery (issue 14, case 14) ---------------------------------------------


@pytest.mark.parametrize("exc", [SystemExit, KeyboardInterrupt, RuntimeError])
def test_a_callback_that_raises_anything_does_not_stop_delivery(exc: type[BaseException]) -> None:
    transport = MemoryTransport()

    def callback(data: object, response: object) -> None:
        raise exc("from a callback")

    client = analytics.Client(
        "k", transport=transport, flush_at=1, on_success=callback, flush_at_exit=False
    )
    client.track("u", "one")
    assert client.flush(timeout=5.0)
    client.track("u", "two")
    assert client.flush(timeout=5.0)  # the sender thread is still alive
    assert [m["event"] for m in transport.delivered] == ["one", "two"]
    assert client.shutdown(timeout=2.0) is True  # nothing re-raised here


def test_a_spool_that_cannot_be_opened_sends_from_memory_and_says_so(
    collector: Any, make_client: Any, tmp_path: Path
) -> None:
    """Issue 14, case 15: events go through memory, counted in stats.unspooled."""
    client = make_client("k", host=collector.url, spool=str(tmp_path / "missing" / "s.db"))
    for i in range(3):
        client.track("u", "e", {"i": i})
    assert client.flush(timeout=10.0)
    assert collector.store.count() == 3
    assert client.stats.unspooled == 3
