"""Where the collector keeps messages: the :class:`Store` protocol and the SQLite store.

The writer thread is the only caller of :meth:`Store.write`; the read methods may be called
from any thread or process at the same time (SQLite in WAL mode lets readers run while the
writer commits). Every SQL statement is parameterized. The PostgreSQL store is in :mod:`._pg`.

Schema 2 (``PRAGMA user_version = 2``; details, the exact hash dedupe and the migration of
schema 1 files in :mod:`._schema`)::

    events(seq INTEGER PRIMARY KEY,       -- arrival order
           dedupe INTEGER NOT NULL,        -- 64-bit hash of (write_key, message_id)
           write_key, message_id, type, user_id, event,
           received_at,                    -- collector clock, UTC, ...Z
           body)                           -- the stored message, compact JSON text
    UNIQUE INDEX events_dedupe ON events(dedupe)

Duplicates by (write key, messageId) are not stored twice (exact: a hash collision between two
different pairs is detected and both rows are kept), so a retried batch never creates a second
row. WAL checkpoints run on a thread of their own, not inside the
writer's commits (see :mod:`._checkpoint`).
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

import orjson

from analytics._wire import format_timestamp, parse_timestamp
from analytics.collector._checkpoint import Checkpointer, checkpoint
from analytics.collector._schema import (
    Row,
    RowMaker,
    SchemaError,
    check_schema,
    insert_rows,
    prepare_schema,
)
from analytics.collector._validated import Message

__all__ = ["Message", "SQLiteStore", "Store", "StoreError", "StoreReads", "since_text"]

log = logging.getLogger("analytics.collector")
_MAX_LIMIT = 2**63 - 1  # SQLite's largest integer; a larger limit means "all"

# The physical schema, its dedupe and the migration of old files are in ._schema.
# The live debugger's reads (placeholders written "?", replaced by each store's own):
_TAIL = "SELECT seq, write_key, type, body FROM events WHERE seq > ? ORDER BY seq LIMIT ?"
_TYPE_COUNTS = "SELECT type, count(*) FROM events WHERE seq > ? AND seq <= ? GROUP BY type"


class StoreError(Exception):
    """Writing failed (disk full, database locked, I/O error); nothing of the write was kept."""


class Store(Protocol):
    """What the collector needs from a store. ``write`` is called from one thread only."""

    def write(self, batches: Sequence[Sequence[Message]]) -> list[int]:
        """Store every batch in one transaction; return the new messages per batch.

        Each store maps the store-neutral messages to its own rows; duplicates by (write key,
        messageId), within the call or already stored, are not stored again.

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

    def iter_events(
        self,
        type: str | None = None,
        user_id: str | None = None,
        event: str | None = None,
        since: datetime | str | None = None,
        limit: int | None = None,
    ) -> Iterator[dict[str, Any]]:
        """:meth:`events` one message at a time (``analytics events`` streams them)."""
        ...

    def count(self) -> int:
        """Number of stored messages."""
        ...

    def health(self) -> dict[str, Any]:
        """``{"store": kind, ..., "reachable": bool}`` for ``/health`` (may block briefly)."""
        ...

    def close(self) -> None:
        """Release the write side; reads keep working."""
        ...


def _configure(conn: sqlite3.Connection) -> None:
    """The writer connection's settings."""
    # 16 KiB pages (only effective when the file is created) and a 64 MiB cache
    # make inserts into the dedupe index about a quarter faster (measured).
    conn.execute("PRAGMA page_size=16384")
    conn.execute("PRAGMA cache_size=-65536")
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    # Checkpoints run on their own thread, not inside our COMMITs (._checkpoint).
    conn.execute("PRAGMA wal_autocheckpoint=0")
    # A rewound WAL is truncated back to 64 MiB (disk use after a burst).
    conn.execute("PRAGMA journal_size_limit=67108864")


def since_text(since: datetime | str) -> str:
    """``since`` as the stores' UTC text form (...Z), parsed first when it is a string."""
    moment = parse_timestamp(since) if isinstance(since, str) else since
    return format_timestamp(moment)


