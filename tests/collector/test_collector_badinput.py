"""Bad input over real HTTP: each gets a clear error and nothing partial is stored."""

from __future__ import annotations

import gzip
import sqlite3
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from collector_http import KEY, basic, batch, post, raw_connect, read_status, track

from analytics.collector import CollectorServer, SQLiteStore


@pytest.fixture
def collector_db(any_collector_db: Callable[[int], Any]) -> Callable[[int], Any]:
    """Every test here runs over both stores: SQLite and PostgreSQL behave the same."""
    return any_collector_db


def assert_error(reply: Any, status: int, code: str) -> None:
    assert reply.status == status, reply.body
    body = reply.json
    assert body["success"] is False
    assert body["code"] == code
    assert body["message"]
    assert body["error"] == body["message"]


@pytest.mark.parametrize(
    ("path", "body", "code"),
    [
        ("/v1/batch", b'{"batch": [{"type": "track"', "invalid_json"),
        ("/v1/batch", b"", "invalid_json"),
        ("/v1/track", b"{'userId': 'single quotes'}", "invalid_json"),
        ("/v1/batch", b'{"batch": [{"type": "identify", "userId": "\xff\xfe"}]}', "invalid_utf8"),
        ("/v1/batch", b"[]", "invalid_body"),
        ("/v1/batch", b'"batch"', "invalid_body"),
        ("/v1/batch", b'{"batch": {"type": "identify"}}', "invalid_body"),
        ("/v1/batch", b'{"events": []}', "invalid_body"),
        ("/v1/track", b"[1, 2]", "invalid_body"),
        ("/v1/batch", b'{"batch": [], "context": "nope"}', "invalid_field"),
        ("/v1/batch", b'{"batch": [], "sentAt": 12}', "invalid_field"),
    ],
)
def test_bad_bodies_get_400(collector: CollectorServer, path: str, body: bytes, code: str) -> None:
    assert_error(post(collector.url, path, body), 400, code)
    assert collector.store.count() == 0


def test_wrong_field_types_are_refused_per_message(collector: CollectorServer) -> None:
    items = [
        track(0, properties=[1, 2]),
        track(1, event={"name": "x"}),
        track(2, timestamp=1714564800),
        track(3, messageId=12),
        track(4, context="mobile"),
        track(5),
    ]
    reply = post(collector.url, "/v1/batch", batch(items))
    assert reply.status == 200
    assert [r["index"] for r in reply.json["refused"]] == [0, 1, 2, 3, 4]
    assert {r["code"] for r in reply.json["refused"]} == {"invalid_field"}
    assert collector.store.message_ids() == ["msg-5"]


def test_single_event_body_over_32768_bytes_is_400(collector: CollectorServer) -> None:
    body = {"userId": "u", "event": "E", "properties": {"blob": "x" * 33_000}}
    assert_error(post(collector.url, "/v1/track", body), 400, "payload_too_large")
    assert collector.store.count() == 0


def test_batch_body_over_512000_bytes_is_400(collector: CollectorServer) -> None:
    items = [track(i, properties={"blob": "x" * 30_000}) for i in range(18)]
    assert_error(post(collector.url, "/v1/batch", batch(items)), 400, "payload_too_large")
    assert collector.store.count() == 0


