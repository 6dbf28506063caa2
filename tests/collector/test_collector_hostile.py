"""Hostile messages over real HTTP (issue 14, items 1-2; issue 11, lenient dates): a bad message
is refused alone with its reason inside a 200, never a 500 for the batch; limits apply to what
is stored."""

from __future__ import annotations

import orjson
import pytest
from collector_http import batch, post, track
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from analytics.collector import CollectorServer, Limits


def nested_json(depth: int) -> bytes:
    """A JSON object ``depth`` levels deep (orjson reads 1,024 levels but writes 254)."""
    return b'{"n":' * depth + b"1" + b"}" * depth


def raw_batch(*items: bytes) -> bytes:
    return b'{"batch":[' + b",".join(items) + b'],"sentAt":"2024-05-01T12:00:00.000Z"}'


@pytest.mark.parametrize("depth", [255, 600, 1019])
def test_a_message_nested_too_deep_to_store_is_refused_alone(
    collector: CollectorServer, depth: int
) -> None:
    """It parsed, then failed to re-encode: a plain-text 500 for the whole batch."""
    deep = orjson.dumps(track(1))[:-1] + b',"properties":' + nested_json(depth) + b"}"
    body = raw_batch(orjson.dumps(track(0)), deep, orjson.dumps(track(2)))
    reply = post(collector.url, "/v1/batch", body)
    assert reply.status == 200, reply.body
    (refusal,) = reply.json["refused"]
    assert (refusal["index"], refusal["code"]) == (1, "invalid_message")
    assert "Recursion limit" in refusal["reason"]
    assert collector.store.message_ids() == ["msg-0", "msg-2"]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("timestamp", "0001-01-01T00:00:00+01:00"),
        ("timestamp", "9999-12-31T23:59:59-01:00"),
        ("originalTimestamp", "0001-01-01T00:00:00+01:00"),
        ("sentAt", "9999-12-31T23:59:59-01:00"),
    ],
)
def test_a_timestamp_out_of_range_in_utc_is_refused_alone(
    collector: CollectorServer, field: str, value: str
) -> None:
    """OverflowError outside any handler: a 500 for the whole batch."""
    items = [track(0), track(1, **{field: value}), track(2)]
    # Without a batch sentAt no skew correction moves the time back into range first.
    reply = post(collector.url, "/v1/batch", batch(items, sentAt=None))
    assert reply.status == 200, reply.body
    (refusal,) = reply.json["refused"]
    assert (refusal["index"], refusal["code"]) == (1, "invalid_timestamp")
    assert "out of range" in refusal["reason"]
    assert collector.store.message_ids() == ["msg-0", "msg-2"]


def test_a_batch_sent_at_out_of_range_is_a_400_not_a_500(collector: CollectorServer) -> None:
    reply = post(collector.url, "/v1/batch", batch([track(0)], sentAt="0001-01-01T00:00:00+01:00"))
    assert reply.status == 400, reply.body
    assert reply.json["code"] == "invalid_field"


def test_a_valid_time_at_the_edge_is_stored_without_the_skew_correction(
    collector: CollectorServer,
) -> None:
    """Correcting 0001-01-01T00:00:00Z by a clock skew would leave year 1: stored as sent."""
    items = [track(0, timestamp="0001-01-01T00:00:00.000Z")]
    reply = post(collector.url, "/v1/batch", batch(items, sentAt="2030-01-01T00:00:00.000Z"))
    assert reply.status == 200, reply.body
    assert reply.json.get("refused", []) == []
    (stored,) = collector.store.events()
    assert stored["timestamp"] == "0001-01-01T00:00:00.000Z"


def test_segment_docs_batch_example_with_lenient_dates_is_stored(
    collector: CollectorServer,
) -> None:
    """Segment's HTTP API docs write ``2015-2-02T00:30:08.276Z``: refused inside a 200 before."""
    items = [
        {"type": "identify", "userId": "971mj8mk7p", "timestamp": "2015-2-02T00:30:08.276Z"},
        {
            "type": "track",
            "userId": "971mj8mk7p",
            "event": "Song Played",
            "timestamp": "2015-2-02T00:30:12.984Z",
        },
    ]
    reply = post(collector.url, "/v1/batch", {"batch": items})
    assert reply.status == 200, reply.body
    assert reply.json.get("refused", []) == []
    stored = sorted(m["timestamp"] for m in collector.store.events())
    assert stored == ["2015-02-02T00:30:08.276Z", "2015-02-02T00:30:12.984Z"]


