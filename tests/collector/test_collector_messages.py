"""Pure validation and enrichment (no server): SPEC 5.3, 6, 7 and the limits."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from analytics._wire import format_timestamp, parse_timestamp
from analytics.collector import Limits
from analytics.collector._messages import (
    Envelope,
    InvalidMessage,
    RequestError,
    normalize_message,
    parse_json,
    prepare,
    read_envelope,
)

NOW = datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=timezone.utc)
LIMITS = Limits()


def norm(item: Any, env: Envelope | None = None, single: str | None = None) -> dict[str, Any]:
    return normalize_message(
        item,
        env or Envelope(items=[item]),
        single_type=single,
        now=NOW,
        limits=LIMITS,
    )


def refusal(item: Any, single: str | None = None) -> str:
    with pytest.raises(InvalidMessage) as info:
        norm(item, single=single)
    return info.value.code


def run_prepare(env: Envelope, key: str | None = "k", allowed: set[str] | None = None) -> Any:
    return prepare(
        env,
        single_type=None,
        now=NOW,
        request_key=key,
        key_allowed=lambda k: allowed is None or k in allowed,
        limits=LIMITS,
    )


def test_received_at_and_message_id_are_added() -> None:
    msg = norm({"type": "identify", "userId": "u1"})
    assert msg["receivedAt"] == "2026-01-02T03:04:05.678Z"
    assert len(msg["messageId"]) == 36
    assert msg["timestamp"] == msg["receivedAt"]
    assert "originalTimestamp" not in msg


def test_client_message_id_is_kept() -> None:
    assert norm({"type": "identify", "userId": "u1", "messageId": "abc"})["messageId"] == "abc"


def test_timestamp_without_sent_at_is_kept_as_original() -> None:
    msg = norm({"type": "track", "userId": "u", "event": "E", "timestamp": "2024-05-01T12:00:00Z"})
    assert msg["originalTimestamp"] == "2024-05-01T12:00:00Z"
    assert msg["timestamp"] == "2024-05-01T12:00:00.000Z"


def sent_at_envelope(sent: datetime) -> Envelope:
    return read_envelope(
        {"batch": [], "sentAt": format_timestamp(sent)}, single_type=None, limits=LIMITS
    )


def test_clock_skew_is_corrected_from_batch_sent_at() -> None:
    # The client clock is 10 minutes behind: it says it sent at 02:54:05.678 what happened
    # 5 seconds earlier; the corrected time is receivedAt - 5 s.
    sent = NOW - timedelta(minutes=10)
    env = sent_at_envelope(sent)
    item = {
        "type": "track",
        "userId": "u",
        "event": "E",
        "timestamp": format_timestamp(sent - timedelta(seconds=5)),
    }
    msg = norm(item, env)
    assert msg["timestamp"] == format_timestamp(NOW - timedelta(seconds=5))
    assert msg["sentAt"] == format_timestamp(sent)
    assert msg["originalTimestamp"] == item["timestamp"]


def test_client_original_timestamp_is_kept_beside_its_timestamp() -> None:
    # rudder-sdk-node sends its device time as originalTimestamp beside an explicit timestamp;
    # the device time is kept and the explicit timestamp is the one corrected for skew.
    device = "2026-01-02T02:54:04.678Z"
    item = {"type": "identify", "userId": "u", "timestamp": "2020-01-01T00:00:00.000Z"}
    msg = norm({**item, "originalTimestamp": device}, sent_at_envelope(NOW - timedelta(minutes=10)))
    assert msg["originalTimestamp"] == device
    assert msg["timestamp"] == "2020-01-01T00:10:00.000Z"


def test_a_kept_original_timestamp_must_be_iso_8601() -> None:
    item = {"type": "identify", "userId": "u", "timestamp": "2020-01-01T00:00:00Z"}
    assert refusal({**item, "originalTimestamp": "yesterday"}) == "invalid_timestamp"


def test_message_sent_at_wins_over_batch_sent_at_and_offsets_are_understood() -> None:
    env = read_envelope(
        {"batch": [], "sentAt": "2000-01-01T00:00:00Z"}, single_type=None, limits=LIMITS
    )
    item = {
        "type": "page",
        "anonymousId": "a",
        "timestamp": "2026-01-02T05:04:00+02:00",
        "sentAt": "2026-01-02T05:04:05.678000999+02:00",
    }
    assert norm(item, env)["timestamp"] == "2026-01-02T03:04:00.000Z"


def test_batch_context_and_integrations_merge_shallowly_item_wins() -> None:
    env = read_envelope(
        {
            "batch": [],
            "context": {"library": {"name": "batch"}, "ip": "1.2.3.4"},
            "integrations": {"All": False},
        },
        single_type=None,
        limits=LIMITS,
    )
    item = {
        "type": "identify",
        "userId": "u",
        "context": {"library": {"name": "item"}},
        "integrations": {"Mixpanel": True},
        "custom": {"kept": [1, 2]},
    }
    msg = norm(item, env)
    assert msg["context"] == {"library": {"name": "item"}, "ip": "1.2.3.4"}
    assert msg["integrations"] == {"All": False, "Mixpanel": True}
    assert msg["custom"] == {"kept": [1, 2]}
    assert item["context"] == {"library": {"name": "item"}}  # the input is not modified


def test_write_key_is_never_stored_in_the_message() -> None:
    assert "writeKey" not in norm({"type": "identify", "userId": "u", "writeKey": "secret"})


def test_single_endpoint_type_comes_from_the_path() -> None:
    msg = norm({"type": "identify", "userId": "u", "event": "E"}, single="track")
    assert msg["type"] == "track"


@pytest.mark.parametrize(
    ("item", "code"),
    [
        ([], "invalid_message"),
        ("track", "invalid_message"),
        ({"userId": "u"}, "invalid_type"),
        ({"type": "click", "userId": "u"}, "invalid_type"),
        ({"type": "identify"}, "missing_field"),
        ({"type": "identify", "userId": ""}, "invalid_field"),
        ({"type": "track", "userId": "u"}, "missing_field"),
        ({"type": "track", "userId": "u", "event": ""}, "missing_field"),
        ({"type": "group", "userId": "u"}, "missing_field"),
        ({"type": "alias", "userId": "u"}, "missing_field"),
        ({"type": "alias", "previousId": "p"}, "missing_field"),
        ({"type": "identify", "userId": {"id": 1}}, "invalid_field"),
        ({"type": "identify", "userId": True}, "invalid_field"),
        ({"type": "identify", "userId": "u", "traits": [1]}, "invalid_field"),
        ({"type": "track", "userId": "u", "event": 5}, "invalid_field"),
        ({"type": "identify", "userId": "u", "context": "x"}, "invalid_field"),
        ({"type": "identify", "userId": "u", "messageId": 7}, "invalid_field"),
        ({"type": "identify", "userId": "u", "messageId": "x" * 101}, "invalid_field"),
        ({"type": "identify", "userId": "u", "timestamp": 1714564800}, "invalid_field"),
        ({"type": "identify", "userId": "u", "timestamp": "yesterday"}, "invalid_timestamp"),
        (
            {"type": "identify", "userId": "u", "sentAt": "2024-13-01T00:00:00Z"},
            "invalid_timestamp",
        ),
    ],
)
def test_invalid_messages_are_refused_with_a_code(item: Any, code: str) -> None:
    assert refusal(item) == code


@pytest.mark.parametrize(
    "item",
    [
        {"type": "identify", "anonymousId": "a"},
        {"type": "identify", "userId": 42},
        {"type": "track", "userId": "u", "event": "E", "properties": None},
        {"type": "group", "userId": "u", "groupId": "g"},
        {"type": "alias", "previousId": "p", "userId": "u"},
        {"type": "screen", "userId": "u", "name": "Home", "category": None},
        {"type": "page", "userId": "u", "timestamp": "2024-05-01"},
    ],
)
def test_valid_messages_pass(item: dict[str, Any]) -> None:
    assert norm(item)["type"] == item["type"]


def test_parse_json_errors_are_request_errors() -> None:
    with pytest.raises(RequestError) as bad:
        parse_json(b'{"batch": [')
    assert (bad.value.status, bad.value.code) == (400, "invalid_json")
    with pytest.raises(RequestError) as utf:
        parse_json(b'{"userId": "\xff\xfe"}')
    assert (utf.value.status, utf.value.code) == (400, "invalid_utf8")
    assert parse_json(b'\xef\xbb\xbf{"a": 1}') == {"a": 1}


@pytest.mark.parametrize(
    ("payload", "code"),
    [
        ([], "invalid_body"),
        ({"batch": {}}, "invalid_body"),
        ({}, "invalid_body"),
        ({"batch": [], "context": []}, "invalid_field"),
        ({"batch": [], "sentAt": "later"}, "invalid_field"),
        ({"batch": [], "writeKey": 5}, "invalid_field"),
        ({"batch": [{}] * 2501}, "too_many_messages"),
    ],
)
def test_bad_envelopes_are_refused(payload: Any, code: str) -> None:
    with pytest.raises(RequestError) as info:
        read_envelope(payload, single_type=None, limits=LIMITS)
    assert (info.value.status, info.value.code) == (400, code)


def test_prepare_lists_refusals_by_index_and_builds_rows() -> None:
    env = read_envelope(
        {"batch": [{"type": "identify", "userId": "u"}, 3, {"type": "track", "userId": "u"}]},
        single_type=None,
        limits=LIMITS,
    )
    out = run_prepare(env)
    assert [(r.index, r.code) for r in out.refused] == [
        (1, "invalid_message"),
        (2, "missing_field"),
    ]
    (row,) = out.rows
    message_id = orjson.loads(row.body)["messageId"]
    assert row[:6] == ("k", message_id, "identify", "u", None, None)


def test_prepare_refuses_oversize_items_only() -> None:
    big = {"type": "identify", "userId": "u", "traits": {"blob": "x" * 40_000}}
    env = Envelope(items=[big, {"type": "identify", "userId": "u"}])
    out = run_prepare(env)
    assert [(r.index, r.code) for r in out.refused] == [(0, "message_too_large")]
    assert len(out.rows) == 1


def test_prepare_uses_per_message_write_keys_without_a_request_key() -> None:
    items = [
        {"type": "identify", "userId": "u", "writeKey": "good"},
        {"type": "identify", "userId": "u", "writeKey": "bad"},
        {"type": "identify", "userId": "u"},
    ]
    out = run_prepare(Envelope(items=items), key=None, allowed={"good"})
    assert [(r.index, r.code) for r in out.refused] == [
        (1, "unknown_write_key"),
        (2, "missing_write_key"),
    ]
    assert out.keyed == 1
    assert out.rows[0].write_key == "good"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2024-05-01T12:00:00Z", "2024-05-01T12:00:00.000Z"),
        ("2024-05-01T12:00:00.123+00:00", "2024-05-01T12:00:00.123Z"),
        ("2024-05-01T14:00:00.5+02:00", "2024-05-01T12:00:00.500Z"),
        ("2024-05-01T12:00:00.123456789Z", "2024-05-01T12:00:00.123Z"),
        ("2024-05-01T12:00:00", "2024-05-01T12:00:00.000Z"),
    ],
)
def test_timestamps_parse_and_format_as_utc(text: str, expected: str) -> None:
    assert format_timestamp(parse_timestamp(text)) == expected


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats(allow_nan=False)
    | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=10,
)
field_names = st.sampled_from(
    [
        "type",
        "userId",
        "anonymousId",
        "event",
        "groupId",
        "previousId",
        "messageId",
        "timestamp",
        "sentAt",
        "context",
        "integrations",
        "properties",
        "traits",
        "writeKey",
        "name",
    ]
)
messages = st.dictionaries(field_names, json_values) | json_values
bodies = (
    st.fixed_dictionaries(
        {"batch": st.lists(messages, max_size=5)},
        optional={"context": json_values, "sentAt": json_values, "writeKey": json_values},
    )
    | json_values
)


@settings(max_examples=100, deadline=None)
@given(body=bodies, single=st.sampled_from([None, "track", "alias"]))
def test_random_bodies_never_crash_and_every_item_is_accounted_for(
    body: Any, single: str | None
) -> None:
    try:
        env = read_envelope(parse_json(orjson.dumps(body)), single_type=single, limits=LIMITS)
    except RequestError as exc:
        status = exc.status
        assert status == 400
        return
    out = run_prepare(env, key=None)
    assert len(out.rows) + len(out.refused) == len(env.items)
    for row in out.rows:
        stored = orjson.loads(row.body)
        assert stored["receivedAt"] == format_timestamp(NOW)
        assert stored["type"] in {"identify", "track", "page", "screen", "group", "alias"}
        assert "writeKey" not in stored
        parse_timestamp(stored["timestamp"])


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2024-05-01T12:00:00.123456789Z", datetime(2024, 5, 1, 12, 0, 0, 123456)),
        ("2024-05-01T12:00:00.1+02:00", datetime(2024, 5, 1, 10, 0, 0, 100000)),
        ("2024-05-01T12:00:00z", datetime(2024, 5, 1, 12)),
        ("2015-2-02T00:30:08.276Z", datetime(2015, 2, 2, 0, 30, 8, 276000)),
        ("2015-2-2T0:30:8Z", datetime(2015, 2, 2, 0, 30, 8)),
        ("2024-05-01T12:00:00+0530", datetime(2024, 5, 1, 6, 30)),
    ],
)
def test_timestamps_python_310_cannot_read_are_parsed(text: str, expected: datetime) -> None:
    # Python 3.10's fromisoformat rejects "Z", fractions that are not 3 or 6 digits and
    # one-digit fields; the lenient reading of `analytics._wire` takes them on every version.
    assert parse_timestamp(text) == expected.replace(tzinfo=timezone.utc)


@pytest.mark.parametrize("text", ["20240501T120000Z", "2024-W18-3", "2024-05-01T12", "2024-13-01"])
def test_forms_only_some_pythons_read_are_refused_on_every_version(text: str) -> None:
    # Python 3.11's fromisoformat reads the basic format and week dates, 3.10's does not: the
    # rules must not depend on the Python that a client or a collector runs.
    with pytest.raises(ValueError, match=r"ISO-8601|not a valid date"):
        parse_timestamp(text)
