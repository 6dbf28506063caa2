"""Faults of the producer process: exit without flush, SIGKILL with and without the spool,
and fork (parent and children all deliver, nothing twice)."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .harness import Outcome, Producer, free_port, outcome

PACE = ("--rate", "1000", "--every", "100", "--flush-at", "100", "--flush-after", "0.5")
#: The client's default spool interval, and the slack allowed on top of it for the append
#: itself (a WAL checkpoint's fsyncs on a busy machine) when bounding what a SIGKILL loses.
SPOOL_INTERVAL = 1.0
SLACK = 1.0


def lost_window(out: Outcome, killed: float) -> float:
    """How long before the kill the oldest lost event was tracked (0 when nothing was lost)."""
    return max((killed - out.sent[m] for m in out.lost), default=0.0)


def test_exit_without_flush(
    collector: Any, tmp_path: Path, record: Any, cleanup: list[Any]
) -> None:
    """Case 5a: main() returns without flush or shutdown; the atexit drain delivers all."""
    ids = tmp_path / "ids"
    producer = Producer(
        collector.url,
        ids,
        "--count",
        "3000",
        "--rate",
        "0",
        "--end",
        "exit",
        "--exit-timeout",
        "10",
    )
    cleanup.append(producer)
    assert producer.finish() == 0, producer.stderr
    out = outcome(ids, collector.store)
    last_tracked = max(out.sent.values())
    row = record(
        "5a exit without flush (atexit drain)",
        out,
        resent=collector.stats.snapshot().duplicates,
        recover=out.recover(last_tracked),
        note="recover: from the last track()",
    )
    assert len(out.sent) == 3000
    assert not out.lost
    assert row.twice == 0


def test_sigkill_without_spool_collector_up(
    collector: Any, tmp_path: Path, record: Any, cleanup: list[Any]
) -> None:
    """Case 5b: SIGKILL mid-stream, no spool: what was in memory is lost (counted)."""
    ids = tmp_path / "ids"
    producer = Producer(collector.url, ids, "--count", "100000", "--end", "hang", *PACE)
    cleanup.append(producer)
    producer.wait_tracked(2000)
    killed = producer.kill()
    out = outcome(ids, collector.store)
    window = lost_window(out, killed)
    row = record(
        "5b SIGKILL, no spool, collector up",
        out,
        resent=collector.stats.snapshot().duplicates,
        recover=None,
        note=f"lost = memory queue; oldest lost {window:.2f} s before kill",
    )
    assert not out.unexpected
    assert row.twice == 0
    # With a collector that answers, memory holds about flush_after (0.5 s) of events.
    assert window <= 0.5 + SLACK


def test_sigkill_without_spool_collector_down(
    tmp_path: Path, record: Any, cleanup: list[Any], collector_factory: Callable[..., Any]
) -> None:
    """Case 5c: SIGKILL while the collector is down, no spool: everything tracked is lost."""
    port = free_port()
    ids = tmp_path / "ids"
    producer = Producer(
        f"http://127.0.0.1:{port}", ids, "--count", "100000", "--end", "hang", *PACE
    )
    cleanup.append(producer)
    producer.wait_tracked(2000)
    producer.kill()
    server = collector_factory(db=tmp_path / "c.db", port=port)
    again = Producer(server.url, tmp_path / "ids2", "--count", "0", "--end", "flush")
    cleanup.append(again)
    assert again.finish() == 0, again.stderr
    out = outcome(ids, server.store)
    record(
        "5c SIGKILL, no spool, collector down",
        out,
        resent=server.stats.snapshot().duplicates,
        recover=None,
        note="all in memory: lost (counted), the case for the spool",
    )
    assert len(out.sent) >= 2000
    assert out.lost == set(out.sent)


def _sigkill_with_spool_then_restart(
    tmp_path: Path,
    cleanup: list[Any],
    collector_factory: Callable[..., Any],
    *,
    collector_up: bool,
) -> tuple[Outcome, float, Any, float]:
    port = free_port()
    db, spool, ids = tmp_path / "c.db", tmp_path / "spool.db", tmp_path / "ids"
    server = collector_factory(db=db, port=port) if collector_up else None
    producer = Producer(
        f"http://127.0.0.1:{port}",
        ids,
        "--count",
        "100000",
        "--end",
        "hang",
        "--spool",
        str(spool),
        *PACE,
    )
    cleanup.append(producer)
    producer.wait_tracked(3000)
    killed = producer.kill()
    if server is None:
        server = collector_factory(db=db, port=port)
    restarted = time.time()
    again = Producer(server.url, ids, "--count", "10", "--end", "flush", "--spool", str(spool))
    cleanup.append(again)
    assert again.finish() == 0, again.stderr
    return outcome(ids, server.store), killed, server, restarted


def test_sigkill_with_spool_collector_down_then_restart(
    tmp_path: Path, record: Any, cleanup: list[Any], collector_factory: Callable[..., Any]
) -> None:
    """Case 5d: SIGKILL with the spool during an outage; a new process sends what was spooled.

    Only what was tracked in the last spool interval (plus slack) before the kill may be lost.
    """
    out, killed, server, restarted = _sigkill_with_spool_then_restart(
        tmp_path, cleanup, collector_factory, collector_up=False
    )
    window = lost_window(out, killed)
    row = record(
        "5d SIGKILL + spool, collector down, restart",
        out,
        resent=server.stats.snapshot().duplicates,
        recover=out.recover(restarted),
        note=f"oldest lost {window:.2f} s before kill (window {SPOOL_INTERVAL:g} s)",
    )
    assert len(out.sent) >= 3010
    assert not out.unexpected
    assert row.twice == 0
    assert window <= SPOOL_INTERVAL + SLACK
    assert len(out.lost) < 0.5 * len(out.sent)


def test_sigkill_with_spool_collector_up_then_restart(
    tmp_path: Path, record: Any, cleanup: list[Any], collector_factory: Callable[..., Any]
) -> None:
    """Case 5e: SIGKILL with the spool mid-stream; a new process sends what was left."""
    out, killed, server, restarted = _sigkill_with_spool_then_restart(
        tmp_path, cleanup, collector_factory, collector_up=True
    )
    window = lost_window(out, killed)
    row = record(
        "5e SIGKILL + spool, collector up, restart",
        out,
        resent=server.stats.snapshot().duplicates,
        recover=out.recover(restarted),
        note=f"oldest lost {window:.2f} s before kill (window {SPOOL_INTERVAL:g} s)",
    )
    assert not out.unexpected
    assert row.twice == 0
    assert window <= SPOOL_INTERVAL + SLACK


def _fork_case(
    collector: Any, tmp_path: Path, record: Any, cleanup: list[Any], name: str, *extra: str
) -> Producer:
    ids = tmp_path / "ids"
    producer = Producer(collector.url, ids, "--count", "500", "--fork", "3", *PACE, *extra)
    cleanup.append(producer)
    code = producer.finish()
    out = outcome(ids, collector.store)
    resent = collector.stats.snapshot().duplicates
    row = record(name, out, resent=resent, recover=None, note="parent + 3 children")
    assert len(out.sent) == 500 + 4 * 500
    assert not out.lost
    assert not out.unexpected
    assert row.twice == 0
    assert resent == 0  # no process sent another's events
    assert code == 0, producer.stderr  # every process's flush() said True
    return producer


def test_fork_parent_and_children_deliver(
    collector: Any, tmp_path: Path, record: Any, cleanup: list[Any]
) -> None:
    """Case 6a: the parent and 3 forked children all deliver, flush says so; nothing twice."""
    _fork_case(collector, tmp_path, record, cleanup, "6a fork x3, memory")


def test_fork_sharing_one_spool(
    collector: Any, tmp_path: Path, record: Any, cleanup: list[Any]
) -> None:
    """Case 6b: the same with one spool shared by the 4 processes: each flush() is True once
    its events are delivered, whichever process sent them; nothing twice."""
    spool = str(tmp_path / "s.db")
    _fork_case(
        collector,
        tmp_path,
        record,
        cleanup,
        "6b fork x3, one shared spool",
        "--spool",
        spool,
        "--flush-timeout",
        "3",
    )
