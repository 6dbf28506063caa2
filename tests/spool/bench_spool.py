"""Spool throughput: append + lease + ack of 2,500-message chunks (~450 B each).

Run: ``.venv/bin/python tests/spool/bench_spool.py [--dir DIR] [--chunks N] [--fsync]``.
Prints messages/s for the interleaved cycle (append, lease, ack, as the sender does) and for
appends alone then leases+acks alone (a backlog built during an outage, then drained). Not
collected by pytest (the numbers depend on the machine's disk and load).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from analytics._spool import Spool


def chunk(n: int = 2500, size: int = 450) -> list[bytes]:
    """``n`` JSON-like messages of ``size`` bytes."""
    return [(f'{{"i":{i},"p":"'.encode()).ljust(size - 2, b"x") + b'"}' for i in range(n)]


def main() -> None:
    """Measure and print."""
    p = argparse.ArgumentParser()
    p.add_argument("--dir", default=None, help="directory for the spool (default: a temp dir)")
    p.add_argument("--chunks", type=int, default=200)
    p.add_argument("--fsync", action="store_true")
    args = p.parse_args()
    items = chunk()
    with tempfile.TemporaryDirectory(dir=args.dir) as d:
        spool = Spool(Path(d) / "bench.db", fsync=args.fsync)
        n = args.chunks
        for _ in range(20):  # warm-up (file growth, allocator, CPU frequency): not timed
            spool.append(items)
            got = spool.lease()
            assert got is not None
            spool.ack(got[0])
        wall, cpu = time.perf_counter(), time.process_time()
        for _ in range(n):
            spool.append(items)
            got = spool.lease()
            assert got is not None
            spool.ack(got[0])
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        print(
            f"append+lease+ack: {n * 2500 / wall:,.0f} msg/s "
            f"({wall / n * 1e3:.1f} ms per chunk, CPU {cpu / wall:.0%})"
        )
        start = time.perf_counter()
        for _ in range(n):
            spool.append(items)
        mid = time.perf_counter()
        while (got := spool.lease()) is not None:
            spool.ack(got[0])
        end = time.perf_counter()
        print(
            f"backlog: append {n * 2500 / (mid - start):,.0f} msg/s, "
            f"lease+ack {n * 2500 / (end - mid):,.0f} msg/s"
        )
        spool.close()


if __name__ == "__main__":
    main()
