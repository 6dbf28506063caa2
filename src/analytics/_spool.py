"""The durable spool: undelivered batches kept in one SQLite file (stdlib sqlite3, WAL).

A *chunk* is the encoded messages of one future batch, already within the batch limits. The
sender appends a chunk, leases the oldest one, sends it, then acks it (deleted) or releases it
(kept for a later process). Every public method is one short transaction.

Durability window:
    `append()` returns after its COMMIT, and a committed chunk survives the process crashing,
    exiting without flush or being SIGKILLed at any instant (the commit is in the WAL file,
    which the kernel writes out even if the process dies). Such a crash loses only what the
    client had not yet appended: its memory queue, at most the last spool interval (1 s by
    default). With ``fsync=False`` (``synchronous=NORMAL``) commits are not fsynced one by
    one, so a *power loss or kernel crash* can also lose what was committed since the last
    WAL checkpoint (at most ~32 MB), never corrupting the file; ``fsync=True``
    (``synchronous=FULL``) closes that gap at a cost in throughput. Delivery is at least
    once: a process killed between a delivery and its `ack()` has the chunk sent again by a
    later process (messageIds make that idempotent at a deduplicating collector).

Multi-process rules:
    - Any number of processes on one host may share one file (gunicorn workers): SQLite
      serializes writes (``busy_timeout``, ``BEGIN IMMEDIATE``) and a chunk is leased by one
      live process at a time. A lease records the pid, the process start time and a random
      token; a lease whose process is gone (or a zombie, or whose pid was reused, seen by the
      start time) is reclaimed by the next `lease()` in any process, oldest chunk first.
    - The processes must share a pid namespace (one host or container) and a local
      filesystem (WAL uses shared memory: no NFS/SMB); otherwise use one file per container.
    - Connections never cross ``fork()``: a before-fork hook closes every open spool's
      connection (reopened on next use); in the child `after_fork_in_child()` (also run
      automatically on its first call) gives it its own lease identity. The parent's leases
      stay the parent's: a child never takes a chunk its parent holds.

Errors: every failure is a `SpoolError` saying what is wrong and what to do (corrupt or
foreign file, read-only, disk full, locked past the busy timeout), never a raw sqlite3
error. Thread-safe: one lock serializes the calls.
"""

from __future__ import annotations

import logging
import os
import secrets
import sqlite3
import threading
import weakref
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from analytics._exceptions import AnalyticsError

__all__ = ["DEFAULT_MAX_BYTES", "Spool", "SpoolBusy", "SpoolError"]

logger = logging.getLogger("analytics")

DEFAULT_MAX_BYTES = 256 * 2**20
#: For a new file: 64 KiB pages make 1 MB chunks cheap to write, read and free.
_NEW_FILE = ("PRAGMA page_size=65536",)
#: A checkpoint (two fsyncs) once the WAL holds 512 pages (32 MB): measured ~1.3x the
#: throughput of 16 MB on this machine's disk. The WAL file is cut back to 32 MB after it.
_PRAGMAS = (
    "PRAGMA wal_autocheckpoint=512",
    "PRAGMA cache_size=-16384",
    f"PRAGMA journal_size_limit={32 * 2**20}",
)
# The small row is leased and scanned; the blob is written once, read once, deleted once.
_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS chunks (
        id INTEGER PRIMARY KEY AUTOINCREMENT,  -- never reused: id order is append order
        count INTEGER NOT NULL, size INTEGER NOT NULL,  -- messages, bytes of data
        lease TEXT)                            -- 'pid:start:token' of the holder, or NULL""",
    "CREATE INDEX IF NOT EXISTS chunks_lease ON chunks(lease)",
    "CREATE TABLE IF NOT EXISTS blobs (id INTEGER PRIMARY KEY, data BLOB NOT NULL)",
    """CREATE TABLE IF NOT EXISTS totals (k INTEGER PRIMARY KEY CHECK (k = 0),
        messages INTEGER NOT NULL, bytes INTEGER NOT NULL)""",
    "INSERT OR IGNORE INTO totals (k, messages, bytes) VALUES (0, 0, 0)",
    """CREATE TRIGGER IF NOT EXISTS chunks_added AFTER INSERT ON chunks BEGIN
        UPDATE totals SET messages = messages + NEW.count, bytes = bytes + NEW.size WHERE k = 0;
    END""",
    """CREATE TRIGGER IF NOT EXISTS chunks_removed AFTER DELETE ON chunks BEGIN
        DELETE FROM blobs WHERE id = OLD.id;
        UPDATE totals SET messages = messages - OLD.count, bytes = bytes - OLD.size WHERE k = 0;
    END""",
    "PRAGMA user_version = 1",
)
_LEASE_OLDEST = (
    "UPDATE chunks SET lease = ? WHERE id = "
    "(SELECT id FROM chunks WHERE lease IS NULL ORDER BY id LIMIT 1) RETURNING id"
)
_LOCKED = "the file is locked by another connection for longer than the busy timeout ({busy} s)"
# Primary SQLite result codes -> what to tell the user.
_EXPLAIN = {
    5: _LOCKED,
    6: _LOCKED,
    8: "the file or its directory is read-only; give a writable path",
    10: "a disk I/O error occurred",
    11: "the file is corrupt; move it away (its events cannot be read) or give another path",
    13: "the disk is full (or the file reached its size limit); free space or lower max_bytes",
    14: "the file cannot be opened or created (missing directory or no permission)",
    26: "the file is not a spool database; move it away or give another path",
}


class SpoolError(AnalyticsError):
    """The spool cannot be used: the message says why (corrupt, read-only, full, locked)."""


class SpoolBusy(SpoolError):
    """Another connection held the file's lock past the busy timeout: try again later."""


