"""``analytics serve`` and ``analytics events`` on a PostgreSQL URL: real processes and server.

The URLs carry a password (the test cluster trusts local connections, so any password works):
it must never appear in output, logs, ``--help``, errors or ``/health``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable

import orjson
import pytest
from click.testing import CliRunner
from collector_http import batch, post, request, track
from test_collector_cli import SERVE, read_line_matching

from analytics.collector._cli import events_command, serve_command
from pgcluster import free_port

pytest.importorskip("psycopg")

SECRET = "s3cret-pw"


def with_password(url: str) -> str:
    scheme, rest = url.split("://", 1)
    user, host = rest.split("@", 1)
    return f"{scheme}://{user}:{SECRET}@{host}"


@pytest.fixture
def url(postgres_url: Callable[[], str]) -> str:
    return with_password(postgres_url())


def test_serve_with_workers_on_a_url_and_events_reads_it(url: str) -> None:
    env = {**os.environ, "ANALYTICS_DB": url}
    proc = subprocess.Popen(
        [sys.executable, "-u", "-c", SERVE, "--port", "0", "--workers", "2"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    out = ""
    try:
        line = read_line_matching(proc, r"Listening on http://", timeout=60)
        out += line
        base = line.split("Listening on ")[1].split()[0]
        for i in range(6):
            assert post(base, "/v1/batch", batch([track(i), track(i)])).status == 200
        health = request(base, "GET", "/health")
        assert health.status == 200
        assert health.json["store"]["store"] == "postgresql"
        assert health.json["store"]["reachable"] is True
        assert health.json["store"]["database"].startswith("postgresql://postgres@127.0.0.1")
        assert SECRET not in health.body.decode()
        proc.send_signal(signal.SIGTERM)
        rest, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=10)
    assert proc.returncode == 0, stderr
    assert SECRET not in out + rest + stderr
    assert "PostgresStore('postgresql://postgres@127.0.0.1" in stderr
    result = CliRunner().invoke(events_command, ["--type", "track", "--json"], env=env)
    assert result.exit_code == 0, result.output
    ids = [orjson.loads(line)["messageId"] for line in result.output.splitlines()]
    assert ids == [f"msg-{i}" for i in range(6)]


def test_help_never_shows_the_password_from_the_environment(url: str) -> None:
    for command in (serve_command, events_command):
        result = CliRunner().invoke(command, ["--help"], env={"ANALYTICS_DB": url})
        assert result.exit_code == 0
        assert "postgresql://" in result.output
        assert SECRET not in result.output


def test_unreachable_database_is_a_clear_error_without_the_password() -> None:
    url = f"postgresql://postgres:{SECRET}@127.0.0.1:{free_port()}/analytics"
    served = CliRunner().invoke(serve_command, ["--port", "0", "--workers", "1", "--db", url])
    assert served.exit_code == 1
    assert "cannot use the database: PostgreSQL postgresql://postgres@127.0.0.1" in served.output
    listed = CliRunner().invoke(events_command, ["--db", url])
    assert listed.exit_code == 1
    assert "PostgreSQL postgresql://postgres@127.0.0.1" in listed.output
    assert SECRET not in served.output + listed.output


def test_retention_needs_postgresql(tmp_path: object) -> None:
    result = CliRunner().invoke(
        serve_command, ["--port", "0", "--db", "x.db", "--retention-days", "3"]
    )
    assert result.exit_code == 2
    assert "--retention-days needs a PostgreSQL database" in result.output
