"""Message building and encoding: pure functions, run on the calling thread."""

from __future__ import annotations

import dataclasses
import datetime as dt
import decimal
import enum
import logging
import math
import re
import uuid
from types import MappingProxyType
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

import analytics
from analytics import _message
from analytics._message import (
    MAX_MESSAGE_BYTES,
    build,
    encode,
    format_timestamp,
    new_message_id,
    normalize_message,
    now_iso,
)
from analytics.testing import capture

_message.load_encoder()
ISO_MS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


def track(**kwargs: object) -> dict[str, object]:
    """The message as it goes on the wire (what the collector receives)."""
    client = analytics.Client("key", send=False, flush_at_exit=False)
    with capture(client) as sent:
        ok, _ = client.track(**kwargs)  # type: ignore[arg-type]
    assert ok
    return sent[0]


def test_the_returned_message_has_segments_keys_and_the_wire_leaves_none_out() -> None:
    """Segment 2.x returns userId/anonymousId (None when not given) and integrations; code
    reads msg["anonymousId"]. What is sent leaves None fields out."""
    client = analytics.Client("key", send=False, flush_at_exit=False)
    with capture(client) as sent:
        _, returned = client.track(user_id="u1", event="e")
    assert returned["anonymousId"] is None
    assert returned["integrations"] == {}
    assert "anonymousId" not in sent[0]
    assert {k: v for k, v in returned.items() if v is not None and k != "integrations"} == sent[0]


def test_track_message_has_the_spec_fields() -> None:
    """A track call makes type, messageId, timestamp, ids, event, properties and context.library."""
    msg = track(user_id="u1", event="Played a Song", properties={"plan": "Free"})
    assert msg["type"] == "track"
    assert msg["userId"] == "u1"
    assert msg["event"] == "Played a Song"
    assert msg["properties"] == {"plan": "Free"}
    assert msg["context"]["library"] == {
        "name": "analytics-python",
        "version": analytics.__version__,
    }
    assert ISO_MS.match(msg["timestamp"])
    assert "anonymousId" not in msg


def test_message_ids_are_unique_and_short() -> None:
    """Ids never repeat and stay within SPEC's 100 characters."""
    ids = {new_message_id() for _ in range(10_000)}
    assert len(ids) == 10_000
    assert all(len(i) <= 100 for i in ids)


def test_reseed_changes_the_prefix() -> None:
    """A forked child draws a new random prefix, so its ids differ from the parent's."""
    before = new_message_id()
    _message.reseed_ids()
    after = new_message_id()
    assert before.rsplit("-", 1)[0] != after.rsplit("-", 1)[0]


def test_now_iso_is_utc_with_milliseconds() -> None:
    """The default timestamp is ISO-8601 UTC with milliseconds, close to the real time."""
    text = now_iso()
    assert ISO_MS.match(text)
    parsed = dt.datetime.fromisoformat(text[:-1] + "+00:00")
    assert abs((parsed - dt.datetime.now(dt.timezone.utc)).total_seconds()) < 5


def test_aware_timestamp_is_converted_to_utc() -> None:
    """An aware datetime in another zone is sent in UTC."""
    when = dt.datetime(2012, 10, 17, 11, 51, 17, 351481, tzinfo=dt.timezone(dt.timedelta(hours=-7)))
    assert format_timestamp(when) == "2012-10-17T18:51:17.351Z"


def test_naive_timestamp_is_utc_and_warns_once(caplog: pytest.LogCaptureFixture) -> None:
    """A naive datetime is taken as UTC, with one warning per process."""
    _message._naive_warned = False
    with caplog.at_level(logging.WARNING, logger="analytics"):
        first = format_timestamp(dt.datetime(2020, 1, 2, 3, 4, 5))
        second = format_timestamp(dt.datetime(2020, 1, 2, 3, 4, 6))
    assert first == "2020-01-02T03:04:05.000Z"
    assert second == "2020-01-02T03:04:06.000Z"
    assert len([r for r in caplog.records if "naive" in r.getMessage()]) == 1


