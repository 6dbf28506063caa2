"""What the client accepts, the collector stores (issue 10, item 4).

The same generated calls go to both sides: the client builds and encodes each one (as a call
does) and puts it in its request body; the collector's validation and enrichment run on that
body. Each argument is drawn either from values the rules accept or from values they refuse
(`analytics._wire`); a call with a refused value must raise at the call, a call without one
must be accepted, and whatever the client accepts must be stored as it was sent, never refused
inside the 200.
"""

from __future__ import annotations

import datetime as dt
import math
from typing import Any

import orjson
import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

import analytics
from analytics import InvalidEventError, UnserializableError
from analytics._batch import envelope
from analytics._message import encode
from analytics._wire import MESSAGE_TYPES
from analytics.collector import Limits
from analytics.collector._auth import KeyPolicy
from analytics.collector._messages import parse_request

UTC = dt.timezone.utc
NOW = dt.datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)
CLIENT = analytics.Client("key", send=False, flush_at_exit=False)
Drawn = tuple[Any, bool]  # (value, whether the rules refuse it)


class RaisingTz(dt.tzinfo):
    def utcoffset(self, moment: dt.datetime | None) -> dt.timedelta:
        raise RuntimeError("no offset")

    def dst(self, moment: dt.datetime | None) -> dt.timedelta | None:
        return None


class OddStr(str):
    def __str__(self) -> str:
        raise RuntimeError("never called")


def good(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Drawn]:
    return strategy.map(lambda value: (value, False))


def bad(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Drawn]:
    return strategy.map(lambda value: (value, True))


text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=12)
offsets = st.integers(-23 * 60 - 59, 23 * 60 + 59).map(
    lambda m: dt.timezone(dt.timedelta(minutes=m))
)
# Datetimes whose UTC value is one day inside years 1-9999, in any offset.
moments = st.builds(
    lambda moment, tz: moment.replace(tzinfo=UTC).astimezone(tz),
    st.datetimes(min_value=dt.datetime(1, 1, 2), max_value=dt.datetime(9999, 12, 30)),
    offsets,
)
json_leaves = (
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats()  # NaN and infinities are sent as null
    | text
    | moments
    | st.dates()
)
json_values = st.recursive(
    json_leaves,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(text, inner, max_size=3),
    max_leaves=8,
)
json_objects = st.dictionaries(text, json_values, max_size=4)


def canonical(m: dt.datetime) -> str:
    """``2024-05-01T12:00:00.123Z`` (strftime's %Y does not pad years before 1000)."""
    return (
        f"{m.year:04d}-{m.month:02d}-{m.day:02d}T{m.hour:02d}:{m.minute:02d}:{m.second:02d}"
        f".{m.microsecond // 1000:03d}Z"
    )


def nested(depth: int) -> dict[str, Any]:
    value: dict[str, Any] = {}
    for _ in range(depth):
        value = {"n": value}
    return value


ids = st.one_of(
    good(st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=12)),
    good(st.integers(-(2**80), 2**80)),
    good(st.floats(allow_nan=False, allow_infinity=False)),
    good(st.text(min_size=1, max_size=5).map(OddStr)),
    bad(st.sampled_from(["", math.nan, math.inf, True, False])),
    bad(st.lists(st.integers(), max_size=2)),
)
timestamps = st.one_of(
    good(st.none()),
    good(moments),
    good(st.datetimes(min_value=dt.datetime(1, 1, 1), max_value=dt.datetime(9999, 12, 31))),
    good(st.dates()),
    good(moments.map(lambda m: m.isoformat())),
    good(moments.map(lambda m: canonical(m.astimezone(UTC)))),
    good(moments.map(lambda m: f"{m.year:04d}-{m.month}-{m.day}T{m.hour}:{m.minute}:{m.second}Z")),
    bad(st.sampled_from(["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00"])),
    bad(st.sampled_from(["yesterday", "", "2015-13-02T00:00:00Z", "2015-02-30", "x" * 65])),
    bad(st.datetimes().map(lambda m: m.replace(tzinfo=RaisingTz()))),
    bad(st.integers()),
)
objects = st.one_of(
    good(st.none()),
    good(json_objects),
    bad(st.just(nested(300))),
    bad(st.just({"big": "x" * 40_000})),
    bad(st.just({"at": dt.datetime(2024, 1, 1, tzinfo=RaisingTz())})),
    bad(st.lists(st.integers(), min_size=1, max_size=2)),
)
texts = st.one_of(good(st.none()), good(text), bad(st.integers()))
events = st.one_of(good(text.filter(bool)), bad(st.sampled_from(["", None, 7])))
message_ids = st.one_of(
    good(st.none()),
    good(st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=100)),
    good(st.integers()),
    bad(st.sampled_from(["", "m" * 101])),
)


