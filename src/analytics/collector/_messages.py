"""Validation and enrichment of tracking-API messages: pure functions, ``now`` is an argument.

The HTTP layer hands over the decompressed body; this module turns it into rows for the store
and a list of refused items. Nothing here does I/O or reads the clock.

Request level (raises :class:`RequestError`, the whole request is refused):
  - the body is not UTF-8 JSON (400 ``invalid_json``) or has the wrong shape, e.g. a batch
    body that is not an object with a ``batch`` list (400 ``invalid_body``);
  - batch-level ``context``/``integrations`` not objects, ``sentAt`` not ISO-8601, ``writeKey``
    not a string (400 ``invalid_field``);
  - more messages than :attr:`Limits.max_batch_messages` (400 ``too_many_messages``).

Message level (SPEC 6; refused items are listed by index, the others are stored):
  - not an object; ``type`` missing or unknown (batch items; single endpoints take the type
    from the path); ``userId`` or ``anonymousId`` missing (except alias); ``event`` for track;
    ``groupId`` for group; ``previousId`` and ``userId`` for alias; ids that are neither strings
    nor integers; ``messageId`` not a string of 1..100 characters; ``context``, ``integrations``,
    ``properties``, ``traits`` not objects; ``name``/``category`` not strings; timestamps that
    are not ISO-8601; compact JSON larger than :attr:`Limits.max_message_bytes`; no usable write
    key when the request itself carries none. ``null`` counts as absent for optional fields.

Enrichment (SPEC 5.3, 7, 10):
  - ``receivedAt`` = now; ``messageId`` = a UUID4 when missing;
  - ``originalTimestamp`` = the client's ``timestamp`` (or its ``originalTimestamp``);
  - ``sentAt`` = the message's own, else the batch's; ``timestamp`` = ``receivedAt - (sentAt -
    originalTimestamp)`` when both are known, else ``originalTimestamp``, else ``receivedAt``;
  - batch ``context`` and ``integrations`` are shallow-merged into the message's, the message's
    keys winning; every other field is kept as sent, except ``writeKey``, which is removed so the
    database and ``analytics events`` never show a secret.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from uuid import uuid4

import orjson

from analytics.collector._limits import Limits
from analytics.collector._store import Row
from analytics.collector._time import format_timestamp, parse_timestamp

__all__ = [
    "MESSAGE_TYPES",
    "Envelope",
    "Prepared",
    "Refusal",
    "RequestError",
    "normalize_message",
    "parse_json",
    "prepare",
    "read_envelope",
]

MESSAGE_TYPES = frozenset({"identify", "track", "page", "screen", "group", "alias"})
_OBJECT_FIELDS = ("context", "integrations", "properties", "traits")
_STRING_FIELDS = ("name", "category", "event")
_TIME_FIELDS = ("timestamp", "originalTimestamp", "sentAt")
_BOM = b"\xef\xbb\xbf"


class RequestError(Exception):
    """The whole request is refused with ``status`` and a JSON error ``code``/``message``."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