def test_chunked_body_over_the_limit_is_400(collector: CollectorServer) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"batch": ['
        for i in range(700):
            yield b'{"type": "identify", "userId": "u%d", "traits": {"b": "%s"}},' % (
                i,
                b"x" * 1000,
            )
        yield b'{"type": "identify", "userId": "last"}]}'

    import http.client
    from urllib.parse import urlsplit

    parts = urlsplit(collector.url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    try:
        headers = {"Authorization": basic(KEY), "Content-Type": "application/json"}
        conn.request("POST", "/v1/batch", body=chunks(), headers=headers, encode_chunked=True)
        resp = conn.getresponse()
        assert resp.status == 400
        assert b"payload_too_large" in resp.read()
    finally:
        conn.close()
    assert collector.store.count() == 0


def test_oversize_item_in_a_batch_is_refused_alone(collector: CollectorServer) -> None:
    items = [track(0), track(1, properties={"blob": "x" * 40_000}), track(2)]
    reply = post(collector.url, "/v1/batch", batch(items))
    assert reply.status == 200
    assert [(r["index"], r["code"]) for r in reply.json["refused"]] == [(1, "message_too_large")]
    assert collector.store.message_ids() == ["msg-0", "msg-2"]


def test_gzip_bomb_is_400_and_not_inflated(collector: CollectorServer) -> None:
    compressor = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    zeros = bytes(1 << 20)
    bomb = b"".join(compressor.compress(zeros) for _ in range(64)) + compressor.flush()
    reply = post(collector.url, "/v1/batch", bomb, headers={"Content-Encoding": "gzip"})
    assert_error(reply, 400, "payload_too_large")
    assert collector.store.count() == 0


def test_gzip_body_within_the_wire_limit_but_inflating_past_it_is_400(
    collector: CollectorServer,
) -> None:
    items = [track(i, properties={"blob": "y" * 20_000}) for i in range(30)]
    body = gzip.compress(repr(batch(items)).encode())
    assert len(body) < 512_000
    reply = post(collector.url, "/v1/batch", body, headers={"Content-Encoding": "gzip"})
    assert_error(reply, 400, "payload_too_large")


def test_corrupt_gzip_is_400(collector: CollectorServer) -> None:
    body = gzip.compress(b'{"batch": []}')[:-6]
    reply = post(collector.url, "/v1/batch", body, headers={"Content-Encoding": "gzip"})
    assert_error(reply, 400, "invalid_encoding")
    reply = post(collector.url, "/v1/batch", b"{}", headers={"Content-Encoding": "br"})
    assert_error(reply, 415, "unsupported_encoding")


def test_10000_item_batch_is_refused_whole(collector: CollectorServer) -> None:
    items = [{"type": "identify", "userId": f"{i}"} for i in range(10_000)]
    body = batch(items)
    reply = post(collector.url, "/v1/batch", body)
    assert_error(reply, 400, "too_many_messages")
    assert "10000" in reply.json["message"]
    assert collector.store.count() == 0


def test_2500_items_are_accepted(collector: CollectorServer) -> None:
    items = [{"type": "identify", "userId": f"{i}", "messageId": f"m{i}"} for i in range(2500)]
    reply = post(collector.url, "/v1/batch", batch(items))
    assert reply.status == 200
    assert reply.json["stored"] == 2500
    assert collector.store.count() == 2500


def test_malformed_basic_auth_is_401(collector: CollectorServer) -> None:
    reply = post(
        collector.url, "/v1/batch", batch([]), key=None, headers={"Authorization": "Basic %%%"}
    )
    assert_error(reply, 401, "invalid_authorization")


def test_slow_body_times_out_with_408_and_stores_nothing(
    collector_factory: Callable[..., CollectorServer],
) -> None:
    server = collector_factory(read_timeout=0.3)
    body = b'{"batch": [{"type": "identify", "userId": "slow", "messageId": "s1"}]}'
    head = (
        f"POST /v1/batch HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: {basic(KEY)}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode()
    with raw_connect(server.url) as sock:
        sock.sendall(head + body[:20])
        assert read_status(sock) == 408  # the rest of the body never comes
    assert server.stats.wait_for(lambda c: c.rejected == 1, timeout=10)
    assert server.store.count() == 0


def test_client_disconnecting_mid_body_stores_nothing(collector: CollectorServer) -> None:
    body = b'{"batch": [{"type": "identify", "userId": "gone", "messageId": "g1"}]}'
    head = (
        f"POST /v1/batch HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: {basic(KEY)}\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode()
    with raw_connect(collector.url) as sock:
        sock.sendall(head + body[: len(body) // 2])
    assert collector.stats.wait_for(lambda c: c.aborted == 1, timeout=10)
    assert collector.store.count() == 0
    assert post(collector.url, "/v1/batch", batch([track(1)])).status == 200


def lock_database(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("BEGIN IMMEDIATE")
    return conn


def test_locked_database_answers_503_with_retry_after(
    collector_factory: Callable[..., CollectorServer], tmp_path: Path
) -> None:
    store = SQLiteStore(tmp_path / "locked.db", busy_timeout=0.05)
    server = collector_factory(db=store)
    locker = lock_database(store.path)
    try:
        reply = post(server.url, "/v1/batch", batch([track(1)]))
        assert_error(reply, 503, "store_unavailable")
        assert reply.headers["retry-after"] == "2"
    finally:
        locker.execute("ROLLBACK")
        locker.close()
    assert store.count() == 0
    assert post(server.url, "/v1/batch", batch([track(1)])).status == 200
    assert store.count() == 1
    store.close()


def test_full_disk_answers_503_never_200(
    collector_factory: Callable[..., CollectorServer], tmp_path: Path
) -> None:
    store = SQLiteStore(tmp_path / "full.db")
    server = collector_factory(db=store)
    post(server.url, "/v1/batch", batch([track(0)]))
    probe = sqlite3.connect(store.path)
    pages = probe.execute("PRAGMA page_count").fetchone()[0]
    probe.close()
    # SQLite's own page limit makes the database "full", the error a full disk gives.
    store._writer().execute(f"PRAGMA max_page_count = {pages}")
    items = [track(i, properties={"blob": "z" * 10_000}) for i in range(1, 40)]
    reply = post(server.url, "/v1/batch", batch(items))
    assert_error(reply, 503, "store_unavailable")
    assert "full" in reply.json["message"]
    assert store.message_ids() == ["msg-0"]
    store.close()
