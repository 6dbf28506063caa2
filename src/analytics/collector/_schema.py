"""The SQLite schema of the collector's store, its exact hash dedupe, and the v1 migration.

Schema 2 (``PRAGMA user_version = 2``)::

    events(seq INTEGER PRIMARY KEY,       -- arrival order
           dedupe INTEGER NOT NULL,        -- 64-bit hash of (write_key, message_id), see below
           write_key, message_id, type, user_id, event,
           received_at,                    -- collector clock, UTC, ...Z
           body)                           -- the stored message, compact JSON text
    UNIQUE INDEX events_dedupe ON events(dedupe)

Why a hash: schema 1 had a unique index on the two TEXT columns (≈ 60 bytes an entry, random
UUIDs). Every group commit then rewrote most leaf pages of that index (a random key lands on a
random page), so the WAL, the checkpoints and the cost per row grew with the table: 26 µs a row
for the first 100,000 rows, 61 µs for the third 100,000 (measured, 2,000-row commits). An
8-byte integer key makes the index ~5x smaller: 12.5 and 22 µs. Columns only the body needs
(``anonymous_id``, ``timestamp``) are no longer copied out of it.

Dedupe stays exact: ``dedupe`` is a hint, the full (write key, messageId) pair is in the row.
Rows are inserted with ``INSERT OR IGNORE``; when a statement adds fewer rows than it was given,
each ignored row is checked against the row holding its key: the same pair is a duplicate; a
different pair is a hash collision, and the row is stored under the next free key (linear
probing; rows are never deleted, so a later copy of it probes the same way and is found).

Schema 1 files are migrated when opened for writing (rows copied in order, one transaction);
read-only opens read either version (the columns the reads use exist in both).
"""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Callable, Sequence
from itertools import chain

from analytics.collector._validated import Message

__all__ = [
    "SCHEMA_VERSION",
    "RowMaker",
    "SchemaError",
    "check_schema",
    "dedupe_key",
    "dedupe_keyer",
    "insert_rows",
    "prepare_schema",
]

SCHEMA_VERSION = 2

#: The columns as inserted: dedupe (:func:`dedupe_key` of the next two), write_key,
#: message_id, type, user_id, event, received_at, body.
Row = tuple[int, str, str, str, str | None, str | None, str, str]

_TABLE = """CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY,
    dedupe INTEGER NOT NULL,
    write_key TEXT NOT NULL,
    message_id TEXT NOT NULL,
    type TEXT NOT NULL,
    user_id TEXT,
    event TEXT,
    received_at TEXT NOT NULL,
    body TEXT NOT NULL
)"""
_INDEX = "CREATE UNIQUE INDEX IF NOT EXISTS events_dedupe ON events(dedupe)"
_INSERT = (
    "INSERT OR IGNORE INTO events"
    " (dedupe, write_key, message_id, type, user_id, event, received_at, body) VALUES "
)
_MIGRATE_INSERT = (
    "INSERT OR IGNORE INTO events"
    " (seq, dedupe, write_key, message_id, type, user_id, event, received_at, body)"
    " VALUES (?,?,?,?,?,?,?,?,?)"
)
_TABLES = "SELECT name FROM sqlite_master WHERE type = 'table'"
_HOLDERS = "SELECT dedupe, write_key, message_id FROM events WHERE dedupe IN "
_PLACEHOLDERS = "(?,?,?,?,?,?,?,?)"
# Rows per INSERT statement: 1,024 rows x 8 columns stays under SQLite's 32,766 variables.
ROWS_PER_STATEMENT = 1024
_MAX_PROBES = 64
_INT64 = 1 << 64


class SchemaError(ValueError):
    """The file is not a collector database this version can use (newer schema, not ours)."""


def dedupe_key(write_key: str, message_id: str) -> int:
    """The 64-bit signed dedupe key of a (write key, messageId) pair (stable across runs)."""
    data = (write_key + "\0" + message_id).encode("utf-8", "surrogatepass")
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "big", signed=True)


def dedupe_keyer(write_key: str) -> Callable[[str], int]:
    """:func:`dedupe_key` for one write key, as a function of the messageId.

    The same values, twice as fast per message (measured 0.9 against 1.9 µs): the write key
    is hashed once and the hash state copied for each messageId.
    """
    prefix = hashlib.blake2b((write_key + "\0").encode("utf-8", "surrogatepass"), digest_size=8)
    from_bytes = int.from_bytes

    def key(message_id: str) -> int:
        state = prefix.copy()
        state.update(message_id.encode("utf-8", "surrogatepass"))
        return from_bytes(state.digest(), "big", signed=True)

    return key


class RowMaker:
    """Maps validated messages to rows, adding the dedupe key (one keyer per write key).

    At most ``max_keys`` write keys' keyers are kept (a collector that accepts any key could
    otherwise be made to keep one per key it ever saw); past that the cache starts over.
    """

    def __init__(self, max_keys: int = 256) -> None:
        self._keyers: dict[str, Callable[[str], int]] = {}
        self._max_keys = max_keys

    def rows(self, messages: Sequence[Message]) -> list[Row]:
        """The rows of ``messages``, in order. Written out inline: runs for every message."""
        keyers = self._keyers
        out: list[Row] = []
        append = out.append
        for m in messages:
            keyer = keyers.get(m.write_key)
            if keyer is None:
                if len(keyers) >= self._max_keys:
                    keyers.clear()
                keyer = keyers[m.write_key] = dedupe_keyer(m.write_key)
            append(
                (
                    keyer(m.message_id),
                    m.write_key,
                    m.message_id,
                    m.type,
                    m.user_id,
                    m.event,
                    m.received_at,
                    m.body.decode(),
                )
            )
        return out


