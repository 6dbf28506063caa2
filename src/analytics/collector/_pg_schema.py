"""The PostgreSQL schema of the collector's store: versioned migrations, day partitions, retention.

Schema 1::

    analytics_schema(version int)                 -- one row: the schema version
    events(seq bigint,                            -- arrival order (a shared sequence)
           write_key, message_id, type, user_id, anonymous_id, event text,
           timestamp timestamptz,                 -- corrected client time
           received_at timestamptz,               -- collector clock; the partition key
           body jsonb)                            -- the whole stored message
        PARTITION BY RANGE (received_at)          -- one partition a UTC day: events_YYYYMMDD
        indexes: (seq), hash (user_id)
    event_keys(write_key, message_id, received_at) PRIMARY KEY (write_key, message_id)

Why a separate key table: a unique index of a partitioned table must contain the partition key,
so ``events`` cannot be unique on (write key, messageId) across days. ``event_keys`` is that
unique index, enforced by PostgreSQL for every collector at once; the store inserts a message's
key and its event in one statement (:mod:`._pg`). Retention drops whole ``events`` partitions
and deletes the keys of the same days (a narrow table; a BRIN index finds them by time).

No indexed value can be made too long by a client: a B-tree entry over ~2.7 kB fails the
insert, and one such message would fail the whole group commit (503 for every request in it,
again at each retry). So ``user_id`` has a hash index (4 bytes an entry; equality lookups, which
a user's timeline needs), messageIds are at most 100 characters (validation), and a write key
longer than :data:`MAX_KEY_CHARS` is kept in ``event_keys`` as ``sha256:`` and its digest
(:func:`key_column`; ``events`` holds it whole). An index on ``md5(write_key)`` instead cost
PostgreSQL 1.5 µs more CPU a message (measured).

Migrations run under a transaction-level advisory lock, so collectors starting together on
several hosts migrate once; a database whose version is newer than :data:`SCHEMA_VERSION` is
refused. Names are unqualified: the objects live in the first schema of the ``search_path``.
"""

from __future__ import annotations

import hashlib
from datetime import date, datetime, time, timedelta, timezone

import psycopg
from psycopg.rows import TupleRow

from analytics.collector._store import StoreError

__all__ = [
    "LOCK_KEY",
    "SCHEMA_VERSION",
    "SchemaTooNew",
    "drop_days_before",
    "ensure_days",
    "key_column",
    "migrate",
    "partition_name",
    "schema_version",
]

SCHEMA_VERSION = 1
#: Write keys up to this length are their own dedupe key; longer ones go by their SHA-256.
MAX_KEY_CHARS = 256
Conn = psycopg.Connection[TupleRow]
#: The advisory lock key of schema changes ('anlt' as an integer): migrations and partitions.
LOCK_KEY = 0x616E6C74

_MIGRATIONS: dict[int, tuple[str, ...]] = {
    1: (
        "CREATE TABLE analytics_schema (version integer NOT NULL)",
        "INSERT INTO analytics_schema VALUES (0)",
        "CREATE SEQUENCE events_seq AS bigint",
        """CREATE TABLE events (
            seq bigint NOT NULL DEFAULT nextval('events_seq'),
            write_key text NOT NULL,
            message_id text NOT NULL,
            type text NOT NULL,
            user_id text,
            anonymous_id text,
            event text,
            timestamp timestamptz NOT NULL,
            received_at timestamptz NOT NULL,
            body jsonb NOT NULL
        ) PARTITION BY RANGE (received_at)""",
        "CREATE INDEX events_seq_idx ON events (seq)",
        "CREATE INDEX events_user_idx ON events USING hash (user_id)",
        """CREATE TABLE event_keys (
            write_key text COLLATE "C" NOT NULL,
            message_id text COLLATE "C" NOT NULL,
            received_at timestamptz NOT NULL,
            PRIMARY KEY (write_key, message_id)
        )""",
        "CREATE INDEX event_keys_received_idx ON event_keys USING brin (received_at)",
    ),
}