class Spool:
    """Chunks of encoded messages in one SQLite file, leased and acked across processes.

    Args:
        path: the file; created (with its schema) when missing. Its directory must exist.
        max_bytes: bound on the stored message bytes; past it `append()` drops the oldest
            chunks that no process holds. The file itself is larger (pages, a WAL of up to
            ~32 MB) and does not shrink after a peak: its free pages are reused.
        busy_timeout: seconds a call waits for another connection's lock before failing.
        fsync: fsync every commit (``synchronous=FULL``) instead of at checkpoints; see the
            module docstring for what that changes on power loss.

    Raises:
        SpoolError: the file is corrupt or not a spool, read-only, locked, or not creatable.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        max_bytes: int = DEFAULT_MAX_BYTES,
        busy_timeout: float = 2.0,
        fsync: bool = False,
    ) -> None:
        """Open or create the spool file and check that it is writable."""
        if max_bytes < 1:
            raise ValueError(f"max_bytes must be positive, not {max_bytes}")
        self.path = Path(path)
        self.max_bytes = max_bytes
        self.busy_timeout = busy_timeout
        self._synchronous = "FULL" if fsync else "NORMAL"
        self._conn: sqlite3.Connection | None = None
        self._closed = False
        #: The id of the last chunk this object appended (0 before the first).
        self.last_chunk_id = 0
        self._new_identity()
        try:
            with self._guard("open"):
                conn = self._connection()
                conn.execute("BEGIN IMMEDIATE")  # fails now if the file is read-only or locked
                tables = {name for (name,) in conn.execute("SELECT name FROM sqlite_master")}
                if tables and "chunks" not in tables:
                    raise SpoolError(
                        f"spool {self.path}: an SQLite file but not a spool; give another path"
                    )
                for statement in _SCHEMA:
                    conn.execute(statement)
                conn.execute("COMMIT")
        except BaseException:
            self._disconnect()
            raise
        _open_spools.add(self)

    def __repr__(self) -> str:
        """Show the path."""
        return f"<analytics Spool {str(self.path)!r}>"

    def append(self, items: list[bytes]) -> list[bytes]:
        """Commit one chunk durably; return the messages dropped to stay in bounds.

        Dropped are the oldest chunks no process holds, possibly this one if it alone is
        over ``max_bytes``. Items are joined by ``b"\\n"``: they must not contain a raw
        newline (encoded JSON never does; not checked, for speed). Sets `last_chunk_id`.

        Raises:
            SpoolError: disk full, read-only, locked past the busy timeout, corrupt.
        """
        if not items:
            return []
        data = b"\n".join(items)
        with self._guard("append"):
            conn = self._connection()
            conn.execute("BEGIN IMMEDIATE")
            cursor = conn.execute(
                "INSERT INTO chunks (count, size) VALUES (?, ?)", (len(items), len(data))
            )
            self.last_chunk_id = int(cursor.lastrowid or 0)
            conn.execute("INSERT INTO blobs (id, data) VALUES (?, ?)", (self.last_chunk_id, data))
            (total,) = conn.execute("SELECT bytes FROM totals WHERE k = 0").fetchone()
            dropped = self._trim(conn, total - self.max_bytes) if total > self.max_bytes else []
            conn.execute("COMMIT")
        return dropped

    def lease(self) -> tuple[int, list[bytes]] | None:
        """Take the oldest chunk no live process holds; None when there is none.

        Leases of processes that are gone are reclaimed first. Atomic across processes: two
        processes never get the same chunk.
        """
        with self._guard("lease"):
            conn = self._connection()
            conn.execute("BEGIN IMMEDIATE")
            self._reclaim(conn)
            row = conn.execute(_LEASE_OLDEST, (self._lease,)).fetchone()
            if row is not None:
                row = conn.execute("SELECT id, data FROM blobs WHERE id = ?", row).fetchone()
            conn.execute("COMMIT")
        return None if row is None else (int(row[0]), bytes(row[1]).split(b"\n"))

    def ack(self, chunk_id: int) -> None:
        """The chunk was delivered: delete it."""
        self._execute("ack", "DELETE FROM chunks WHERE id = ?", (chunk_id,))

    def release(self, chunk_id: int) -> None:
        """The chunk was not delivered: give up this process's lease so another sends it."""
        sql = "UPDATE chunks SET lease = NULL WHERE id = ? AND lease = ?"
        self._execute("release", sql, (chunk_id, self._lease))

    def pending(self) -> int:
        """Messages stored, leased or not, by every process sharing the file."""
        return int(self._execute("count", "SELECT messages FROM totals WHERE k = 0", ())[0])

    def pending_through(self, chunk_id: int) -> int:
        """Messages still stored in the chunks up to ``chunk_id`` (e.g. `last_chunk_id`),
        whoever holds them: 0 once all of those were acked or dropped (for a flush)."""
        sql = "SELECT COALESCE(SUM(count), 0) FROM chunks WHERE id <= ?"
        return int(self._execute("count", sql, (chunk_id,))[0])

    def newest_chunk_id(self) -> int:
        """The id of the newest chunk stored by any process (0 when empty): a flush waits for
        `pending_through` of it, so it also waits for chunks an earlier process left."""
        return int(self._execute("count", "SELECT COALESCE(MAX(id), 0) FROM chunks", ())[0])

    def release_all(self) -> None:
        """Give back every chunk this process holds (another process may send them)."""
        sql = "UPDATE chunks SET lease = NULL WHERE lease = ?"
        self._execute("release", sql, (self._lease,))

    def after_fork_in_child(self) -> None:
        """In a forked child: drop the parent's connection and lease identity (idempotent)."""
        if self._pid == os.getpid():
            return
        if self._conn is not None:
            # Never close (or use) a connection made before fork: closing can checkpoint or
            # unlock on the parent's behalf. Keep it referenced so it is never finalized.
            _abandoned.append(self._conn)
            self._conn = None
        self._new_identity()

    def close(self) -> None:
        """Release this process's leases (a later process sends them) and close.

        Idempotent; never raises (a release that fails is logged: those leases are
        reclaimed by another process once this one has exited).
        """
        if self._closed:
            return
        try:
            self.release_all()
        except SpoolError as exc:
            logger.warning("analytics: could not release spooled chunks at close: %s", exc)
        finally:
            with self._lock:
                self._closed = True
                self._disconnect()
            _open_spools.discard(self)

    # --- internals ------------------------------------------------------------------------------

    def _new_identity(self) -> None:
        self._lock = threading.Lock()
        self._pid = os.getpid()
        stat = _proc_stat(self._pid)
        self._lease = f"{self._pid}:{stat[1] if stat else ''}:{secrets.token_hex(6)}"

    def _execute(self, what: str, sql: str, params: Sequence[Any]) -> Any:
        """One statement in its own transaction; returns its first row."""
        with self._guard(what):
            return self._connection().execute(sql, params).fetchone()

    @contextmanager
    def _guard(self, what: str) -> Iterator[None]:
        """Serialize the call; turn any sqlite3 error into a SpoolError (rolled back)."""
        if self._pid != os.getpid():
            self.after_fork_in_child()
        with self._lock:
            if self._closed:
                raise SpoolError(f"spool {self.path}: {what} after close()")
            try:
                yield
            except BaseException as exc:
                self._rollback()
                if isinstance(exc, sqlite3.Error):
                    kind = SpoolBusy if _is_busy(exc) else SpoolError
                    raise kind(self._explain(what, exc)) from exc
                raise

    def _explain(self, what: str, exc: sqlite3.Error) -> str:
        code = getattr(exc, "sqlite_errorcode", None)
        reason = _EXPLAIN.get(code & 0xFF) if isinstance(code, int) else None
        reason = (reason or f"{type(exc).__name__}: {exc}").replace(
            "{busy}", f"{self.busy_timeout:g}"
        )
        return f"spool {self.path}: {what} failed: {reason}"

    def _connection(self) -> sqlite3.Connection:
        """The open connection (made on first use, and again after a fork)."""
        if self._conn is None:
            conn = sqlite3.connect(
                self.path,
                timeout=self.busy_timeout,
                isolation_level=None,  # explicit BEGIN/COMMIT only
                check_same_thread=False,  # calls are serialized by self._lock
            )
            try:
                (tables,) = conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
                for pragma in (*(() if tables else _NEW_FILE), "PRAGMA journal_mode=WAL"):
                    (mode,) = conn.execute(pragma).fetchone() or ("",)
                if str(mode).lower() != "wal":
                    raise SpoolError(f"spool {self.path}: WAL mode unavailable ({mode})")
                for pragma in (f"PRAGMA synchronous={self._synchronous}", *_PRAGMAS):
                    conn.execute(pragma)
            except BaseException:
                conn.close()
                raise
            self._conn = conn
        return self._conn

    def _trim(self, conn: sqlite3.Connection, excess: int) -> list[bytes]:
        """Delete the oldest unleased chunks totalling at least ``excess`` bytes; their messages.

        The messages are returned so that the client reports each one (``spool_full``).
        """
        freed = 0
        cut = None
        cursor = conn.execute("SELECT id, size FROM chunks WHERE lease IS NULL ORDER BY id")
        for chunk_id, size in cursor:
            freed, cut = freed + size, chunk_id
            if freed >= excess:
                break
        cursor.close()
        if cut is None:
            return []
        sql = "SELECT data FROM blobs WHERE id IN (SELECT id FROM chunks WHERE lease IS NULL AND id <= ?)"
        dropped = [
            item for (data,) in conn.execute(sql, (cut,)) for item in bytes(data).split(b"\n")
        ]
        conn.execute("DELETE FROM chunks WHERE lease IS NULL AND id <= ?", (cut,))
        return dropped

    def _reclaim(self, conn: sqlite3.Connection) -> None:
        """Free the chunks leased by processes that no longer exist."""
        holders = conn.execute(
            "SELECT DISTINCT lease FROM chunks WHERE lease IS NOT NULL AND lease != ?",
            (self._lease,),
        ).fetchall()
        for (lease,) in holders:
            if not _holder_alive(str(lease)):
                conn.execute("UPDATE chunks SET lease = NULL WHERE lease = ?", (lease,))

    def _rollback(self) -> None:
        conn = self._conn
        if conn is not None and conn.in_transaction:
            try:
                conn.execute("ROLLBACK")
            except sqlite3.Error:
                self._disconnect()  # unusable: reconnect on the next call

    def _disconnect(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()


def _is_busy(exc: sqlite3.Error) -> bool:
    """SQLITE_BUSY or SQLITE_LOCKED: a transient lock, not a broken file."""
    code = getattr(exc, "sqlite_errorcode", None)
    if isinstance(code, int):
        return code & 0xFF in (5, 6)
    return "locked" in str(exc)


def _proc_stat(pid: int) -> tuple[str, str] | None:
    """(state, start time in clock ticks) from /proc/PID/stat, or None where unavailable."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            text = f.read().decode("ascii", "replace")
    except OSError:
        return None
    fields = text[text.rfind(")") + 2 :].split()  # after "pid (comm) ": comm may hold spaces
    return (fields[0], fields[19]) if len(fields) > 19 else None


def _holder_alive(lease: str) -> bool:
    """Is the process that took this lease still running (and not a zombie or a reused pid)?"""
    pid_text, start, _ = [*lease.split(":", 2), "", ""][:3]
    try:
        pid = int(pid_text)
        os.kill(pid, 0)
    except (ValueError, ProcessLookupError):
        return False
    except PermissionError:
        pass  # it exists, under another user
    stat = _proc_stat(pid)
    if stat is None:
        return not os.path.isdir("/proc/self")  # no /proc at all: trust kill(0)
    return stat[0] not in ("Z", "X") and (not start or stat[1] == start)


# Every open spool, so that fork never carries a SQLite connection into the child.
_open_spools: weakref.WeakSet[Spool] = weakref.WeakSet()
_abandoned: list[sqlite3.Connection] = []
_held: list[Spool] = []


def _before_fork() -> None:
    for spool in list(_open_spools):
        spool._lock.acquire()  # waits for a call in progress on another thread (bounded)
        _held.append(spool)
        spool._disconnect()  # reopened on next use, in the parent and in the child


def _after_fork_in_parent() -> None:
    while _held:
        _held.pop()._lock.release()


def _after_fork_in_child() -> None:
    while _held:
        _held.pop().after_fork_in_child()  # a fresh lock and lease identity


os.register_at_fork(
    before=_before_fork, after_in_parent=_after_fork_in_parent, after_in_child=_after_fork_in_child
)
