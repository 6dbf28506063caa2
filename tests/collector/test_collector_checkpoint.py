"""WAL checkpoints: off the writer's COMMIT, on their own thread, and bounded."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from test_collector_store import row

from analytics.collector import SQLiteStore


def _backfilled(path: Path) -> tuple[int, int]:
    """(frames in the WAL, frames already copied into the database) seen by another reader."""
    conn = sqlite3.connect(path)
    try:
        # A passive checkpoint from a fresh connection reports the state (and copies what is
        # left, so it is called only after the checks that need the raw state).
        busy, frames, copied = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        assert busy == 0
        return int(frames), int(copied)
    finally:
        conn.close()


def test_commits_do_not_checkpoint_inline(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    store = SQLiteStore(path, checkpoint_rows=10**9)
    try:
        conn = store._conn
        assert conn is not None
        assert conn.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 0
        store.write([[row(i) for i in range(2000)]])
        # Nothing was copied back yet: the write connection does not autocheckpoint.
        assert path.with_name("events.db-wal").stat().st_size > path.stat().st_size
        assert store.count() == 2000
    finally:
        store.close()


def test_the_checkpoint_thread_runs_after_enough_rows(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    store = SQLiteStore(path, checkpoint_rows=500)
    try:
        checkpointer = store._checkpointer
        assert checkpointer is not None
        store.write([[row(i) for i in range(400)]])
        assert not checkpointer.ran.is_set()
        store.write([[row(i) for i in range(400, 800)]])
        assert checkpointer.ran.wait(10.0)
        assert checkpointer.checkpoints >= 1
        frames, copied = _backfilled(path)
        assert frames > 0
        assert copied == frames
    finally:
        store.close()
    assert not path.with_name("events.db-wal").exists()  # the last close checkpointed


def test_the_writer_checkpoints_inline_when_the_thread_is_behind(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    store = SQLiteStore(path, checkpoint_rows=10**9, max_wal_frames=0)
    try:
        checkpointer = store._checkpointer
        assert checkpointer is not None
        checkpointer.caught_up((1, 0))  # as if the thread's last look found one frame
        store.write([[row(i) for i in range(2000)]])
        assert not checkpointer.behind()  # the writer's own checkpoint caught up
        assert not checkpointer.ran.is_set()  # and the thread did not run
        before = path.stat().st_size
        assert before > 100_000  # the rows are in the database file, not only in the WAL
        store.write([[row(i) for i in range(2000, 4000)]])
        assert store.count() == 4000
    finally:
        store.close()
