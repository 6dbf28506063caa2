"""Benchmarks: our client and its peers side by side, and the collector, in one invocation.

    python3 bench/run.py            # full run (< 10 minutes), writes docs/benchmarks.md + .png
    python3 bench/run.py --quick    # smoke run (< 1 minute), same tables with smaller N

The first run creates bench/.venv with the peers and tools of bench/requirements.txt and this
project (editable), then re-executes itself there. Raw results go to bench/results/ (ignored).
See bench/README.md for what is measured and how."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import harness

CLIENTS = ["ours", "segment", "posthog", "rudder"]
SCENARIOS = ["throughput", "rss", "burst", "slow", "fail503"]

FULL: dict[str, Any] = {
    "n": 100_000,
    "fault_n": 20_000,
    "rounds": {"throughput": 5, "rss": 1, "burst": 1, "slow": 1, "fail503": 1, "spool": 5},
    # posthog and rudder run in round 0 only and skip the slowest fault runs (a posthog burst
    # takes ~80 s here); ours and segment, whose ratios are the targets, run every round
    "peer_rounds": 1,
    "skip": {"rudder": ["burst", "slow", "fail503"], "posthog": ["burst"]},
    "budget_s": 400,  # a client run starts only if it should end before this (its last time)
    "import_runs": 5,
    "capacity_s": 2.0,
    "timeout": {"throughput": 120, "rss": 60, "burst": 90, "slow": 60, "fail503": 90},
    "collector": {"senders": 4, "batches": 50, "rounds": 2, "workers": [1]},
    "import_lines": 1_000_000,
    "profile_n": 200_000,
    "async_n": 50_000,
    "async_rounds": 3,
}
QUICK: dict[str, Any] = {
    "n": 5_000,
    "fault_n": 2_000,
    "rounds": dict.fromkeys([*SCENARIOS, "spool"], 1),
    "peer_rounds": 1,
    "skip": {"rudder": ["burst", "slow", "fail503"], "posthog": ["burst"]},
    "budget_s": 45,
    "import_runs": 2,
    "capacity_s": 1.0,
    "timeout": {"throughput": 40, "rss": 30, "burst": 40, "slow": 30, "fail503": 40},
    "collector": {"senders": 4, "batches": 5, "rounds": 1, "workers": [1]},
    "import_lines": 10_000,
    "profile_n": 20_000,
    "async_n": 5_000,
    "async_rounds": 1,
}


def probe(code: str) -> str:
    """Runs a snippet in the bench venv; its stdout, or '' when it fails."""
    p = subprocess.run(
        [str(harness.VENV_PY), "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    return p.stdout.strip() if p.returncode == 0 else ""


def features() -> dict[str, bool]:
    return {
        "client": probe("import analytics; print(analytics.Client)") != "",
        "spool": probe(
            "import inspect, analytics; "
            "print('spool' in inspect.signature(analytics.Client).parameters or '')"
        )
        == "True",
        "collector": probe("from analytics.collector import CollectorServer; print(1)") == "1",
        "cli_import": "import" in probe("from analytics.cli import main; main(['--help'])"),
        # The PostgreSQL store: psycopg installed and a server to initdb (collector_pg.py).
        "postgres": probe("import psycopg, shutil; print(shutil.which('pg_ctl') or '')") != "",
    }


def versions(clients: list[str]) -> dict[str, str]:
    code = (
        "import json, sys; sys.path.insert(0, 'bench'); from adapters import ADAPTERS; "
        f"print(json.dumps({{c: ADAPTERS[c].version() for c in {clients!r}}}))"
    )
    out = probe(code)
    return dict(json.loads(out)) if out else {}


def worker_run(
    sink: harness.Sink, cfg: dict[str, Any], client: str, scenario: str, rnd: int, spool: str = ""
) -> dict[str, Any]:
    kind = "throughput" if scenario == "spool" else scenario
    n = cfg["fault_n"] if scenario in ("slow", "fail503") else cfg["n"]
    timeout = cfg["timeout"][kind]
    cmd = [
        str(harness.VENV_PY),
        str(harness.BENCH / "worker.py"),
        "--client",
        client,
        "--scenario",
        scenario,
        "--n",
        str(n),
        "--sink",
        sink.url,
        "--seed",
        str(rnd + 1),
        "--budget",
        str(timeout - 20),
    ]
    if spool:
        cmd += ["--spool", spool]
    logs = harness.RESULTS / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    proc = harness.run(cmd, timeout, logs / f"{scenario}-{client}-{rnd}.stderr")
    res = harness.result_line(proc)
    res.update(client=client, scenario=scenario, round=rnd, n=n, process_s=proc.seconds)
    return res


def show(res: dict[str, Any]) -> None:
    keys = [
        "median_us",
        "p99_us",
        "delivered_per_s",
        "cpu_us_per_event",
        "peak_rss_mb",
        "lost",
        "duplicates",
        "calls_over_10ms",
        "error",
    ]
    parts = []
    for k in keys:
        v = res.get(k)
        if v is not None:
            parts.append(f"{k}={v:.1f}" if isinstance(v, float) else f"{k}={v}")
    print(
        f"  {res['scenario']:<10} {res['client']:<8} r{res['round']} " + " ".join(parts), flush=True
    )


def wanted(cfg: dict[str, Any], client: str, scenario: str, rnd: int) -> bool:
    if rnd >= cfg["rounds"][scenario] or scenario in cfg["skip"].get(client, []):
        return False
    return client in ("ours", "segment") or rnd < cfg["peer_rounds"]


def client_runs(
    sink: harness.Sink,
    cfg: dict[str, Any],
    clients: list[str],
    scenarios: list[str],
    feats: dict[str, bool],
    t0: float,
) -> list[dict[str, Any]]:
    """Scenario by scenario: three throughput rounds first, then the other scenarios, then
    the remaining throughput rounds. In round r each client runs once, in an order rotated by
    r, so the per-run ratios compare runs made close together in time. A run starts only if,
    at its previous duration, it ends within cfg["budget_s"]."""
    runs: list[dict[str, Any]] = []
    took: dict[tuple[str, str], float] = {}  # last duration of each (client, scenario)

    def one(client: str, sc: str, rnd: int, spool: str = "") -> None:
        expected = took.get((client, sc), 0.0)
        if time.perf_counter() - t0 + expected > cfg["budget_s"]:
            print(f"  {sc:<10} {client:<8} r{rnd} skipped (time budget)", flush=True)
            return
        res = worker_run(sink, cfg, client, sc, rnd, spool)
        took[(client, sc)] = res["process_s"]
        show(res)
        runs.append(res)

    first = cfg.get("first_rounds", 3)  # throughput rounds past these run last, if time allows
    plan = [(sc, rnd) for sc in scenarios for rnd in range(cfg["rounds"][sc])]
    plan.sort(key=lambda p: p[0] == "throughput" and p[1] >= first)
    for sc, rnd in plan:
        order = clients[rnd % len(clients) :] + clients[: rnd % len(clients)]
        for client in order:
            if wanted(cfg, client, sc, rnd):
                one(client, sc, rnd)
        if sc == "throughput" and feats["spool"] and rnd < cfg["rounds"]["spool"]:
            spool = str(harness.RESULTS / f"spool-{rnd}.db")
            for suffix in ("", "-wal", "-shm"):
                Path(spool + suffix).unlink(missing_ok=True)
            one("ours", "spool", rnd, spool)
    return runs


def import_times(clients: list[str], runs: int) -> dict[str, list[float]]:
    from adapters import ADAPTERS

    out: dict[str, list[float]] = {c: [] for c in clients}
    for c in clients:  # one discarded run each, so every client starts with warm .pyc files
        harness.import_time_us(ADAPTERS[c].module)
    for _ in range(runs):
        for c in clients:
            us = harness.import_time_us(ADAPTERS[c].module)
            if us is not None:
                out[c].append(us / 1000)
    return out


def sub_bench(script: str, args: list[str], timeout: float) -> dict[str, Any]:
    cmd = [str(harness.VENV_PY), str(harness.BENCH / script), *args]
    proc = harness.run(cmd, timeout, harness.RESULTS / "logs" / f"{script}.stderr")
    return harness.result_line(proc)


def main() -> None:
    harness.ensure_venv([str(Path(__file__).resolve()), *sys.argv[1:]])
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="smaller N, one round (< 1 minute)")
    ap.add_argument("--clients", default=",".join(CLIENTS))
    ap.add_argument("--scenarios", default=",".join(SCENARIOS))
    ap.add_argument("--no-report", action="store_true", help="keep docs/ untouched")
    args = ap.parse_args()
    cfg = QUICK if args.quick else FULL
    t0 = time.perf_counter()
    cpu_start = harness.cpu_times()
    harness.RESULTS.mkdir(parents=True, exist_ok=True)
    (harness.RESULTS / "logs").mkdir(exist_ok=True)
    feats = features()
    clients = [c for c in args.clients.split(",") if c != "ours" or feats["client"]]
    if not feats["client"]:
        print("our client (analytics.Client) is not available yet: peers only", flush=True)
    results: dict[str, Any] = {
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "mode": "quick" if args.quick else "full",
        "config": cfg,
        "machine": harness.machine_info(),
        "versions": versions(clients),
        "features": feats,
    }
    sink = harness.Sink()
    try:
        results["sink_capacity"] = sink.capacity(cfg["capacity_s"], 4)
        results["sink_capacity_1"] = sink.capacity(cfg["capacity_s"], 1)
        for key in ("sink_capacity", "sink_capacity_1"):
            cap = results[key]
            print(
                f"sink capacity, {cap['connections']} connection(s): "
                f"{cap.get('events_per_s', 0):,.0f} events/s",
                flush=True,
            )
        results["runs"] = client_runs(sink, cfg, clients, args.scenarios.split(","), feats, t0)
    finally:
        sink.stop()
    results["import_ms"] = import_times(clients, cfg["import_runs"])
    print(f"import ms: {results['import_ms']}", flush=True)
    extras(results, cfg, feats)
    results["total_s"] = time.perf_counter() - t0
    results["machine"]["steal"] = harness.steal_share(cpu_start, harness.cpu_times())
    out = harness.RESULTS / f"results-{results['mode']}.json"
    out.write_text(json.dumps(results, indent=1))
    print(f"raw results: {out}", flush=True)
    if not args.no_report:
        import report

        for path in report.write(results):
            print(f"wrote {path}", flush=True)
    print(f"total {results['total_s']:.0f} s", flush=True)


def profile_dir(results: dict[str, Any]) -> Path:
    return harness.RESULTS if results["mode"] == "quick" else harness.ROOT / "docs"


def extras(results: dict[str, Any], cfg: dict[str, Any], feats: dict[str, bool]) -> None:
    """The collector, the CLI import and the profile of our client: each only when it exists."""
    col = cfg["collector"]
    if feats["collector"]:
        results["collector"] = sub_bench(
            "collector_bench.py",
            [
                "--senders",
                str(col["senders"]),
                "--batches",
                str(col["batches"]),
                "--rounds",
                str(col["rounds"]),
                "--workers",
                ",".join(map(str, col["workers"])),
                *(["--postgres"] if feats.get("postgres") else []),
            ],
            timeout=150 * (1 + len(col["workers"]) + (2 if feats.get("postgres") else 0)),
        )
        print(f"collector: {results['collector']}", flush=True)
        results["profile_collector"] = sub_bench(
            "profile_collector.py",
            ["--batches", str(col["batches"]), "--out-dir", str(profile_dir(results))],
            timeout=120,
        )
    if feats["collector"] and feats["cli_import"]:
        results["cli_import"] = sub_bench(
            "import_bench.py", ["--lines", str(cfg["import_lines"])], timeout=170
        )
        print(f"cli import: {results['cli_import']}", flush=True)
    if feats["spool"]:
        results["profile_spool"] = sub_bench(
            "profile_spool.py",
            ["--n", str(cfg["profile_n"] // 2), "--out-dir", str(profile_dir(results))],
            timeout=100,
        )
    if feats["client"]:
        results["async"] = sub_bench(
            "async_bench.py",
            ["--n", str(cfg["async_n"]), "--rounds", str(cfg["async_rounds"])],
            timeout=200 * cfg["async_rounds"] + 60,
        )
        print(f"asyncio: {results['async'].get('summary', results['async'])}", flush=True)
        out_dir = profile_dir(results)
        results["profile"] = sub_bench(
            "profile_client.py",
            ["--n", str(cfg["profile_n"]), "--out-dir", str(out_dir)]
            + (["--no-svg"] if results["mode"] == "quick" else []),
            timeout=100,
        )
        print(f"profile: {results['profile'].get('summary', results['profile'])}", flush=True)


if __name__ == "__main__":
    main()
