"""`analytics import`, run as a user would, against a real collector on 127.0.0.1."""

from __future__ import annotations

import fcntl
import os
import pty
import queue
import re
import select
import signal
import socket
import struct
import subprocess
import sys
import termios
import threading
import time
from collections.abc import Callable
from pathlib import Path

import orjson
import pytest
from cli_helpers import WRITE_KEY, cli_env, run_cli

from analytics.collector import CollectorServer

SUMMARY = re.compile(r"read ([\d,]+), sent ([\d,]+), refused ([\d,]+)")


def counts(stdout: str) -> tuple[int, int, int]:
    """(read, sent, refused) from the summary line."""
    match = SUMMARY.search(stdout)
    assert match, stdout
    read, sent, refused = (int(g.replace(",", "")) for g in match.groups())
    return read, sent, refused


def write_jsonl(path: Path, messages: list[dict[str, object]]) -> Path:
    path.write_bytes(b"".join(orjson.dumps(m) + b"\n" for m in messages))
    return path


def test_jsonl_import_keeps_timestamps_and_reports_bad_lines(
    collector: CollectorServer, tmp_path: Path
) -> None:
    """Good lines (camelCase or snake_case) are stored with their timestamps; every bad line
    is reported as file:line with the reason; the import goes on; exit 1."""
    path = tmp_path / "history.jsonl"
    path.write_text(
        '{"type":"track","userId":"u1","event":"Played","timestamp":"2012-10-17T18:58:57.911Z"}\n'
        "{not json\n"
        "\n"
        '{"user_id":"u2","event":"No type"}\n'
        '{"type":"identify","user_id":"u2","traits":{"plan":"pro"},'
        '"timestamp":"2012-10-17T20:58:57.911+02:00"}\n'
        '{"type":"track","userId":"u3","event":"When?","timestamp":"yesterday"}\n'
        '{"type":"track","userId":"u3"}\n'
        "[1,2]\n"
    )
    result = run_cli(["import", str(path), "--host", collector.url])
    assert result.returncode == 1, result.stderr
    assert f"{path}:2: invalid JSON" in result.stderr
    assert f'{path}:4: no "type"' in result.stderr
    assert f"{path}:6: timestamp 'yesterday' is not ISO-8601" in result.stderr
    assert f"{path}:7: a track message needs event" in result.stderr
    assert f"{path}:8: expected a JSON object, got an array" in result.stderr
    assert counts(result.stdout) == (7, 2, 5)
    stored = {m["userId"]: m for m in collector.store.events()}
    assert set(stored) == {"u1", "u2"}
    assert stored["u1"]["originalTimestamp"] == "2012-10-17T18:58:57.911Z"
    assert stored["u2"]["originalTimestamp"] == "2012-10-17T18:58:57.911Z"
    assert stored["u2"]["traits"] == {"plan": "pro"}


def test_clean_import_exits_0_and_message_ids_make_it_idempotent(
    collector: CollectorServer, tmp_path: Path
) -> None:
    """Lines with their own messageId: importing the file twice stores them once."""
    path = write_jsonl(
        tmp_path / "ids.jsonl",
        [
            {"type": "track", "userId": f"u{i}", "event": "E", "messageId": f"fixed-{i}"}
            for i in range(50)
        ],
    )
    for _ in range(2):
        result = run_cli(["import", str(path), "--host", collector.url])
        assert result.returncode == 0, result.stderr
        assert counts(result.stdout) == (50, 50, 0)
    assert collector.store.count() == 50


def test_defaults_fill_lines(collector: CollectorServer, tmp_path: Path) -> None:
    """--type, --event and --properties apply to lines that lack them."""
    path = write_jsonl(tmp_path / "a.jsonl", [{"userId": "u1", "properties": {"a": 1}}])
    result = run_cli(
        [
            "import",
            str(path),
            "--type",
            "track",
            "--event",
            "Imported",
            "--properties",
            '{"source": "cli", "a": 0}',
            "--host",
            collector.url,
        ]
    )
    assert result.returncode == 0, result.stderr
    [stored] = collector.store.events()
    assert stored["event"] == "Imported"
    assert stored["properties"] == {"source": "cli", "a": 1}


