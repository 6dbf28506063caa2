"""Hostile input to `analytics serve` and `analytics events` (issue 14, cases 7-10).

Every case runs the real command in its own process and checks what a person sees: one clear
line and a non-zero exit, never a traceback; nothing written to a file that is not ours;
control characters shown as escapes, never sent to the terminal.
"""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import orjson
import pytest
from collector_http import batch, post, track

from analytics.collector import CollectorServer, SQLiteStore, _schema
from analytics.collector._validated import Message, to_message

CLI_TIMEOUT = 60.0


MAIN = "from analytics.cli import main; main()"


def cli(*args: str, setup: str = "") -> subprocess.CompletedProcess[str]:
    """Run ``analytics ARGS`` in a new process to completion (bounded); ``setup`` is Python
    run first in that process."""
    return subprocess.run(
        [sys.executable, "-c", setup + MAIN, *args],
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT,
        check=False,
    )


def assert_one_line_error(result: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert result.returncode == 1, result
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("Error: ")
    for needle in needles:
        assert needle in lines[0]


def unrelated_sqlite(path: Path) -> None:
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT)")
    conn.execute("INSERT INTO users (name) VALUES ('ada')")
    conn.commit()
    conn.close()


def tables_and_mode(path: Path) -> tuple[list[str], str]:
    conn = sqlite3.connect(path)
    try:
        tables = [n for (n,) in conn.execute("SELECT name FROM sqlite_master ORDER BY name")]
        return tables, conn.execute("PRAGMA journal_mode").fetchone()[0]
    finally:
        conn.close()


# -- (7) a write key with a colon --------------------------------------------------------


def test_serve_refuses_a_write_key_with_a_colon(tmp_path: Path) -> None:
    db = tmp_path / "k.db"
    result = cli("serve", "--port", "0", "--db", str(db), "--write-key", "k:colon")
    assert result.returncode == 2, result
    assert "cannot contain ':'" in result.stderr
    assert "k:colon" not in result.stderr + result.stdout  # key values are never echoed
    assert not db.exists()


# -- (8) serve start-up errors -------------------------------------------------------------


def test_serve_on_a_file_that_is_not_a_database_is_one_line(tmp_path: Path) -> None:
    db = tmp_path / "notes.txt"
    db.write_text("these are my notes, not a database\n" * 100)
    before = db.read_bytes()
    result = cli("serve", "--port", "0", "--db", str(db), "--workers", "1")
    assert_one_line_error(result, str(db), "not a SQLite database")
    assert db.read_bytes() == before


def test_serve_in_a_missing_directory_is_one_line(tmp_path: Path) -> None:
    db = tmp_path / "missing" / "events.db"
    for workers in ("1", "2"):
        result = cli("serve", "--port", "0", "--db", str(db), "--workers", workers)
        assert_one_line_error(result, str(db))
    assert not db.parent.exists()


def test_serve_refuses_an_unrelated_sqlite_file_and_leaves_it_alone(tmp_path: Path) -> None:
    db = tmp_path / "app.db"
    unrelated_sqlite(db)
    result = cli("serve", "--port", "0", "--db", str(db), "--workers", "1")
    assert_one_line_error(result, "not an analytics collector database")
    assert tables_and_mode(db) == (["users"], "delete")  # no table added, not switched to WAL


# Files of at most 4 KiB: the first page SQLite writes fails as on a full disk. (Python ignores
# SIGXFSZ, so the write fails with EFBIG instead of killing the process.)
SMALL_FILES = "import resource; resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096)); "


def test_serve_on_a_full_disk_at_start_is_one_line(tmp_path: Path) -> None:
    db = tmp_path / "full.db"
    result = cli("serve", "--port", "0", "--db", str(db), "--workers", "1", setup=SMALL_FILES)
    assert_one_line_error(result, "cannot use the database", str(db))


def test_serve_on_a_newer_schema_is_one_line(tmp_path: Path) -> None:
    db = tmp_path / "newer.db"
    conn = sqlite3.connect(db)
    conn.execute("PRAGMA user_version = 99")
    conn.close()
    result = cli("serve", "--port", "0", "--db", str(db), "--workers", "1")
    assert_one_line_error(result, "schema 99")


# -- (9) analytics events -------------------------------------------------------------------


@pytest.fixture
def stored(collector_factory: Callable[..., CollectorServer], tmp_path: Path) -> Path:
    db = tmp_path / "stored.db"
    server = collector_factory(db=db)
    items = [track(i, userId=f"user-{i}", event="Played") for i in range(5)]
    assert post(server.url, "/v1/batch", batch(items)).status == 200
    server.stop()
    return db


def test_events_with_a_huge_limit_lists_everything(stored: Path) -> None:
    result = cli("events", "--db", str(stored), "--json", "--limit", "9" * 20)
    assert result.returncode == 0, result.stderr
    assert [orjson.loads(x)["messageId"] for x in result.stdout.splitlines()] == [
        f"msg-{i}" for i in range(5)
    ]


