"""WAL checkpoints on their own thread, off the writer's commit path.

In WAL mode a commit appends pages to the ``-wal`` file; a *checkpoint* copies them back into
the database file and fsyncs both (``synchronous=NORMAL`` fsyncs only there). SQLite's
automatic checkpoint runs inside the ``COMMIT`` that crosses the threshold, so the writer
thread, and every request waiting for that commit, waited for the copy and the fsyncs: under
the ingest benchmark ``COMMIT`` was half of the writer's time, and turning the fsyncs off
(``synchronous=OFF``, not an option) raised ingest by ~45%.

So the store's write connection has ``wal_autocheckpoint=0`` and a :class:`Checkpointer`
thread, with its own connection, runs ``PRAGMA wal_checkpoint(PASSIVE)`` once at least
``every_rows`` rows were committed since the last one. A passive checkpoint never blocks the
writer or readers; SQLite releases the GIL while it copies and fsyncs. Durability is
unchanged: a committed transaction is in the WAL whether or not it was checkpointed yet.

The WAL is rewound (reused from its start) only when a checkpoint had copied all of it before
the writer's next transaction; under sustained load the thread's checkpoints keep running a
little behind the commits, so that never happens by itself and the WAL would grow without
bound. :meth:`Checkpointer.behind` therefore tells the writer when the WAL holds more than
``max_wal_frames`` frames; the writer then checkpoints inline, between its transactions (cheap:
the thread already copied most of it), and its next transaction rewinds the WAL.
Checkpoint errors (busy, I/O) are logged and retried at the next wake-up: the data is safe in
the WAL meanwhile.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from pathlib import Path

__all__ = ["Checkpointer", "checkpoint"]

log = logging.getLogger("analytics.collector")


def checkpoint(conn: sqlite3.Connection) -> tuple[int, int] | None:
    """Run a passive checkpoint on ``conn``; return (frames in the WAL, frames copied).

    ``None`` when it could not run (another connection was checkpointing).
    """
    row = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
    if row is None or row[0] or row[1] < 0:  # busy (another checkpoint runs) or not WAL
        return None
    return (int(row[1]), int(row[2]))


class Checkpointer:
    """A thread that checkpoints the WAL of ``path`` when enough rows were committed."""

    def __init__(
        self,
        path: Path,
        *,
        busy_timeout: float,
        every_rows: int = 20_000,
        max_wal_frames: int = 4096,
    ) -> None:
        self._path = path
        self._busy_timeout = busy_timeout
        self._every_rows = every_rows
        self._max_wal_frames = max_wal_frames
        self._rows = 0
        self._wake = threading.Event()
        self._stopping = False
        self._wal_frames = 0
        self.checkpoints = 0
        #: Set after every checkpoint this thread ran (tests wait on it).
        self.ran = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name="analytics-collector-checkpoint", daemon=True
        )
        self._thread.start()

    def committed(self, rows: int) -> None:
        """Called by the writer after each commit with the rows it added."""
        self._rows += rows
        if self._rows >= self._every_rows:
            self._rows = 0
            self._wake.set()

    def behind(self) -> bool:
        """True when the WAL held more frames than the bound at the last checkpoint."""
        return self._wal_frames > self._max_wal_frames

    def caught_up(self, result: tuple[int, int] | None, *, rewinds: bool = False) -> None:
        """Record the result of a checkpoint (this thread's, or the writer's inline one).

        ``rewinds``: no transaction can start before the next write, so a checkpoint that
        copied everything means the WAL restarts from zero.
        """
        if result is None:
            return
        frames, copied = result
        self._wal_frames = 0 if rewinds and copied >= frames else frames

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the thread (after the checkpoint it may be running)."""
        self._stopping = True
        self._wake.set()
        self._thread.join(timeout)

    def _run(self) -> None:
        conn: sqlite3.Connection | None = None
        try:
            while True:
                self._wake.wait()
                self._wake.clear()
                if self._stopping:
                    return
                if conn is None:
                    conn = sqlite3.connect(
                        self._path, timeout=self._busy_timeout, check_same_thread=False
                    )
                self._checkpoint(conn)
        finally:
            if conn is not None:
                conn.close()

    def _checkpoint(self, conn: sqlite3.Connection) -> None:
        try:
            result = checkpoint(conn)
        except sqlite3.Error as exc:
            log.warning("collector WAL checkpoint failed (retried later): %s", exc)
            return
        if result is not None:
            self.checkpoints += 1
            self.caught_up(result)
            self.ran.set()