def test_csv_with_a_column_mapping(collector: CollectorServer, tmp_path: Path) -> None:
    """CSV: header columns renamed with --map, typed properties, one bad row reported."""
    path = tmp_path / "orders.csv"
    path.write_text(
        "who,when,what,price,plan\n"
        "u1,2012-10-17T18:58:57.911Z,Bought a shirt,17.90,pro\n"
        "u2,2012-10-17T19:00:00.000Z,Bought a hat\n"
        "u3,2012-10-17T19:01:00.000Z,Bought socks,3,free\n"
    )
    result = run_cli(
        [
            "import",
            str(path),
            "--type",
            "track",
            "--host",
            collector.url,
            "--map",
            "who=userId,when=timestamp,what=event",
            "--map",
            "price=properties.revenue",
            "--map",
            "plan=context.traits.plan",
        ]
    )
    assert result.returncode == 1, result.stderr
    assert f"{path}:3: expected 5 columns, found 3" in result.stderr
    assert counts(result.stdout) == (3, 2, 1)
    stored = {m["userId"]: m for m in collector.store.events()}
    assert stored["u1"]["event"] == "Bought a shirt"
    assert stored["u1"]["properties"] == {"revenue": 17.9}
    assert stored["u1"]["context"]["traits"] == {"plan": "pro"}
    assert stored["u1"]["originalTimestamp"] == "2012-10-17T18:58:57.911Z"
    assert stored["u3"]["properties"] == {"revenue": 3}


def test_csv_unknown_column_stops_before_sending(
    collector: CollectorServer, tmp_path: Path
) -> None:
    """An unmapped, unknown column: exit 2 with a hint, and nothing is sent."""
    path = tmp_path / "users.csv"
    path.write_text("type,userId,plan\nidentify,u1,pro\n")
    result = run_cli(["import", str(path), "--host", collector.url])
    assert result.returncode == 2
    assert "unknown column 'plan'" in result.stderr
    assert "--map 'plan=properties.plan'" in result.stderr
    assert collector.store.count() == 0


def test_seed_log_lines_through_a_log_mapping(collector: CollectorServer, tmp_path: Path) -> None:
    """The seed's 'Server Logs Example' as a file: --map names the fields in order."""
    path = tmp_path / "server.log"
    path.write_text(
        "2012-10-17T18:58:57.911Z ilya@segment.io /purchased/tshirt\n"
        "2012-10-17T20:03:12.250+02:00 calvin@segment.io /purchased/tshirt\n"
        "garbage\n"
    )
    result = run_cli(
        [
            "import",
            str(path),
            "--map",
            "timestamp,userId,properties.url",
            "--event",
            "Bought a shirt",
            "--properties",
            '{"color": "Blue", "revenue": 17.90}',
            "--host",
            collector.url,
        ]
    )
    assert result.returncode == 1, result.stderr
    assert f"{path}:3: expected 3 fields (timestamp,userId,properties.url), found 1" in (
        result.stderr
    )
    stored = {m["userId"]: m for m in collector.store.events(event="Bought a shirt")}
    assert stored["ilya@segment.io"]["originalTimestamp"] == "2012-10-17T18:58:57.911Z"
    assert stored["calvin@segment.io"]["originalTimestamp"] == "2012-10-17T18:03:12.250Z"
    assert stored["ilya@segment.io"]["properties"] == {
        "color": "Blue",
        "revenue": 17.9,
        "url": "/purchased/tshirt",
    }


def test_stdin_and_naive_timestamps_warned_once(collector: CollectorServer, tmp_path: Path) -> None:
    """`-` reads standard input; naive timestamps are taken as UTC with a single warning."""
    lines = b"".join(
        orjson.dumps(
            {"type": "track", "userId": "u", "event": "E", "timestamp": f"2020-01-0{i}T10:00:00"}
        )
        + b"\n"
        for i in range(1, 4)
    )
    result = run_cli(["import", "-", "--host", collector.url], stdin=lines)
    assert result.returncode == 0, result.stderr
    assert result.stderr.count("has no timezone") == 1
    assert "<stdin>:1: timestamp '2020-01-01T10:00:00' has no timezone" in result.stderr
    stamps = sorted(m["originalTimestamp"] for m in collector.store.events())
    assert stamps == [f"2020-01-0{i}T10:00:00.000Z" for i in range(1, 4)]