def test_string_and_date_timestamps() -> None:
    """ISO strings (with Z or an offset) and dates are accepted; garbage is refused."""
    assert format_timestamp("2012-10-17T18:58:57.911Z") == "2012-10-17T18:58:57.911Z"
    assert format_timestamp("2012-10-17T20:58:57+02:00") == "2012-10-17T18:58:57.000Z"
    assert format_timestamp(dt.date(2012, 10, 17)) == "2012-10-17T00:00:00.000Z"
    with pytest.raises(analytics.InvalidEventError, match="timestamp"):
        format_timestamp("yesterday")
    with pytest.raises(analytics.InvalidEventError, match="timestamp"):
        format_timestamp(12345)


class Color(enum.Enum):
    RED = "red"


@dataclasses.dataclass
class Point:
    x: int
    y: int


def test_rich_values_serialize() -> None:
    """Decimal, UUID, date, datetime, Enum, set, tuple, bytes and dataclasses all encode."""
    uid = uuid.UUID("12345678-1234-5678-1234-567812345678")
    props = {
        "price": decimal.Decimal("19.99"),
        "id": uid,
        "day": dt.date(2024, 5, 1),
        "at": dt.datetime(2024, 5, 1, 12, 0, tzinfo=dt.timezone.utc),
        "color": Color.RED,
        "tags": {"a"},
        "pair": (1, 2),
        "raw": b"hi",
        "blob": b"\xff\x00",
        "point": Point(1, 2),
    }
    out = track(user_id="u", event="e", properties=props)["properties"]
    assert out["price"] == 19.99
    assert out["id"] == str(uid)
    assert out["day"] == "2024-05-01"
    assert out["at"].startswith("2024-05-01T12:00:00")
    assert out["color"] == "red"
    assert out["tags"] == ["a"]
    assert out["pair"] == [1, 2]
    assert out["raw"] == "hi"
    assert out["blob"] == "/wA="
    assert out["point"] == {"x": 1, "y": 2}


def test_nan_and_infinity_become_null() -> None:
    """NaN and infinities are sent as null (documented coercion), never crash."""
    out = track(user_id="u", event="e", properties={"a": math.nan, "b": math.inf})["properties"]
    assert out == {"a": None, "b": None}


def test_non_string_keys_are_converted() -> None:
    """Dict keys that are not strings are converted to strings."""
    out = track(user_id="u", event="e", properties={1: "one", "n": {2: "two"}})["properties"]
    assert out == {"1": "one", "n": {"2": "two"}}


def test_unserializable_value_raises_a_type_error_naming_the_field() -> None:
    """An object JSON cannot represent raises UnserializableError (a TypeError) naming the field."""
    client = analytics.Client("key", send=False, flush_at_exit=False)
    with pytest.raises(TypeError, match="properties"):
        client.track(user_id="u", event="e", properties={"x": object()})
    with pytest.raises(analytics.UnserializableError, match="properties"):
        client.track(user_id="u", event="e", properties={"big": 2**70})


def test_too_large_message_is_refused_at_the_call() -> None:
    """A message over 32,000 bytes raises MessageTooLargeError and is never queued."""
    client = analytics.Client("key", flush_at_exit=False, host="http://127.0.0.1:9")
    with pytest.raises(analytics.MessageTooLargeError, match="32,000"):
        client.track(user_id="u", event="e", properties={"blob": "x" * MAX_MESSAGE_BYTES})
    assert client.stats.queued == 0
    assert client.stats.dropped == {}


def test_caller_may_mutate_its_dicts_after_the_call() -> None:
    """What is sent is what was passed: the bytes are made at the call."""
    data: list[bytes] = []
    client = analytics.Client("key", send=False, flush_at_exit=False)
    client._tap = data.append
    props = {"n": 1}
    client.track(user_id="u", event="e", properties=props)
    props["n"] = 2
    assert orjson.loads(data[0])["properties"] == {"n": 1}


@pytest.mark.parametrize(
    ("kwargs", "argument"),
    [
        ({"event": "e"}, "user_id or an anonymous_id"),
        ({"user_id": "u"}, "event"),
        ({"user_id": "u", "event": ""}, "event"),
        ({"user_id": ["u"], "event": "e"}, "user_id"),
        ({"user_id": "u", "event": "e", "properties": [1]}, "properties"),
        ({"user_id": "u", "event": "e", "context": "x"}, "context"),
        ({"user_id": "u", "event": "e", "integrations": 3}, "integrations"),
        ({"user_id": "u", "event": "e", "message_id": "x" * 101}, "message_id"),
        ({"user_id": "u", "event": "e", "anonymous_id": "a", "session_id": "b"}, "session_id"),
    ],
)
def test_programmer_errors_raise_value_errors_naming_the_argument(
    kwargs: dict[str, object], argument: str
) -> None:
    """Bad arguments raise InvalidEventError (a ValueError) naming the argument; never assert."""
    client = analytics.Client("key", send=False, flush_at_exit=False)
    with pytest.raises(ValueError, match=argument):
        client.track(**kwargs)  # type: ignore[arg-type]


