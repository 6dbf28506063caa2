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
    event_keys(key uuid PRIMARY KEY,              -- dedupe_key(write key, messageId)
               received_at timestamptz)           -- when its first copy came; BRIN-indexed

Why a separate key table: a unique index of a partitioned table must contain the partition key,
so ``events`` cannot be unique on (write key, messageId) across days. ``event_keys`` is that
unique index, enforced by PostgreSQL for every collector at once; the store inserts a message's
key and its event in one transaction (:mod:`._pg`). Retention drops whole ``events`` partitions
and deletes the keys of the same days (a narrow table; a BRIN index finds them by time).

The key is a 128-bit BLAKE2b digest of the write key and the messageId (:func:`dedupe_key`),
not the two texts: a fixed 16-byte ``uuid`` compares by ``memcmp`` and makes a key row a third
of the size, which cut PostgreSQL's CPU per stored message from 15.2 to 12.6 µs (measured with
the benchmark's messages; the texts, with ``COLLATE "C"``, were the primary key before). Any
length of write key or id fits (a B-tree entry over ~2.7 kB would fail the insert, and one such
message the whole group commit). Two different messages share a key with probability about
n²/2¹²⁹ (10¹² messages: 10⁻¹⁵); BLAKE2b has no known way to make one on purpose.

No other indexed value can be made too long by a client: ``user_id`` has a hash index (4 bytes
an entry; equality lookups, which a user's timeline needs), and ``seq`` is ours.

Migrations run under a transaction-level advisory lock, so collectors starting together on
several hosts migrate once; a database whose version is newer than :data:`SCHEMA_VERSION` is
refused. Names are unqualified: the objects live in the first schema of the ``search_path``.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta, timezone
from hashlib import blake2b

import psycopg
from psycopg.rows import TupleRow

from analytics.collector._store import StoreError

__all__ = [
    "LOCK_KEY",
    "SCHEMA_VERSION",
    "SchemaTooNew",
    "dedupe_key",
    "drop_days_before",
    "ensure_days",
    "migrate",
    "partition_name",
    "schema_version",
]

SCHEMA_VERSION = 1
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
            key uuid PRIMARY KEY,
            received_at timestamptz NOT NULL
        )""",
        "CREATE INDEX event_keys_received_idx ON event_keys USING brin (received_at)",
    ),
}


def dedupe_key(write_key: str, message_id: str) -> bytes:
    """The ``event_keys.key`` of a message: 16 bytes (see the module docstring).

    The write key's length goes first, so no (write key, id) pair can spell another's bytes.
    """
    data = f"{len(write_key)}:{write_key}{message_id}".encode("utf-8", "surrogatepass")
    return blake2b(data, digest_size=16).digest()


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