def test_missing_file_is_a_usage_error(tmp_path: Path) -> None:
    """A file that does not exist: exit 2, named, before anything is sent."""
    result = run_cli(["import", str(tmp_path / "nope.jsonl")])
    assert result.returncode == 2
    assert "nope.jsonl" in result.stderr
    assert "does not exist" in result.stderr


def test_the_closed_port_stays_closed_for_the_whole_test(closed_port_url: str) -> None:
    """What test_collector_down relies on: no other server can take the port meanwhile
    (even with SO_REUSEADDR, as servers set it), and connecting is refused at once."""
    port = int(closed_port_url.rsplit(":", 1)[1])
    with socket.socket() as other:
        other.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        with pytest.raises(OSError, match="in use"):
            other.bind(("127.0.0.1", port))
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=5.0).close()


def test_collector_down(closed_port_url: str, tmp_path: Path) -> None:
    """Nothing listening: the lines are reported not delivered with the reason; exit 3."""
    path = write_jsonl(tmp_path / "a.jsonl", [{"type": "track", "userId": "u", "event": "E"}] * 3)
    started = time.monotonic()
    result = run_cli(
        ["import", str(path), "--host", closed_port_url, "--retries", "1", "--timeout", "10"],
        timeout=40,
    )
    assert result.returncode == 3, result.stderr
    assert f"{path}:1-3: not delivered: could not reach the collector" in result.stderr
    assert "Traceback" not in result.stderr
    assert counts(result.stdout) == (3, 0, 0)
    assert "not delivered 3" in result.stdout
    assert time.monotonic() - started < 20


def test_wrong_write_key_reports_lines(
    collector_factory: Callable[..., CollectorServer], tmp_path: Path
) -> None:
    """A refused key: every line reported with the HTTP 401 reason; the key is not shown."""
    server = collector_factory(write_keys=["right-key-3"])
    path = write_jsonl(tmp_path / "a.jsonl", [{"type": "track", "userId": "u", "event": "E"}] * 2)
    result = run_cli(["import", str(path), "--host", server.url])
    assert result.returncode == 1
    assert f"{path}:1-2: not delivered: the collector at {server.url} refused the write key" in (
        result.stderr
    )
    assert WRITE_KEY not in result.stdout + result.stderr


def test_plain_progress_lines_when_not_a_terminal(
    collector: CollectorServer, tmp_path: Path
) -> None:
    """Output to a pipe: periodic plain lines with counters and rate, no escape codes."""
    path = write_jsonl(
        tmp_path / "many.jsonl",
        [{"type": "track", "userId": f"u{i}", "event": "E"} for i in range(20_000)],
    )
    result = run_cli(["import", str(path), "--host", collector.url, "--progress-interval", "0.05"])
    assert result.returncode == 0, result.stderr
    progress = [line for line in result.stderr.splitlines() if line.startswith("import: ")]
    assert progress, result.stderr
    assert re.search(r"import: [\d,]+ read, [\d,]+ sent, 0 refused, [\d,]+ events/s", progress[0])
    assert "\x1b[" not in result.stderr
    assert counts(result.stdout) == (20_000, 20_000, 0)
    assert "events/s" in result.stdout
    assert collector.store.count() == 20_000


def test_ctrl_c_stops_cleanly_and_loses_nothing_reported_sent(
    collector: CollectorServer, tmp_path: Path
) -> None:
    """SIGINT mid-import: exit 130, says where it stopped, and every event it reports as sent
    is stored."""
    total = 300_000
    path = write_jsonl(
        tmp_path / "big.jsonl",
        [{"type": "track", "userId": f"u{i % 100}", "event": "E"} for i in range(total)],
    )
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "analytics",
            "import",
            str(path),
            "--host",
            collector.url,
            "--progress-interval",
            "0.1",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=cli_env(ANALYTICS_WRITE_KEY=WRITE_KEY),
    )
    lines: queue.Queue[str] = queue.Queue()
    stderr_pipe, stdout_pipe = proc.stderr, proc.stdout
    assert stderr_pipe is not None
    assert stdout_pipe is not None
    reader = threading.Thread(target=lambda: [lines.put(x) for x in stderr_pipe], daemon=True)
    reader.start()
    try:
        while not lines.get(timeout=60).startswith("import: "):  # the import is under way
            pass
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=90)
        stdout = stdout_pipe.read()
        reader.join(timeout=10)
    finally:
        proc.kill()
        proc.wait(timeout=10)
        stdout_pipe.close()
        stderr_pipe.close()
    stderr = "".join(lines.queue)
    assert proc.returncode == 130, stderr
    assert f"interrupted: stopped after {path}:" in stderr
    read, sent, _ = counts(stdout)
    assert 0 < read < total
    assert collector.store.count() >= sent > 0


