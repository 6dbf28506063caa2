"""`analytics track|identify|page|screen|group|alias`, run as a user would, against a real
collector on 127.0.0.1."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import pytest
from cli_helpers import WRITE_KEY, cli_env, run_cli
from click.testing import CliRunner

from analytics.cli import cli
from analytics.collector import CollectorServer

CASES: list[tuple[str, list[str], dict[str, Any]]] = [
    (
        "track",
        ["--user-id", "u1", "--event", "Played a Song", "--properties", '{"plays": 3}'],
        {"userId": "u1", "event": "Played a Song", "properties": {"plays": 3}},
    ),
    (
        "identify",
        ["--user-id", "u1", "--traits", '{"plan": "Free", "friends": 30}'],
        {"userId": "u1", "traits": {"plan": "Free", "friends": 30}},
    ),
    (
        "page",
        ["--anonymous-id", "a1", "--name", "Home", "--category", "Docs"],
        {"anonymousId": "a1", "name": "Home", "category": "Docs"},
    ),
    (
        "screen",
        ["--user-id", "u1", "--name", "Settings", "--properties", '{"tab": "privacy"}'],
        {"userId": "u1", "name": "Settings", "properties": {"tab": "privacy"}},
    ),
    (
        "group",
        ["--user-id", "u1", "--group-id", "g1", "--traits", '{"employees": 12}'],
        {"userId": "u1", "groupId": "g1", "traits": {"employees": 12}},
    ),
    (
        "alias",
        ["--previous-id", "anon-7", "--user-id", "u1"],
        {"previousId": "anon-7", "userId": "u1"},
    ),
]


@pytest.mark.parametrize(("kind", "flags", "expected"), CASES, ids=[c[0] for c in CASES])
def test_each_send_command_is_delivered_and_stored(
    collector: CollectorServer, kind: str, flags: list[str], expected: dict[str, Any]
) -> None:
    """Each command exits 0 once the collector stored the event, and prints its messageId."""
    result = run_cli([kind, *flags, "--host", collector.url])
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"delivered {kind} ")
    message_id = result.stdout.split()[-1]
    stored = collector.store.events(type=kind)
    assert [m["messageId"] for m in stored] == [message_id]
    assert expected.items() <= stored[0].items()
    assert WRITE_KEY not in result.stdout + result.stderr


def test_context_timestamp_and_message_id_flags(collector: CollectorServer) -> None:
    """--context, --timestamp (kept, in UTC) and --message-id reach the collector."""
    result = run_cli(
        [
            "track",
            "--user-id",
            "u1",
            "--event",
            "Bought a shirt",
            "--context",
            '{"ip": "10.0.0.1"}',
            "--timestamp",
            "2012-10-17T11:58:57.911-07:00",
            "--message-id",
            "cli-msg-1",
            "--host",
            collector.url,
        ]
    )
    assert result.returncode == 0, result.stderr
    [stored] = collector.store.events()
    assert stored["messageId"] == "cli-msg-1"
    assert stored["context"]["ip"] == "10.0.0.1"
    assert stored["originalTimestamp"] == "2012-10-17T18:58:57.911Z"


def test_naive_timestamp_is_sent_with_a_warning(collector: CollectorServer) -> None:
    """A timestamp without a timezone is taken as UTC (the library's rule), with a warning."""
    result = run_cli(
        [
            "identify",
            "--user-id",
            "u1",
            "--timestamp",
            "2020-01-02T03:04:05",
            "--host",
            collector.url,
        ]
    )
    assert result.returncode == 0, result.stderr
    assert "no timezone" in result.stderr
    [stored] = collector.store.events()
    assert stored["originalTimestamp"] == "2020-01-02T03:04:05.000Z"


def test_write_key_flag_is_used_and_never_echoed(
    collector_factory: Callable[..., CollectorServer],
) -> None:
    """--write-key authenticates against a collector that requires one."""
    server = collector_factory(write_keys=["the-right-key-91"])
    result = run_cli(
        [
            "track",
            "--user-id",
            "u",
            "--event",
            "e",
            "--host",
            server.url,
            "--write-key",
            "the-right-key-91",
        ],
        env=cli_env(),
    )
    assert result.returncode == 0, result.stderr
    assert "the-right-key-91" not in result.stdout + result.stderr
    assert len(server.store.events()) == 1


def test_wrong_write_key_is_refused_clearly(
    collector_factory: Callable[..., CollectorServer],
) -> None:
    """A key the collector does not know: exit 1, the reason, and the key is not shown."""
    server = collector_factory(write_keys=["the-right-key-91"])
    result = run_cli(
        ["track", "--user-id", "u", "--event", "e", "--host", server.url],
        env=cli_env(ANALYTICS_WRITE_KEY="wrong-key-4471"),
    )
    assert result.returncode == 1
    assert "refused the write key (HTTP 401)" in result.stderr
    assert "wrong-key-4471" not in result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    assert server.store.events() == []


def test_missing_write_key_is_a_usage_error() -> None:
    """No --write-key and no ANALYTICS_WRITE_KEY: exit 2 saying how to give one."""
    result = CliRunner().invoke(
        cli, ["track", "--user-id", "u", "--event", "e"], env={"ANALYTICS_WRITE_KEY": ""}
    )
    assert result.exit_code == 2
    assert "ANALYTICS_WRITE_KEY" in result.output


def test_collector_down_gives_a_clear_message_in_bounded_time(closed_port_url: str) -> None:
    """Nothing listening: exit 3 with 'could not reach', no traceback, within the bound."""
    started = time.monotonic()
    result = run_cli(
        [
            "track",
            "--user-id",
            "u",
            "--event",
            "e",
            "--host",
            closed_port_url,
            "--retries",
            "1",
            "--timeout",
            "8",
        ],
        timeout=30,
    )
    elapsed = time.monotonic() - started
    assert result.returncode == 3, result.stderr
    assert "could not reach the collector" in result.stderr
    assert "Traceback" not in result.stderr
    assert elapsed < 15


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["track", "--user-id", "u", "--event", "e", "--properties", "{bad"], "invalid JSON"),
        (["track", "--user-id", "u", "--event", "e", "--properties", "[1]"], "JSON object"),
        (["identify", "--user-id", "u", "--context", "null"], "JSON object"),
        (["track", "--user-id", "u"], "needs --event"),
        (["track", "--event", "e"], "needs --user-id or --anonymous-id"),
        (["group", "--user-id", "u"], "needs --group-id"),
        (["alias", "--user-id", "u"], "needs --previous-id"),
        (["track", "--user-id", "u", "--event", "e", "--timestamp", "noon"], "not ISO-8601"),
        (["track", "--user-id", "u", "--event", "e", "--host", "localhost:1"], "http(s) URL"),
        (["track", "--user-id", "u", "--event", "e", "--timeout", "0"], "--timeout"),
        (
            ["alias", "--previous-id", "p", "--user-id", "u", "--anonymous-id", "a"],
            "No such option",
        ),
    ],
)
def test_bad_flags_are_usage_errors(args: list[str], message: str) -> None:
    """Bad flags exit 2 before anything is sent, with a message naming the problem."""
    result = CliRunner().invoke(cli, args, env={"ANALYTICS_WRITE_KEY": "k"})
    assert result.exit_code == 2, result.output
    assert message in result.output


