"""Hostile input on the command line (issue 14, item 11): `analytics import` reports every bad
line by FILE:LINE and goes on; `analytics track` says what is wrong, never a traceback."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import orjson
from cli_helpers import run_cli

from analytics.collector import CollectorServer, Limits


def test_import_reports_out_of_range_timestamps_by_line_and_goes_on(
    collector: CollectorServer, tmp_path: Path
) -> None:
    """An out-of-range timestamp stopped the import with an OverflowError traceback."""
    path = tmp_path / "history.jsonl"
    lines = [
        {"type": "track", "userId": "u1", "event": "A", "timestamp": "2024-05-01T12:00:00Z"},
        {"type": "track", "userId": "u2", "event": "B", "timestamp": "0001-01-01T00:00:00+01:00"},
        {"type": "track", "userId": "u3", "event": "C", "timestamp": "2015-2-02T00:30:08.276Z"},
        {"type": "track", "userId": "u4", "event": "D", "timestamp": "9999-12-31T23:59:59-01:00"},
        {"type": "track", "userId": "", "event": "E"},
        {"type": "identify", "userId": "u6", "groupId": ""},
        {"type": "identify", "userId": "u7"},
    ]
    path.write_bytes(b"".join(orjson.dumps(line) + b"\n" for line in lines))
    result = run_cli(["import", str(path), "--host", collector.url])
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert f"{path}:2: timestamp '0001-01-01T00:00:00+01:00' is out of range" in result.stderr
    assert f"{path}:4: timestamp '9999-12-31T23:59:59-01:00' is out of range" in result.stderr
    assert f"{path}:5: user_id must not be an empty string" in result.stderr
    assert f"{path}:6: groupId must be a non-empty string or an integer" in result.stderr
    assert "read 7, sent 3, refused 4" in result.stdout
    stored = {m["userId"]: m["originalTimestamp"] for m in collector.store.events()}
    assert stored == {
        "u1": "2024-05-01T12:00:00.000Z",
        "u3": "2015-02-02T00:30:08.276Z",
        "u7": stored["u7"],
    }


def test_messages_refused_inside_a_200_are_reported_by_line(
    collector_factory: Callable[..., CollectorServer], tmp_path: Path
) -> None:
    """A collector with a smaller message limit refuses some lines inside its 200; lines that
    brought their own messageId were reported as "N message(s) of unknown origin"."""
    server = collector_factory(limits=Limits(max_message_bytes=600))
    big = {"blob": "x" * 2_000}
    lines = [
        {"type": "track", "userId": "u1", "event": "Small"},
        {"type": "track", "userId": "u2", "event": "Big", "properties": big},
        {"type": "track", "userId": "u3", "event": "Big", "properties": big, "messageId": "own-3"},
        {"type": "track", "userId": "u4", "event": "Small", "messageId": "own-4"},
    ]
    path = tmp_path / "mixed.jsonl"
    path.write_bytes(b"".join(orjson.dumps(line) + b"\n" for line in lines))
    result = run_cli(["import", str(path), "--host", server.url])
    assert result.returncode == 1, result.stderr
    assert "unknown origin" not in result.stderr
    assert f"{path}:2: not delivered: the collector refused it" in result.stderr
    assert f"{path}:3: not delivered: the collector refused it" in result.stderr
    assert "as stored; the limit is 1,112" in result.stderr
    assert sorted(m["userId"] for m in server.store.events()) == ["u1", "u4"]


def test_track_with_an_out_of_range_timestamp_is_a_usage_error(
    collector: CollectorServer,
) -> None:
    """It was an OverflowError traceback."""
    result = run_cli(
        [
            "track",
            "--user-id",
            "u1",
            "--event",
            "E",
            "--timestamp",
            "0001-01-01T00:00:00+01:00",
            "--host",
            collector.url,
        ]
    )
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert "'0001-01-01T00:00:00+01:00' is out of range once converted to UTC" in result.stderr
    assert collector.store.count() == 0


def test_track_takes_segment_s_lenient_date(collector: CollectorServer) -> None:
    result = run_cli(
        [
            "track",
            "--user-id",
            "u1",
            "--event",
            "E",
            "--timestamp",
            "2015-2-02T00:30:08.276Z",
            "--host",
            collector.url,
        ]
    )
    assert result.returncode == 0, result.stderr
    (stored,) = collector.store.events()
    assert stored["originalTimestamp"] == "2015-02-02T00:30:08.276Z"