def _read_all(fd: int, proc: subprocess.Popen[bytes], limit: float) -> bytes:
    """Everything written to the pty until the process exits (bounded by `limit` seconds)."""
    chunks = []
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], max(deadline - time.monotonic(), 0))
        if not ready:
            break
        try:
            chunk = os.read(fd, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        chunks.append(chunk)
    proc.wait(timeout=max(deadline - time.monotonic(), 1))
    return b"".join(chunks)


def test_progress_bar_on_a_terminal(collector: CollectorServer, tmp_path: Path) -> None:
    """Standard error on a terminal: a rich bar with the share done, rate and ETA."""
    path = write_jsonl(
        tmp_path / "tty.jsonl",
        [{"type": "track", "userId": f"u{i}", "event": "E"} for i in range(5_000)],
    )
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 160, 0, 0))
    proc = subprocess.Popen(
        [sys.executable, "-m", "analytics", "import", str(path), "--host", collector.url],
        stdout=subprocess.PIPE,
        stderr=slave,
        env=cli_env(ANALYTICS_WRITE_KEY=WRITE_KEY, TERM="xterm-256color", COLUMNS="160"),
    )
    os.close(slave)
    try:
        screen = _read_all(master, proc, 60).decode(errors="replace")
    finally:
        proc.kill()
        os.close(master)
    assert proc.stdout is not None
    stdout = proc.stdout.read().decode()
    proc.stdout.close()
    assert proc.returncode == 0, screen
    assert "importing" in screen
    assert "100%" in screen
    assert "5,000 read" in screen
    assert "events/s" in screen
    assert "ETA" in screen
    assert counts(stdout) == (5_000, 5_000, 0)


def test_several_files_and_formats_report_their_own_lines(
    collector: CollectorServer, tmp_path: Path
) -> None:
    """Line numbers are per file; a log line that is not UTF-8 is reported, not fatal; CSV
    can come from standard input."""
    jsonl = write_jsonl(tmp_path / "a.jsonl", [{"type": "track", "userId": "j1", "event": "E"}])
    log = tmp_path / "b.log"
    log.write_bytes(b"2020-01-01T00:00:00Z l1 Opened\n2020-01-01T00:00:01Z l2 \xff\xfe\n")
    csv_data = b"type,userId,event\ntrack,c1,Clicked\ntrack,c2\n"
    result = run_cli(
        ["import", str(jsonl), str(log), "-", "--format", "csv", "--host", collector.url],
        stdin=csv_data,
    )
    # --format forces csv for every file: the JSON and log files fail their header check
    assert result.returncode == 2
    assert "unknown column" in result.stderr
    result = run_cli(["import", str(jsonl), str(log), "--host", collector.url])
    assert result.returncode == 1, result.stderr
    assert f"{log}:2: not valid UTF-8" in result.stderr
    assert counts(result.stdout) == (3, 2, 1)
    result = run_cli(["import", "-", "--format", "csv", "--host", collector.url], stdin=csv_data)
    assert result.returncode == 1, result.stderr
    assert "<stdin>:3: expected 3 columns, found 2" in result.stderr
    users = sorted(m.get("userId") for m in collector.store.events())
    assert users == ["c1", "j1", "l1"]


def test_events_exported_as_json_import_into_another_collector(
    collector: CollectorServer, tmp_path: Path
) -> None:
    """`analytics events --json` output imports as it is: same messageIds, the stored
    timestamp kept as the event time, sender/server fields not carried over."""
    db = tmp_path / "demo.db"
    assert run_cli(["demo", "--db", str(db)], env=cli_env(), timeout=60).returncode == 0
    exported = run_cli(["events", "--db", str(db), "--json"], env=cli_env())
    assert exported.returncode == 0, exported.stderr
    originals = {m["messageId"]: m for m in map(orjson.loads, exported.stdout.splitlines())}
    result = run_cli(["import", "-", "--host", collector.url], stdin=exported.stdout.encode())
    assert result.returncode == 0, result.stderr
    assert counts(result.stdout) == (7, 7, 0)
    imported = {m["messageId"]: m for m in collector.store.events()}
    assert imported.keys() == originals.keys()
    for mid, message in imported.items():
        assert message["originalTimestamp"] == originals[mid]["timestamp"]


