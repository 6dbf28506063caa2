"""Schema 2: the hash dedupe stays exact under collisions; schema 1 files are migrated."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from test_collector_store import row

from analytics.collector import SQLiteStore, _schema
from analytics.collector._schema import SchemaError, dedupe_key, dedupe_keyer


def test_dedupe_key_is_stable_and_separates_key_and_id() -> None:
    assert dedupe_key("k", "m1") == dedupe_key("k", "m1")
    assert dedupe_key("k", "m1") != dedupe_key("k", "m2")
    assert dedupe_key("ab", "c") != dedupe_key("a", "bc")
    assert -(2**63) <= dedupe_key("k", "m1") < 2**63


@pytest.mark.parametrize("write_key", ["k", "ab", "clé", "\ud800"])
def test_the_per_key_hasher_gives_the_stored_keys(write_key: str) -> None:
    keyer = dedupe_keyer(write_key)
    for message_id in ("m1", "", "c", "bc", "ü-123", "\udfff", "x" * 100):
        assert keyer(message_id) == dedupe_key(write_key, message_id)


@pytest.fixture
def colliding(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every pair hashes to one of two keys: collisions on nearly every row."""
    monkeypatch.setattr(_schema, "dedupe_keyer", lambda wk: lambda mid: 2**63 - 1 - (len(mid) % 2))


def test_collisions_never_drop_a_different_event(tmp_path: Path, colliding: None) -> None:
    store = SQLiteStore(tmp_path / "c.db")
    try:
        first = [row(i) for i in range(20)]
        assert store.write([first, [row(i, key="other") for i in range(5)]]) == [20, 5]
        # Retries, in another order and mixed with new rows: only the new ones are stored.
        again = [row(i) for i in range(25, 15, -1)] + [row(3, key="other")]
        assert store.write([again]) == [6]  # m20..m25
        ids = store.message_ids()
        assert sorted(ids) == sorted([f"m{i}" for i in range(26)] + [f"m{i}" for i in range(5)])
        # The probe wrapped around from the largest key to the smallest.
        conn = sqlite3.connect(store.path)
        try:
            keys = {k for (k,) in conn.execute("SELECT dedupe FROM events")}
        finally:
            conn.close()
        assert -(2**63) in keys
    finally:
        store.close()


def test_a_duplicate_within_one_request_is_stored_once(tmp_path: Path, colliding: None) -> None:
    store = SQLiteStore(tmp_path / "d.db")
    try:
        assert store.write([[row(1), row(2), row(1), row(2), row(3)]]) == [3]
    finally:
        store.close()


def _v1_file(path: Path) -> None:
    conn = sqlite3.connect(path)
    conn.executescript(
        """CREATE TABLE events (seq INTEGER PRIMARY KEY, write_key TEXT NOT NULL,
        message_id TEXT NOT NULL, type TEXT NOT NULL, user_id TEXT, anonymous_id TEXT,
        event TEXT, timestamp TEXT NOT NULL, received_at TEXT NOT NULL, body TEXT NOT NULL);
        CREATE UNIQUE INDEX events_dedupe ON events(write_key, message_id);
        PRAGMA user_version = 1;"""
    )
    conn.executemany(
        "INSERT INTO events (write_key, message_id, type, user_id, anonymous_id, event,"
        " timestamp, received_at, body) VALUES (?,?,?,?,?,?,?,?,?)",
        [
            (*r[:4], r.anonymous_id, r.event, r.timestamp, r.received_at, r.body.decode())
            for r in map(row, range(10))
        ],
    )
    conn.commit()
    conn.close()


def test_a_schema_1_file_is_readable_and_migrated_for_writing(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    _v1_file(path)
    old = SQLiteStore(path, readonly=True).events(type="track", user_id="u1")
    assert [m["messageId"] for m in old] == ["m1", "m4", "m7"]
    store = SQLiteStore(path)
    try:
        assert store.events(type="track", user_id="u1") == old
        assert store.message_ids() == [f"m{i}" for i in range(10)]
        assert store.write([[row(i) for i in range(5, 15)]]) == [5]  # dedupe spans old rows
        assert store.message_ids() == [f"m{i}" for i in range(15)]
    finally:
        store.close()
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == 2
    finally:
        conn.close()


def test_a_newer_schema_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "new.db"
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA user_version = 3")
    conn.close()
    with pytest.raises(SchemaError, match="schema 3"):
        SQLiteStore(path)
