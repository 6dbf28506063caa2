"""A collector on a temporary database with its live page open in headless Debian chromium,
for the debugger's screenshot and page benchmark."""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from playwright.sync_api import expect, sync_playwright

from analytics.collector import CollectorServer


@contextlib.contextmanager
def live_page(width: int, height: int) -> Iterator[tuple[CollectorServer, Any]]:
    """``(server, page)``: the page is open and its stream connected."""
    chromium = shutil.which("chromium")
    if chromium is None:
        raise SystemExit("needs chromium on PATH (apt-get install chromium)")
    with (
        tempfile.TemporaryDirectory() as tmp,
        CollectorServer(Path(tmp) / "events.db") as server,
        sync_playwright() as playwright,
    ):
        browser = playwright.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": width, "height": height})
            page.goto(server.url + "/")
            expect(page.locator("#status")).to_have_text("Live", timeout=10_000)
            yield server, page
        finally:
            browser.close()
