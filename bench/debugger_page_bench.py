"""How the live debugger page copes with a steady 2,000 events/s (headless Debian chromium).

A collector (one process) gets 100-event batches every 50 ms for --seconds; the page is open
meanwhile. Measured in the page: the delay from each event's ``receivedAt`` to its row being in
the table (the same clock: one machine), the gaps between animation frames (a responsive page
paints every ~16 ms), and the long tasks (> 50 ms) the browser reports.

    .venv/bin/python bench/debugger_page_bench.py [--rate 2000] [--seconds 10]

Prints a summary and one line `RESULT {json}`.
"""

from __future__ import annotations

import argparse
import base64
import http.client
import json
import os
import statistics
import sys
import threading
import time
from typing import Any

import orjson
from playwright.sync_api import expect

from analytics.collector import CollectorServer

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from debugger_browser import live_page

_PROBE = """() => {
  window.__delays = []; window.__gaps = []; window.__long = [];
  new MutationObserver((records) => {
    const now = Date.now();
    for (const r of records) for (const tr of r.addedNodes) {
      const received = tr.children && tr.children[4] && Date.parse(tr.children[4].title);
      if (received) window.__delays.push(now - received);
    }
  }).observe(document.getElementById("rows"), {childList: true});
  let last = performance.now();
  const frame = (t) => { window.__gaps.push(t - last); last = t; requestAnimationFrame(frame); };
  requestAnimationFrame(frame);
  new PerformanceObserver((list) => {
    for (const e of list.getEntries()) window.__long.push(e.duration);
  }).observe({type: "longtask", buffered: true});
}"""


def _send(server: CollectorServer, rate: int, seconds: float, sent: list[int]) -> None:
    """``rate`` events/s as 100-event batches on one keep-alive connection, paced."""
    conn = http.client.HTTPConnection(server.host, server.port, timeout=30)
    auth = "Basic " + base64.b64encode(b"bench-key:").decode()
    headers = {"Content-Type": "application/json", "Authorization": auth}
    per_batch = 100
    interval = per_batch / rate
    start = time.monotonic()
    n = 0
    while (due := start + n * interval) < start + seconds:
        time.sleep(max(0.0, due - time.monotonic()))
        batch = [
            {
                "type": "track",
                "userId": f"u{i % 50}",
                "event": f"Event {i % 7}",
                "messageId": f"m{i}",
            }
            for i in range(n * per_batch, (n + 1) * per_batch)
        ]
        conn.request("POST", "/v1/batch", orjson.dumps({"batch": batch}), headers)
        conn.getresponse().read()
        n += 1
    sent.append(n * per_batch)
    conn.close()


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))] if ordered else 0.0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rate", type=int, default=2000)
    ap.add_argument("--seconds", type=float, default=10.0)
    args = ap.parse_args()
    with live_page(1280, 800) as (server, page):
        page.evaluate(_PROBE)
        sent: list[int] = []
        sender = threading.Thread(target=_send, args=(server, args.rate, args.seconds, sent))
        started = time.monotonic()
        sender.start()
        sender.join()
        elapsed = time.monotonic() - started
        expect(page.locator("#c-stored")).to_have_text(f"{sent[0]:,}", timeout=10_000)
        probe: dict[str, Any] = page.evaluate(
            "() => ({delays: window.__delays, gaps: window.__gaps, long: window.__long,"
            " rows: document.getElementById('rows').children.length,"
            " types: document.getElementById('types').textContent})"
        )
    delays, gaps, long_tasks = probe["delays"], probe["gaps"], probe["long"]
    result = {
        "events": sent[0],
        "events_per_s": sent[0] / elapsed,
        "rows_rendered": len(delays),
        "delay_ms_median": statistics.median(delays) if delays else None,
        "delay_ms_p99": _pct(delays, 0.99),
        "frame_gap_ms_median": statistics.median(gaps) if gaps else None,
        "frame_gap_ms_p99": _pct(gaps, 0.99),
        "frame_gap_ms_max": max(gaps, default=0.0),
        "long_tasks": len(long_tasks),
        "long_task_ms_total": sum(long_tasks),
        "rows_in_table": probe["rows"],
    }
    for name, value in result.items():
        print(f"{name:>22}: {value:,.1f}" if isinstance(value, float) else f"{name:>22}: {value}")
    print("RESULT " + json.dumps(result))


if __name__ == "__main__":
    main()
