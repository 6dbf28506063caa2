"""Unit tests of the command line's pure parts: failure wording, ranges, refusals, progress
and summary text, tables, message building from flags, readers."""

from __future__ import annotations

import csv
import io
from typing import Any

import click
import pytest

from analytics import DeliveryError
from analytics.cli._delivery import (
    DeliveryTracker,
    compact_ranges,
    describe_failure,
    is_unreachable,
)
from analytics.cli._mapping import LineError
from analytics.cli._progress import (
    Counts,
    PlainReporter,
    format_duration,
    format_progress_line,
    format_summary,
)
from analytics.cli._readers import CsvReader, LineReader, guess_format
from analytics.cli._send import build_message
from analytics.cli._table import event_rows, format_table

HOST = "http://127.0.0.1:8088"


def test_compact_ranges() -> None:
    """Line numbers become sorted inclusive ranges."""
    assert compact_ranges([5, 1, 2, 3, 9, 2]) == [(1, 3), (5, 5), (9, 9)]
    assert compact_ranges([]) == []


@pytest.mark.parametrize(
    ("error", "words", "unreachable"),
    [
        (DeliveryError("http_error", "HTTP 401", 401), "refused the write key (HTTP 401)", False),
        (
            DeliveryError("http_error", "too big", 400),
            "refused the batch (HTTP 400: too big)",
            False,
        ),
        (
            DeliveryError("retries_exhausted", "Connection refused"),
            f"could not reach the collector at {HOST}",
            True,
        ),
        (DeliveryError("queue_full", "the queue is full"), "not sent (queue_full", False),
        (
            DeliveryError(
                "retries_exhausted",
                "NewConnectionError: HTTPConnection(host='127.0.0.1', port=9): Failed to establish"
                " a new connection: [Errno 111] Connection refused)",
            ),
            "(retries_exhausted: [Errno 111] Connection refused)",
            True,
        ),
        (
            DeliveryError("invalid_field", "needs event", 200),
            "the collector refused it: needs event",
            False,
        ),
    ],
)
def test_failures_are_described_for_people(
    error: DeliveryError, words: str, unreachable: bool
) -> None:
    """Each kind of failure gets its own sentence; only 'no answer' counts as unreachable."""
    assert words in describe_failure(error, HOST)
    assert is_unreachable(error) is unreachable


def test_tracker_counts_what_the_client_reports() -> None:
    """The client passes delivered messages to on_success and each refused one (inside a 2xx,
    status 200, the collector's code as reason) to on_failure: the tracker counts both and
    forgets only the delivered ids (a refused line is reported by its line)."""
    ids: dict[str, Any] = {"own-1": (0, 1), "own-3": (0, 3)}
    tracker = DeliveryTracker(ids=ids)
    tracker.on_success([{"messageId": "own-1"}, {"messageId": "gen-2"}], object())
    tracker.on_failure([{"messageId": "own-3"}], DeliveryError("invalid_field", "bad", 200))
    assert (tracker.sent, tracker.failed) == (2, 1)
    assert ids == {"own-3": (0, 3)}
    [(messages, error)] = tracker.pop_failures()
    assert messages == [{"messageId": "own-3"}]
    assert describe_failure(error, "http://h") == "the collector refused it: bad"
    assert not tracker.unreachable
    tracker.on_failure([{"messageId": "x"}], DeliveryError("retries_exhausted", "down"))
    assert tracker.failed == 2
    assert tracker.unreachable


@pytest.mark.parametrize(
    ("seconds", "text"), [(0.5, "0.50s"), (12.34, "12.3s"), (245, "4m05s"), (3720, "1h02m")]
)
def test_format_duration(seconds: float, text: str) -> None:
    """Short durations with decimals, longer ones in minutes and hours."""
    assert format_duration(seconds) == text


def test_progress_line_and_summary() -> None:
    """The plain progress line has counters, rate, share and ETA; the summary the totals."""
    line = format_progress_line(Counts(10_000, 9_000, 3, 250, 1000), 2.0)
    assert line == "import: 10,000 read, 9,000 sent, 3 refused, 4,500 events/s, 25%, ETA 6.00s"
    assert "ETA" not in format_progress_line(Counts(10, 9, 0, 250, None), 2.0)
    assert format_summary(1000, 990, 10, 0, 2.0) == (
        "read 1,000, sent 990, refused 10 in 2.00s (495 events/s)"
    )
    assert "not delivered 5" in format_summary(1000, 985, 10, 5, 2.0)


def test_plain_reporter_prints_at_most_once_per_interval() -> None:
    """Updates within the interval print nothing; log() always prints."""
    out = io.StringIO()
    reporter = PlainReporter(interval=3600, stream=out)
    reporter.update(Counts(1, 1, 0, 1, 10))
    reporter.log("a.jsonl:3: invalid JSON")
    assert out.getvalue() == "a.jsonl:3: invalid JSON\n"
    eager = PlainReporter(interval=0.0, stream=out)
    eager.update(Counts(1, 1, 0, 1, 10))
    assert out.getvalue().splitlines()[-1].startswith("import: 1 read")