def test_console_script_and_help() -> None:
    """The `analytics` script lists every command; --version works."""
    result = run_cli(["--help"])
    assert result.returncode == 0
    for name in (
        "demo",
        "track",
        "identify",
        "page",
        "screen",
        "group",
        "alias",
        "import",
        "serve",
        "events",
    ):
        assert f"  {name}" in result.stdout
    assert CliRunner().invoke(cli, ["--version"]).output.startswith("analytics, version ")
    track_help = run_cli(["track", "--help"])
    assert "ANALYTICS_WRITE_KEY" in track_help.stdout
    assert WRITE_KEY not in track_help.stdout


def test_collector_that_never_answers_is_bounded_by_timeout() -> None:
    """A server that accepts the connection but never answers: --timeout bounds the wait."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)  # connections complete in the kernel; nothing ever reads or answers
        url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        started = time.monotonic()
        result = run_cli(
            ["track", "--user-id", "u", "--event", "e", "--host", url, "--timeout", "2"],
            timeout=30,
        )
        elapsed = time.monotonic() - started
    assert result.returncode == 3, result.stderr
    assert "did not acknowledge the event within 2s" in result.stderr
    assert "Traceback" not in result.stderr
    assert elapsed < 10


def test_without_the_cli_extra_the_script_says_what_to_install() -> None:
    """`analytics` installed without click: a one-line hint and exit 1, not a traceback."""
    code = (
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'click' or name.startswith('click.'):\n"
        "            raise ModuleNotFoundError(f'No module named {name!r}', name=name)\n"
        "sys.meta_path.insert(0, Block())\n"
        "from analytics.cli import main\n"
        "main(['demo'])\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 1
    assert "pip install 'analytics-kit[cli]'" in result.stderr
    assert "Traceback" not in result.stderr
