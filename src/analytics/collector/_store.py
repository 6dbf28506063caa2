"""Where the collector keeps messages: the :class:`Store` protocol and the SQLite store.

The writer thread is the only caller of :meth:`Store.write`; the read methods may be called
from any thread or process at the same time (SQLite in WAL mode lets readers run while the
writer commits). Every SQL statement is parameterized.

Schema (``PRAGMA user_version = 1``)::

    events(seq INTEGER PRIMARY KEY,       -- arrival order
           write_key, message_id, type, user_id, anonymous_id, event,
           timestamp,                      -- skew-corrected, UTC, ...Z
           received_at,                    -- collector clock, UTC, ...Z
           body)                           -- the stored message, compact JSON text
    UNIQUE INDEX events_dedupe ON events(write_key, message_id)

Duplicates by (write key, messageId) are ignored by ``INSERT OR IGNORE``, so a retried batch
never creates a second row. A later PostgreSQL store implements the same protocol.
"""

from __future__ import annotations

import functools
import itertools
import sqlite3
import threading
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

import orjson

from analytics.collector._time import format_timestamp, parse_timestamp

__all__ = ["Row", "SQLiteStore", "Store", "StoreError"]

#: write_key, message_id, type, user_id, anonymous_id, event, timestamp, received_at, body
Row = tuple[str, str, str, str | None, str | None, str | None, str, str, str]

