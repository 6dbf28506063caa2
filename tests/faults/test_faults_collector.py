"""Faults of the collector itself: down when the producer starts, restarted mid-stream.

The producer is a real process using the public client; the collector is ours, in this
process, on a port chosen in advance so that it can start late or restart on the same port.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .harness import Producer, free_port, outcome

PACE = ("--rate", "1000", "--every", "100", "--flush-at", "100", "--flush-after", "0.5")


def test_collector_down_at_start_then_up(
    collector_factory: Callable[..., Any], tmp_path: Path, record: Any, cleanup: list[Any]
) -> None:
    """Case 1: nothing listens for the first ~2 s; then the collector starts. Nothing lost."""
    port = free_port()
    ids = tmp_path / "ids"
    producer = Producer(f"http://127.0.0.1:{port}", ids, "--count", "3000", *PACE)
    cleanup.append(producer)
    producer.wait_tracked(2000)  # ~2 s of events tracked with no collector
    up = time.time()
    server = collector_factory(db=tmp_path / "c.db", port=port)
    producer.wait_line("flushed")
    assert producer.finish() == 0, producer.stderr
    out = outcome(ids, server.store)
    row = record(
        "1 collector down at start (~2 s)",
        out,
        resent=server.stats.snapshot().duplicates,
        recover=out.recover(up),
        note="recover: from collector up",
    )
    assert len(out.sent) == 3000
    assert not out.lost
    assert not out.unexpected
    assert row.twice == 0


def test_collector_restarted_mid_stream(
    collector_factory: Callable[..., Any], tmp_path: Path, record: Any, cleanup: list[Any]
) -> None:
    """Case 2: the collector stops (graceful) and starts again on the same port and database."""
    port = free_port()
    db = tmp_path / "c.db"
    first = collector_factory(db=db, port=port)
    ids = tmp_path / "ids"
    producer = Producer(first.url, ids, "--count", "4000", *PACE)
    cleanup.append(producer)
    producer.wait_tracked(1000)
    first.stop()
    producer.wait_tracked(2000)  # ~1 s with the collector down
    up = time.time()
    second = collector_factory(db=db, port=port)
    producer.wait_line("flushed")
    assert producer.finish() == 0, producer.stderr
    out = outcome(ids, second.store)
    resent = first.stats.snapshot().duplicates + second.stats.snapshot().duplicates
    row = record(
        "2 collector restarted mid-stream (~1 s down)",
        out,
        resent=resent,
        recover=out.recover(up),
        note="recover: from restart",
    )
    assert len(out.sent) == 4000
    assert not out.lost
    assert not out.unexpected
    assert row.twice == 0


SERVE_ONE_PROCESS = [sys.executable, "-m", "analytics", "serve", "--workers", "1"]


def test_collector_killed_mid_stream(
    collector_factory: Callable[..., Any], tmp_path: Path, record: Any, cleanup: list[Any]
) -> None:
    """Case 2b: the collector (``analytics serve``, its own process) is SIGKILLed mid-stream
    and started again on the same port and database: what it answered 200 was committed,
    what it did not answer is resent; nothing lost, nothing stored twice."""
    port = free_port()
    db = tmp_path / "c.db"
    serve = subprocess.Popen(
        # One process: this case is a crash of the whole collector (a killed first process
        # of --workers lets its workers finish their requests; tests/collector covers that).
        [*SERVE_ONE_PROCESS, "--port", str(port), "--db", str(db)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert serve.stderr is not None
        for _ in range(50):  # bounded: the start-up lines, then "listening"
            line = serve.stderr.readline()
            if "listening" in line or not line:
                break
        assert "listening" in line, line
        ids = tmp_path / "ids"
        producer = Producer(f"http://127.0.0.1:{port}", ids, "--count", "4000", *PACE)
        cleanup.append(producer)
        producer.wait_tracked(1500)
        serve.kill()
    finally:
        serve.kill()
        serve.communicate(timeout=10)
    producer.wait_tracked(2500)  # ~1 s with no collector
    up = time.time()
    server = collector_factory(db=db, port=port)
    producer.wait_line("flushed")
    assert producer.finish() == 0, producer.stderr
    out = outcome(ids, server.store)
    row = record(
        "2b collector SIGKILLed mid-stream (~1 s down)",
        out,
        resent=server.stats.snapshot().duplicates,
        recover=out.recover(up),
        note="resent: counted by the restarted collector",
    )
    assert len(out.sent) == 4000
    assert not out.lost
    assert not out.unexpected
    assert row.twice == 0