def key_column(write_key: str) -> str:
    """The ``event_keys.write_key`` of a write key (see the module docstring)."""
    if len(write_key) <= MAX_KEY_CHARS:
        return write_key
    digest = hashlib.sha256(write_key.encode("utf-8", "surrogatepass")).hexdigest()
    return f"sha256:{digest}"


class SchemaTooNew(StoreError):
    """The database has a newer collector schema than this version understands."""


def schema_version(conn: Conn) -> int:
    """The database's collector schema version; 0 when it has none yet."""
    row = conn.execute("SELECT to_regclass('analytics_schema') IS NOT NULL").fetchone()
    if row is None or not row[0]:
        return 0
    found = conn.execute("SELECT max(version) FROM analytics_schema").fetchone()
    return int(found[0]) if found is not None and found[0] is not None else 0


def check_version(version: int) -> None:
    """Raise :class:`SchemaTooNew` for a version above :data:`SCHEMA_VERSION`."""
    if version > SCHEMA_VERSION:
        raise SchemaTooNew(
            f"the database has collector schema {version}; this version knows up to "
            f"{SCHEMA_VERSION} (upgrade analytics)"
        )


def migrate(conn: Conn) -> int:
    """Bring the schema to :data:`SCHEMA_VERSION` (one transaction, under the advisory lock).

    Returns the version found before migrating.

    Raises:
        SchemaTooNew: the database is newer than this collector.
    """
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (LOCK_KEY,))
        found = schema_version(conn)
        check_version(found)
        for version in range(found + 1, SCHEMA_VERSION + 1):
            for statement in _MIGRATIONS[version]:
                conn.execute(statement)
            conn.execute("UPDATE analytics_schema SET version = %s", (version,))
    return found


def partition_name(day: date) -> str:
    """The partition holding the events received on ``day`` (UTC)."""
    return f"events_{day:%Y%m%d}"


def _midnight(day: date) -> datetime:
    return datetime.combine(day, time(), tzinfo=timezone.utc)


def _existing(conn: Conn) -> set[str]:
    """The names of the partitions of ``events``."""
    rows = conn.execute(
        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
        " WHERE i.inhparent = to_regclass('events')"
    ).fetchall()
    return {str(name) for (name,) in rows}


def ensure_days(conn: Conn, days: set[date]) -> None:
    """Create the partitions of ``days`` that do not exist yet (under the advisory lock)."""
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (LOCK_KEY,))
        existing = _existing(conn)
        for day in sorted(days):
            name = partition_name(day)
            if name in existing:
                continue
            start, end = _midnight(day), _midnight(day + timedelta(days=1))
            conn.execute(
                psycopg.sql.SQL(
                    "CREATE TABLE {} PARTITION OF events FOR VALUES FROM ({}) TO ({})"
                ).format(
                    psycopg.sql.Identifier(name),
                    psycopg.sql.Literal(start),
                    psycopg.sql.Literal(end),
                )
            )


def drop_days_before(conn: Conn, first_kept: date) -> list[str]:
    """Drop the partitions of days before ``first_kept`` and their dedupe keys.

    Returns the dropped partitions' names. Whole partitions go (no row-by-row DELETE of
    events); the keys of those days are deleted from ``event_keys`` in the same transaction,
    so a message is deduplicated for as long as its event is kept.
    """
    cutoff = _midnight(first_kept)
    dropped = []
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (LOCK_KEY,))
        for name in sorted(_existing(conn)):
            day = _day_of(name)
            if day is not None and day < first_kept:
                conn.execute(psycopg.sql.SQL("DROP TABLE {}").format(psycopg.sql.Identifier(name)))
                dropped.append(name)
        conn.execute("DELETE FROM event_keys WHERE received_at < %s", (cutoff,))
    return dropped


def _day_of(name: str) -> date | None:
    try:
        return datetime.strptime(name, "events_%Y%m%d").date()
    except ValueError:
        return None