def test_batch_context_merged_past_the_message_limit_refuses_those_messages(
    collector: CollectorServer,
) -> None:
    """The 32 KB limit was checked before the merge: each message was stored with the whole
    batch context (a 510 KB request became 975 MB of rows)."""
    context = {"blob": "c" * 30_000}
    items = [track(0, properties={"p": "p" * 5_000}), track(1), track(2, context={"blob": "own"})]
    reply = post(collector.url, "/v1/batch", batch(items, context=context))
    assert reply.status == 200, reply.body
    assert [(r["index"], r["code"]) for r in reply.json["refused"]] == [(0, "message_too_large")]
    assert "as stored" in reply.json["refused"][0]["reason"]
    assert collector.store.message_ids() == ["msg-1", "msg-2"]


def test_amplification_of_one_request_is_bounded(collector: CollectorServer) -> None:
    """2,500 messages x a 200 KB batch context would store 500 MB: refused whole, unread."""
    items = [{"type": "track", "userId": "u", "event": "E"} for _ in range(2_500)]
    reply = post(collector.url, "/v1/batch", batch(items, context={"blob": "x" * 200_000}))
    assert reply.status == 400, reply.body
    assert reply.json["code"] == "payload_too_large"
    assert "merged into its 2,500 messages" in reply.json["message"]
    assert collector.store.count() == 0


def test_the_amplification_bound_is_a_limit_of_its_own(collector_factory: object) -> None:
    limits = Limits(max_stored_request_bytes=10_000)
    server = collector_factory(limits=limits)  # type: ignore[operator]
    items = [track(i) for i in range(20)]
    small = post(server.url, "/v1/batch", batch(items, context={"blob": "x" * 100}))
    assert small.status == 400, small.body
    alone = post(server.url, "/v1/batch", batch(items))
    assert alone.status == 200, alone.body


json_leaf = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**63), 2**64 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=6),
    st.sampled_from(
        [
            "0001-01-01T00:00:00+01:00",
            "9999-12-31T23:59:59-01:00",
            "2015-2-02T00:30:08.276Z",
            "",
            "x" * 70,
        ]
    ),
)
fields = st.sampled_from(
    [
        "type",
        "userId",
        "anonymousId",
        "event",
        "groupId",
        "previousId",
        "messageId",
        "timestamp",
        "originalTimestamp",
        "sentAt",
        "context",
        "properties",
        "traits",
        "name",
    ]
)
# Mostly messages that pass validation but for one or two fields, so the fuzz reaches the
# stamping, the merge and the encoding, not only the first check.
messages = st.builds(
    lambda base, extra: {**base, **extra},
    st.sampled_from([track(0), {"type": "identify", "anonymousId": "a"}, {}]),
    st.dictionaries(
        fields, json_leaf | st.dictionaries(st.text(max_size=3), json_leaf), max_size=2
    ),
)
depths = st.sampled_from([0, 0, 0, 253, 254, 300, 1000])
sent_ats = st.none() | json_leaf


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    path=st.sampled_from(["/v1/batch", "/v1/import", "/v1/track", "/v1/identify"]),
    items=st.lists(st.tuples(messages, depths), min_size=1, max_size=4),
    context=st.none() | messages,
    sent_at=sent_ats,
)
def test_no_input_gets_a_500(
    collector: CollectorServer,
    path: str,
    items: list[tuple[dict[str, object], int]],
    context: object,
    sent_at: object,
) -> None:
    encoded = []
    for message, depth in items:
        raw = orjson.dumps(message)
        if depth:
            raw = raw[:-1] + (b"," if len(raw) > 2 else b"") + b'"deep":' + nested_json(depth)
            raw += b"}"
        encoded.append(raw)
    if path in ("/v1/track", "/v1/identify"):  # a single event: the first message is the body
        body = encoded[0]
    else:
        body = b'{"batch":[' + b",".join(encoded) + b"]"
        if context is not None:
            body += b',"context":' + orjson.dumps(context)
        if sent_at is not None:
            body += b',"sentAt":' + orjson.dumps(sent_at)
        body += b"}"
    reply = post(collector.url, path, body)
    assert reply.status in (200, 400), (reply.status, reply.body)
    if reply.status == 200:
        assert len(reply.json.get("refused", [])) <= len(items)
