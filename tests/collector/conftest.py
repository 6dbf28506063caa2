"""Fixtures of the collector tests: headless Chromium (Debian's ``chromium``) driven by Playwright, for the debugger page tests.

``scripts/check`` installs chromium under ``CI=true``; elsewhere, without it, the browser tests
are skipped with a line saying so. Playwright's own browser download is never used: it is
launched with ``executable_path``.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from typing import Any

import pytest


def chromium_path() -> str:
    """The chromium executable, or skip (fail under CI, where it must be installed)."""
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        message = "no chromium on PATH (apt-get install chromium): browser tests not run"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return path


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """One headless Chromium per test module (Playwright's sync API owns an event loop, so
    it must not outlive the module and meet the asyncio tests of other modules)."""
    path = chromium_path()
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=path, args=["--no-sandbox"])
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    """A fresh page (own cookies) 1200x800, closed after the test."""
    context = browser.new_context(viewport={"width": 1200, "height": 800})
    try:
        yield context.new_page()
    finally:
        context.close()
