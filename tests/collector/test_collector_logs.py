"""``analytics serve --log-format json``: every line of a real run is a JSON object, no secret."""

from __future__ import annotations

import logging
import os
import re
import subprocess
import sys
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import orjson
import pytest
from collector_http import batch, post, request, track
from test_collector_cli import SERVE, read_line_matching, start_serve
from test_collector_workers import serving_pids, stop

from analytics.collector._logs import JsonFormatter, LogSettings, TextFormatter

WRITE_KEY = "write-key-that-must-stay-secret"
ADMIN_TOKEN = "admin-token-that-must-stay-secret"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="--workers needs Linux")
def test_every_line_of_a_json_run_is_an_object(tmp_path: Path) -> None:
    proc, url = start_serve(
        tmp_path / "j.db",
        "--workers", "2",
        "--log-format", "json",
        "--log-level", "debug",
        "--write-key", WRITE_KEY,
        "--admin-token", ADMIN_TOKEN,
    )  # fmt: skip
    try:
        assert len(serving_pids(url, 16)) == 2
        sizes = [3, 5, 7]
        for n, size in enumerate(sizes):
            body = batch([track(100 * n + i) for i in range(size)])
            assert post(url, "/v1/batch", body, key=WRITE_KEY).status == 200
        assert post(url, "/v1/track", track(1), key="an-unknown-key").status == 401
        assert request(url, "GET", "/metrics").status == 401  # no admin token
    finally:
        stderr = stop(proc)
    lines = stderr.splitlines()
    assert lines
    records = [orjson.loads(line) for line in lines]  # fails on any line that is not JSON
    for record in records:
        assert isinstance(record, dict)
        assert {"time", "level", "logger", "message", "pid"} <= record.keys()
        assert datetime.fromisoformat(record["time"]).tzinfo is not None
        assert record["level"] in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}
    assert len({record["pid"] for record in records}) == 2  # both processes log in JSON
    ingest = [r for r in records if r.get("route") == "/v1/batch"]
    assert sorted(r["messages"] for r in ingest) == sizes
    assert all(r["status"] == 200 and r["duration_ms"] >= 0 for r in ingest)
    refused = [r for r in records if r.get("route") == "/v1/track"]
    assert [(r["status"], r.get("messages")) for r in refused] == [(401, None)]
    assert any("collector stopping" in r["message"] for r in records)
    assert WRITE_KEY not in stderr
    assert ADMIN_TOKEN not in stderr


def test_the_default_lines_stay_for_people(tmp_path: Path) -> None:
    proc, url = start_serve(tmp_path / "t.db", "--workers", "1")
    try:
        assert post(url, "/v1/batch", batch([track(1)])).status == 200
    finally:
        stderr = stop(proc)
    lines = stderr.splitlines()
    assert lines
    pattern = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} [A-Z]+ [\w.]+\[\d+\]: .+")
    assert all(pattern.match(line) for line in lines), lines


def record(message: str, *args: object, exc: BaseException | None = None) -> logging.LogRecord:
    exc_info = (type(exc), exc, exc.__traceback__) if exc is not None else None
    return logging.LogRecord(
        "analytics.collector", logging.ERROR, __file__, 1, message, args, exc_info
    )


def test_secrets_are_removed_from_messages_exceptions_and_urls() -> None:
    db = "postgresql://collector:db-password-42@127.0.0.1:5432/events"
    settings = LogSettings(logging.INFO, "json", (WRITE_KEY,), db)
    try:
        raise RuntimeError(f"cannot connect to {db} with key {WRITE_KEY}")
    except RuntimeError as exc:
        error = exc
    other = "postgres://someone:other-password@localhost/x?sslmode=require"
    rec = record("store %r, key %s, other %s", db, WRITE_KEY, other, exc=error)
    line = JsonFormatter(settings).format(rec)
    parsed = orjson.loads(line)
    assert "collector@127.0.0.1:5432/events" in parsed["message"]
    assert "someone@localhost/x" in parsed["message"]
    assert "RuntimeError" in parsed["exception"]
    text = TextFormatter(settings).format(rec)
    for output in (line, text):
        for secret in ("db-password-42", "other-password", WRITE_KEY):
            assert secret not in output


def test_a_json_run_on_postgresql_never_shows_the_password(
    postgres_url: Callable[[], str],
) -> None:
    """The ``--db`` URL carries a password (the test cluster trusts local connections)."""
    pytest.importorskip("psycopg")
    secret = "db-password-in-the-url"
    scheme, rest = postgres_url().split("://", 1)
    user, host = rest.split("@", 1)
    db = f"{scheme}://{user}:{secret}@{host}"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-u",
            "-c",
            SERVE,
            "--port",
            "0",
            "--workers",
            "1",
            "--log-format",
            "json",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "ANALYTICS_DB": db},
    )
    try:
        line = read_line_matching(proc, r"Listening on http://", timeout=60)
        url = line.split("Listening on ")[1].split()[0]
        assert post(url, "/v1/batch", batch([track(1), track(2)])).status == 200
        metrics = request(url, "GET", "/metrics").body.decode()
        assert "analytics_collector_store_up 1.0" in metrics
        assert "analytics_collector_messages_stored_total 2.0" in metrics
    finally:
        stderr = stop(proc)
    records = [orjson.loads(line) for line in stderr.splitlines()]
    assert any("postgresql://" in record["message"] for record in records)  # named, redacted
    assert secret not in stderr
    assert secret not in line
