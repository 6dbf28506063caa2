"""``GET /metrics``: Prometheus metrics scraped during a real load, one process and several."""

from __future__ import annotations

import http.client
import sqlite3
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

import orjson
import pytest
from collector_http import Reply, batch, post, request, track
from prometheus_client.parser import text_string_to_metric_families
from test_collector_cli import start_serve
from test_collector_hostile_http import idle_connections
from test_collector_workers import serving_pids, stop

from analytics.collector import CollectorServer, SQLiteStore
from analytics.collector._guard import ServerLimits

P = "analytics_collector_"
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(url: str, **headers: str) -> Samples:
    """Every sample of one ``/metrics`` answer, by name and labels."""
    reply = request(url, "GET", "/metrics", headers=headers)
    assert reply.status == 200, reply.body
    assert reply.headers["content-type"].startswith("text/plain")
    samples: Samples = {}
    for family in text_string_to_metric_families(reply.body.decode()):
        for sample in family.samples:
            samples[sample.name, frozenset(sample.labels.items())] = sample.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((P + name, frozenset(labels.items())), 0.0)


def total(samples: Samples, name: str) -> float:
    """The sum of ``name`` over all its label values."""
    return sum(v for (n, _), v in samples.items() if n == P + name)


class Load:
    """Batches posted by several threads, each request on a fresh connection (so the kernel
    spreads them over the processes), with duplicates and refused messages among them."""

    def __init__(self, url: str, threads: int, batches: int, size: int) -> None:
        self.url = url
        self.replies: list[tuple[Reply, int]] = []
        self._lock = threading.Lock()
        self._threads = [
            threading.Thread(target=self._send, args=(t, batches, size)) for t in range(threads)
        ]

    def _send(self, thread: int, batches: int, size: int) -> None:
        for b in range(batches):
            first = (thread * batches + b) * size
            messages = [track(first + i) for i in range(size)]
            messages[-1] = track(first)  # a duplicate of the first one
            messages[-2] = track(first + 1, event="")  # refused: track requires an event
            body = orjson.dumps(batch(messages))
            reply = post(self.url, "/v1/batch", body)
            with self._lock:
                self.replies.append((reply, len(body)))

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def running(self) -> bool:
        return any(thread.is_alive() for thread in self._threads)

    def join(self) -> None:
        for thread in self._threads:
            thread.join(timeout=120)
        assert not self.running()


def check_against_store(samples: Samples, load: Load, store_count: int) -> None:
    """The counters say what the answers and the database say."""
    answers = [reply.json for reply, _ in load.replies]
    assert all(reply.status == 200 for reply, _ in load.replies)
    assert value(samples, "messages_stored_total") == store_count
    assert value(samples, "messages_stored_total") == sum(a["stored"] for a in answers)
    assert value(samples, "messages_received_total") == sum(a["received"] for a in answers)
    assert value(samples, "messages_duplicate_total") == sum(a["duplicates"] for a in answers)
    reasons = Counter(r["code"] for a in answers for r in a["refused"])
    assert reasons  # the load does send refused messages
    for code, count in reasons.items():
        assert value(samples, "messages_refused_total", reason=code) == count
    assert value(samples, "http_requests_total", route="/v1/batch", status="200") == len(answers)
    assert value(samples, "http_request_duration_seconds_count", route="/v1/batch") == len(answers)
    assert value(samples, "http_request_bytes_total") == sum(size for _, size in load.replies)
    assert value(samples, "commit_duration_seconds_count") >= 1
    assert value(samples, "commit_failures_total") == 0
    assert value(samples, "store_up") == 1


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="--workers needs Linux")
def test_metrics_match_the_store_across_two_workers(tmp_path: Path) -> None:
    db = tmp_path / "m.db"
    proc, url = start_serve(db, "--workers", "2")
    try:
        assert len(serving_pids(url)) == 2
        load = Load(url, threads=4, batches=15, size=20)
        load.start()
        scrapes = 0
        last_stored = 0.0
        while load.running() and scrapes < 200:  # scraped while the load runs
            stored = value(scrape(url), "messages_stored_total")
            assert stored >= last_stored  # each process reads every process's counts
            last_stored = stored
            scrapes += 1
        load.join()
        assert scrapes >= 1
        count = SQLiteStore(db, readonly=True).count()
        assert count == 4 * 15 * 18  # 20 per batch, less a duplicate and a refusal
        # Whichever process answers a scrape (each on a new connection), it reports both
        # processes' totals.
        for _ in range(20):
            samples = scrape(url)
            check_against_store(samples, load, count)
            assert value(samples, "processes") == 2
    finally:
        stop(proc)


