"""A spool that cannot work says why, as a SpoolError, within a bounded time.

Disk-full and read-only cases use real filesystems: a small tmpfs mounted by the test (root
only; skipped with the reason otherwise), because as root file permissions do not stop writes.
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from analytics._spool import Spool, SpoolError

from .conftest import remount_read_only
from .test_spool_basics import items


def test_garbage_file_is_refused_at_open(tmp_path: Path) -> None:
    """A file that is not SQLite is reported, not overwritten."""
    path = tmp_path / "s.db"
    garbage = os.urandom(64 * 1024)
    path.write_bytes(garbage)
    with pytest.raises(SpoolError, match="not a spool database"):
        Spool(path)
    assert path.read_bytes() == garbage


def test_corrupt_spool_is_refused_at_open(tmp_path: Path) -> None:
    """A spool whose header was overwritten is reported at open."""
    path = tmp_path / "s.db"
    spool = Spool(path)
    spool.append(items("a", 10))
    spool.close()
    with path.open("r+b") as f:
        f.write(b"\xff" * 100)
    with pytest.raises(SpoolError, match=r"spool .*s\.db: open failed"):
        Spool(path)


def test_foreign_database_is_refused(tmp_path: Path) -> None:
    """An application's own SQLite file given by mistake is not turned into a spool."""
    path = tmp_path / "app.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE users (id INTEGER PRIMARY KEY)")
    conn.close()
    with pytest.raises(SpoolError, match="not a spool"):
        Spool(path)


def test_missing_directory_is_refused(tmp_path: Path) -> None:
    """A path whose directory does not exist cannot be created."""
    with pytest.raises(SpoolError, match="cannot be opened or created"):
        Spool(tmp_path / "no" / "such" / "s.db")


def test_read_only_file_is_refused(tmpfs: Callable[..., Path]) -> None:
    """An existing spool on a read-only filesystem is reported at open."""
    point = tmpfs("4m")
    spool = Spool(point / "s.db")
    spool.append(items("a", 10))
    spool.close()
    remount_read_only(point)
    with pytest.raises(SpoolError, match=r"read-only|cannot be opened"):
        Spool(point / "s.db")


def test_read_only_directory_is_refused(tmpfs: Callable[..., Path]) -> None:
    """A new spool in a read-only directory is reported at open."""
    point = tmpfs("1m")
    remount_read_only(point)
    with pytest.raises(SpoolError, match=r"read-only|cannot be opened"):
        Spool(point / "s.db")


def test_full_disk_is_reported_then_recovers(tmpfs: Callable[..., Path]) -> None:
    """On a full filesystem appends fail with "disk is full", reads still work, and once space
    is freed the spool works again with nothing lost.

    A real full filesystem (a 4 MB tmpfs, mostly taken by a ballast file), not SQLite's
    max_page_count: the error comes from the write system calls, as on a full disk. While the
    disk is full even deletes can fail (the WAL must grow), so acks wait for free space too.
    """
    point = tmpfs("4m")
    spool = Spool(point / "s.db")
    ballast = point / "ballast"
    ballast.write_bytes(b"\0" * (2 * 2**20 + 2**19))
    try:
        chunk = items("a", 500, 400)  # 200 KB
        stored = 0
        error = None
        for _ in range(50):  # 10 MB: far past the filesystem's 4 MB
            try:
                spool.append(chunk)
            except SpoolError as exc:
                error = exc
                break
            stored += 1
        assert error is not None
        assert "append failed: the disk is full" in str(error)
        assert stored >= 1
        assert spool.pending() == stored * 500
        ballast.unlink()
        assert spool.append(items("b", 5)) == []
        got = spool.lease()
        assert got is not None
        assert got[1] == chunk
        spool.ack(got[0])
        assert spool.pending() == (stored - 1) * 500 + 5
    finally:
        spool.close()


def test_locked_file_fails_at_open_within_the_busy_timeout(tmp_path: Path) -> None:
    """Another connection holding the write lock makes open fail after ~busy_timeout."""
    path = tmp_path / "s.db"
    Spool(path).close()
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN EXCLUSIVE")
    try:
        started = time.monotonic()
        with pytest.raises(SpoolError, match="locked"):
            Spool(path, busy_timeout=0.3)
        assert time.monotonic() - started < 3.0
    finally:
        other.execute("ROLLBACK")
        other.close()


def test_locked_file_fails_append_and_lease_then_recovers(tmp_path: Path) -> None:
    """A lock held past the busy timeout fails the call (rolled back); later calls work."""
    path = tmp_path / "s.db"
    spool = Spool(path, busy_timeout=0.3)
    try:
        spool.append(items("a", 2))
        other = sqlite3.connect(path, isolation_level=None)
        other.execute("BEGIN EXCLUSIVE")
        started = time.monotonic()
        with pytest.raises(SpoolError, match="locked"):
            spool.append(items("b", 2))
        with pytest.raises(SpoolError, match="locked"):
            spool.lease()
        assert time.monotonic() - started < 5.0
        assert spool.pending() == 2  # WAL readers are not blocked by the writer's lock
        other.execute("ROLLBACK")
        other.close()
        assert spool.append(items("c", 2)) == []
        got = spool.lease()
        assert got is not None
        assert got[1] == items("a", 2)
    finally:
        spool.close()
