"""The ``serve`` and ``events`` commands: a real server process, signals, and listing."""

from __future__ import annotations

import re
import selectors
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

import orjson
import pytest
from click.testing import CliRunner
from collector_http import batch, post, track

from analytics.collector import CollectorServer
from analytics.collector._cli import events_command, parse_since, serve_command

SERVE = "from analytics.collector._cli import serve_command; serve_command()"


def read_line_matching(proc: subprocess.Popen[str], pattern: str, timeout: float) -> str:
    """Read ``proc`` stdout lines until one matches; fail after ``timeout`` seconds."""
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    with selectors.DefaultSelector() as selector:
        selector.register(proc.stdout, selectors.EVENT_READ)
        while (remaining := deadline - time.monotonic()) > 0:
            if not selector.select(remaining):
                continue
            line = proc.stdout.readline()
            if not line:
                break
            if re.search(pattern, line):
                return line
    raise AssertionError(f"no line matching {pattern!r} within {timeout} s")


def start_serve(db: Path, *args: str) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [sys.executable, "-u", "-c", SERVE, "--port", "0", "--db", str(db), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = read_line_matching(proc, r"Listening on http://", timeout=30)
    except AssertionError:
        proc.kill()
        proc.communicate(timeout=10)
        raise
    url = re.search(r"(http://127\.0\.0\.1:\d+)", line)
    assert url is not None
    return proc, url.group(1)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_serve_stops_cleanly_on_signal_keeping_acknowledged_events(
    tmp_path: Path, sig: signal.Signals
) -> None:
    db = tmp_path / "served.db"
    proc, url = start_serve(
        db, "--write-key", "cli-secret-key", "--log-level", "debug", "--workers", "1"
    )
    try:
        for i in range(5):
            reply = post(url, "/v1/batch", batch([track(i)]), key="cli-secret-key")
            assert reply.status == 200
        proc.send_signal(sig)
        _, stderr = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=10)
    assert proc.returncode == 0, stderr
    assert "accepting 1 configured write key" in stderr
    assert "5 stored" in stderr  # the summary line at shutdown
    assert "cli-secret-key" not in stderr
    result = CliRunner().invoke(events_command, ["--db", str(db), "--json"])
    assert result.exit_code == 0
    ids = [orjson.loads(line)["messageId"] for line in result.output.splitlines()]
    assert ids == [f"msg-{i}" for i in range(5)]


def test_serve_refuses_a_public_address_without_keys(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        serve_command, ["--host", "0.0.0.0", "--port", "0", "--db", str(tmp_path / "x.db")]
    )
    assert result.exit_code == 2
    assert "without a write key" in result.output


@pytest.fixture
def filled(collector_factory: Callable[..., CollectorServer], tmp_path: Path) -> Path:
    db = tmp_path / "filled.db"
    server = collector_factory(db=db)
    items = [
        track(1, userId="alice", event="Signed Up"),
        track(2, userId="bob", event="Played"),
        {"type": "identify", "userId": "alice", "messageId": "id-1", "traits": {"x": 1}},
        track(3, userId="alice", event="Played"),
    ]
    assert post(server.url, "/v1/batch", batch(items)).status == 200
    server.stop()
    return db


def run_events(db: Path, *args: str) -> list[str]:
    result = CliRunner().invoke(events_command, ["--db", str(db), *args])
    assert result.exit_code == 0, result.output
    return result.output.splitlines()


def test_events_json_is_one_stored_message_per_line_newest_last(filled: Path) -> None:
    lines = run_events(filled, "--json")
    messages = [orjson.loads(line) for line in lines]
    assert [m["messageId"] for m in messages] == ["msg-1", "msg-2", "id-1", "msg-3"]
    assert all("receivedAt" in m and "timestamp" in m for m in messages)
    assert messages[0]["originalTimestamp"] == "2024-05-01T12:00:00.000Z"


def test_events_filters(filled: Path) -> None:
    def ids(*args: str) -> list[str]:
        return [orjson.loads(line)["messageId"] for line in run_events(filled, "--json", *args)]

    assert ids("--type", "identify") == ["id-1"]
    assert ids("--user-id", "alice") == ["msg-1", "id-1", "msg-3"]
    assert ids("--event", "Played") == ["msg-2", "msg-3"]
    assert ids("--limit", "2") == ["id-1", "msg-3"]
    assert ids("--since", "1h") == ["msg-1", "msg-2", "id-1", "msg-3"]
    assert ids("--since", "2999-01-01T00:00:00Z") == []


def test_events_table_output(filled: Path) -> None:
    lines = run_events(filled)
    assert len(lines) == 4
    assert "track" in lines[0]
    assert "alice" in lines[0]
    assert "Signed Up" in lines[0]
    assert lines[0].rstrip().endswith("msg-1")


def test_events_without_a_database_is_a_clear_error(tmp_path: Path) -> None:
    result = CliRunner().invoke(events_command, ["--db", str(tmp_path / "none.db")])
    assert result.exit_code == 1
    assert "no collector database" in result.output
    assert not (tmp_path / "none.db").exists()


def test_events_bad_since_is_a_usage_error(filled: Path) -> None:
    result = CliRunner().invoke(events_command, ["--db", str(filled), "--since", "soon"])
    assert result.exit_code == 2
    assert "--since" in result.output


def test_parse_since() -> None:
    now = datetime(2026, 1, 1, 12, 0, tzinfo=timezone.utc)
    assert parse_since("90s", now) == datetime(2026, 1, 1, 11, 58, 30, tzinfo=timezone.utc)
    assert parse_since("2h", now) == datetime(2026, 1, 1, 10, 0, tzinfo=timezone.utc)
    assert parse_since("2026-01-01T00:00:00Z") == datetime(2026, 1, 1, tzinfo=timezone.utc)
    with pytest.raises(ValueError, match="duration"):
        parse_since("tomorrow")