def test_metrics_of_one_process_and_its_open_connections(
    collector_factory: Callable[..., CollectorServer],
) -> None:
    server = collector_factory()
    load = Load(server.url, threads=2, batches=5, size=10)
    load.start()
    load.join()
    check_against_store(scrape(server.url), load, server.store.count())
    parts = urlsplit(server.url)
    held = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    try:
        # The gauges are sampled once a second: a sample taken as the load ended may still
        # count its connections and rows; a later one counts this connection and no rows
        # (every answered row is committed).
        deadline = time.monotonic() + 10
        gauges = (0.0, -1.0)
        while time.monotonic() < deadline:
            held.request("GET", "/metrics")
            reply = held.getresponse()
            samples = {
                s.name: s.value
                for f in text_string_to_metric_families(reply.read().decode())
                for s in f.samples
            }
            gauges = (samples[P + "open_connections"], samples[P + "writer_queue_rows"])
            if gauges[0] >= 1 and gauges[1] == 0:
                break
        assert gauges[0] >= 1
        assert gauges[1] == 0
    finally:
        held.close()


def test_unknown_paths_share_one_route_label(collector: CollectorServer) -> None:
    for path in ("/a", "/b/c", "/v1/nothing"):
        assert request(collector.url, "GET", path).status == 404
    samples = scrape(collector.url)
    assert value(samples, "http_requests_total", route="other", status="404") == 3
    routes = {dict(labels).get("route") for (n, labels), _ in samples.items()}
    assert not routes & {"/a", "/b/c", "/v1/nothing"}


def test_metrics_follow_the_admin_rule(collector_factory: Callable[..., CollectorServer]) -> None:
    token = "metrics-admin-token-0123456789"
    server = collector_factory(admin_token=token)
    assert request(server.url, "GET", "/metrics").status == 401
    assert (
        request(server.url, "GET", "/metrics", headers={"Authorization": "Bearer nope"}).status
        == 401
    )
    samples = scrape(server.url, Authorization=f"Bearer {token}")
    assert value(samples, "processes") == 1
    # The refused scrapes are counted too (route /metrics, status 401).
    assert value(samples, "http_requests_total", route="/metrics", status="401") == 2


def test_a_failed_commit_is_counted_and_the_next_one_recovers(
    tmp_path: Path, collector_factory: Callable[..., CollectorServer]
) -> None:
    path = tmp_path / "locked.db"
    store = SQLiteStore(path, busy_timeout=0.2)
    server = collector_factory(db=store)
    holder = sqlite3.connect(path, isolation_level=None)
    try:
        holder.execute("BEGIN EXCLUSIVE")  # another process holds the write lock
        assert post(server.url, "/v1/batch", batch([track(1)])).status == 503
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert post(server.url, "/v1/batch", batch([track(2)])).status == 200
    samples = scrape(server.url)
    server.stop()
    assert value(samples, "commit_failures_total") == 1
    assert value(samples, "commit_duration_seconds_count") == 2
    assert value(samples, "http_requests_total", route="/v1/batch", status="503") == 1
    assert value(samples, "http_requests_total", route="/v1/batch", status="200") == 1
    assert value(samples, "messages_stored_total") == 1 == store.count()
    store.close()


def test_connections_refused_at_the_cap_are_counted(
    collector_factory: Callable[..., CollectorServer],
) -> None:
    server = collector_factory(server_limits=ServerLimits(max_connections=2))
    with idle_connections(server.url, 2):
        assert post(server.url, "/v1/batch", batch([track(1)])).status == 503
    refused = 0.0
    deadline = time.monotonic() + 10  # the count is sampled once a second
    while time.monotonic() < deadline:
        reply = request(server.url, "GET", "/metrics")
        if reply.status == 200:
            for family in text_string_to_metric_families(reply.body.decode()):
                for sample in family.samples:
                    if sample.name == P + "connections_refused_total":
                        refused = sample.value
            if refused >= 1:
                break
    assert refused >= 1
