"""CollectorServer lifecycle: start on port 0, stop gracefully, refuse unsafe binds, logs."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
from collector_http import batch, post, request, track

from analytics.collector import CollectorServer


def test_port_zero_binds_a_real_port(collector: CollectorServer) -> None:
    assert collector.host == "127.0.0.1"
    assert collector.port > 0
    assert collector.url == f"http://127.0.0.1:{collector.port}"
    assert request(collector.url, "GET", "/health").status == 200


def test_context_manager_and_idempotent_stop(tmp_path: Path) -> None:
    with CollectorServer(tmp_path / "cm.db") as server:
        url = server.url
        assert post(url, "/v1/batch", batch([track(1)])).status == 200
    server.stop()
    assert server.store.count() == 1
    with pytest.raises(ConnectionRefusedError):
        request(url, "GET", "/health", timeout=2)
    with pytest.raises(RuntimeError, match="already started"):
        server.start()


def test_stop_without_start_is_harmless(tmp_path: Path) -> None:
    CollectorServer(tmp_path / "never.db").stop()


def test_non_loopback_bind_without_keys_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="without a write key"):
        CollectorServer(tmp_path / "x.db", host="0.0.0.0")


def test_port_in_use_raises_from_start(collector: CollectorServer, tmp_path: Path) -> None:
    other = CollectorServer(tmp_path / "other.db", port=collector.port)
    with pytest.raises(OSError, match="in use"):
        other.start(timeout=10)
    other.stop()


def test_acknowledged_events_survive_a_graceful_stop(
    collector_factory: Callable[..., CollectorServer],
) -> None:
    server = collector_factory()
    acked: list[str] = []
    lock = threading.Lock()
    enough = threading.Event()

    def client(worker: int) -> None:
        for n in range(500):  # bounded: the server stops long before this
            ids = [f"w{worker}-{n}-{i}" for i in range(50)]
            try:
                reply = post(server.url, "/v1/batch", batch([track(0, messageId=m) for m in ids]))
            except OSError:
                return
            if reply.status != 200:
                return
            with lock:
                acked.extend(ids)
                if len(acked) >= 2000:
                    enough.set()

    threads = [threading.Thread(target=client, args=(w,)) for w in range(4)]
    for thread in threads:
        thread.start()
    assert enough.wait(30)
    server.stop(timeout=10)
    for thread in threads:
        thread.join(30)
        assert not thread.is_alive()
    stored = set(server.store.message_ids())
    assert len(acked) >= 2000
    assert set(acked) <= stored


def test_logs_never_contain_the_write_key(
    collector_factory: Callable[..., CollectorServer], caplog: pytest.LogCaptureFixture
) -> None:
    secret = "sekrit-write-key-1234"
    caplog.set_level(logging.DEBUG, logger="analytics.collector")
    server = collector_factory(write_keys=[secret])
    post(server.url, "/v1/batch", batch([track(1)]), key=secret)
    post(server.url, "/v1/batch", batch([track(2)], writeKey=secret), key=None)
    post(server.url, "/v1/batch", batch([track(3)]), key="wrong-key-5678")
    server.stop()
    text = "\n".join(record.getMessage() for record in caplog.records)
    assert "accepting 1 configured write key" in text
    assert "POST /v1/batch -> 200" in text  # the debug line per request
    assert "3 requests (1 rejected" in text  # the info summary at stop
    assert secret not in text
    assert "wrong-key-5678" not in text


def test_open_mode_is_announced(
    collector_factory: Callable[..., CollectorServer], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="analytics.collector")
    collector_factory()
    assert any("accepting any write key" in r.getMessage() for r in caplog.records)


def test_another_process_reads_while_the_server_runs(collector: CollectorServer) -> None:
    import subprocess
    import sys

    assert post(collector.url, "/v1/batch", batch([track(1), track(2)])).status == 200
    db = collector.store.path  # type: ignore[attr-defined]
    code = (
        "from analytics.collector._cli import events_command; "
        f"events_command(['--db', {str(db)!r}, '--json'])"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert out.returncode == 0, out.stderr
    assert [line.count('"messageId"') for line in out.stdout.splitlines()] == [1, 1]
    assert post(collector.url, "/v1/batch", batch([track(3)])).status == 200
    assert collector.store.count() == 3


class _SummaryWatcher(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.INFO)
        self.seen = threading.Event()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if "messages received" in message:
            self.lines.append(message)
            self.seen.set()


def test_periodic_info_summary(collector_factory: Callable[..., CollectorServer]) -> None:
    watcher = _SummaryWatcher()
    logger = logging.getLogger("analytics.collector")
    logger.addHandler(watcher)
    previous = logger.level
    logger.setLevel(logging.INFO)
    try:
        server = collector_factory(summary_interval=0.05)
        post(server.url, "/v1/batch", batch([track(1), track(2)]))
        assert watcher.seen.wait(10)
    finally:
        logger.removeHandler(watcher)
        logger.setLevel(previous)
    assert "2 messages received, 2 stored" in watcher.lines[-1]


class _BrokenStore:
    """A store whose write fails with a non-SQLite error (a bug in a store)."""

    def __init__(self) -> None:
        self.writes = 0

    def write(self, batches: object) -> list[int]:
        self.writes += 1
        raise ZeroDivisionError("store bug")

    def events(self, *args: object, **kwargs: object) -> list[dict[str, object]]:
        return []

    def count(self) -> int:
        return 0

    def close(self) -> None:
        pass


def test_any_store_failure_is_503_never_200(
    collector_factory: Callable[..., CollectorServer],
) -> None:
    store = _BrokenStore()
    server = collector_factory(db=store)
    reply = post(server.url, "/v1/batch", batch([track(1)]))
    assert reply.status == 503
    assert reply.headers["retry-after"] == "2"
    assert store.writes == 1
    assert server.stats.snapshot().failed == 1
