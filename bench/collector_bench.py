"""The collector's ingest: concurrent sender processes post 500-event batches to
`analytics serve`; events/s stored and committed (200 means committed), p50/p99 request
latency, and the floor measured in the same run: orjson.loads of the same bodies plus one
sqlite3 executemany of the same rows (read back from the collector's database) into a fresh
database with the same schema, in one process.

    python collector_bench.py --senders 4 --batches 100 --rounds 3 [--workers 1,2]

`--workers` also measures `analytics serve --workers N` (each N alternated with the default
invocation in every round, each against its own floor). `--postgres` adds, in every round, the
PostgreSQL store with 1 and 2 collector processes and its COPY floor (collector_pg.py).

Prints one line `RESULT {json}`."""

from __future__ import annotations

import argparse
import base64
import http.client
import json
import multiprocessing as mp
import os
import queue
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import orjson

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from collector_pg import one_round as pg_round
from collector_pg import start_cluster as start_postgres
from collector_pg import summary as pg_summary
from workload import EVENT, properties

PER_BATCH = 500
WRITE_KEY = "bench-collector-key"
HEADERS = {
    "Content-Type": "application/json",
    "Authorization": "Basic " + base64.b64encode(f"{WRITE_KEY}:".encode()).decode(),
}


def make_bodies(sender: int, batches: int) -> list[bytes]:
    """The request bodies of one sender: SPEC-format track messages with unique messageIds."""
    out = []
    for b in range(batches):
        batch = []
        for k in range(PER_BATCH):
            i = (sender * batches + b) * PER_BATCH + k
            batch.append(
                {
                    "type": "track",
                    "userId": f"user-{i % 1000}",
                    "event": EVENT,
                    "properties": properties(i),
                    "messageId": str(uuid.uuid4()),
                    "timestamp": "2024-05-01T12:30:15.250Z",
                    "context": {"library": {"name": "bench", "version": "0"}},
                }
            )
        body = {"batch": batch, "sentAt": "2024-05-01T12:30:16.000Z", "writeKey": WRITE_KEY}
        out.append(orjson.dumps(body))
    return out


def sender(port: int, bodies: list[bytes], barrier: Any, results: Any) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    lat: list[float] = []
    statuses: dict[int, int] = {}
    barrier.wait(timeout=60)
    start = time.perf_counter()
    for body in bodies:
        t0 = time.perf_counter()
        conn.request("POST", "/v1/batch", body=body, headers=HEADERS)
        resp = conn.getresponse()
        resp.read()
        lat.append(time.perf_counter() - t0)
        statuses[resp.status] = statuses.get(resp.status, 0) + 1
    results.put({"start": start, "end": time.perf_counter(), "lat": lat, "statuses": statuses})
    conn.close()


def start_server(db: Path, workers: int | None = None) -> tuple[subprocess.Popen[bytes], int]:
    """`analytics serve` on a free port; `workers` None leaves --workers at its default."""
    exe = Path(sys.executable).with_name("analytics")
    cmd = [str(exe), "serve", "--port", "0", "--db", str(db), "--log-level", "warning"]
    if workers is not None:
        cmd += ["--workers", str(workers)]
    p = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True
    )
    lines: queue.Queue[bytes] = queue.Queue()
    assert p.stdout is not None
    out = p.stdout
    threading.Thread(target=lambda: [lines.put(ln) for ln in out], daemon=True).start()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            line = lines.get(timeout=max(0.01, deadline - time.monotonic())).decode()
        except queue.Empty:
            break
        if "Listening on http://" in line:
            port = int(line.split("Listening on http://", 1)[1].split()[0].split(":")[1])
            return p, port
    stop_server(p)
    raise RuntimeError("analytics serve did not announce its address within 30 s")


def stop_server(p: subprocess.Popen[bytes]) -> None:
    if p.poll() is None:
        os.killpg(p.pid, signal.SIGTERM)
        try:
            p.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait(timeout=10)


def serving_processes(port: int, connections: int = 32) -> int:
    """How many processes answer on ``port`` (distinct /health pids over fresh connections)."""
    pids = set()
    for _ in range(connections):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        conn.request("GET", "/health")
        pids.add(json.loads(conn.getresponse().read())["pid"])
        conn.close()
    return len(pids)