def test_event_rows_and_table() -> None:
    """Stored messages become aligned rows: type, user, event, timestamp, receivedAt."""
    rows = event_rows(
        [
            {
                "type": "identify",
                "anonymousId": "a1",
                "traits": {"plan": "Free"},
                "timestamp": "T1",
                "receivedAt": "R1",
            },
            {"type": "track", "userId": "u1", "event": "Played", "timestamp": "T2"},
        ]
    )
    assert rows[0] == ("identify", "a1", "", "T1", "R1", '{"plan":"Free"}')
    assert rows[1][:3] == ("track", "u1", "Played")
    lines = format_table(rows).splitlines()
    assert lines[0].split() == ["type", "user", "event", "timestamp", "receivedAt", "details"]
    assert set(lines[1]) == {"-", " "}
    assert lines[2].index("a1") == lines[3].index("u1")
    narrow = format_table(rows, width=60).splitlines()
    assert narrow[2].endswith("…")
    assert max(len(line) for line in narrow) <= 60
    assert narrow[2].startswith("identify  a1")


def test_build_message_from_flags() -> None:
    """Flags map to SPEC fields; None values are left out; required flags are checked."""
    message = build_message(
        "group", {"user_id": "u", "group_id": "g", "traits": {"a": 1}, "context": None}
    )
    assert message == {"type": "group", "userId": "u", "groupId": "g", "traits": {"a": 1}}
    assert build_message("alias", {"previous_id": "p", "user_id": "u"})["previousId"] == "p"
    with pytest.raises(click.UsageError, match="needs --previous-id and --user-id"):
        build_message("alias", {})


def test_line_reader_numbers_lines_and_skips_blank_ones() -> None:
    """Line numbers count blank lines; blank lines are not yielded; bytes are counted."""
    data = b'{"a":1}\n\n  \n{"b":2}\n{"c":3}'
    reader = LineReader(io.BytesIO(data), chunk=4)
    assert [n for n, _ in reader] == [1, 4, 5]
    assert reader.consumed == len(data)
    with_bom = LineReader(io.BytesIO(b'\xef\xbb\xbf{"a":1}\r\n{"b":2}\r\n'))
    assert [line for _, line in with_bom] == [b'{"a":1}\r\n', b'{"b":2}\r\n']


def test_line_reader_blocks_follow_the_chunks() -> None:
    """blocks(): one block per chunk read, line numbers running on across blocks, blank
    lines left out only in the blocks that have some."""
    data = b'{"a":1}\n{"b":2}\n\n{"c":3}\n{"d":4}\n'
    reader = LineReader(io.BytesIO(data), chunk=10)
    blocks = [list(block) for block in reader.blocks()]
    assert [[n for n, _ in block] for block in blocks] == [[1, 2], [4, 5]]
    assert blocks[1] == [(4, b'{"c":3}\n'), (5, b'{"d":4}\n')]
    assert reader.consumed == len(data)


def test_csv_reader_blocks_count_bytes() -> None:
    """CsvReader.blocks(): rows in lists of `size`; the bytes consumed are known after each."""
    data = "type,userId\n" + "".join(f"track,u{i}\n" for i in range(5))
    reader = CsvReader(io.BytesIO(data.encode()))
    assert reader.header() == ["type", "userId"]
    blocks = list(reader.blocks(size=2))
    assert [[n for n, _ in block] for block in blocks] == [[2, 3], [4, 5], [6]]
    assert blocks[2] == [(6, ["track", "u4"])]
    assert reader.consumed == len(data)


def test_csv_reader_reports_the_line_where_a_row_ends() -> None:
    """Quoted newlines span lines; the header is stripped; a BOM is skipped."""
    data = '\ufefftype , userId\ntrack,"u\n1"\n\nidentify,u2\n'.encode()
    reader = CsvReader(io.BytesIO(data))
    assert reader.header() == ["type", "userId"]
    assert list(reader) == [(3, ["track", "u\n1"]), (5, ["identify", "u2"])]


@pytest.mark.parametrize(
    ("name", "fmt"),
    [
        ("a.csv", "csv"),
        ("A.CSV", "csv"),
        ("x.log", "log"),
        ("x.txt", "log"),
        ("x.jsonl", "jsonl"),
        ("x.ndjson", "jsonl"),
        ("-", "jsonl"),
    ],
)
def test_guess_format(name: str, fmt: str) -> None:
    """The format follows the extension; anything else is JSON lines."""
    assert guess_format(name) == fmt


def test_csv_reader_turns_unparsable_rows_into_line_errors() -> None:
    """A row the csv module refuses (a field over its limit) is a LineError in its place;
    the rows after it are read."""
    big = "x" * (csv.field_size_limit() + 1)
    data = f"type,userId\ntrack,{big}\nidentify,u2\n".encode()
    reader = CsvReader(io.BytesIO(data))
    assert reader.header() == ["type", "userId"]
    (line, error), second = list(reader)
    assert line == 2
    assert isinstance(error, LineError)
    assert "field larger than field limit" in str(error)
    assert second == (3, ["identify", "u2"])