class StoreReads:
    """The read methods both stores share, over their own ``_query`` and placeholder.

    Subclasses set ``_mark`` (the driver's parameter placeholder), ``_kind`` (``/health``'s
    store name), ``_errors`` (what ``_query`` raises when the database cannot be read) and
    implement ``_query``, ``_decode`` (a stored body to a dict) and ``_where`` (its name).
    """

    _mark = "?"
    _kind = ""
    _errors: tuple[type[Exception], ...] = ()

    def _query(self, sql: str, params: Sequence[Any]) -> list[Any]:
        raise NotImplementedError

    def _decode(self, body: Any) -> dict[str, Any]:
        raise NotImplementedError

    def _where(self) -> str:
        raise NotImplementedError

    def events(
        self,
        type: str | None = None,
        user_id: str | None = None,
        event: str | None = None,
        since: datetime | str | None = None,
        limit: int | None = None,
    ) -> list[dict[str, Any]]:
        """Stored messages, oldest first (newest last).

        Args:
            type: only messages of this type.
            user_id: only messages with this ``userId``.
            event: only track messages with this ``event``.
            since: only messages received at or after this time (``receivedAt``).
            limit: keep only the newest ``limit`` messages (still returned oldest first).
        """
        return list(self.iter_events(type, user_id, event, since, limit))

    def iter_events(
        self,
        type: str | None = None,
        user_id: str | None = None,
        event: str | None = None,
        since: datetime | str | None = None,
        limit: int | None = None,
    ) -> Iterator[dict[str, Any]]:
        """:meth:`events`, one message at a time: memory stays flat however many match
        (``analytics events`` without ``--limit`` on a large database)."""
        mark = self._mark
        where: list[str] = []
        params: list[Any] = []
        for column, value in (("type", type), ("user_id", user_id), ("event", event)):
            if value is not None:
                where.append(f"{column} = {mark}")
                params.append(value)
        if since is not None:
            where.append(f"received_at >= {mark}")
            params.append(since_text(since))
        sql = "SELECT seq, body FROM events"
        if where:
            sql += " WHERE " + " AND ".join(where)
        if limit is not None:
            # Only constant column names are in ``sql``; every value is a parameter.
            sql = f"SELECT seq, body FROM ({sql} ORDER BY seq DESC LIMIT {mark}) AS newest"  # noqa: S608
            params.append(max(0, min(int(limit), _MAX_LIMIT)))
        for _seq, body in self._stream(sql + " ORDER BY seq", params):
            yield self._decode(body)

    def _stream(self, sql: str, params: Sequence[Any]) -> Iterator[Any]:
        """The rows of ``sql``; a store that can fetch them lazily overrides this."""
        yield from self._query(sql, params)

    def count(self) -> int:
        """Number of stored messages."""
        return int(self._query("SELECT count(*) FROM events", ())[0][0])

    def message_ids(self) -> list[str]:
        """Every stored ``messageId``, oldest first."""
        return [str(m) for (m,) in self._query("SELECT message_id FROM events ORDER BY seq", ())]

    def last_seq(self) -> int:
        """The ``seq`` of the newest stored message, 0 when empty (with SQLite also how many
        are stored: rows are never deleted)."""
        return int(self._query("SELECT coalesce(max(seq), 0) FROM events", ())[0][0])

    def tail(self, after: int, limit: int) -> list[tuple[int, str, str, Any]]:
        """Up to ``limit`` messages stored after ``after``, oldest first, as ``(seq, write_key,
        type, body)``: what the live debugger reads, from any process (a range scan on seq)."""
        sql = _TAIL.replace("?", self._mark)
        return [tuple(row) for row in self._query(sql, (after, limit))]

    def type_counts(self, after: int, upto: int) -> dict[str, int]:
        """Messages per type with ``after < seq <= upto`` (the debugger's skipped ranges)."""
        sql = _TYPE_COUNTS.replace("?", self._mark)
        return {kind: int(n) for kind, n in self._query(sql, (after, upto))}

    def health(self) -> dict[str, Any]:
        """The store kind, the database (never a password), and whether it can be read now."""
        try:
            self._query("SELECT 1", ())
            reachable = True
        except self._errors:
            reachable = False
        return {"store": self._kind, "database": self._where(), "reachable": reachable}


