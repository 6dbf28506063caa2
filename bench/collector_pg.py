"""The PostgreSQL half of collector_bench.py: the same senders and bodies against
`analytics serve --db postgresql://...` with 1 and 2 collector processes, on a throw-away
cluster (tests/pgcluster.py, durable settings: fsync and synchronous_commit on), and a floor:
`orjson.loads` of the same bodies plus one `COPY` of the rows the collector stored into the
same (fresh) schema over one connection, no HTTP, one commit, after a VACUUM (ANALYZE) of the
collector's rows and with no autovacuum worker running (:func:`settle`).

CPU per event is measured apart for the collector (its process tree) and for PostgreSQL (the
postmaster's children: the collectors' backends, WAL writer, checkpointer...), from
/proc/PID/stat (utime + stime) before and after the ingest.
"""

from __future__ import annotations

import os
import statistics
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from pgcluster import Cluster, find_bindir

_TICK = os.sysconf("SC_CLK_TCK")
_COLUMNS = "write_key, message_id, type, user_id, anonymous_id, event, timestamp, received_at, body"


def start_cluster() -> Cluster | None:
    """A started cluster with PostgreSQL's default (durable) settings, or None."""
    bindir = find_bindir()
    if bindir is None:
        return None
    cluster = Cluster(bindir, settings={"fsync": "on", "full_page_writes": "on"})
    cluster.start()
    return cluster


def new_database(cluster: Cluster) -> str:
    """A fresh database on ``cluster``; its URL."""
    import psycopg

    name = f"bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(cluster.url, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")  # type: ignore[call-overload]
    return cluster.url.rsplit("/", 1)[0] + "/" + name


def _cpu_seconds(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / _TICK


def _tree(root: int) -> list[int]:
    """``root`` and its descendants."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except OSError:
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(children.get(pid, []))
    return out


def cpu(pids: list[int]) -> dict[int, float]:
    return {pid: _cpu_seconds(pid) for pid in pids}


def used(before: dict[int, float], pids: list[int]) -> float:
    """CPU seconds ``pids`` used since ``before`` (a process new since then counts whole)."""
    return sum(_cpu_seconds(pid) - before.get(pid, 0.0) for pid in pids)


def settle(url: str) -> float:
    """VACUUM (ANALYZE) what the collector wrote, then wait (30 s at most) until no autovacuum
    worker runs: the floor must not share the server with the maintenance of the collector's
    rows (autovacuum starts on 200,000 new rows once they are committed, and a floor slowed
    by it would flatter the ratio). Returns the seconds it took."""
    import psycopg

    t0 = time.perf_counter()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("VACUUM (ANALYZE)")
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            row = conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'autovacuum worker'"
            ).fetchone()
            if row is None or row[0] == 0:
                break
            time.sleep(0.1)
    return time.perf_counter() - t0


def floor(url: str, bodies: list[bytes], cluster: Cluster) -> dict[str, Any]:
    """orjson.loads of the bodies + one COPY of the stored rows into a fresh schema."""
    import psycopg

    from analytics.collector._pg import PostgresStore
    from analytics.collector._pg_schema import ensure_days

    with psycopg.connect(url, autocommit=True) as conn:
        rows = conn.execute(f"SELECT {_COLUMNS.replace('body', 'body::text')} FROM events")
        rows_list = rows.fetchall()
        days = {r[7].date() for r in rows_list}
        conn.execute("CREATE SCHEMA floor")
    floor_url = url + "?options=-csearch_path%3Dfloor"
    PostgresStore(floor_url).close()
    settled_s = settle(url)
    with psycopg.connect(floor_url, autocommit=True) as conn:
        ensure_days(conn, days)
        before = cpu(cluster.backend_pids())
        t0 = time.perf_counter()
        n = sum(len(orjson.loads(body)["batch"]) for body in bodies)
        t1 = time.perf_counter()
        with conn.transaction(), conn.cursor().copy(f"COPY events ({_COLUMNS}) FROM STDIN") as cp:
            for row in rows_list:
                cp.write_row(row)
        t2 = time.perf_counter()
        postgres_s = used(before, cluster.backend_pids())
    return {
        "postgresql_cpu_us_per_event": postgres_s / max(1, len(rows_list)) * 1e6,
        "events": n,
        "rows": len(rows_list),
        "loads_s": t1 - t0,
        "copy_s": t2 - t1,
        "settle_s": settled_s,
        "events_per_s": n / (t2 - t0),
    }


def one_round(
    cluster: Cluster, senders: int, batches: int, workers: int, bench: Any
) -> dict[str, Any]:
    """`analytics serve --workers N --db URL` under the senders; then the floor."""
    import psycopg

    bodies = [bench.make_bodies(s, batches) for s in range(senders)]
    url = new_database(cluster)
    server, port = bench.start_server(url, workers)
    try:
        res: dict[str, Any] = {"processes": bench.serving_processes(port)}
        collector, postgres = _tree(server.pid), cluster.backend_pids()
        before = cpu(collector) | cpu(postgres)
        res.update(bench.ingest(port, bodies))
        collector_s = used(before, _tree(server.pid))
        postgres_s = used(before, cluster.backend_pids())
    finally:
        bench.stop_server(server)
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT count(*) FROM events").fetchone()
        res["stored"] = int(row[0]) if row else 0
    acked = max(1, res["acked_events"])
    res["cpu_us_per_event"] = {
        "collector": collector_s / acked * 1e6,
        "postgresql": postgres_s / acked * 1e6,
    }
    res["floor"] = floor(url, [b for bs in bodies for b in bs], cluster)
    res["vs_floor"] = res["events_per_s"] / res["floor"]["events_per_s"]
    return res


def summary(runs: dict[int, list[dict[str, Any]]]) -> dict[str, Any]:
    """Medians per collector count, the ratio to the floor, and 2-process scaling."""
    out: dict[str, Any] = {"rounds": {str(k): v for k, v in runs.items()}}
    for processes, rounds in runs.items():
        if not rounds:
            continue
        out[f"median_events_per_s_{processes}"] = statistics.median(
            r["events_per_s"] for r in rounds
        )
        out[f"median_vs_floor_{processes}"] = statistics.median(r["vs_floor"] for r in rounds)
        for part in ("collector", "postgresql"):
            out[f"median_cpu_us_per_event_{part}_{processes}"] = statistics.median(
                r["cpu_us_per_event"][part] for r in rounds
            )
    if runs[1] and runs[2]:
        out["median_2_over_1"] = statistics.median(
            b["events_per_s"] / a["events_per_s"] for a, b in zip(runs[1], runs[2], strict=True)
        )
    floors = [r["floor"] for rounds in runs.values() for r in rounds]
    out["median_floor_events_per_s"] = statistics.median(f["events_per_s"] for f in floors)
    out["median_floor_cpu_us_per_event_postgresql"] = statistics.median(
        f["postgresql_cpu_us_per_event"] for f in floors
    )
    return out
