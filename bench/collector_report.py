# ruff: noqa: RUF001, RUF003  (× and – are the report's typography)
"""Markdown sections for the collector, the CLI import and the profile of our client."""

from __future__ import annotations

from typing import Any

import harness
from stats import agg

NOTE = harness.BENCH / "profile_note.md"


def collector(res: dict[str, Any]) -> list[str]:
    out = ["## Collector ingest", ""]
    col = res.get("collector")
    if not col or not col.get("rounds"):
        why = (col or {}).get("error", "not available yet (no `analytics.collector`)")
        return [*out, f"Not measured: {why}.", ""]
    rounds = col["rounds"]
    ev = agg([r["events_per_s"] for r in rounds])
    fl = agg([r["floor"]["events_per_s"] for r in rounds])
    fl_ck = agg([r["floor"].get("events_per_s_with_checkpoint") for r in rounds])
    vs = agg([r["vs_floor"] for r in rounds])
    p50 = agg([r["p50_ms"] for r in rounds])
    p99 = agg([r["p99_ms"] for r in rounds])
    loads = agg([r["floor"]["loads_s"] / r["floor"]["events"] * 1e6 for r in rounds])
    ins = agg([r["floor"]["insert_s"] / r["floor"]["events"] * 1e6 for r in rounds])
    stored = ", ".join(f"{r['stored']:,}/{r['acked_events']:,}" for r in rounds)
    statuses = ", ".join(str(r["statuses"]) for r in rounds)
    none = "–"
    return [
        *out,
        f"`analytics serve` (SQLite, WAL; default `--workers`: {_processes(rounds)} "
        f"process(es) here) on 127.0.0.1; {col['senders']} sender processes, each "
        f"posting {col['events_per_round'] // col['senders'] // col['batch']:,} batches of "
        f"{col['batch']} track events over one keep-alive connection, all started together; "
        f"{col['events_per_round']:,} events per round, {len(rounds)} round(s). A 200 means the "
        "events were committed; the stored rows are counted afterwards.",
        "",
        "| measure | value |",
        "|---|---|",
        f"| events/s stored and committed | {ev.fmt(0, True) if ev else none} |",
        f"| request latency p50 ms | {p50.fmt(1) if p50 else none} |",
        f"| request latency p99 ms | {p99.fmt(1) if p99 else none} |",
        f"| floor events/s (orjson.loads + one executemany, one process) "
        f"| {fl.fmt(0, True) if fl else none} |",
        f"| floor µs per event: loads / executemany | {loads.fmt(1) if loads else none} / "
        f"{ins.fmt(1) if ins else none} |",
        f"| floor events/s if it also ran a full WAL checkpoint | "
        f"{fl_ck.fmt(0, True) if fl_ck else none} |",
        f"| collector / floor | {vs.fmt(2) if vs else none}× |",
        f"| stored / acknowledged per round | {stored} |",
        f"| response statuses | {statuses} |",
        *_workers_rows(col),
        "",
        "The floor reads back the rows the collector stored and inserts them with the "
        "collector's own schema (same unique index) into a fresh WAL database in one "
        "transaction (synchronous=NORMAL, no checkpoint), after `orjson.loads` of the same "
        "request bodies.",
        "",
        *_collector_profile(res),
    ]


def postgres(res: dict[str, Any]) -> list[str]:
    """The PostgreSQL store in the same run (collector_bench.py --postgres), if measured."""
    pg = (res.get("collector") or {}).get("postgres")
    if not pg or not pg.get("rounds"):
        return []
    out = [
        "### The same ingest into PostgreSQL",
        "",
        "`analytics serve --db postgresql://...` against a throw-away PostgreSQL 15 cluster on "
        "the same machine (it shares the 2 cores with the collector and the senders); the "
        "floor is `orjson.loads` of the same bodies plus one `COPY` of the same rows over one "
        "connection, no HTTP, measured after a `VACUUM (ANALYZE)` of the collector's rows with "
        "no autovacuum worker running. CPU per event from /proc, for the collector's processes "
        "and for PostgreSQL's backends apart.",
        "",
        "| collector processes | events/s | vs floor | collector CPU µs/event | PostgreSQL CPU µs/event |",
        "|---|---|---|---|---|",
    ]
    for n in sorted(pg["rounds"], key=int):
        rounds = pg["rounds"][n]
        ev = agg([r["events_per_s"] for r in rounds])
        vs = agg([r["vs_floor"] for r in rounds])
        col = agg([r["cpu_us_per_event"]["collector"] for r in rounds])
        db = agg([r["cpu_us_per_event"]["postgresql"] for r in rounds])
        out.append(
            f"| {n} | {ev.fmt(0, True) if ev else '-'} | {vs.fmt(2) if vs else '-'}× "
            f"| {col.fmt(1) if col else '-'} | {db.fmt(1) if db else '-'} |"
        )
    floor = pg.get("median_floor_events_per_s")
    floor_cpu = pg.get("median_floor_cpu_us_per_event_postgresql")
    ratio = pg.get("median_2_over_1")
    if floor:
        cpu = f" (PostgreSQL CPU {floor_cpu:.1f} µs/event)" if floor_cpu else ""
        pair = f" Two processes / one: {ratio:.2f}× (per round)." if ratio else ""
        out += ["", f"Floor: {floor:,.0f} events/s{cpu}.{pair}"]
    return [*out, ""]