def ingest(port: int, bodies: list[list[bytes]]) -> dict[str, Any]:
    ctx = mp.get_context("fork")
    barrier = ctx.Barrier(len(bodies) + 1)
    results = ctx.Queue()
    procs = [ctx.Process(target=sender, args=(port, b, barrier, results)) for b in bodies]
    for p in procs:
        p.start()
    barrier.wait(timeout=60)
    got = [results.get(timeout=180) for _ in procs]
    for p in procs:
        p.join(timeout=30)
    lat = sorted(x for g in got for x in g["lat"])
    statuses: dict[str, int] = {}
    for g in got:
        for k, v in g["statuses"].items():
            statuses[str(k)] = statuses.get(str(k), 0) + v
    secs = max(g["end"] for g in got) - min(g["start"] for g in got)
    acked = statuses.get("200", 0) * PER_BATCH
    return {
        "seconds": secs,
        "acked_events": acked,
        "events_per_s": acked / secs,
        "p50_ms": lat[len(lat) // 2] * 1000,
        "p99_ms": lat[min(len(lat) - 1, int(len(lat) * 0.99))] * 1000,
        "statuses": statuses,
    }


def floor(db: Path, bodies: list[bytes], workdir: Path) -> dict[str, Any]:
    """orjson.loads of the same bodies + one executemany of the same rows, one process."""
    src = sqlite3.connect(db)
    ddl = [r[0] for r in src.execute("SELECT sql FROM sqlite_master WHERE sql IS NOT NULL")]
    cols = [r[1] for r in src.execute("PRAGMA table_info(events)") if r[1] != "seq"]
    rows = src.execute(f"SELECT {', '.join(cols)} FROM events").fetchall()
    src.close()
    dst = sqlite3.connect(workdir / "floor.db", isolation_level=None)
    dst.execute("PRAGMA journal_mode=WAL")
    dst.execute("PRAGMA synchronous=NORMAL")
    dst.execute("PRAGMA wal_autocheckpoint=0")  # the floor is the insert; no checkpoint in it
    for stmt in ddl:
        dst.execute(stmt)
    insert = (
        f"INSERT OR IGNORE INTO events ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})"
    )
    t0 = time.perf_counter()
    n = 0
    for body in bodies:
        n += len(orjson.loads(body)["batch"])
    t1 = time.perf_counter()
    dst.execute("BEGIN")
    dst.executemany(insert, rows)
    dst.execute("COMMIT")
    t2 = time.perf_counter()
    dst.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # reported apart: not part of the floor
    t3 = time.perf_counter()
    dst.close()
    return {
        "events": n,
        "rows": len(rows),
        "loads_s": t1 - t0,
        "insert_s": t2 - t1,
        "checkpoint_s": t3 - t2,
        "events_per_s": n / (t2 - t0),
        "events_per_s_with_checkpoint": n / (t3 - t0),
    }


def one_round(
    senders: int, batches: int, workdir: Path, workers: int | None = None
) -> dict[str, Any]:
    bodies = [make_bodies(s, batches) for s in range(senders)]
    db = workdir / "collector.db"
    server, port = start_server(db, workers)
    try:
        processes = serving_processes(port)
        res = ingest(port, bodies)
        res["processes"] = processes
    finally:
        stop_server(server)
    conn = sqlite3.connect(db)
    res["stored"] = conn.execute("SELECT count(*) FROM events").fetchone()[0]
    conn.close()
    res["floor"] = floor(db, [b for bs in bodies for b in bs], workdir)
    res["vs_floor"] = res["events_per_s"] / res["floor"]["events_per_s"]
    return res


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--senders", type=int, default=4)
    ap.add_argument("--batches", type=int, default=100, help="batches per sender")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument(
        "--workers",
        default="",
        help="also measure `analytics serve --workers N` for each N of this comma list "
        "(alternated with the default run in every round)",
    )
    ap.add_argument(
        "--postgres",
        action="store_true",
        help="also measure the PostgreSQL store (1 and 2 collector processes, and its floor) "
        "on a throw-away cluster, in every round (collector_pg.py)",
    )
    args = ap.parse_args()
    out: dict[str, Any] = {
        "senders": args.senders,
        "batch": PER_BATCH,
        "events_per_round": args.senders * args.batches * PER_BATCH,
    }
    configs: list[int | None] = [None] + [int(w) for w in args.workers.split(",") if w]
    runs: dict[int | None, list[dict[str, Any]]] = {c: [] for c in configs}
    pg_runs: dict[int, list[dict[str, Any]]] = {1: [], 2: []}
    cluster = start_postgres() if args.postgres else None
    try:
        for _ in range(args.rounds):
            for workers in configs:
                workdir = Path(tempfile.mkdtemp(prefix="bench-collector-"))
                try:
                    runs[workers].append(one_round(args.senders, args.batches, workdir, workers))
                finally:
                    shutil.rmtree(workdir, ignore_errors=True)
            if cluster is not None:
                for processes, results in pg_runs.items():
                    results.append(
                        pg_round(
                            cluster, args.senders, args.batches, processes, sys.modules[__name__]
                        )
                    )
    except Exception as exc:
        out["error"] = f"{type(exc).__name__}: {exc}"
    finally:
        if cluster is not None:
            cluster.remove()
    if args.postgres:
        out["postgres"] = pg_summary(pg_runs) if cluster else {"error": "no initdb/pg_ctl"}
    rounds = runs[None]
    out["rounds"] = rounds
    if rounds:
        out["median_events_per_s"] = statistics.median(r["events_per_s"] for r in rounds)
        out["median_vs_floor"] = statistics.median(r["vs_floor"] for r in rounds)
    out["workers"] = {str(w): runs[w] for w in configs if w is not None}
    sys.stdout.write("RESULT " + json.dumps(out) + "\n")


if __name__ == "__main__":
    main()
