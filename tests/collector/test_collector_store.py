"""The SQLite store: schema, dedupe, reads, failures (no server)."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from analytics.collector import SQLiteStore, Store, StoreError
from analytics.collector._validated import Message, to_message


def row(i: int, *, key: str = "k", kind: str = "track", received: str | None = None) -> Message:
    """A validated message as the collector hands it to a store (any store)."""
    received = received or f"2024-05-01T12:00:{i % 60:02d}.000Z"
    msg = {"type": kind, "userId": f"u{i % 3}", "event": f"E{i % 2}", "messageId": f"m{i}"}
    msg["receivedAt"] = msg["timestamp"] = received
    return to_message(msg, key, orjson.dumps(msg))


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SQLiteStore]:
    s = SQLiteStore(tmp_path / "events.db")
    yield s
    s.close()


def test_store_satisfies_the_protocol(store: SQLiteStore) -> None:
    assert isinstance(store, SQLiteStore)
    typed: Store = store
    assert typed.count() == 0


def test_wal_mode_and_unique_index(store: SQLiteStore) -> None:
    conn = sqlite3.connect(store.path)
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        index = conn.execute("PRAGMA index_info(events_dedupe)").fetchall()
        assert [name for (_, _, name) in index] == ["dedupe"]  # the exact hash key (._schema)
        assert conn.execute("PRAGMA user_version").fetchone()[0] == 2
    finally:
        conn.close()


def test_write_counts_new_rows_per_batch_and_ignores_duplicates(store: SQLiteStore) -> None:
    assert store.write([[row(1), row(2)], [row(2), row(3)], [row(1, key="other")]]) == [2, 1, 1]
    assert store.write([[row(1), row(2)]]) == [0]
    assert store.count() == 4
    assert store.message_ids() == ["m1", "m2", "m3", "m1"]


def test_events_filters_and_limit_keep_newest_last(store: SQLiteStore) -> None:
    store.write([[row(i) for i in range(10)] + [row(10, kind="identify")]])
    assert [m["messageId"] for m in store.events()][-2:] == ["m9", "m10"]
    assert [m["messageId"] for m in store.events(type="identify")] == ["m10"]
    assert [m["messageId"] for m in store.events(user_id="u1", event="E1")] == ["m1", "m7"]
    assert [m["messageId"] for m in store.events(limit=3)] == ["m8", "m9", "m10"]
    assert [m["messageId"] for m in store.events(since="2024-05-01T12:00:08Z")] == [
        "m8",
        "m9",
        "m10",
    ]
    assert store.events(limit=0) == []


def test_hostile_filter_values_are_parameters(store: SQLiteStore) -> None:
    store.write([[row(1)]])
    assert store.events(user_id="x' OR '1'='1") == []
    assert store.count() == 1


def test_full_disk_is_a_store_error_and_nothing_is_kept(store: SQLiteStore) -> None:
    store.write([[row(0)]])
    conn = sqlite3.connect(store.path)
    pages = conn.execute("PRAGMA page_count").fetchone()[0]
    conn.close()
    writer = store._writer()
    writer.execute(f"PRAGMA max_page_count = {pages}")
    big = [row(i)._replace(body=orjson.dumps("x" * 5000)) for i in range(1, 200)]
    with pytest.raises(StoreError, match="full"):
        store.write([big])
    assert store.count() == 1
    writer.execute("PRAGMA max_page_count = 1073741823")
    assert store.write([[row(1)]]) == [1]


def test_locked_database_is_a_store_error(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "locked.db", busy_timeout=0.05)
    other = sqlite3.connect(store.path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(StoreError, match="locked"):
            store.write([[row(1)]])
    finally:
        other.execute("ROLLBACK")
        other.close()
    assert store.write([[row(1)]]) == [1]
    store.close()


def test_readonly_store_needs_an_existing_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        SQLiteStore(tmp_path / "missing.db", readonly=True)
    assert not (tmp_path / "missing.db").exists()


def test_another_process_reads_while_the_writer_holds_its_connection(store: SQLiteStore) -> None:
    store.write([[row(1), row(2)]])
    code = (
        "import sys; from analytics.collector import SQLiteStore;"
        "s = SQLiteStore(sys.argv[1], readonly=True); print(s.count(), s.message_ids())"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(store.path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert out.stdout.strip() == "2 ['m1', 'm2']"