def test_events_since_out_of_range_is_a_usage_error(stored: Path) -> None:
    for since in ("99999999999d", "9" * 400 + "w", "0001-01-01T00:00:00+01:00"):
        result = cli("events", "--db", str(stored), "--since", since)
        assert result.returncode == 2, result
        assert "Traceback" not in result.stderr
        assert "--since" in result.stderr


def test_events_on_a_file_that_is_not_a_database(tmp_path: Path) -> None:
    db = tmp_path / "notes.txt"
    db.write_text("not a database\n" * 200)
    assert_one_line_error(cli("events", "--db", str(db)), "not a SQLite database")


def test_events_on_an_unrelated_sqlite_file(tmp_path: Path) -> None:
    db = tmp_path / "app.db"
    unrelated_sqlite(db)
    assert_one_line_error(cli("events", "--db", str(db)), "not an analytics collector database")


def test_events_refuses_a_newer_schema(stored: Path) -> None:
    conn = sqlite3.connect(stored)
    conn.execute(f"PRAGMA user_version = {_schema.SCHEMA_VERSION + 1}")
    conn.close()
    assert_one_line_error(
        cli("events", "--db", str(stored)), f"schema {_schema.SCHEMA_VERSION + 1}"
    )


def test_events_on_an_empty_file_lists_nothing(tmp_path: Path) -> None:
    db = tmp_path / "empty.db"
    db.touch()
    result = cli("events", "--db", str(db))
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")


def _big_message(i: int, padding: str) -> Message:
    msg = {"type": "track", "messageId": f"m{i}", "event": "E", "properties": {"p": padding}}
    msg["receivedAt"] = msg["timestamp"] = "2024-05-01T12:00:00.000Z"
    return to_message(msg, "k", orjson.dumps(msg))


PEAK_RSS = """
import atexit, sys
def peak():
    with open("/proc/self/status") as status:
        sys.stderr.write(next(line for line in status if line.startswith("VmHWM:")))
atexit.register(peak)
from analytics.cli import main
main(sys.argv[1:])
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/status")
def test_events_streams_rows_instead_of_loading_them_all(tmp_path: Path) -> None:
    """64 MB of stored bodies are printed by a process that never holds them at once."""
    db = tmp_path / "big.db"
    store = SQLiteStore(db)
    padding = "x" * 32_000
    try:
        for start in range(0, 2_000, 250):
            store.write([[_big_message(i, padding) for i in range(start, start + 250)]])
    finally:
        store.close()
    # VmHWM is the peak of this process image only (ru_maxrss would count the pytest
    # process the child was forked from).
    result = subprocess.run(
        [sys.executable, "-c", PEAK_RSS, "events", "--db", str(db), "--json"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        timeout=CLI_TIMEOUT,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    peak_mb = int(result.stderr.split("VmHWM:")[1].split()[0]) / 1024
    assert peak_mb < 48, f"peak RSS {peak_mb:.0f} MB for 64 MB of rows"


# -- (10) terminal injection ------------------------------------------------------------------

HOSTILE = "\x1b[2J\x1b]0;pwned\x07evil\r\nforged row\u202e\x9b31m"


def test_events_table_escapes_control_characters(
    collector_factory: Callable[..., CollectorServer], tmp_path: Path
) -> None:
    db = tmp_path / "hostile.db"
    server = collector_factory(db=db)
    items = [track(0, userId=HOSTILE, event=HOSTILE), track(1, userId="plain", event="Played")]
    assert post(server.url, "/v1/batch", batch(items)).status == 200
    server.stop()
    result = cli("events", "--db", str(db))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 2  # no forged rows
    for char in ("\x1b", "\x07", "\r", "\x9b", "\u202e"):
        assert char not in result.stdout
    assert "\\x1b[2J\\x1b]0;pwned\\x07evil\\r\\nforged row\\u202e\\x9b31m" in lines[0]
    # --json stays exact: JSON escapes control characters itself.
    as_json = cli("events", "--db", str(db), "--json")
    assert orjson.loads(as_json.stdout.splitlines()[0])["userId"] == HOSTILE


def test_error_messages_escape_control_characters(tmp_path: Path) -> None:
    db = tmp_path / "\x1b]0;pwned\x07\x1b[2J.db"
    result = cli("events", "--db", str(db))
    assert result.returncode == 1
    assert "\x1b" not in result.stderr
    assert "\x07" not in result.stderr
    assert "\\x1b]0;pwned\\x07\\x1b[2J.db" in result.stderr


def test_import_reports_escape_control_characters(tmp_path: Path) -> None:
    source = tmp_path / "\x1b[2Jevents\r.jsonl"
    source.write_bytes(b'{"type": "track", "userId": "u1", "event": "E"}\n{"bad\x1b]0;x\x07\n')
    result = cli("import", "--dry-run", "--write-key", "k", str(source))
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    for char in ("\x1b", "\x07", "\r"):
        assert char not in output
    assert "\\x1b[2Jevents\\r.jsonl:2:" in output
