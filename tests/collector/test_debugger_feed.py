"""The debugger's parts without HTTP: the refusal ring (also across processes), the field a
refusal is about, key labels, reading the store by ``seq``, the events/s figure."""

from __future__ import annotations

import multiprocessing
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import orjson
import pytest
from collector_http import track

from analytics.collector._auth import KeyPolicy
from analytics.collector._feed import MAX_ROWS, Cursor, Tail, parse_event_id, read_range
from analytics.collector._limits import DEFAULT_LIMITS
from analytics.collector._messages import parse_request
from analytics.collector._refusal_ring import (
    SLOT_BYTES,
    SLOTS,
    RefusalRing,
    key_label,
    refusal_field,
)
from analytics.collector._store import SQLiteStore
from analytics.collector._validated import to_message
from analytics.testing import FakeClock


def test_the_ring_keeps_the_newest_records_with_their_positions() -> None:
    ring = RefusalRing()
    ring.add([{"code": f"c{i}"} for i in range(SLOTS + 5)], duplicates=2)
    head, records = ring.since(0)
    assert head == SLOTS + 5
    assert len(records) == SLOTS
    assert records[0] == {"code": "c5", "pos": 6}
    assert records[-1] == {"code": f"c{SLOTS + 4}", "pos": SLOTS + 5}
    assert ring.since(SLOTS + 4)[1] == [{"code": f"c{SLOTS + 4}", "pos": SLOTS + 5}]
    assert ring.totals().duplicates == 2


def test_a_record_too_large_for_a_slot_keeps_a_preview() -> None:
    ring = RefusalRing()
    big = {"type": "track", "properties": {"blob": "é" * SLOT_BYTES}}
    ring.add([{"code": "message_too_large", "message": big}])
    ((record),) = ring.since(0)[1]
    assert record["message"] is None
    assert record["preview"].startswith('{"type":"track"')
    assert record["code"] == "message_too_large"


def _add_in_child(ring: RefusalRing) -> None:
    ring.add([{"code": "from-child"}], duplicates=3)


def test_a_shared_ring_shows_what_another_process_added() -> None:
    ring = RefusalRing.shared()
    ring.add([{"code": "from-parent"}])
    child = multiprocessing.get_context("spawn").Process(target=_add_in_child, args=(ring,))
    child.start()
    child.join(60)
    assert child.exitcode == 0
    assert [r["code"] for r in ring.since(0)[1]] == ["from-parent", "from-child"]
    assert ring.totals().duplicates == 3


BAD = [
    ({"type": "track", "userId": "u", "event": "e", "timestamp": "nope"}, "timestamp"),
    ({"type": "track", "event": "e"}, "userId, anonymousId"),
    ({"type": "track", "userId": "u"}, "event"),
    ({"type": "group", "userId": "u"}, "groupId"),
    ({"type": "alias", "userId": "u"}, "previousId, userId"),
    ({"type": "nope", "userId": "u"}, "type"),
    ({"type": "track", "userId": "u", "event": "e", "properties": []}, "properties"),
    ({"type": "track", "userId": "u", "event": "e", "messageId": ""}, "messageId"),
    (["not", "an", "object"], None),
]


@pytest.mark.parametrize(("item", "field"), BAD)
def test_the_field_of_a_real_refusal(item: Any, field: str | None) -> None:
    parsed = parse_request(
        orjson.dumps({"batch": [item]}),
        single_type=None,
        header_key="k",
        now=datetime.now(timezone.utc),
        policy=KeyPolicy(None),
        limits=DEFAULT_LIMITS,
    )
    (refusal,) = parsed.refused
    assert refusal_field(refusal.code, refusal.reason) == field


def test_a_key_label_never_contains_the_key() -> None:
    assert key_label("abcdef") == "key bef57e"  # sha256("abcdef")[:6]
    assert key_label("abcdef") != key_label("abcdeg")
    assert key_label(None) is None


@pytest.mark.parametrize(
    ("value", "cursor"),
    [("12.3", Cursor(12, 3)), (" 0.0 ", Cursor(0, 0)), ("12", None), ("a.b", None), ("", None)],
)
def test_parse_event_id(value: str, cursor: Cursor | None) -> None:
    assert parse_event_id(value) == cursor


def _store_with(tmp_path: Path, kinds: list[str]) -> SQLiteStore:
    store = SQLiteStore(tmp_path / "feed.db")
    rows = []
    for i, kind in enumerate(kinds):
        msg = {**track(i), "type": kind, "receivedAt": "2024-05-01T12:00:00.000Z"}
        rows.append(to_message(msg, "k", orjson.dumps(msg)))
    store.write([rows])
    return store


def test_read_range_sends_the_newest_rows_and_counts_the_skipped(tmp_path: Path) -> None:
    kinds = ["identify"] * 10 + ["track"] * (MAX_ROWS + 5)
    store = _store_with(tmp_path, kinds)
    read = read_range(store, 0)
    assert read.upto == len(kinds)
    assert [row[0] for row in read.rows] == list(range(16, len(kinds) + 1))
    assert read.skipped == 15
    assert read.skipped_types == {"identify": 10, "track": 5}
    small = read_range(store, 3, upto=6)
    assert [row[0] for row in small.rows] == [4, 5, 6]
    assert small.skipped == 0
    store.close()


def test_the_events_per_second_figure_uses_the_injected_clock() -> None:
    clock = FakeClock(start=100.0)
    tail = Tail(RefusalRing(), clock.monotonic)
    tail.restart(1000)
    for seq in (1000, 1500, 2000):
        tail.advance(read_range_stub(seq))
        clock.advance(0.5)
    assert tail.stats()["rate"] == 1000.0  # 1,000 rows in 1 s
    assert tail.stats()["stored"] == 2000


def read_range_stub(upto: int) -> Any:
    from analytics.collector._feed import Read

    return Read(upto, [])


class _Transport:
    aborted = False

    def abort(self) -> None:
        self.aborted = True


def test_a_viewer_is_cut_off_by_the_bytes_it_has_pending_not_only_the_count() -> None:
    from analytics.collector._debugger import QUEUE_BYTES, _Viewer

    transport = _Transport()
    viewer = _Viewer(transport, size=50)  # type: ignore[arg-type]
    big = b"x" * (QUEUE_BYTES // 3)
    assert viewer.offer(big)
    assert viewer.offer(big)
    assert viewer.offer(big)
    assert not transport.aborted
    assert not viewer.offer(big)  # over the byte bound after 4 of 50 messages
    assert transport.aborted
    assert viewer.queue.get_nowait() is None  # the stream's end, nothing else left queued
