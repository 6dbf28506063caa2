"""The PostgreSQL store: any number of collectors, on any number of hosts, share one database.

Write path (a group commit, one transaction a call): the keys (:func:`._pg_schema.dedupe_key`)
of the first copy of each message of the call are ``COPY``-ed into ``event_keys``, then the
messages into the day-partitioned ``events`` (schema in :mod:`._pg_schema`). The primary key
of ``event_keys`` is what deduplicates: when a key is already there (a retry) or being inserted
by another transaction (another collector, the same messageIds at the same moment: PostgreSQL
makes the second wait for the first's commit), the key ``COPY`` fails with a unique violation;
it is rolled back to a savepoint and the keys go in again with ``INSERT ... ON CONFLICT DO
NOTHING RETURNING``, which says which are new. Keys are written in sorted order, so two such
transactions never deadlock on each other's keys. Retries are rare, so the common case pays for
one ``COPY`` of 16-byte keys (measured with the benchmark's messages: PostgreSQL's CPU per
message 13.7 µs, against 15.2 µs for the ``INSERT ... ON CONFLICT`` alone).

Two writer threads (:attr:`PostgresStore.writers`), each with its connection: while one
transaction copies its events or waits for its commit (the WAL flush), the other builds its
data and copies its keys. They take turns to copy events (one at a time, under a lock: that is
where ``seq`` is drawn) and commit in the same order, so ``seq`` order is still commit order
within one collector (the debugger's feed reads by ``seq``). No deadlock: a transaction waits
for its turn only after all its key locks are taken, and only for turns whose copies are done.

Why not COPY into a staging table and one ``INSERT ... SELECT`` from it: measured with the
benchmark's 500-event batches, that path cost PostgreSQL 21.5 µs of CPU an event (the rows
are parsed, stored, sorted and copied twice) and reached 0.32x of the COPY floor.

Failures: any driver error rolls the transaction back and becomes a :class:`StoreError` (the
collector answers 503 + ``Retry-After``); a broken connection is dropped and the next write
connects again, so the collector recovers by itself once PostgreSQL is back. A commit whose
outcome is unknown (the connection died during COMMIT) is reported as a failure: the client
retries and the key table makes the retry a duplicate.

The data of both ``COPY`` commands is built by :mod:`._pg_copy`, before the copy turn.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Iterator, Sequence
from datetime import date, datetime, timedelta, timezone
from typing import Any
from uuid import UUID

import orjson
import psycopg
from psycopg.types.json import set_json_loads

from analytics.collector._db import check_retention, redact, scrub
from analytics.collector._pg_copy import (
    COPY_EVENTS,
    COPY_KEYS,
    Firsts,
    event_data,
    first_copies,
    key_data,
)
from analytics.collector._pg_schema import (
    Conn,
    SchemaTooNew,
    check_version,
    drop_days_before,
    ensure_days,
    migrate,
    schema_version,
)
from analytics.collector._store import StoreError, StoreReads
from analytics.collector._validated import Message

__all__ = ["PostgresStore", "SchemaTooNew"]

log = logging.getLogger("analytics.collector")


#: After a unique violation. ``%b``: the arrays go in binary, which psycopg dumps 5x faster
#: than text (no quoting).
_INSERT_KEYS = """INSERT INTO event_keys (key, received_at)
SELECT * FROM unnest(%b::uuid[], %b::text[]::timestamptz[])
ON CONFLICT DO NOTHING
RETURNING key"""
#: Seconds between two retention passes of a long-running collector.
RETENTION_INTERVAL = 3600.0


def _utcnow() -> datetime:
    return datetime.now(timezone.utc)


def _store_keys(conn: Conn, keys: list[bytes], firsts: Firsts) -> set[bytes] | None:
    """Insert the keys (sorted: every transaction takes its key locks in one order, uuid
    order) after the savepoint ``keys``; the new ones, or None when all of them are new."""
    try:
        with conn.cursor().copy(COPY_KEYS) as copy:
            copy.write(key_data(keys, firsts))
    except psycopg.errors.UniqueViolation:
        conn.execute("ROLLBACK TO SAVEPOINT keys")
        uuids = [UUID(bytes=key) for key in keys]
        stamps = [firsts[key][1].received_at for key in keys]
        return {k.bytes for (k,) in conn.execute(_INSERT_KEYS, (uuids, stamps)).fetchall()}
    return None


class _Turns:
    """Transactions commit in the order they took their turn to copy (see the module
    docstring). A turn that failed is over at once; later turns then go on."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._next = 0
        self._first_open = 0  # every turn below it is over
        self._over: set[int] = set()

    def take(self) -> int:
        with self._cond:
            turn, self._next = self._next, self._next + 1
            return turn

    def wait(self, turn: int, timeout: float | None = None) -> bool:
        """Until every earlier turn is over (True), or ``timeout`` seconds (False)."""
        with self._cond:
            return self._cond.wait_for(lambda: self._first_open == turn, timeout)

    def end(self, turn: int) -> None:
        with self._cond:
            self._over.add(turn)
            while self._first_open in self._over:
                self._over.remove(self._first_open)
                self._first_open += 1
            self._cond.notify_all()


