"""One benchmark run of one client in a fresh process.

    python worker.py --client NAME --scenario SCENARIO --n N --sink URL [--seed S] [--spool PATH]

Scenarios: throughput, rss, burst, slow, fail503, spool. Prints one line `RESULT {json}` and
leaves with os._exit(0) so that no client's exit hook can hang or pad the run (the harness also
kills the process group at its timeout)."""

from __future__ import annotations

import argparse
import json
import logging
import os
import resource
import sys
import time
import urllib.request
from array import array
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from adapters import ADAPTERS, Adapter


class Sink:
    def __init__(self, url: str) -> None:
        self.url = url

    def get(self, path: str, timeout: float = 10.0) -> dict[str, Any]:
        with urllib.request.urlopen(self.url + path, timeout=timeout) as r:
            return dict(json.loads(r.read()))

    def reset(self, **params: Any) -> None:
        q = "&".join(f"{k}={v}" for k, v in params.items())
        self.get(f"/_bench/reset?{q}")

    def wait(self, distinct: int, timeout: float) -> dict[str, Any]:
        ms = int(timeout * 1000)
        return self.get(f"/_bench/wait?distinct={distinct}&timeout_ms={ms}", timeout + 5)


class CountingHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes log records to stderr as Python's last-resort handler would, and counts them."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        self.count += 1
        super().emit(record)


def proc_status(field: str) -> float:
    """VmHWM / VmRSS from /proc/self/status in MB (0 where /proc is missing)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def cpu_seconds() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def call_stats(times: array[int]) -> dict[str, Any]:
    s = sorted(times)
    n = len(s)
    return {
        "median_us": s[n // 2] / 1000,
        "p99_us": s[min(n - 1, int(n * 0.99))] / 1000,
        "max_us": s[-1] / 1000,
        "mean_us": sum(s) / n / 1000,
        "calls_over_10ms": sum(1 for t in s if t > 10_000_000),
        "calls_over_50ms": sum(1 for t in s if t >= 50_000_000),
    }


def run_calls(adapter: Adapter, n: int) -> tuple[dict[str, Any], float]:
    """The timed loop; memory is read right after it, before the statistics allocate."""
    times = array("q", bytes(8 * n))
    t_first = time.time()
    w0 = time.perf_counter()
    refused = adapter.loop(n, times)
    wall = time.perf_counter() - w0
    out = {"rss_after_calls_mb": proc_status("VmRSS"), "hwm_after_calls_mb": proc_status("VmHWM")}
    out.update(call_stats(times))
    out.update(refused_calls=refused, caller_wall_s=wall, caller_us_per_call=wall / n * 1e6)
    return out, t_first


def delivery(sink: Sink, adapter: Adapter, n: int, t_first: float, budget: float) -> dict[str, Any]:
    """Flushes (bounded), waits until the sink has all n distinct ids (bounded) and returns the
    delivery figures."""
    flushed = adapter.flush(budget)
    drops = adapter.reported_drops() or 0
    st = sink.wait(n - drops, timeout=max(2.0, budget / 2))
    distinct = int(st["distinct"])
    out: dict[str, Any] = {
        "flush_returned": flushed,
        "delivered": distinct,
        "lost": n - distinct,
        "duplicates": int(st["duplicates"]),
        "requests": st["requests"],
        "answered_503": st["answered_503"],
        "max_batch": st["max_batch"],
        "verified": st["verified"],
        "verify_mismatch": st["verify_mismatch"],
        "bad_requests": st["bad_requests"],
        "paths": st["paths"],
        "encodings": st["encodings"],
        "client_reported_drops": adapter.reported_drops(),
    }
    if st["t_last_new"] is not None and distinct:
        secs = st["t_last_new"] / 1000 - t_first
        out.update(delivery_s=secs, delivered_per_s=distinct / secs if secs > 0 else None)
        # the sink's CPU time over the delivery window: near 100% would make it the bottleneck
        out["sink_cpu_pct"] = 100 * st["cpu_ms"] / 1000 / secs if secs > 0 else None
    return out


def scenario(args: argparse.Namespace, sink: Sink, cls: type[Adapter]) -> dict[str, Any]:
    n, sc = args.n, args.scenario
    mode = {"burst": "defaults", "spool": f"spool:{args.spool}"}.get(sc, "tuned")
    reset = {
        "rss": {"hold": 1},
        "slow": {"delay_ms": 50},
        "fail503": {"fail_rate": 0.2, "seed": args.seed},
    }.get(sc, {})
    sink.reset(**reset)
    handler = CountingHandler()
    handler.setLevel(logging.WARNING)
    logging.getLogger().addHandler(handler)
    rss0 = proc_status("VmRSS")
    adapter = cls(args.sink, mode, n)
    cpu0 = cpu_seconds()
    res, t_first = run_calls(adapter, n)
    res["rss_before_mb"] = rss0
    if sc == "rss":
        sink.get("/_bench/release")
    else:
        res.update(delivery(sink, adapter, n, t_first, args.budget))
        res["cpu_us_per_event"] = (cpu_seconds() - cpu0) / n * 1e6
    res["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    res["log_records"] = handler.count
    return res


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--client", required=True, choices=sorted(ADAPTERS))
    ap.add_argument("--scenario", required=True)
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--sink", required=True)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--budget", type=float, default=60.0, help="seconds for flush + delivery")
    ap.add_argument("--spool", default="")
    args = ap.parse_args()
    cls = ADAPTERS[args.client]
    out: dict[str, Any] = {"client": args.client, "scenario": args.scenario, "n": args.n}
    try:
        out.update(scenario(args, Sink(args.sink), cls))
    except Exception as exc:  # reported as a failed run, never hidden
        out["error"] = f"{type(exc).__name__}: {exc}"
    sys.stdout.write("RESULT " + json.dumps(out) + "\n")
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
