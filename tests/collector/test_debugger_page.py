"""The live debugger page in a real browser (headless Chromium driven by Playwright) against a
real collector on 127.0.0.1, fed by our own client."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from collector_http import batch, post, track

import analytics
from analytics.collector import CollectorServer

expect: Any = pytest.importorskip("playwright.sync_api").expect

TOKEN = "an-admin-token-for-the-tests"


@pytest.fixture
def client(collector: CollectorServer) -> Iterator[analytics.Client]:
    client = analytics.Client("page-key", host=collector.url)
    yield client
    client.shutdown(timeout=10)


def open_live(page: Any, url: str) -> None:
    page.goto(url + "/")
    expect(page.locator("#status")).to_have_text("Live", timeout=10_000)


@pytest.fixture
def live(collector: CollectorServer, page: Any) -> Any:
    """The page of ``collector``, open and connected to its stream."""
    open_live(page, collector.url)
    return page


def test_events_sent_with_our_client_appear_within_a_second(
    collector: CollectorServer, client: analytics.Client, live: Any
) -> None:
    client.track("u1", "Order Completed", {"total": 9})
    client.identify("u2", {"plan": "pro"})
    assert client.flush(timeout=10)  # answered 200: both are committed now
    rows = live.locator("#rows [role=row]")
    expect(rows).to_have_count(2, timeout=1_000)
    expect(rows.nth(0)).to_contain_text("identify")  # newest first
    expect(rows.nth(0)).to_contain_text("u2")
    expect(rows.nth(1)).to_contain_text("Order Completed")
    expect(live.locator("#c-stored")).to_have_text("2")


def test_clicking_an_event_shows_its_whole_json(
    collector: CollectorServer, client: analytics.Client, live: Any
) -> None:
    client.track("u1", "Order Completed", {"total": 9, "items": ["a", "b"]})
    assert client.flush(timeout=10)
    live.locator("#rows [role=row]").first.click()
    expect(live.locator("#detail")).to_be_visible()
    (stored,) = collector.store.events()
    assert orjson.loads(live.locator("#d-json").text_content()) == stored


def test_the_keyboard_opens_an_event_and_escape_closes_it(
    collector: CollectorServer, client: analytics.Client, live: Any
) -> None:
    for i in range(3):
        client.track(f"u{i}", f"Step {i}")
    assert client.flush(timeout=10)
    expect(live.locator("#rows [role=row]")).to_have_count(3)
    live.locator("#rows button").first.focus()
    live.keyboard.press("ArrowDown")
    live.keyboard.press("Enter")
    expect(live.locator("#d-title")).to_have_text("track Step 1")
    live.keyboard.press("Escape")
    expect(live.locator("#detail")).to_be_hidden()


def test_a_filter_hides_the_other_events(
    collector: CollectorServer, client: analytics.Client, live: Any
) -> None:
    for i in range(3):
        client.track(f"u{i}", "Song Played")
        client.track(f"u{i}", "Order Completed")
    client.page("u9", name="Home")
    assert client.flush(timeout=10)
    rows = live.locator("#rows [role=row]")
    expect(rows).to_have_count(7)
    live.fill("#f-text", "order")
    expect(rows).to_have_count(3)
    for i in range(3):
        expect(rows.nth(i)).to_contain_text("Order Completed")
    live.fill("#f-text", "")
    live.select_option("#f-type", "page")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("Home")
    live.select_option("#f-type", "")
    live.fill("#f-user", "u1")
    expect(rows).to_have_count(2)


def test_a_refused_message_shows_its_reason_and_field(
    collector: CollectorServer, live: Any
) -> None:
    reply = post(collector.url, "/v1/batch", batch([track(1), {**track(2), "timestamp": "soon"}]))
    assert reply.json["refused"][0]["code"] == "invalid_timestamp"
    refused = live.locator("#rows .refused")
    expect(refused).to_have_count(1, timeout=5_000)
    expect(refused).to_contain_text("invalid_timestamp")
    expect(refused).to_contain_text("field: timestamp")
    refused.click()
    expect(live.locator("#d-reason")).to_contain_text("timestamp")
    assert orjson.loads(live.locator("#d-json").text_content())["timestamp"] == "soon"
    live.select_option("#f-type", "refused")
    expect(live.locator("#rows [role=row]")).to_have_count(1)


def test_pause_then_resume_loses_nothing(
    collector: CollectorServer, client: analytics.Client, live: Any
) -> None:
    client.track("u0", "Before")
    assert client.flush(timeout=10)
    rows = live.locator("#rows [role=row]")
    expect(rows).to_have_count(1)
    live.click("#pause")
    expect(live.locator("#pause")).to_have_attribute("aria-pressed", "true")
    for i in range(25):
        client.track(f"u{i}", f"While paused {i}")
    assert client.flush(timeout=10)
    expect(live.locator("#status")).to_have_text("Paused: 25 new waiting", timeout=5_000)
    assert rows.count() == 1  # arrived, but not shown while paused
    live.click("#pause")
    expect(rows).to_have_count(26)
    shown = [rows.nth(i).locator("[role=cell]").nth(2).text_content() for i in range(26)]
    assert shown == [f"While paused {i}" for i in reversed(range(25))] + ["Before"]


def test_the_token_form_opens_the_page(
    collector_factory: Any,
    page: Any,
) -> None:
    server = collector_factory(admin_token=TOKEN)
    page.goto(server.url + "/")
    page.fill("input[name=token]", TOKEN)
    page.click("button[type=submit]")
    expect(page.locator("#status")).to_have_text("Live", timeout=10_000)
    assert TOKEN not in page.url
    post(server.url, "/v1/batch", batch([track(1)]))
    expect(page.locator("#rows [role=row]")).to_have_count(1, timeout=5_000)


def test_a_flood_shows_the_newest_rows_capped_and_pause_still_loses_nothing(
    collector: CollectorServer, live: Any
) -> None:
    """8,000 events sent as fast as one connection goes (beyond 2,000 events/s here), with
    pause/resume clicked in between: the counts are exact and the table keeps the newest 500.
    (How fast the page stays is measured in bench/bench_debugger.py, not asserted.)"""
    for second in range(4):
        for part in range(10):
            first = (second * 10 + part) * 200
            post(collector.url, "/v1/batch", batch([track(first + i) for i in range(200)]))
        live.click("#pause")
        live.click("#pause")
    expect(live.locator("#c-stored")).to_have_text("8,000", timeout=10_000)
    expect(live.locator("#types")).to_contain_text("track 8,000")
    rows = live.locator("#rows [role=row]")
    expect(rows.first).to_contain_text("user-7999", timeout=5_000)
    expect(rows).to_have_count(500)
    expect(rows.last).to_contain_text("user-7500")


_CONTRAST = """(selectors) => {
  const rgb = (c) => c.match(/[\\d.]+/g).map(Number);
  const lum = ([r, g, b]) => {
    const f = (v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; };
    return 0.2126 * f(r) + 0.7152 * f(g) + 0.0722 * f(b);
  };
  const background = (el) => {
    for (; el; el = el.parentElement) {
      const c = rgb(getComputedStyle(el).backgroundColor);
      if (c.length < 4 || c[3] > 0) return c.slice(0, 3);
    }
    return [255, 255, 255];
  };
  return selectors.map((s) => {
    const el = document.querySelector(s);
    const a = lum(rgb(getComputedStyle(el).color)), b = lum(background(el));
    return [s, (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05)];
  });
}"""


def test_text_contrast_is_at_least_4_5_to_1(
    collector: CollectorServer, client: analytics.Client, live: Any
) -> None:
    client.track("u1", "Order Completed")
    assert client.flush(timeout=10)
    post(collector.url, "/v1/batch", batch([{**track(2), "timestamp": "soon"}]))
    expect(live.locator("#rows .refused")).to_have_count(1, timeout=5_000)
    selectors = [
        "h1",
        "#status",
        ".counts dt",
        ".types",
        ".filters label",
        "#pause",
        "#rows .row:not(.refused) [role=cell]:nth-child(2)",
        "#rows .row:not(.refused) .open",
        "#rows .row:not(.refused) .key",
        "#rows .refused [role=cell]:nth-child(3)",
        "#rows .refused .open",
    ]
    ratios = dict(live.evaluate(_CONTRAST, selectors))
    assert all(ratio >= 4.5 for ratio in ratios.values()), ratios


def test_a_narrow_window_hides_the_wide_columns_and_never_scrolls_sideways(
    collector: CollectorServer, client: analytics.Client, page: Any
) -> None:
    page.set_viewport_size({"width": 380, "height": 700})
    open_live(page, collector.url)
    client.track("a-rather-long-user-id@example.com", "An event with a long name to cut")
    assert client.flush(timeout=10)
    row = page.locator("#rows [role=row]").first
    expect(row).to_be_visible()
    expect(row.locator(".wide").first).to_be_hidden()
    row.click()
    expect(page.locator("#d-json")).to_be_visible()
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