def test_map_misuse_is_a_usage_error(tmp_path: Path) -> None:
    """--map on JSON lines only, or for csv and log files at once: exit 2, nothing sent."""
    jsonl = write_jsonl(tmp_path / "a.jsonl", [{"type": "track", "userId": "u", "event": "E"}])
    csv = tmp_path / "b.csv"
    csv.write_text("type,userId,event\ntrack,u,E\n")
    log = tmp_path / "c.log"
    log.write_text("2020-01-01T00:00:00Z u E\n")
    result = run_cli(["import", str(jsonl), "--map", "a=userId"])
    assert result.returncode == 2
    assert "--map applies to csv and log input" in result.stderr
    result = run_cli(["import", str(csv), str(log), "--map", "userId=userId"])
    assert result.returncode == 2
    assert "import them apart" in result.stderr
    result = run_cli(["import", str(log), "--map", "timestamp,when"])
    assert result.returncode == 2
    assert "unknown field 'when'" in result.stderr


def test_dry_run_checks_lines_and_sends_nothing(collector: CollectorServer, tmp_path: Path) -> None:
    """--dry-run reports bad lines (the client's own checks included), needs no write key,
    and sends nothing."""
    path = tmp_path / "check.jsonl"
    path.write_text(
        '{"type":"track","userId":"u","event":"E"}\n'
        '{"type":"track","userId":"u"}\n'
        '{"type":"group","userId":"u"}\n'
    )
    result = run_cli(["import", str(path), "--dry-run", "--host", collector.url], env=cli_env())
    assert result.returncode == 1, result.stderr
    assert f"{path}:2: a track message needs event" in result.stderr
    assert f"{path}:3: a group message needs groupId" in result.stderr
    assert "dry run: read 3, valid 1, refused 2" in result.stdout
    assert "nothing was sent" in result.stdout
    assert collector.store.count() == 0
    good = write_jsonl(tmp_path / "good.jsonl", [{"type": "identify", "userId": "u"}])
    assert run_cli(["import", str(good), "--dry-run"], env=cli_env()).returncode == 0


def test_refusal_reasons_and_the_naive_warning_after_the_client_check(tmp_path: Path) -> None:
    """The client checks each line once; a refused line gets the CLI's wording when the CLI
    has a better one, the client's otherwise; the naive-timestamp warning names the first line
    that was accepted with one (a refused line is not warned about)."""
    path = tmp_path / "mixed.jsonl"
    path.write_text(
        '{"type":"track","userId":"u","timestamp":"2020-01-01T10:00:00"}\n'
        '{"type":"click","userId":"u","event":"E"}\n'
        '{"type":"track","userId":"u","event":"E","timestamp":5}\n'
        '{"type":"track","userId":"u","event":"E","properties":[1]}\n'
        '{"type":"track","userId":"u","event":"E","timestamp":"2020-01-02T10:00:00+02:00"}\n'
        '{"type":"track","userId":"u","event":"E","timestamp":"2020-01-03T10:00:00"}\n'
        '{"type":"track","userId":"u","event":"E","timestamp":"2020-01-04T10:00:00"}\n'
    )
    result = run_cli(["import", str(path), "--dry-run"], env=cli_env())
    assert result.returncode == 1, result.stderr
    assert f"{path}:1: a track message needs event" in result.stderr
    assert f"{path}:2: unknown type 'click' (expected one of" in result.stderr
    assert f"{path}:3: timestamp must be an ISO-8601 string, got int" in result.stderr
    assert f"{path}:4: properties must be a dict, not list" in result.stderr
    assert result.stderr.count("has no timezone") == 1
    assert f"warning: {path}:6: timestamp '2020-01-03T10:00:00' has no timezone" in result.stderr
    assert "dry run: read 7, valid 3, refused 4" in result.stdout
