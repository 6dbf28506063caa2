"""Refused messages are logged by the collector, at most one line per interval."""

from __future__ import annotations

import logging

import pytest
from collector_http import batch, post, track

from analytics.collector import CollectorServer
from analytics.collector._messages import Refusal
from analytics.collector._refusals import RefusalLog


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "analytics.collector"]


def test_one_line_per_interval_with_the_count_of_the_others(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, "analytics.collector")
    clock = Clock()
    refusals = RefusalLog(interval=10.0, clock=clock)
    bad = Refusal(3, "invalid_timestamp", "timestamp is not ISO-8601")
    refusals.note("/v1/batch", [bad])
    refusals.note("/v1/batch", [])
    clock.now += 9.9
    refusals.note("/v1/batch", [bad, bad])
    assert len(lines(caplog)) == 1
    assert "item 3: invalid_timestamp: timestamp is not ISO-8601" in lines(caplog)[0]
    clock.now += 0.1
    refusals.note("/v1/t", [Refusal(0, "missing_event", "track needs an event")])
    second = lines(caplog)[1]
    assert "POST /v1/t: item 0: missing_event" in second
    assert "+2 more refused" in second


def test_a_refusal_inside_a_200_is_logged(
    collector: CollectorServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "analytics.collector")
    items = [track(1), track(2, timestamp="last tuesday")]
    reply = post(collector.url, "/v1/batch", batch(items))
    assert reply.status == 200
    assert reply.json["refused"][0]["code"] == "invalid_timestamp"
    (line,) = lines(caplog)
    assert "POST /v1/batch: item 1: invalid_timestamp" in line