def _processes(rounds: list[dict[str, Any]]) -> str:
    counts = sorted({r.get("processes") for r in rounds if r.get("processes")})
    return "/".join(map(str, counts)) or "?"


def _workers_rows(col: dict[str, Any]) -> list[str]:
    """One row per `analytics serve --workers N` measured in the same rounds."""
    rows = []
    for workers, rounds in (col.get("workers") or {}).items():
        if not rounds:
            continue
        ev = agg([r["events_per_s"] for r in rounds])
        vs = agg([r["vs_floor"] for r in rounds])
        p99 = agg([r["p99_ms"] for r in rounds])
        rows.append(
            f"| `--workers {workers}`: events/s, / floor, p99 ms | {ev.fmt(0, True)}, "
            f"{vs.fmt(2)}×, {p99.fmt(1)} |"
        )
    return rows


def _collector_profile(res: dict[str, Any]) -> list[str]:
    prof = res.get("profile_collector", {})
    if "summary" not in prof:
        return []
    out = [
        "Where the collector's Python time goes under this load ([profile-collector.txt]"
        "(profile-collector.txt), py-spy `--gil` attached to `analytics serve`):",
        "",
    ]
    for thread, s in prof["summary"].items():
        if thread == "other":
            continue
        top = "; ".join(f"{k} {v}%" for k, v in s["leaf"][:4])
        out.append(f"- {thread} thread, {s['share']}% of the GIL-holding samples: {top}.")
    return [*out, ""]


def cli_import(res: dict[str, Any]) -> list[str]:
    out = ["## `analytics import` (CLI)", ""]
    imp = res.get("cli_import")
    if not imp or "events_per_s" not in imp:
        why = (imp or {}).get("error", "not available yet (no `analytics import`)")
        return [*out, f"Not measured: {why}.", ""]
    return [
        *out,
        f"{imp['lines']:,} JSON lines ({imp['file_mb']:.0f} MB) imported into a fresh local "
        f"`analytics serve`: **{imp['events_per_s']:,.0f} events/s** ({imp['seconds']:.1f} s "
        f"from start to exit, {imp['stored']:,} rows stored, exit code {imp['exit_code']}).",
        "",
        "Its summary line: " + " / ".join(f"`{s}`" for s in imp.get("summary", [])),
        "",
    ]


def profile(res: dict[str, Any]) -> list[str]:
    out = ["## Profile of our client's hot path", ""]
    prof = res.get("profile")
    if not prof or "summary" not in prof:
        why = (prof or {}).get("error", "our client is not available yet")
        return [*out, f"Not made: {why}.", ""]
    s = prof["summary"]
    top = "; ".join(f"{k} {v}%" for k, v in s["track_top"])
    put = "; ".join(f"{k} {v}%" for k, v in s["put_top"])
    snd = "; ".join(f"{k} {v}%" for k, v in s["sender_leaf_top"])
    out += [
        f"py-spy ({prof['n']:,} calls of the throughput workload): "
        "[flame graph](profile-client.svg), [per-thread summary](profile-client.txt).",
        "",
        f"- Inside `Client.track` ({s['track_samples']} of {s['main_samples']} caller-thread "
        f"samples): {top}.",
        f"- Inside `Client._put`: {put}.",
        f"- Sender thread ({s['sender_samples']} samples), leaf frames: {snd}.",
        "",
    ]
    if NOTE.exists():
        out += [NOTE.read_text().strip(), ""]
    return out
