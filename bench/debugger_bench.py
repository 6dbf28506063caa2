"""Ingestion with and without viewers of the live debugger page.

Sender processes post 500-event batches to `analytics serve` (as collector_bench.py does) while
the page's stream has: no viewer; one live viewer (reads every message as it comes); one stalled
viewer (connects, never reads: a frozen tab). Each round runs every case once, alternated, each
against a fresh database; medians over the rounds, and each case's ratio to "none" in the same
round.

    python bench/debugger_bench.py --senders 4 --batches 40 --rounds 3 [--workers 1]

Prints a table and one line `RESULT {json}`.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import socket
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from collector_bench import ingest, make_bodies, start_server, stop_server

CASES = ("none", "live", "stalled")


class LiveViewer:
    """Reads the stream on a thread, counting the events and skipped events it is told of."""

    def __init__(self, port: int) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        self.conn.request("GET", "/debugger/stream")
        self.response = self.conn.getresponse()
        self.events = 0
        self.skipped = 0
        self.messages = 0
        self.ended = False
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        try:
            for line in self.response:
                if line.startswith(b"data: "):
                    data = json.loads(line[6:])
                    self.messages += 1
                    self.events += len(data["events"])
                    self.skipped += data["skipped"]
        except (OSError, ValueError, AttributeError):  # closed under the reader
            pass
        self.ended = True

    def close(self) -> None:
        self.conn.close()


def stalled_viewer(port: int) -> socket.socket:
    """A stream that is never read, with a tiny receive buffer."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", port))
    sock.sendall(b"GET /debugger/stream HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    return sock


def _descendants(pid: int) -> list[int]:
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        for task in Path(f"/proc/{current}/task").glob("*"):
            children = (task / "children").read_text().split()
            todo.extend(int(child) for child in children)
    return found


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) of ``pid`` and its descendants: the collector's processes. Less
    noisy than wall time on a shared machine."""
    total = 0
    for each in _descendants(pid):
        try:
            fields = Path(f"/proc/{each}/stat").read_text().rsplit(")", 1)[1].split()
        except FileNotFoundError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime (clock ticks)
    return total / os.sysconf("SC_CLK_TCK")


def run_case(case: str, bodies: list[list[bytes]], workers: int | None) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="debugger-bench-") as tmp:
        proc, port = start_server(Path(tmp) / "b.db", workers)
        viewer: LiveViewer | None = None
        stalled: socket.socket | None = None
        try:
            if case == "live":
                viewer = LiveViewer(port)
            elif case == "stalled":
                stalled = stalled_viewer(port)
            time.sleep(0.5)  # let the viewer's first message go out (bench only, not a test)
            cpu_before = cpu_seconds(proc.pid)
            result = ingest(port, bodies)
            result["cpu_us_per_event"] = (
                (cpu_seconds(proc.pid) - cpu_before) / result["acked_events"] * 1e6
            )
            if viewer is not None:
                total = result["acked_events"]
                deadline = time.monotonic() + 10
                while viewer.events + viewer.skipped < total and time.monotonic() < deadline:
                    time.sleep(0.05)
                result["viewer_events"] = viewer.events
                result["viewer_skipped"] = viewer.skipped
                result["viewer_messages"] = viewer.messages
        finally:
            if viewer is not None:
                viewer.close()
            if stalled is not None:
                stalled.close()
            stop_server(proc)
    return result


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--senders", type=int, default=4)
    ap.add_argument("--batches", type=int, default=40, help="500-event batches per sender")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--workers", type=int, default=None, help="default: serve's own default")
    args = ap.parse_args()
    bodies = [make_bodies(s, args.batches) for s in range(args.senders)]
    runs: dict[str, list[dict[str, Any]]] = {case: [] for case in CASES}
    for r in range(args.rounds):
        order = CASES if r % 2 == 0 else tuple(reversed(CASES))
        for case in order:
            runs[case].append(run_case(case, bodies, args.workers))
            print(
                f"round {r + 1} {case}: {runs[case][-1]['events_per_s']:,.0f} events/s", flush=True
            )
    report = {"workers": args.workers or "default", "events": sum(map(len, bodies)) * 500}
    print(
        "\n| viewers | events/s (median) | ratio to none | collector CPU us/event | p99 ms | viewer saw / skipped |"
    )
    print("|---|---|---|---|---|---|")
    for case in CASES:
        rates = [run["events_per_s"] for run in runs[case]]
        ratios = [
            run["events_per_s"] / base["events_per_s"]
            for run, base in zip(runs[case], runs["none"], strict=True)
        ]
        p99 = statistics.median(run["p99_ms"] for run in runs[case])
        seen = ""
        if case == "live":
            seen = f"{statistics.median(r['viewer_events'] for r in runs[case]):,.0f} / {statistics.median(r['viewer_skipped'] for r in runs[case]):,.0f}"
        cpu = statistics.median(run["cpu_us_per_event"] for run in runs[case])
        report[case] = {
            "events_per_s": statistics.median(rates),
            "ratio": statistics.median(ratios),
            "cpu_us_per_event": cpu,
            "runs": rates,
        }
        print(
            f"| {case} | {statistics.median(rates):,.0f} | {statistics.median(ratios):.2f} "
            f"| {cpu:.1f} | {p99:.0f} | {seen} |"
        )
    print("RESULT " + json.dumps(report))


if __name__ == "__main__":
    main()