class InvalidMessage(Exception):
    """One message is refused; the request goes on."""

    def __init__(self, code: str, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Refusal:
    """A refused message: its index in the request, a short code and a readable reason."""

    index: int
    code: str
    reason: str

    def as_dict(self) -> dict[str, Any]:
        """The JSON form used in responses."""
        return {"index": self.index, "code": self.code, "reason": self.reason}


@dataclass(frozen=True, slots=True)
class Envelope:
    """The request-level parts of a body: its messages and the batch-wide fields."""

    items: list[Any]
    context: dict[str, Any] | None = None
    integrations: dict[str, Any] | None = None
    sent_at: datetime | None = None
    sent_at_text: str | None = None
    write_key: str | None = None


@dataclass(slots=True)
class Prepared:
    """Rows ready for the store, the refusals, and how many items had an acceptable key."""

    rows: list[Row] = field(default_factory=list)
    refused: list[Refusal] = field(default_factory=list)
    keyed: int = 0
    saw_item_key: bool = False


def parse_json(body: bytes) -> Any:
    """Decode a UTF-8 JSON body (a leading BOM is tolerated).

    Raises:
        RequestError: 400 ``invalid_json`` or ``invalid_utf8``.
    """
    if body.startswith(_BOM):
        body = body[len(_BOM) :]
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        if "UTF-8" in str(exc):
            raise RequestError(400, "invalid_utf8", f"body is not valid UTF-8: {exc}") from None
        raise RequestError(400, "invalid_json", f"body is not valid JSON: {exc}") from None


def _optional_object(payload: dict[str, Any], name: str) -> dict[str, Any] | None:
    value = payload.get(name)
    if value is None or isinstance(value, dict):
        return value
    raise RequestError(400, "invalid_field", f"batch-level {name!r} must be a JSON object")


def _optional_string(payload: dict[str, Any], name: str) -> str | None:
    value = payload.get(name)
    if value is None or isinstance(value, str):
        return value
    raise RequestError(400, "invalid_field", f"{name!r} must be a string")


def read_envelope(payload: Any, *, single_type: str | None, limits: Limits) -> Envelope:
    """Check the shape of a decoded body and split it into an :class:`Envelope`.

    ``single_type`` is the message type implied by a single-event path, ``None`` for batches.
    """
    if not isinstance(payload, dict):
        raise RequestError(400, "invalid_body", "body must be a JSON object")
    write_key = _optional_string(payload, "writeKey")
    if single_type is not None:
        return Envelope(items=[payload], write_key=write_key)
    items = payload.get("batch")
    if not isinstance(items, list):
        raise RequestError(400, "invalid_body", "batch body must have a 'batch' array")
    if len(items) > limits.max_batch_messages:
        raise RequestError(
            400,
            "too_many_messages",
            f"batch has {len(items)} messages; the limit is {limits.max_batch_messages}",
        )
    sent_text = _optional_string(payload, "sentAt")
    sent_at = None
    if sent_text is not None:
        try:
            sent_at = parse_timestamp(sent_text)
        except ValueError:
            raise RequestError(400, "invalid_field", "'sentAt' is not ISO-8601") from None
    return Envelope(
        items=items,
        context=_optional_object(payload, "context"),
        integrations=_optional_object(payload, "integrations"),
        sent_at=sent_at,
        sent_at_text=sent_text,
        write_key=write_key,
    )


def _is_id(value: Any) -> bool:
    return (isinstance(value, str) and value != "") or (
        isinstance(value, int) and not isinstance(value, bool)
    )


def _check_id_types(msg: dict[str, Any]) -> None:
    for name in ("userId", "anonymousId", "groupId", "previousId"):
        value = msg.get(name)
        if value is not None and not _is_id(value):
            raise InvalidMessage("invalid_field", f"{name} must be a non-empty string")


def _check_required(msg: dict[str, Any], kind: str) -> None:
    if kind == "alias":
        if not (_is_id(msg.get("previousId")) and _is_id(msg.get("userId"))):
            raise InvalidMessage("missing_field", "alias requires previousId and userId")
        return
    if not (_is_id(msg.get("userId")) or _is_id(msg.get("anonymousId"))):
        raise InvalidMessage("missing_field", "userId or anonymousId is required")
    if kind == "track" and not (isinstance(msg.get("event"), str) and msg["event"]):
        raise InvalidMessage("missing_field", "track requires a non-empty event")
    if kind == "group" and not _is_id(msg.get("groupId")):
        raise InvalidMessage("missing_field", "group requires groupId")


def _check_types(msg: dict[str, Any], limits: Limits) -> None:
    for name in _OBJECT_FIELDS:
        value = msg.get(name)
        if value is not None and not isinstance(value, dict):
            raise InvalidMessage("invalid_field", f"{name} must be a JSON object")
    for name in _STRING_FIELDS + _TIME_FIELDS:
        value = msg.get(name)
        if value is not None and not isinstance(value, str):
            raise InvalidMessage("invalid_field", f"{name} must be a string")
    message_id = msg.get("messageId")
    if message_id is not None and not (
        isinstance(message_id, str) and 0 < len(message_id) <= limits.max_message_id_chars
    ):
        raise InvalidMessage(
            "invalid_field",
            f"messageId must be a string of 1..{limits.max_message_id_chars} characters",
        )


def _kind(item: dict[str, Any], single_type: str | None) -> str:
    if single_type is not None:
        return single_type
    kind = item.get("type")
    if not isinstance(kind, str) or kind not in MESSAGE_TYPES:
        raise InvalidMessage(
            "invalid_type", "type must be one of " + ", ".join(sorted(MESSAGE_TYPES))
        )
    return kind


def _parse_time(value: str | None, name: str) -> datetime | None:
    if value is None:
        return None
    try:
        return parse_timestamp(value)
    except ValueError:
        raise InvalidMessage("invalid_timestamp", f"{name} is not ISO-8601") from None


def _merged(batch: dict[str, Any] | None, own: dict[str, Any] | None) -> dict[str, Any] | None:
    if not batch:
        return own
    return {**batch, **own} if own else dict(batch)


def _stamp(msg: dict[str, Any], env: Envelope, now: datetime) -> None:
    """Set ``originalTimestamp``, ``sentAt`` and the skew-corrected ``timestamp`` (SPEC 5.3)."""
    original_text = msg.get("timestamp")
    if original_text is None:
        original_text = msg.get("originalTimestamp")
    original = _parse_time(original_text, "timestamp")
    sent = _parse_time(msg.get("sentAt"), "sentAt")
    if sent is None and env.sent_at is not None:
        sent = env.sent_at
        msg["sentAt"] = env.sent_at_text
    if original is None:
        msg.pop("originalTimestamp", None)
        moment = now
    else:
        msg["originalTimestamp"] = original_text
        try:
            moment = now - (sent - original) if sent is not None else original
        except OverflowError:
            raise InvalidMessage("invalid_timestamp", "timestamp is out of range") from None
    msg["timestamp"] = format_timestamp(moment)


def normalize_message(
    item: Any,
    env: Envelope,
    *,
    single_type: str | None,
    now: datetime,
    received_at: str,
    limits: Limits,
) -> dict[str, Any]:
    """Validate one message and return its enriched copy (the input is not modified).

    Raises:
        InvalidMessage: with a short code and a readable reason.
    """
    if not isinstance(item, dict):
        raise InvalidMessage("invalid_message", "message must be a JSON object")
    kind = _kind(item, single_type)
    _check_types(item, limits)
    _check_id_types(item)
    _check_required(item, kind)
    msg = dict(item)
    msg.pop("writeKey", None)
    msg["type"] = kind
    msg["receivedAt"] = received_at
    if "messageId" not in msg or msg["messageId"] is None:
        msg["messageId"] = str(uuid4())
    for name in ("context", "integrations"):
        merged = _merged(getattr(env, name), msg.get(name))
        if merged is not None:
            msg[name] = merged
    _stamp(msg, env, now)
    return msg


def _column(value: Any) -> str | None:
    return None if value is None else str(value)


def build_row(msg: dict[str, Any], write_key: str) -> Row:
    """The store row of an enriched message (the body is its compact JSON text)."""
    event = msg.get("event") if msg["type"] == "track" else None
    return (
        write_key,
        msg["messageId"],
        msg["type"],
        _column(msg.get("userId")),
        _column(msg.get("anonymousId")),
        event,
        msg["timestamp"],
        msg["receivedAt"],
        orjson.dumps(msg).decode(),
    )


def _item_key(
    item: Any, request_key: str | None, key_allowed: Callable[[str], bool], out: Prepared
) -> str:
    """The write key a message is stored under (the request's, else its own ``writeKey``)."""
    if not isinstance(item, dict):
        raise InvalidMessage("invalid_message", "message must be a JSON object")
    if request_key is not None:
        return request_key
    own = item.get("writeKey")
    if not isinstance(own, str) or not own:
        raise InvalidMessage("missing_write_key", "no write key in the request or the message")
    out.saw_item_key = True
    if not key_allowed(own):
        raise InvalidMessage("unknown_write_key", "the message's write key is not accepted")
    return own


def prepare(
    env: Envelope,
    *,
    single_type: str | None,
    now: datetime,
    request_key: str | None,
    key_allowed: Callable[[str], bool],
    limits: Limits,
    measure_items: bool,
) -> Prepared:
    """Validate and enrich every message of ``env``; never raises for a bad message.

    ``request_key`` is the already accepted key of the request (Basic auth or body
    ``writeKey``), or ``None``, in which case each message must carry an accepted ``writeKey``.
    ``measure_items`` turns on the per-message size check (needless when the whole body is
    smaller than the per-message limit).
    """
    out = Prepared()
    received_at = format_timestamp(now)
    for index, item in enumerate(env.items):
        try:
            key = _item_key(item, request_key, key_allowed, out)
            out.keyed += 1
            if measure_items and len(orjson.dumps(item)) > limits.max_message_bytes:
                raise InvalidMessage(
                    "message_too_large", f"message is over {limits.max_message_bytes} bytes"
                )
            msg = normalize_message(
                item,
                env,
                single_type=single_type,
                now=now,
                received_at=received_at,
                limits=limits,
            )
        except InvalidMessage as exc:
            out.refused.append(Refusal(index, exc.code, exc.reason))
            continue
        out.rows.append(build_row(msg, key))
    return out