def test_every_call_type_builds_its_fields() -> None:
    """identify, page, screen, group and alias carry their own fields; numbers become strings."""
    client = analytics.Client("key", send=False, flush_at_exit=False)
    assert client.identify(user_id=7, traits={"plan": "Free"})[1]["userId"] == "7"
    page = client.page("u", "Docs", "Intro", {"path": "/"})[1]
    assert (page["category"], page["name"], page["properties"]) == ("Docs", "Intro", {"path": "/"})
    assert client.screen(session_id="s1", name="Home")[1]["anonymousId"] == "s1"
    assert client.group("u", 42, {"name": "Acme"})[1]["groupId"] == "42"
    alias = client.alias("old", "new")[1]
    assert (alias["previousId"], alias["userId"]) == ("old", "new")
    with pytest.raises(ValueError, match="group_id"):
        client.group("u", None)
    with pytest.raises(ValueError, match="previous_id"):
        client.alias(None, "new")
    with pytest.raises(ValueError, match="user_id"):
        client.alias("old", None)


def test_normalize_message_fills_and_validates() -> None:
    """A SPEC-format message gets messageId, timestamp and library; bad ones name the field."""
    msg = normalize_message(
        {"type": "track", "userId": "u", "event": "e", "timestamp": "2020-01-01T00:00:00Z", "x": 1}
    )
    assert msg["timestamp"] == "2020-01-01T00:00:00.000Z"
    assert msg["messageId"]
    assert msg["x"] == 1
    assert msg["context"]["library"]["name"] == "analytics-python"
    assert (
        normalize_message({"type": "alias", "previousId": "a", "userId": "b"})["previousId"] == "a"
    )
    with pytest.raises(analytics.InvalidEventError, match="event"):
        normalize_message({"type": "track", "userId": "u"})
    with pytest.raises(analytics.InvalidEventError, match="type"):
        normalize_message({"type": "bogus", "userId": "u"})
    with pytest.raises(analytics.InvalidEventError, match="groupId"):
        normalize_message({"type": "group", "userId": "u"})
    with pytest.raises(analytics.InvalidEventError, match="type"):
        normalize_message({"type": ["track"], "userId": "u"})  # unhashable: still our error


@pytest.mark.parametrize("extra", [{}, {"x": 1}])
def test_normalize_message_leaves_out_none_fields_and_transport_fields(
    extra: dict[str, Any],
) -> None:
    """Known fields that are None are left out (as in the calls), with or without extra
    fields; sentAt and writeKey belong to the request, not the message."""
    msg = normalize_message(
        MappingProxyType(
            {
                "type": "page",
                "userId": 7,
                "anonymousId": None,
                "name": None,
                "category": "c",
                "sentAt": "2020-01-01T00:00:00Z",
                "writeKey": "secret",
                **extra,
            }
        )
    )
    assert msg["userId"] == "7"
    assert msg["category"] == "c"
    assert not {"anonymousId", "name", "sentAt", "writeKey"} & msg.keys()
    assert {k: msg[k] for k in extra} == extra


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.floats() | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)


@given(props=st.dictionaries(st.text(), json_values, max_size=6), user=st.text(min_size=1))
def test_any_json_like_properties_encode_or_raise_cleanly(
    props: dict[str, object], user: str
) -> None:
    """Random properties either encode to valid JSON or raise a ValueError/TypeError subclass."""
    msg = build("track", {"event": "e", "properties": props}, user, None, None, None, None, None)
    error: Exception | None = None
    try:
        data = encode(msg)
    except analytics.AnalyticsError as exc:
        error = exc
    if error is None:
        assert orjson.loads(data)["userId"] == user
    else:
        assert isinstance(error, ValueError | TypeError)