class PostgresStore(StoreReads):
    """The shared store: one PostgreSQL database, schema in :mod:`._pg_schema`.

    Args:
        url: a ``postgresql://`` URL (libpq's; ``PGPASSWORD`` and ``~/.pgpass`` work).
        readonly: only read (``analytics events``): no schema change; the schema must exist.
        retention_days: keep the events received in the last N days (UTC days, today
            included); older partitions are dropped at start and every hour. None keeps all.
        connect_timeout: seconds to wait for a connection (writes fail with 503 after it).
        clock: the current time (retention uses it; tests inject one).

    Raises:
        StoreError: the server cannot be reached, or (readonly) there is no collector schema.
        SchemaTooNew: the database was migrated by a newer collector.

    Thread-safety: :meth:`write` may be called from :attr:`writers` threads at once (each gets
    its own connection); :meth:`close` after they stopped. The read methods open their own
    connection and are safe anywhere.
    """

    #: Writer threads the collector runs for this store (see the module docstring).
    writers = 2

    def __init__(
        self,
        url: str,
        *,
        readonly: bool = False,
        retention_days: int | None = None,
        connect_timeout: float = 5.0,
        clock: Any = _utcnow,
    ) -> None:
        check_retention(url, retention_days)
        self.url = url
        self.retention_days = retention_days
        self._connect_timeout = connect_timeout
        self._clock = clock
        self._readonly = readonly
        self._local = threading.local()  # .conn: this writer thread's connection
        self._conns: set[Conn] = set()  # every writer thread's, for close()
        self._conns_lock = threading.Lock()
        self._copying = threading.Lock()  # one transaction copies at a time
        self._turns = _Turns()
        self._health_conn: Conn | None = None
        self._health_lock = threading.Lock()
        self._days: set[str] = set()
        self._stop = threading.Event()
        self._retention: threading.Thread | None = None
        try:
            with self._connect() as conn:
                version = schema_version(conn) if readonly else migrate(conn)
        except psycopg.Error as exc:
            raise StoreError(self._describe(exc)) from None
        if readonly and version == 0:
            raise StoreError(f"no collector schema in {redact(url)} (start analytics serve)")
        check_version(version)
        if not readonly and retention_days is not None:
            self.apply_retention()
            self._retention = threading.Thread(
                target=self._retain, name="analytics-collector-retention", daemon=True
            )
            self._retention.start()

    def __repr__(self) -> str:
        return f"PostgresStore({redact(self.url)!r})"

    # -- connections ------------------------------------------------------------------------

    def _connect(self) -> Conn:
        try:
            conn = psycopg.connect(
                self.url,
                autocommit=True,
                connect_timeout=max(1, round(self._connect_timeout)),
                application_name="analytics-collector",
            )
        except psycopg.Error as exc:
            raise StoreError(self._describe(exc)) from None
        set_json_loads(orjson.loads, conn)
        return conn

    def _describe(self, exc: BaseException) -> str:
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        return scrub(f"PostgreSQL {redact(self.url)}: {type(exc).__name__}: {text}", self.url)

    def _writer(self) -> Conn:
        """This thread's writer connection, connected again when it broke."""
        conn: Conn | None = getattr(self._local, "conn", None)
        if conn is not None and not conn.closed and not conn.broken:
            return conn
        if self._readonly:
            raise StoreError("the store was opened read-only")
        self._drop_writer()
        conn = self._connect()
        with self._conns_lock:
            self._conns.add(conn)
        self._local.conn = conn
        return conn

    def _drop_writer(self) -> None:
        """Close this thread's writer connection."""
        conn, self._local.conn = getattr(self._local, "conn", None), None
        if conn is not None:
            with self._conns_lock:
                self._conns.discard(conn)
            conn.close()

    # -- writing ----------------------------------------------------------------------------

    def write(self, batches: Sequence[Sequence[Message]]) -> list[int]:
        """Store every batch in one transaction; return the new messages per batch.

        Raises:
            StoreError: the transaction was rolled back (or its outcome is unknown).
        """
        counts = [0] * len(batches)
        firsts = first_copies(batches)
        if not firsts:
            return counts
        keys = sorted(firsts)
        events = event_data(m for _, m in firsts.values())  # before the turn: see _pg_copy
        turn: int | None = None
        conn: Conn | None = None
        try:
            conn = self._writer()
            self._ensure_partitions(conn, firsts.values())
            conn.execute("BEGIN; SAVEPOINT keys")  # one round trip (no parameters)
            new = _store_keys(conn, keys, firsts)
            if new is not None:  # some were stored before: copy only the others
                events = event_data(m for k, (_, m) in firsts.items() if k in new)
            with self._copying:  # seq (nextval) is drawn here: commits follow this order
                turn = self._turns.take()
                with conn.cursor().copy(COPY_EVENTS) as copy:
                    copy.write(events)
            self._turns.wait(turn)
            conn.execute("COMMIT")
        except psycopg.Error as exc:
            self._abandon(conn)
            raise StoreError(self._describe(exc)) from None
        except BaseException:
            self._abandon(conn)  # never leave a transaction open for the next write
            raise
        finally:
            if turn is not None:
                self._turns.end(turn)
        for key, (number, _) in firsts.items():
            if new is None or key in new:
                counts[number] += 1
        return counts

    def _abandon(self, conn: Conn | None) -> None:
        """After a failed write: roll back, or drop a connection that broke."""
        if conn is None:
            return
        if not conn.broken and not conn.closed:
            try:
                conn.rollback()
                return
            except psycopg.Error:
                pass
        self._drop_writer()

    def _ensure_partitions(self, conn: Conn, firsts: Iterable[tuple[int, Message]]) -> None:
        """Create the day partitions these messages need that this process has not seen.

        Both writer threads may create the same day at once: :func:`ensure_days` holds the
        schema's advisory lock and skips a partition that exists."""
        days = {m.received_at[:10] for _, m in firsts} - self._days
        if days:
            ensure_days(conn, {date.fromisoformat(day) for day in days})
            self._days |= days

    # -- retention --------------------------------------------------------------------------

    def apply_retention(self) -> list[str]:
        """Drop the partitions (and keys) older than ``retention_days``; return their names."""
        if self.retention_days is None:
            return []
        first_kept = self._clock().date() - timedelta(days=self.retention_days - 1)
        with self._connect() as conn:
            dropped = drop_days_before(conn, first_kept)
        if dropped:
            log.info("collector retention dropped %s", ", ".join(dropped))
        self._days = {d for d in self._days if date.fromisoformat(d) >= first_kept}
        return dropped

    def _retain(self) -> None:
        while not self._stop.wait(RETENTION_INTERVAL):
            try:
                self.apply_retention()
            except (StoreError, psycopg.Error) as exc:
                log.warning("collector retention failed (retried later): %s", exc)

    # -- reading ----------------------------------------------------------------------------

    _mark = "%s"
    _kind = "postgresql"
    _errors = (StoreError,)

    def _decode(self, body: Any) -> dict[str, Any]:
        """Bodies come back from ``jsonb`` already decoded: the same values, keys in
        PostgreSQL's order."""
        decoded: dict[str, Any] = body
        return decoded

    def _where(self) -> str:
        return redact(self.url)

    def _query(self, sql: str, params: Sequence[Any]) -> list[Any]:
        try:
            with self._connect() as conn:
                rows: list[Any] = conn.execute(sql, params).fetchall()
                return rows
        except psycopg.Error as exc:
            raise StoreError(self._describe(exc)) from None

    def _stream(self, sql: str, params: Sequence[Any]) -> Iterator[Any]:
        """Rows through a server-side cursor, 2,000 at a time: ``analytics events`` on a large
        database keeps its memory flat."""
        try:
            with (
                self._connect() as conn,
                conn.transaction(),
                conn.cursor(name="analytics_events") as cursor,
            ):
                cursor.itersize = 2000
                cursor.execute(sql, params)
                yield from cursor
        except psycopg.Error as exc:
            raise StoreError(self._describe(exc)) from None

    def health(self) -> dict[str, Any]:
        """:meth:`StoreReads.health` over one kept connection (``/health`` and the metrics
        sampler ask every second; a new connection each time would fork a backend each time);
        a connection that failed is replaced at once, so only a server that refuses a new one
        is reported unreachable."""
        with self._health_lock:
            reachable = self._ping() or self._ping()  # a kept connection may have gone stale
        return {"store": self._kind, "database": self._where(), "reachable": reachable}

    def _ping(self) -> bool:
        try:
            if self._health_conn is None or self._health_conn.broken:
                self._health_conn = self._connect()
            self._health_conn.execute("SELECT 1")
        except (StoreError, psycopg.Error):
            self._close_health()
            return False
        return True

    def _close_health(self) -> None:
        conn, self._health_conn = self._health_conn, None
        if conn is not None:
            conn.close()

    def close(self) -> None:
        """Close the connections and stop retention (idempotent). Reads keep working."""
        self._stop.set()
        with self._conns_lock:
            conns, self._conns = self._conns, set()
        for conn in conns:
            conn.close()
        with self._health_lock:
            self._close_health()
