"""Case 7: the spool on a full or read-only disk. The client keeps working in memory, says so
once, and delivers everything. The filesystems are real tmpfs mounts (root only; skipped with
the reason otherwise)."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from .harness import Producer, free_port, mount_tmpfs, outcome, remount, unmount

PACE = ("--rate", "1000", "--every", "100", "--flush-at", "100", "--flush-after", "0.5")


@pytest.fixture
def mount_point(tmp_path: Path) -> Iterator[Path]:
    """A directory for a tmpfs mount, unmounted after the test."""
    point = tmp_path / "mnt"
    yield point
    if point.is_mount():
        unmount(point)


def spool_lines(stderr: str) -> list[str]:
    """The client's lines about giving up the spool."""
    return [line for line in stderr.splitlines() if "spool" in line and "memory" in line]


def test_spool_on_a_read_only_disk(
    collector: Any, mount_point: Path, tmp_path: Path, record: Any, cleanup: list[Any]
) -> None:
    """Case 7a: the spool cannot be created; the client says so once and works in memory."""
    mount_tmpfs(mount_point, "1m")
    remount(mount_point, "ro")
    ids = tmp_path / "ids"
    producer = Producer(
        collector.url, ids, "--count", "2000", "--spool", str(mount_point / "s.db"), *PACE
    )
    cleanup.append(producer)
    assert producer.finish() == 0, producer.stderr
    out = outcome(ids, collector.store)
    lines = spool_lines(producer.stderr)
    row = record(
        "7a spool on a read-only disk",
        out,
        resent=collector.stats.snapshot().duplicates,
        recover=None,
        note=f"{len(lines)} log line: memory only",
    )
    assert len(lines) == 1, producer.stderr
    assert "read-only" in lines[0] or "cannot be opened" in lines[0]
    assert len(out.sent) == 2000
    assert not out.lost
    assert row.twice == 0


def spooled_ids(path: Path) -> set[str]:
    """The messageIds still in a spool file (read-only; the file is the spool's format)."""
    conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    try:
        rows = conn.execute("SELECT data FROM blobs").fetchall()
    finally:
        conn.close()
    return {json.loads(item)["messageId"] for (data,) in rows for item in data.split(b"\n")}


def _outage_on_a_small_disk(
    collector_factory: Callable[..., Any],
    mount_point: Path,
    tmp_path: Path,
    cleanup: list[Any],
    room: int,
) -> tuple[Producer, Any, float]:
    """A producer with its spool on a 4 MB tmpfs with ``room`` bytes free, during an outage
    of ~3 s; then the collector starts and the producer flushes and exits."""
    mount_tmpfs(mount_point, "4m")
    (mount_point / "ballast").write_bytes(b"\0" * (4 * 2**20 - room))
    port = free_port()
    producer = Producer(
        f"http://127.0.0.1:{port}",
        tmp_path / "ids",
        "--count",
        "4000",
        "--spool",
        str(mount_point / "s.db"),
        *PACE,
    )
    cleanup.append(producer)
    producer.wait_tracked(3000)  # ~3 s of outage: the spool fills the disk
    up = time.time()
    server = collector_factory(db=tmp_path / "c.db", port=port)
    producer.wait_line("flushed")
    return producer, server, up


def test_spool_disk_full_at_once(
    collector_factory: Callable[..., Any],
    mount_point: Path,
    tmp_path: Path,
    record: Any,
    cleanup: list[Any],
) -> None:
    """Case 7b: 128 KB left: the spool cannot even be created; the client says so once and
    delivers everything from memory."""
    producer, server, up = _outage_on_a_small_disk(
        collector_factory, mount_point, tmp_path, cleanup, 128 * 2**10
    )
    assert producer.finish() == 0, producer.stderr
    out = outcome(tmp_path / "ids", server.store)
    lines = spool_lines(producer.stderr)
    row = record(
        "7b spool disk full at start",
        out,
        resent=server.stats.snapshot().duplicates,
        recover=out.recover(up),
        note=f"{len(lines)} log line: memory only",
    )
    assert len(lines) == 1, producer.stderr
    assert "disk is full" in lines[0]
    assert len(out.sent) == 4000
    assert not out.lost
    assert row.twice == 0


def test_spool_disk_fills_during_an_outage(
    collector_factory: Callable[..., Any],
    mount_point: Path,
    tmp_path: Path,
    record: Any,
    cleanup: list[Any],
) -> None:
    """Case 7c: 2 MB left: ~1 s of chunks is spooled, then the disk fills. The client says so,
    goes on in memory, and nothing vanishes: what it could not deliver (or ack) on the full
    disk is still in the spool file, and a later start, once space is freed, delivers it."""
    spool = mount_point / "s.db"
    producer, server, up = _outage_on_a_small_disk(
        collector_factory, mount_point, tmp_path, cleanup, 2 * 2**20
    )
    producer.finish()
    first = outcome(tmp_path / "ids", server.store)
    lines = spool_lines(producer.stderr)
    deferred = first.lost
    assert deferred <= spooled_ids(spool), "messages vanished: neither delivered nor spooled"
    (mount_point / "ballast").unlink()
    again = Producer(server.url, tmp_path / "ids", "--count", "0", "--spool", str(spool))
    cleanup.append(again)
    assert again.finish() == 0, again.stderr
    out = outcome(tmp_path / "ids", server.store)
    row = record(
        "7c spool disk fills in an outage",
        out,
        resent=server.stats.snapshot().duplicates,
        recover=out.recover(up),
        note=f"{len(lines)} log line(s); {len(deferred)} sent by the next start",
    )
    assert 1 <= len(lines) <= 2, producer.stderr
    assert "disk is full" in lines[0]
    assert len(out.sent) == 4000
    assert row.twice == 0
    assert not out.lost, f"{len(out.lost)} lost after the restart"