class SQLiteStore(StoreReads):
    """The embedded store: one SQLite file in WAL mode, ``synchronous=NORMAL``.

    Args:
        path: the database file; created with its schema unless ``readonly``.
        busy_timeout: seconds a write or read waits for a lock before failing.
        readonly: open for reading only (``analytics events``); the file must exist.
        checkpoint_rows: wake the checkpoint thread after this many new rows (._checkpoint).
        max_wal_frames: the writer checkpoints inline when the WAL has more uncheckpointed
            frames than this (the checkpoint thread fell behind).
        write_lock: a lock shared by the stores of several processes writing the same file
            (``analytics serve --workers``), held for each transaction, so they take turns
            without SQLite's busy-wait sleeps.

    Thread-safety: :meth:`write` and :meth:`close` belong to one thread (the collector's
    writer); the read methods open their own short-lived connection and are safe anywhere.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        busy_timeout: float = 5.0,
        readonly: bool = False,
        checkpoint_rows: int = 5_000,
        max_wal_frames: int = 4096,
        write_lock: AbstractContextManager[Any] | None = None,
    ) -> None:
        self.path = Path(path)
        self._write_lock = write_lock
        self.busy_timeout = busy_timeout
        self._checkpoint_rows = checkpoint_rows
        self._max_wal_frames = max_wal_frames
        self._readonly = readonly
        self._conn: sqlite3.Connection | None = None
        self._checkpointer: Checkpointer | None = None
        self._lock = threading.Lock()
        self._rows = RowMaker()
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
                try:
                    check_schema(conn)  # before any PRAGMA changes a file that is not ours
                    _configure(conn)
                    prepare_schema(conn)
                except (SchemaError, sqlite3.Error):
                    conn.close()
                    raise
                self._conn = conn
                self._checkpointer = Checkpointer(
                    self.path,
                    busy_timeout=self.busy_timeout,
                    every_rows=self._checkpoint_rows,
                    max_wal_frames=self._max_wal_frames,
                )
            return self._conn

    def write(self, batches: Sequence[Sequence[Message]]) -> list[int]:
        """Insert all batches in one transaction (one commit); return new rows per batch.

        The rows (with their dedupe hash, :mod:`._schema`) are built before the shared write
        lock is taken, so other processes' transactions do not wait for it.

        Raises:
            StoreError: any SQLite error; the transaction is rolled back.
        """
        rows = [self._rows.rows(messages) for messages in batches]
        if self._write_lock is None:
            return self._transaction(rows)
        with self._write_lock:
            return self._transaction(rows)

    def _transaction(self, batches: Sequence[Sequence[Row]]) -> list[int]:
        try:
            conn = self._writer()
            conn.execute("BEGIN IMMEDIATE")
            counts = []
            for rows in batches:
                counts.append(insert_rows(conn, rows))
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            self._rollback()
            raise StoreError(f"{type(exc).__name__}: {exc}") from exc
        self._after_commit(conn, sum(counts))
        return counts

    def _after_commit(self, conn: sqlite3.Connection, rows: int) -> None:
        """Wake the checkpointer; checkpoint inline when it fell too far behind."""
        checkpointer = self._checkpointer
        if checkpointer is None:
            return
        checkpointer.committed(rows)
        if checkpointer.behind():
            try:
                checkpointer.caught_up(checkpoint(conn), rewinds=True)
            except sqlite3.Error as exc:  # committed already: the data is safe in the WAL
                log.warning("collector WAL checkpoint failed (retried later): %s", exc)

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
            checkpointer, self._checkpointer = self._checkpointer, None
        if checkpointer is not None:
            checkpointer.stop()
        if conn is not None:
            conn.close()

    def _reader(self) -> sqlite3.Connection:
        uri = self.path.resolve().as_uri() + "?mode=ro"
        return sqlite3.connect(uri, uri=True, timeout=self.busy_timeout)

    _kind = "sqlite"
    _errors = (sqlite3.Error,)

    def _decode(self, body: Any) -> dict[str, Any]:
        decoded: dict[str, Any] = orjson.loads(body)
        return decoded

    def _where(self) -> str:
        return str(self.path)

    def _query(self, sql: str, params: Sequence[Any]) -> list[Any]:
        conn = self._reader()
        try:
            return conn.execute(sql, params).fetchall()
        finally:
            conn.close()

    def _stream(self, sql: str, params: Sequence[Any]) -> Iterator[Any]:
        """Rows one at a time from the cursor; an empty file has none, a file that is not
        ours is refused (:class:`SchemaError`)."""
        conn = self._reader()
        try:
            if check_schema(conn) == 0:
                return
            yield from conn.execute(sql, params)
        finally:
            conn.close()

    def close(self) -> None:
        """Close the write connection (idempotent). Reads keep working afterwards."""
        self._drop_writer()
