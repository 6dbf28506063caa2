"""asyncio clients side by side: our `Client` and `AsyncClient`, and posthog's `AsyncClient`.

    python3 bench/run.py                       # runs this as part of the full benchmark
    bench/.venv/bin/python bench/async_bench.py --n 50000 --rounds 3   # alone

Each run is a fresh process whose caller is a coroutine on an asyncio loop, as in an asyncio
web app: it makes N calls (the benchmark workload, shared/ANCHORS.md), yielding to the loop
every 100 calls, then awaits a flush, and the sink (bench/sink.js) counts distinct events.
Measured: the median µs of one call (timed around the call alone), and delivered events/s
(N / time from the first call until the sink has all N). Our threaded `Client` is flushed
with `asyncio.to_thread`. Variants alternate within each round; medians over the rounds.
Targets (issue 16): AsyncClient's caller cost within 1.2x of Client's, delivered events/s at
least Client's. Prints one line `RESULT {json}`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import time
import urllib.request
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from workload import EVENT, USER_IDS, properties

VARIANTS = ("ours-thread", "ours-async", "posthog-async")
WRITE_KEY = "bench-write-key"


def _sink_get(url: str, path: str, timeout: float = 10.0) -> dict[str, Any]:
    with urllib.request.urlopen(url + path, timeout=timeout) as r:
        return dict(json.loads(r.read()))


def _build(variant: str, url: str, n: int) -> Any:
    if variant == "ours-thread":
        import analytics

        return analytics.Client(WRITE_KEY, host=url, flush_at=500, max_queue_size=n)
    if variant == "ours-async":
        import analytics

        return analytics.AsyncClient(WRITE_KEY, host=url, flush_at=500, max_queue_size=n)
    from posthog import AsyncClient

    return AsyncClient(WRITE_KEY, host=url, flush_at=500, max_queue_size=n)


async def _calls(variant: str, client: Any, n: int) -> list[int]:
    pc = time.perf_counter_ns
    times = [0] * n
    posthog = variant == "posthog-async"
    call = client.capture if posthog else client.track
    for i in range(n):
        p = properties(i)
        uid = USER_IDS[i % 1000]
        t0 = pc()
        if posthog:
            call(EVENT, distinct_id=uid, properties=p)
        else:
            call(user_id=uid, event=EVENT, properties=p)
        times[i] = pc() - t0
        if i % 100 == 99:
            await asyncio.sleep(0)  # an app yields to the loop between requests
    return times


async def _flush(variant: str, client: Any, timeout: float) -> None:
    if variant == "ours-thread":
        await asyncio.to_thread(client.flush, timeout=timeout)
    elif variant == "ours-async":
        await client.flush(timeout=timeout)
    else:
        await client.flush(timeout_seconds=timeout)


def worker(variant: str, url: str, n: int, budget: float) -> dict[str, Any]:
    """One run in this process; the result line."""
    _sink_get(url, "/_bench/reset?")
    client = _build(variant, url, n)

    async def main() -> dict[str, Any]:
        start = time.perf_counter()
        times = await _calls(variant, client, n)
        calls_s = time.perf_counter() - start
        await _flush(variant, client, budget)
        st = await asyncio.to_thread(
            _sink_get, url, f"/_bench/wait?distinct={n}&timeout_ms={int(budget * 1000)}", budget + 5
        )
        wall = time.perf_counter() - start
        times.sort()
        delivered = int(st["distinct"])
        return {
            "variant": variant,
            "median_us": times[n // 2] / 1000,
            "p99_us": times[int(n * 0.99)] / 1000,
            "calls_s": calls_s,
            "delivered": delivered,
            "lost": n - delivered,
            "delivered_per_s": delivered / wall,
        }

    return asyncio.run(main())


def run_all(n: int, rounds: int, budget: float) -> dict[str, Any]:
    import subprocess

    import harness

    sink = harness.Sink()
    runs: list[dict[str, Any]] = []
    try:
        for rnd in range(rounds):
            order = VARIANTS if rnd % 2 == 0 else VARIANTS[::-1]
            for variant in order:
                cmd = [sys.executable, __file__, "--worker", variant, "--sink", sink.url]
                cmd += ["--n", str(n), "--budget", str(budget)]
                proc = subprocess.run(
                    cmd, capture_output=True, text=True, timeout=budget * 3 + 60, check=False
                )
                line = [x for x in proc.stdout.splitlines() if x.startswith("RESULT ")]
                res = (
                    json.loads(line[-1][7:])
                    if line
                    else {"variant": variant, "error": proc.stderr[-800:]}
                )
                res["round"] = rnd
                runs.append(res)
                print(json.dumps(res), file=sys.stderr, flush=True)
    finally:
        sink.stop()
    return {"n": n, "rounds": rounds, "runs": runs, "summary": summarize(runs, rounds)}


def summarize(runs: list[dict[str, Any]], rounds: int) -> dict[str, Any]:
    """Medians per variant, and ratios to our threaded Client computed per round."""
    out: dict[str, Any] = {}
    by = {(r["variant"], r["round"]): r for r in runs if "error" not in r}
    for variant in VARIANTS:
        mine = [by[variant, k] for k in range(rounds) if (variant, k) in by]
        if not mine:
            continue
        base = [
            (by[variant, k], by["ours-thread", k])
            for k in range(rounds)
            if (variant, k) in by and ("ours-thread", k) in by
        ]
        out[variant] = {
            "median_us": statistics.median(r["median_us"] for r in mine),
            "delivered_per_s": statistics.median(r["delivered_per_s"] for r in mine),
            "lost": max(r["lost"] for r in mine),
            "call_vs_client": statistics.median(a["median_us"] / b["median_us"] for a, b in base)
            if base
            else None,
            "delivered_vs_client": statistics.median(
                a["delivered_per_s"] / b["delivered_per_s"] for a, b in base
            )
            if base
            else None,
        }
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--n", type=int, default=50_000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--budget", type=float, default=60.0)
    ap.add_argument("--worker", choices=VARIANTS)
    ap.add_argument("--sink")
    args = ap.parse_args()
    if args.worker:
        print(
            "RESULT " + json.dumps(worker(args.worker, args.sink, args.n, args.budget)), flush=True
        )
        os._exit(0)  # no exit hook may pad or hang the run
    print("RESULT " + json.dumps(run_all(args.n, args.rounds, args.budget)), flush=True)


if __name__ == "__main__":
    main()
