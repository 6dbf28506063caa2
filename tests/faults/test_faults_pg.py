"""Faults with the PostgreSQL store: real collector processes, a real server, a real client.

- two ``analytics serve`` processes on two ports share one database and receive the same
  batches at the same moment: each message is stored once, and reported stored by one of them;
- PostgreSQL stopped for ~3 s mid-stream and started again: the client sees 503s, retries,
  and every message it tracked is stored once; the collector reconnects by itself;
- the collector SIGKILLed inside a commit (held there by a lock the test takes): what it
  acknowledged is stored, what it did not is resent to its successor; nothing lost, nothing
  stored twice.
"""

from __future__ import annotations

import http.client
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from .harness import Producer, free_port, outcome

psycopg = pytest.importorskip("psycopg")

from analytics.collector._pg import PostgresStore  # noqa: E402

SERVE = [sys.executable, "-m", "analytics", "serve", "--workers", "1"]
PACE = ("--rate", "1000", "--every", "100", "--flush-at", "100", "--flush-after", "0.5")


def request(base: str, method: str, path: str, body: Any = None, timeout: float = 30) -> Any:
    """One HTTP request to our collector; returns (status, decoded JSON body)."""
    port = int(base.rsplit(":", 1)[1])
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        data = None if body is None else orjson.dumps(body)
        headers = {"Content-Type": "application/json", "Authorization": "Basic a2V5Og=="}
        conn.request(method, path, body=data, headers=headers)
        resp = conn.getresponse()
        return resp.status, orjson.loads(resp.read())
    finally:
        conn.close()


def track(i: int) -> dict[str, Any]:
    return {"type": "track", "event": "E", "userId": "u", "messageId": f"msg-{i}"}


class Serve:
    """``analytics serve --workers 1 --db URL`` in its own process, on a given port."""

    def __init__(self, url: str, port: int) -> None:
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.proc = subprocess.Popen(
            [*SERVE, "--port", str(port), "--db", url],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stderr is not None
        line = ""
        for _ in range(50):  # bounded: the start-up lines, then "listening"
            line = self.proc.stderr.readline()
            if "listening" in line or not line:
                break
        assert "listening" in line, line + self.stop()

    def stop(self) -> str:
        """SIGKILL (if still running) and return what it logged."""
        self.proc.kill()
        _, err = self.proc.communicate(timeout=30)
        return str(err)


def waiting_on_lock(url: str, timeout: float) -> bool:
    """True once a collector's backend waits for a lock (bounded polling of the server)."""
    deadline = time.monotonic() + timeout
    with psycopg.connect(url, autocommit=True) as conn:
        while time.monotonic() < deadline:
            row = conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
                " AND application_name = 'analytics-collector'"
            ).fetchone()
            if row is not None and row[0] > 0:
                return True
            time.sleep(0.02)  # polling another process's state, bounded by the deadline
    return False


@pytest.fixture
def serves() -> Iterator[list[Serve]]:
    started: list[Serve] = []
    yield started
    for serve in started:
        serve.stop()


def test_two_collectors_store_each_message_once(
    postgres_url: Callable[[], str], serves: list[Serve]
) -> None:
    url = postgres_url()
    PostgresStore(url).close()  # the schema exists before both start (they also race safely)
    serves += [Serve(url, free_port()), Serve(url, free_port())]
    batches = [[track(b * 1000 + i) for i in range(200)] for b in range(15)]
    # Each batch goes to both collectors at once; the second round sends every batch again,
    # reversed, so keys are inserted in other orders while the first transactions commit.
    rounds = batches + [list(reversed(b)) for b in batches]
    stored: list[int] = []
    errors: list[str] = []

    def send(serve: Serve, items: list[dict[str, Any]], gate: threading.Barrier) -> None:
        gate.wait(30)
        status, reply = request(serve.url, "POST", "/v1/batch", {"batch": items})
        if status != 200:
            errors.append(f"{status} {reply!r}")
        else:
            stored.append(int(reply["stored"]))

    for items in rounds:
        gate = threading.Barrier(2)
        threads = [threading.Thread(target=send, args=(s, items, gate)) for s in serves]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
    assert errors == []
    assert len(stored) == 2 * len(rounds)
    assert sum(stored) == 15 * 200  # each message reported stored by exactly one collector
    ids = PostgresStore(url, readonly=True).message_ids()
    assert len(ids) == len(set(ids)) == 15 * 200


def test_postgres_stopped_mid_stream(
    postgres_cluster: Any,
    cluster_schema_url: Callable[[], str],
    serves: list[Serve],
    tmp_path: Path,
    record: Any,
    cleanup: list[Any],
) -> None:
    url = cluster_schema_url()
    serve = Serve(url, free_port())
    serves.append(serve)
    ids = tmp_path / "ids"
    producer = Producer(serve.url, ids, "--count", "6000", *PACE)
    cleanup.append(producer)
    producer.wait_tracked(1500)
    postgres_cluster.stop()
    try:
        down, down_health = request(serve.url, "GET", "/health")
        producer.wait_tracked(4500)  # ~3 s of events tracked with PostgreSQL down
    finally:
        postgres_cluster.start()
    up = time.time()
    producer.wait_line("flushed", timeout=60)
    assert producer.finish() == 0, producer.stderr
    status, health = request(serve.url, "GET", "/health")
    out = outcome(ids, PostgresStore(url, readonly=True))
    row = record(
        "9 PostgreSQL stopped mid-stream (~3 s)",
        out,
        resent=int(health["duplicates"]),
        recover=out.recover(up),
        note=f"{health['failed']} requests answered 503; recover: from server up",
    )
    assert down == 503
    assert down_health["store"]["store"] == "postgresql"
    assert down_health["store"]["reachable"] is False
    assert status == 200
    assert health["failed"] > 0  # the client saw 503s and retried
    assert len(out.sent) == 6000
    assert not out.lost
    assert not out.unexpected
    assert row.twice == 0


def test_collector_killed_mid_commit(
    postgres_url: Callable[[], str],
    serves: list[Serve],
    tmp_path: Path,
    record: Any,
    cleanup: list[Any],
) -> None:
    url = postgres_url()
    port = free_port()
    first = Serve(url, port)
    ids = tmp_path / "ids"
    producer = Producer(first.url, ids, "--count", "5000", *PACE)
    cleanup.append(producer)
    producer.wait_tracked(1500)
    # Hold the key table so the collector's next transaction waits inside its key COPY, then
    # SIGKILL the collector there: its transaction is open, its commit never happens.
    with psycopg.connect(url) as lock:
        lock.execute("LOCK TABLE event_keys IN SHARE ROW EXCLUSIVE MODE")
        assert waiting_on_lock(url, timeout=20)
        first.stop()
        lock.rollback()
    producer.wait_tracked(2500)  # ~1 s with no collector
    up = time.time()
    second = Serve(url, port)
    serves.append(second)
    producer.wait_line("flushed", timeout=60)
    assert producer.finish() == 0, producer.stderr
    out = outcome(ids, PostgresStore(url, readonly=True))
    _, health = request(second.url, "GET", "/health")
    row = record(
        "10 collector on PostgreSQL SIGKILLed mid-commit",
        out,
        resent=int(health["duplicates"]),
        recover=out.recover(up),
        note="resent: counted by the restarted collector",
    )
    assert len(out.sent) == 5000
    assert not out.lost
    assert not out.unexpected
    assert row.twice == 0
