"""Take docs/debugger.png: the live debugger page of a collector fed with a few events.

    .venv/bin/python bench/debugger_screenshot.py [--out docs/debugger.png] [--width 1280]

Needs Debian's ``chromium`` and ``pip install playwright`` (the dev extra has it).
"""

from __future__ import annotations

import argparse
import base64
import http.client
import os
import sys
from pathlib import Path
from typing import Any

import orjson
from playwright.sync_api import expect

import analytics
from analytics.collector import CollectorServer

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from debugger_browser import live_page


def _post_raw(server: CollectorServer, body: dict[str, Any]) -> None:
    """A request from a buggy sender (our client refuses such messages at the call)."""
    conn = http.client.HTTPConnection(server.host, server.port, timeout=10)
    auth = base64.b64encode(b"web-key:").decode()
    headers = {"Content-Type": "application/json", "Authorization": f"Basic {auth}"}
    conn.request("POST", "/v1/batch", orjson.dumps(body), headers)
    conn.getresponse().read()
    conn.close()


def _feed(server: CollectorServer) -> None:
    client = analytics.Client("server-key", host=server.url)
    client.identify("ada@example.com", {"name": "Ada Lovelace", "plan": "pro"})
    client.page("ada@example.com", "Docs", "Getting started", {"path": "/docs/start"})
    for i, (user, event) in enumerate(
        [
            ("ada@example.com", "Signed Up"),
            ("grace@example.com", "Song Played"),
            ("ada@example.com", "Order Completed"),
            ("linus@example.com", "Song Played"),
        ]
    ):
        client.track(user, event, {"order": i, "revenue": 9.5 + i, "currency": "EUR"})
    client.group("ada@example.com", "acme", {"name": "Acme Inc."})
    client.flush(timeout=10)
    bad = {"type": "track", "userId": "joan", "event": "Checkout", "timestamp": "tomorrow"}
    _post_raw(server, {"batch": [bad]})
    client.track("grace@example.com", "Order Completed", {"revenue": 42.0, "currency": "EUR"})
    client.shutdown(timeout=10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=Path("docs/debugger.png"))
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--height", type=int, default=720)
    args = parser.parse_args()
    with live_page(args.width, args.height) as (server, page):
        _feed(server)
        rows = page.locator("#rows [role=row]")
        expect(rows).to_have_count(9, timeout=10_000)
        rows.filter(has_text="Order Completed").last.click()
        expect(page.locator("#detail")).to_be_visible()
        page.screenshot(path=str(args.out))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