@st.composite
def calls(draw: st.DrawFn) -> tuple[str, dict[str, Drawn]]:
    """One call: its method and its arguments, each with whether the rules refuse it."""
    kind = draw(st.sampled_from(["identify", "track", "page", "screen", "group", "alias"]))
    args: dict[str, Drawn] = {
        "context": draw(objects),
        "timestamp": draw(timestamps),
        "integrations": draw(objects),
        "message_id": draw(message_ids),
    }
    if kind == "alias":
        args["previous_id"] = draw(ids)
        args["user_id"] = draw(ids)
        return kind, args
    # At least one of the two ids: a call with neither is refused for another reason.
    user, anon = draw(
        st.one_of(st.tuples(ids, st.none()), st.tuples(st.none(), ids), st.tuples(ids, ids))
    )
    if user is not None:
        args["user_id"] = user
    if anon is not None:
        args["anonymous_id"] = anon
    if kind == "track":
        args["event"] = draw(events)
        args["properties"] = draw(objects)
    elif kind in ("page", "screen"):
        args["name"] = draw(texts)
        args["category"] = draw(texts)
        args["properties"] = draw(objects)
    elif kind == "group":
        args["group_id"] = draw(ids)
        args["traits"] = draw(objects)
    else:
        args["traits"] = draw(objects)
    return kind, args


def collector_stores(data: bytes, sent_at: str) -> dict[str, Any]:
    """The stored message of a client request holding ``data``; fails on any refusal."""
    body = envelope([data], sent_at, orjson.dumps("key"))
    parsed = parse_request(
        body,
        single_type=None,
        header_key="key",
        now=NOW,
        policy=KeyPolicy(None),
        limits=Limits(),
    )
    assert parsed.refused == [], parsed.refused
    (row,) = parsed.rows
    stored: dict[str, Any] = orjson.loads(row.body)
    return stored


@settings(max_examples=400, deadline=None)
@given(call=calls(), skew=st.integers(-86_400_000, 86_400_000))
def test_what_the_client_accepts_the_collector_stores(
    call: tuple[str, dict[str, Drawn]], skew: int
) -> None:
    kind, drawn = call
    kwargs = {name: value for name, (value, _) in drawn.items()}
    refused_by_rules = [name for name, (_, is_bad) in drawn.items() if is_bad]
    try:
        _, msg = getattr(CLIENT, kind)(**kwargs)
        data = encode(msg)
    except (InvalidEventError, UnserializableError) as exc:
        refusal: str | None = str(exc)
    else:
        refusal = None
    if refusal is not None:
        assert refused_by_rules, f"a valid {kind} call was refused: {refusal}"
        return
    assert not refused_by_rules, f"{kind} accepted {refused_by_rules}: {msg}"
    sent_at = NOW - dt.timedelta(milliseconds=skew)
    stored = collector_stores(data, canonical(sent_at))
    sent = orjson.loads(data)
    for field, value in sent.items():
        if field == "timestamp":
            assert stored["originalTimestamp"] == value
        else:
            assert stored[field] == value, field


def test_the_harness_tells_a_refusal_from_a_store() -> None:
    """The property above can fail: a message the collector refuses is caught."""
    good_msg = orjson.dumps({"type": "track", "userId": "u", "event": "E", "messageId": "m1"})
    assert collector_stores(good_msg, "2026-01-02T03:04:05.678Z")["userId"] == "u"
    bad_msg = orjson.dumps({"type": "track", "userId": "", "event": "E", "messageId": "m2"})
    with pytest.raises(AssertionError):
        collector_stores(bad_msg, "2026-01-02T03:04:05.678Z")


wire_fields = st.sampled_from(
    [
        "type",
        "userId",
        "anonymousId",
        "groupId",
        "previousId",
        "event",
        "name",
        "category",
        "messageId",
        "timestamp",
        "originalTimestamp",
        "sentAt",
        "context",
        "integrations",
        "properties",
        "traits",
        "receivedAt",
        "custom",
    ]
)
wire_values = st.one_of(
    json_values,
    st.sampled_from(["", "0001-01-01T00:00:00+01:00", "2015-2-02T00:30:08.276Z", "x" * 101]),
    st.sampled_from(MESSAGE_TYPES),
    json_objects,
)


VALID_BASE: dict[str, dict[str, Any]] = {
    "identify": {"userId": "u"},
    "track": {"userId": "u", "event": "E"},
    "page": {"anonymousId": "a"},
    "screen": {"userId": 7},
    "group": {"userId": "u", "groupId": "g"},
    "alias": {"userId": "u", "previousId": "p"},
}


@settings(max_examples=400, deadline=None)
@given(
    kind=st.sampled_from(MESSAGE_TYPES),
    fields=st.dictionaries(wire_fields, wire_values, max_size=3),
)
def test_what_enqueue_accepts_the_collector_stores(kind: str, fields: dict[str, Any]) -> None:
    """The same rule for messages given in SPEC form (imports), extra fields included: a
    valid message of each type with up to three fields set to anything."""
    message = {"type": kind, **VALID_BASE[kind], **fields}
    try:
        _, msg = CLIENT.enqueue(message)
        data = encode(msg)
    except (InvalidEventError, UnserializableError):
        event("refused by the client")
        return
    event("accepted by the client")
    stored = collector_stores(data, canonical(NOW))
    for field, value in orjson.loads(data).items():
        # null counts as absent: the collector fills originalTimestamp, receivedAt ... itself
        if value is not None and field not in ("timestamp", "receivedAt", "sentAt"):
            assert stored[field] == value, field