_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS events (
        seq INTEGER PRIMARY KEY,
        write_key TEXT NOT NULL,
        message_id TEXT NOT NULL,
        type TEXT NOT NULL,
        user_id TEXT,
        anonymous_id TEXT,
        event TEXT,
        timestamp TEXT NOT NULL,
        received_at TEXT NOT NULL,
        body TEXT NOT NULL
    )""",
    "CREATE UNIQUE INDEX IF NOT EXISTS events_dedupe ON events(write_key, message_id)",
    "PRAGMA user_version = 1",
)
_INSERT = (
    "INSERT OR IGNORE INTO events (write_key, message_id, type, user_id, anonymous_id, event,"
    " timestamp, received_at, body) VALUES "
)
_ROW_PLACEHOLDERS = "(?,?,?,?,?,?,?,?,?)"
# Rows per INSERT statement: 1,024 rows x 9 columns stays under SQLite's 32,766 variables.
_ROWS_PER_STATEMENT = 1024


@functools.lru_cache(maxsize=128)
def _insert_sql(rows: int) -> str:
    """One INSERT statement for ``rows`` rows (multi-row VALUES)."""
    return _INSERT + ",".join([_ROW_PLACEHOLDERS] * rows)


def _insert(conn: sqlite3.Connection, rows: Sequence[Row]) -> None:
    """Insert ``rows`` with few multi-row statements rather than ``executemany``.

    ``executemany`` steps once per row and releases and re-takes the GIL around every step;
    with the event loop busy in the same process each re-take waits, and inserts ran 3-10x
    slower than alone (measured). A multi-row statement takes the GIL back once per
    statement.
    """
    for start in range(0, len(rows), _ROWS_PER_STATEMENT):
        chunk = rows[start : start + _ROWS_PER_STATEMENT]
        conn.execute(_insert_sql(len(chunk)), list(itertools.chain.from_iterable(chunk)))


class StoreError(Exception):
    """Writing failed (disk full, database locked, I/O error); nothing of the write was kept."""


class Store(Protocol):
    """What the collector needs from a store. ``write`` is called from one thread only."""

    def write(self, batches: Sequence[Sequence[Row]]) -> list[int]:
        """Insert every batch in one transaction; return the new rows per batch.

        Raises:
            StoreError: the transaction was rolled back.
        """
        ...

    def events(
        self,
        type: str | None = None,
        user_id: str | None = None,
        event: str | None = None,
        since: datetime | str | None = None,
        limit: int | None = None,
    ) -> list[dict[str, Any]]:
        """Stored messages, oldest first (see :meth:`SQLiteStore.events`)."""
        ...

    def count(self) -> int:
        """Number of stored messages."""
        ...

    def close(self) -> None:
        """Release the write side; reads keep working."""
        ...


def _since_text(since: datetime | str) -> str:
    moment = parse_timestamp(since) if isinstance(since, str) else since
    return format_timestamp(moment)


class SQLiteStore:
    """The embedded store: one SQLite file in WAL mode, ``synchronous=NORMAL``.

    Args:
        path: the database file; created with its schema unless ``readonly``.
        busy_timeout: seconds a write or read waits for a lock before failing.
        readonly: open for reading only (``analytics events``); the file must exist.

    Thread-safety: :meth:`write` and :meth:`close` belong to one thread (the collector's
    writer); the read methods open their own short-lived connection and are safe anywhere.
    """

    def __init__(
        self, path: str | Path, *, busy_timeout: float = 5.0, readonly: bool = False
    ) -> None:
        self.path = Path(path)
        self.busy_timeout = busy_timeout
        self._readonly = readonly
        self._conn: sqlite3.Connection | None = None
        self._lock = threading.Lock()
        if readonly:
            if not self.path.exists():
                raise FileNotFoundError(f"no collector database at {self.path}")
        else:
            self._writer()

    def __repr__(self) -> str:
        return f"SQLiteStore({str(self.path)!r})"

    def _writer(self) -> sqlite3.Connection:
        with self._lock:
            if self._conn is None:
                if self._readonly:
                    raise StoreError("the store was opened read-only")
                conn = sqlite3.connect(
                    self.path,
                    timeout=self.busy_timeout,
                    isolation_level=None,
                    check_same_thread=False,
                    cached_statements=256,
                )
                # 16 KiB pages (only effective when the file is created) and a 64 MiB cache
                # make inserts into the dedupe index about a quarter faster (measured).
                conn.execute("PRAGMA page_size=16384")
                conn.execute("PRAGMA cache_size=-65536")
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("PRAGMA synchronous=NORMAL")
                for statement in _SCHEMA:
                    conn.execute(statement)
                self._conn = conn
            return self._conn

    def write(self, batches: Sequence[Sequence[Row]]) -> list[int]:
        """Insert all batches in one transaction (one commit); return new rows per batch.

        Raises:
            StoreError: any SQLite error; the transaction is rolled back.
        """
        try:
            conn = self._writer()
            conn.execute("BEGIN IMMEDIATE")
            counts = []
            for rows in batches:
                before = conn.total_changes
                _insert(conn, rows)
                counts.append(conn.total_changes - before)
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            self._rollback()
            raise StoreError(f"{type(exc).__name__}: {exc}") from exc
        return counts

    def _rollback(self) -> None:
        conn = self._conn
        if conn is not None and conn.in_transaction:
            try:
                conn.execute("ROLLBACK")
            except sqlite3.Error:
                # The connection is unusable; drop it and reconnect on the next write.
                self._drop_writer()

    def _drop_writer(self) -> None:
        with self._lock:
            conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()

    def _reader(self) -> sqlite3.Connection:
        uri = self.path.resolve().as_uri() + "?mode=ro"
        return sqlite3.connect(uri, uri=True, timeout=self.busy_timeout)

    def _query(self, sql: str, params: Sequence[Any]) -> list[Any]:
        conn = self._reader()
        try:
            return conn.execute(sql, params).fetchall()
        finally:
            conn.close()

    def events(
        self,
        type: str | None = None,
        user_id: str | None = None,
        event: str | None = None,
        since: datetime | str | None = None,
        limit: int | None = None,
    ) -> list[dict[str, Any]]:
        """Stored messages exactly as stored, oldest first (newest last).

        Args:
            type: only messages of this type.
            user_id: only messages with this ``userId``.
            event: only track messages with this ``event``.
            since: only messages received at or after this time (``receivedAt``).
            limit: keep only the newest ``limit`` messages (still returned oldest first).
        """
        where: list[str] = []
        params: list[Any] = []
        for column, value in (("type", type), ("user_id", user_id), ("event", event)):
            if value is not None:
                where.append(f"{column} = ?")
                params.append(value)
        if since is not None:
            where.append("received_at >= ?")
            params.append(_since_text(since))
        sql = "SELECT body FROM events"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY seq DESC"
        if limit is not None:
            sql += " LIMIT ?"
            params.append(max(0, int(limit)))
        rows = self._query(sql, params)
        return [orjson.loads(body) for (body,) in reversed(rows)]

    def count(self) -> int:
        """Number of stored messages."""
        return int(self._query("SELECT count(*) FROM events", ())[0][0])

    def message_ids(self) -> list[str]:
        """Every stored ``messageId``, oldest first."""
        return [mid for (mid,) in self._query("SELECT message_id FROM events ORDER BY seq", ())]

    def close(self) -> None:
        """Close the write connection (idempotent). Reads keep working afterwards."""
        self._drop_writer()
