"""The tracking API over real HTTP on 127.0.0.1: routes, auth, enrichment, dedupe."""

from __future__ import annotations

import zlib
from collections.abc import Callable
from typing import Any

import pytest
from collector_http import KEY, basic, batch, post, request, track

from analytics.collector import CollectorServer


@pytest.fixture
def collector_db(any_collector_db: Callable[[int], Any]) -> Callable[[int], Any]:
    """Every test here runs over both stores: SQLite and PostgreSQL behave the same."""
    return any_collector_db


@pytest.fixture
def request_(request: pytest.FixtureRequest) -> pytest.FixtureRequest:
    """The test's own request (``request`` is taken by the HTTP helper's name)."""
    return request


SINGLE = [
    ("identify", "identify", {"userId": "u1", "traits": {"plan": "pro"}}),
    ("track", "track", {"userId": "u1", "event": "Played"}),
    ("page", "page", {"anonymousId": "a1", "name": "Home"}),
    ("screen", "screen", {"userId": "u1", "name": "Main"}),
    ("group", "group", {"userId": "u1", "groupId": "g1"}),
    ("alias", "alias", {"previousId": "a1", "userId": "u1"}),
    ("i", "identify", {"userId": "u1"}),
    ("t", "track", {"userId": "u1", "event": "Played"}),
    ("p", "page", {"userId": "u1"}),
    ("s", "screen", {"userId": "u1"}),
    ("g", "group", {"userId": "u1", "groupId": "g1"}),
    ("a", "alias", {"previousId": "a1", "userId": "u1"}),
]


@pytest.mark.parametrize(("path", "kind", "body"), SINGLE)
def test_single_event_endpoints_store_one_message(
    collector: CollectorServer, path: str, kind: str, body: dict[str, Any]
) -> None:
    reply = post(collector.url, f"/v1/{path}", body)
    assert reply.status == 200, reply.body
    assert reply.json == {
        "success": True,
        "received": 1,
        "stored": 1,
        "duplicates": 0,
        "refused": [],
    }
    (stored,) = collector.store.events()
    assert stored["type"] == kind
    assert {k: stored[k] for k in body} == body


@pytest.mark.parametrize("path", ["/v1/batch", "/v1/import", "/v1/b", "/v1/import/"])
def test_batch_endpoints(collector: CollectorServer, path: str) -> None:
    reply = post(collector.url, path, batch([track(1), track(2)]))
    assert reply.status == 200
    assert reply.json["stored"] == 2
    assert collector.store.message_ids() == ["msg-1", "msg-2"]


@pytest.mark.parametrize("content_type", ["application/json", "text/plain", None])
def test_json_is_accepted_as_json_text_or_without_content_type(
    collector: CollectorServer, content_type: str | None
) -> None:
    headers = {"Content-Type": content_type} if content_type else {}
    body = b'{"batch": [{"type": "identify", "userId": "u1"}]}'
    data_headers = {"Authorization": basic(KEY), **headers}
    reply = request(collector.url, "POST", "/v1/batch", body, data_headers)
    assert reply.status == 200
    assert collector.store.count() == 1


@pytest.mark.parametrize(
    "content_type", ["application/x-www-form-urlencoded", "text/html", "application/octet-stream"]
)
def test_json_is_read_whatever_its_content_type(
    collector: CollectorServer, content_type: str
) -> None:
    # @rudderstack/rudder-sdk-node 3.x sends gzipped JSON labelled as a form.
    headers = {"Content-Type": content_type}
    reply = post(collector.url, "/v1/batch", batch([track(1)]), headers=headers, compress=True)
    assert reply.status == 200, reply.body
    assert collector.store.message_ids() == ["msg-1"]


@pytest.mark.parametrize(
    ("content_type", "status", "code"),
    [
        ("application/x-www-form-urlencoded", 415, "unsupported_media_type"),
        ("application/json", 400, "invalid_json"),
        (None, 400, "invalid_json"),
    ],
)
def test_a_body_that_is_not_json(
    collector: CollectorServer, content_type: str | None, status: int, code: str
) -> None:
    headers = {"Authorization": basic(KEY)}
    if content_type:
        headers["Content-Type"] = content_type
    reply = request(collector.url, "POST", "/v1/batch", b"userId=u1&event=E", headers)
    assert (reply.status, reply.json["code"]) == (status, code)
    assert collector.store.count() == 0


def test_a_wrong_key_is_401_before_content_checks(
    collector_factory: Callable[..., CollectorServer],
) -> None:
    server = collector_factory(write_keys=["good"])
    headers = {"Content-Type": "application/x-www-form-urlencoded", "Content-Encoding": "br"}
    reply = post(server.url, "/v1/batch", b"not json", key="bad", headers=headers)
    assert (reply.status, reply.json["code"]) == (401, "unknown_write_key")


def test_gzip_and_deflate_bodies(collector: CollectorServer) -> None:
    assert post(collector.url, "/v1/batch", batch([track(1)]), compress=True).status == 200
    deflated = zlib.compress(b'{"batch": [{"type": "identify", "userId": "u2"}]}')
    reply = post(collector.url, "/v1/batch", deflated, headers={"Content-Encoding": "deflate"})
    assert reply.status == 200
    assert collector.store.count() == 2


@pytest.mark.parametrize("colon", [True, False])
def test_basic_auth_with_or_without_colon(
    collector_factory: Callable[..., CollectorServer], colon: bool
) -> None:
    server = collector_factory(write_keys=["good"])
    headers = {"Authorization": basic("good", colon=colon)}
    reply = post(server.url, "/v1/t", {"userId": "u", "event": "E"}, key=None, headers=headers)
    assert reply.status == 200


