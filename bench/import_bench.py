"""`analytics import FILE` of N JSON lines into a local `analytics serve`: events/s from the
start of the command to its exit (every line delivered and committed), checked against the
rows stored.

    python import_bench.py --lines 1000000

Prints one line `RESULT {json}`."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from collector_bench import WRITE_KEY, start_server, stop_server
from workload import EVENT, properties


def write_lines(path: Path, n: int) -> int:
    """SPEC-format track lines with historical timestamps (no messageId: the importer makes
    them). Returns the file size in bytes."""
    with open(path, "wb") as f:
        for i in range(n):
            msg = {
                "type": "track",
                "userId": f"user-{i % 1000}",
                "event": EVENT,
                "properties": properties(i),
                "timestamp": f"2024-05-{1 + i % 28:02d}T12:{i % 60:02d}:15.250Z",
            }
            f.write(orjson.dumps(msg) + b"\n")
    return path.stat().st_size


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--lines", type=int, default=1_000_000)
    ap.add_argument("--timeout", type=float, default=140.0)
    args = ap.parse_args()
    out: dict[str, Any] = {"lines": args.lines}
    work = Path(tempfile.mkdtemp(prefix="bench-import-"))
    try:
        src = work / "history.jsonl"
        out["file_mb"] = write_lines(src, args.lines) / 2**20
        server, port = start_server(work / "collector.db")
        try:
            exe = Path(sys.executable).with_name("analytics")
            cmd = [
                str(exe),
                "import",
                str(src),
                "--host",
                f"http://127.0.0.1:{port}",
                "--no-progress",
            ]
            env = {**os.environ, "ANALYTICS_WRITE_KEY": WRITE_KEY}
            t0 = time.perf_counter()
            p = subprocess.run(
                cmd, capture_output=True, text=True, timeout=args.timeout, env=env, check=False
            )
            secs = time.perf_counter() - t0
        finally:
            stop_server(server)
        conn = sqlite3.connect(work / "collector.db")
        stored = conn.execute("SELECT count(*) FROM events").fetchone()[0]
        conn.close()
        out.update(
            exit_code=p.returncode,
            seconds=secs,
            stored=stored,
            events_per_s=stored / secs,
            summary=p.stdout.strip().splitlines()[-3:],
        )
    except Exception as exc:
        out["error"] = f"{type(exc).__name__}: {exc}"
    finally:
        shutil.rmtree(work, ignore_errors=True)
    sys.stdout.write("RESULT " + json.dumps(out) + "\n")


if __name__ == "__main__":
    main()