def _insert_sql(rows: int, cache: dict[int, str] = {}) -> str:  # noqa: B006 (a cache)
    sql = cache.get(rows)
    if sql is None:
        sql = cache[rows] = _INSERT + ",".join([_PLACEHOLDERS] * rows)
    return sql


def insert_rows(conn: sqlite3.Connection, rows: Sequence[Row]) -> int:
    """Insert ``rows`` (inside the caller's transaction); return how many were new.

    Rows come with their dedupe key (computed where they are built, ``._enrich.build_row``),
    in column order, so binding is one flat list. Multi-row statements rather than
    ``executemany``: ``executemany`` steps once per row and re-takes the GIL around every
    step, which the busy event loop delays (3-10x slower, measured); a multi-row statement
    takes the GIL back once.
    """
    added = 0
    for start in range(0, len(rows), ROWS_PER_STATEMENT):
        chunk = rows[start : start + ROWS_PER_STATEMENT]
        before = conn.total_changes
        conn.execute(_insert_sql(len(chunk)), list(chain.from_iterable(chunk)))
        new = conn.total_changes - before
        if new < len(chunk):
            new += _resolve_ignored(conn, chunk)
        added += new
    return added


def _resolve_ignored(conn: sqlite3.Connection, chunk: Sequence[Row]) -> int:
    """Store the rows that were ignored only because of a hash collision; return how many."""
    keys = [row[0] for row in chunk]
    sql = _HOLDERS + "(" + ",".join("?" * len(keys)) + ")"
    holder = {key: (wk, mid) for key, wk, mid in conn.execute(sql, keys)}
    added = 0
    for row in chunk:
        if holder.get(row[0]) != (row[1], row[2]):
            added += _insert_probing(conn, row)
    return added


def _insert_probing(conn: sqlite3.Connection, row: Row) -> int:
    """Insert ``row`` under the first free key after its own; 0 when it is already there."""
    key = row[0]
    for step in range(1, _MAX_PROBES + 1):
        probe = (key + step + (1 << 63)) % _INT64 - (1 << 63)
        found = conn.execute(
            "SELECT write_key, message_id FROM events WHERE dedupe = ?", (probe,)
        ).fetchone()
        if found is None:
            conn.execute(_insert_sql(1), (probe, *row[1:]))
            return 1
        if tuple(found) == (row[1], row[2]):
            return 0
    raise sqlite3.DatabaseError(f"no free dedupe key within {_MAX_PROBES} probes")


def check_schema(conn: sqlite3.Connection) -> int:
    """The file's collector schema version (0: an empty file), refusing what is not ours.

    A SQLite file with tables but no collector schema belongs to something else: writing our
    table into it (or reading it as events) would mix two applications' data.

    Raises:
        SchemaError: not a SQLite file, a newer schema, or another application's database.
    """
    try:
        version = int(conn.execute("PRAGMA user_version").fetchone()[0])
        tables = {name for (name,) in conn.execute(_TABLES)}
    except sqlite3.DatabaseError as exc:
        if type(exc) is not sqlite3.DatabaseError:  # locked, I/O ...: not a schema problem
            raise
        raise SchemaError(f"not a SQLite database ({exc})") from None
    if version > SCHEMA_VERSION:
        raise SchemaError(
            f"the database has collector schema {version}; this version knows up to "
            f"{SCHEMA_VERSION} (upgrade analytics)"
        )
    if (version == 0 and tables) or (version > 0 and "events" not in tables):
        raise SchemaError(
            "not an analytics collector database (a SQLite file with other tables): "
            "give a new or empty file"
        )
    return version


def prepare_schema(conn: sqlite3.Connection) -> None:
    """Create the schema in a new file, migrate a schema 1 file, refuse any other file.

    Raises:
        SchemaError: see :func:`check_schema`.
    """
    version = check_schema(conn)
    if version == 1:
        _migrate_v1(conn)
        return
    conn.execute(_TABLE)
    conn.execute(_INDEX)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")


def _migrate_v1(conn: sqlite3.Connection) -> None:
    """Schema 1 -> 2 in one transaction: rows keep their order and their ``seq``."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.execute("ALTER TABLE events RENAME TO events_v1")
        conn.execute("DROP INDEX IF EXISTS events_dedupe")
        conn.execute(_TABLE)
        conn.execute(_INDEX)
        old = conn.execute(
            "SELECT seq, write_key, message_id, type, user_id, event, received_at, body"
            " FROM events_v1 ORDER BY seq"
        )
        while batch := old.fetchmany(ROWS_PER_STATEMENT):
            rows: list[Row] = [(dedupe_key(r[1], r[2]), *r[1:]) for r in batch]
            before = conn.total_changes
            conn.executemany(
                _MIGRATE_INSERT, [(r[0], *row) for r, row in zip(batch, rows, strict=True)]
            )
            if conn.total_changes - before < len(rows):
                _resolve_ignored(conn, rows)
        conn.execute("DROP TABLE events_v1")
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