def test_body_write_key_and_per_event_write_keys(
    collector_factory: Callable[..., CollectorServer],
) -> None:
    server = collector_factory(write_keys=["good"])
    body = batch([track(1)], writeKey="good")
    assert post(server.url, "/v1/batch", body, key=None).status == 200
    per_event = batch([track(2, writeKey="good"), track(3, writeKey="bad"), track(4)])
    reply = post(server.url, "/v1/batch", per_event, key=None)
    assert reply.status == 200
    assert [(r["index"], r["code"]) for r in reply.json["refused"]] == [
        (1, "unknown_write_key"),
        (2, "missing_write_key"),
    ]
    assert server.store.message_ids() == ["msg-1", "msg-2"]
    assert all("writeKey" not in m for m in server.store.events())


@pytest.mark.parametrize(
    ("key", "body", "code"),
    [
        (None, batch([track(1)]), "missing_write_key"),
        ("wrong", batch([track(1)]), "unknown_write_key"),
        (None, batch([track(1)], writeKey="wrong"), "unknown_write_key"),
        (None, batch([track(1, writeKey="wrong")]), "unknown_write_key"),
        (None, batch([]), "missing_write_key"),
        (None, batch([track(1)], writeKey=""), "missing_write_key"),
    ],
)
def test_missing_or_unknown_keys_get_401_json(
    collector_factory: Callable[..., CollectorServer], key: str | None, body: Any, code: str
) -> None:
    server = collector_factory(write_keys=["good"])
    reply = post(server.url, "/v1/batch", body, key=key)
    assert reply.status == 401
    assert reply.json["success"] is False
    assert reply.json["code"] == code
    assert reply.json["message"] == reply.json["error"]
    assert server.store.count() == 0


def test_open_collector_accepts_any_key_but_not_none(collector: CollectorServer) -> None:
    assert post(collector.url, "/v1/batch", batch([track(1)]), key="whatever").status == 200
    assert post(collector.url, "/v1/batch", batch([track(2)]), key=None).status == 401


def test_duplicates_are_acknowledged_and_stored_once(collector: CollectorServer) -> None:
    first = post(collector.url, "/v1/batch", batch([track(1), track(2)]))
    again = post(collector.url, "/v1/batch", batch([track(1), track(2), track(3)]))
    assert (first.json["stored"], first.json["duplicates"]) == (2, 0)
    assert (again.json["stored"], again.json["duplicates"]) == (1, 2)
    assert collector.store.message_ids() == ["msg-1", "msg-2", "msg-3"]
    other_key = post(collector.url, "/v1/batch", batch([track(1)]), key="another-key")
    assert other_key.json["stored"] == 1  # dedupe is per (write key, messageId)


def test_invalid_items_are_listed_and_valid_ones_stored(collector: CollectorServer) -> None:
    items = [track(0), {"type": "track", "userId": "u"}, "junk", track(3, userId=["x"])]
    reply = post(collector.url, "/v1/batch", batch(items))
    assert reply.status == 200
    assert reply.json["stored"] == 1
    assert [(r["index"], r["code"]) for r in reply.json["refused"]] == [
        (1, "missing_field"),
        (2, "invalid_message"),
        (3, "invalid_field"),
    ]
    assert all(r["reason"] for r in reply.json["refused"])
    assert collector.store.message_ids() == ["msg-0"]


def test_stored_message_is_enriched(collector: CollectorServer) -> None:
    body = batch(
        [track(1, context={"ip": "10.0.0.1"}, extra={"kept": True})],
        context={"library": {"name": "analytics-python", "version": "1"}},
        integrations={"All": True},
        sentAt="2024-05-01T12:00:05.000Z",
    )
    post(collector.url, "/v1/batch", body)
    (msg,) = collector.store.events()
    assert msg["context"] == {
        "library": {"name": "analytics-python", "version": "1"},
        "ip": "10.0.0.1",
    }
    assert msg["integrations"] == {"All": True}
    assert msg["extra"] == {"kept": True}
    assert msg["originalTimestamp"] == "2024-05-01T12:00:00.000Z"
    assert msg["sentAt"] == "2024-05-01T12:00:05.000Z"
    assert msg["receivedAt"].endswith("Z")
    # timestamp = receivedAt - (sentAt - originalTimestamp) = receivedAt - 5 s
    from analytics._wire import parse_timestamp

    skew = parse_timestamp(msg["receivedAt"]) - parse_timestamp(msg["timestamp"])
    assert skew.total_seconds() == 5.0


def test_message_id_is_assigned_when_missing(collector: CollectorServer) -> None:
    post(collector.url, "/v1/identify", {"userId": "u1"})
    (msg,) = collector.store.events()
    assert len(msg["messageId"]) == 36


def test_empty_batch_is_200(collector: CollectorServer) -> None:
    reply = post(collector.url, "/v1/batch", batch([]))
    assert reply.status == 200
    assert reply.json["received"] == 0
    assert collector.store.count() == 0


def test_health_and_unknown_routes(
    collector: CollectorServer, request_: pytest.FixtureRequest
) -> None:
    post(collector.url, "/v1/batch", batch([track(1)]))
    health = request(collector.url, "GET", "/health")
    assert health.status == 200
    assert health.json["status"] == "ok"
    assert health.json["stored"] == 1
    assert health.json["store"]["reachable"] is True
    assert health.json["store"]["store"] == request_.node.callspec.params["any_collector_db"]
    missing = request(collector.url, "POST", "/v1/nothing", b"{}")
    assert missing.status == 404
    assert missing.json["success"] is False
    wrong_method = request(collector.url, "GET", "/v1/track")
    assert wrong_method.status == 405
    assert post(collector.url, "/v1/m", {"series": []}).status == 404  # not served
