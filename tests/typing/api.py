"""Documented usage that must type-check under mypy --strict (checked by scripts/check)."""

from __future__ import annotations

import datetime
import logging

import analytics
from analytics.testing import FakeClock, capture


def documented_usage() -> None:
    analytics.init("KEY", host="http://127.0.0.1:8088", flush_at=50, log_level=logging.DEBUG)
    ok, message = analytics.track(user_id="u1", event="Played a Song", properties={"a": 1})
    analytics.identify("u1", {"plan": "Free"})
    when = datetime.datetime(2538, 10, 17, tzinfo=datetime.timezone.utc)
    analytics.track(user_id="u1", event="Bought a game", timestamp=when)
    delivered: bool = analytics.flush(timeout=5.0)
    client = analytics.Client("KEY", upload_size=100, sync_mode=False, clock=FakeClock())
    queued, msg = client.page("u1", "Docs", "Install")
    stats: analytics.Stats = client.stats
    dropped: dict[str, int] = stats.dropped
    with capture(client) as messages:
        client.alias("old", "new")
    names: list[str] = messages.events()
    client.on_failure(lambda data, error: print(error.reason, len(data)))
    client.on_success(lambda data, response: print(response.status))
    assert client.shutdown(timeout=5.0) or not delivered
    print(ok, message, queued, msg, dropped, names)
