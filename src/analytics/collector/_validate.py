"""Validation of request bodies and messages (pure functions, no I/O).

Request level (raises :class:`RequestError`, the whole request is refused):
  - the body is not UTF-8 JSON (400 ``invalid_json`` / ``invalid_utf8``) or has the wrong
    shape, e.g. a batch body that is not an object with a ``batch`` list (400 ``invalid_body``);
  - batch-level ``context``/``integrations`` not objects, ``sentAt`` not ISO-8601, ``writeKey``
    not a string (400 ``invalid_field``);
  - more messages than :attr:`Limits.max_batch_messages` (400 ``too_many_messages``).

Message level (SPEC 6; raises :class:`InvalidMessage`, only that message is refused):
  - not an object; ``type`` missing or unknown (batch items; single endpoints take the type
    from the path); ``userId`` or ``anonymousId`` missing (except alias); ``event`` for track;
    ``groupId`` for group; ``previousId`` and ``userId`` for alias; ids that are neither
    non-empty strings nor integers; ``messageId`` not a string of 1..100 characters;
    ``context``, ``integrations``, ``properties``, ``traits`` not objects; ``name``,
    ``category``, ``event`` and the timestamps not strings. ``null`` counts as absent.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson

from analytics.collector._limits import Limits
from analytics.collector._time import parse_timestamp

__all__ = [
    "MESSAGE_TYPES",
    "Envelope",
    "InvalidMessage",
    "RequestError",
    "check_message",
    "parse_json",
    "read_envelope",
]

MESSAGE_TYPES = frozenset({"identify", "track", "page", "screen", "group", "alias"})
_BOM = b"\xef\xbb\xbf"
# Fields with a fixed JSON type; ids and messageId are checked on their own.
_TYPED_FIELDS: dict[str, type] = {
    "context": dict,
    "integrations": dict,
    "properties": dict,
    "traits": dict,
    "name": str,
    "category": str,
    "event": str,
    "timestamp": str,
    "originalTimestamp": str,
    "sentAt": str,
}
_ID_FIELDS = frozenset({"userId", "anonymousId", "groupId", "previousId"})
_TYPE_NAMES: dict[type, str] = {dict: "a JSON object", str: "a string"}


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
class Envelope:
    """The request-level parts of a body: its messages and the batch-wide fields."""

    items: list[Any]
    context: dict[str, Any] | None = None
    integrations: dict[str, Any] | None = None
    sent_at: datetime | None = None
    sent_at_text: str | None = None
    write_key: str | None = None


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
    kind = type(value)
    return (kind is str and value != "") or kind is int


def _check_required(msg: dict[str, Any], kind: str) -> None:
    if kind == "alias":
        if not (_is_id(msg.get("previousId")) and _is_id(msg.get("userId"))):
            raise InvalidMessage("missing_field", "alias requires previousId and userId")
        return
    if not (_is_id(msg.get("userId")) or _is_id(msg.get("anonymousId"))):
        raise InvalidMessage("missing_field", "userId or anonymousId is required")
    if kind == "track" and not msg.get("event"):
        raise InvalidMessage("missing_field", "track requires a non-empty event")
    if kind == "group" and not _is_id(msg.get("groupId")):
        raise InvalidMessage("missing_field", "group requires groupId")


def check_message(item: Any, single_type: str | None, limits: Limits) -> str:
    """Validate one message; return its type.

    Raises:
        InvalidMessage: with a short code and a readable reason.
    """
    if type(item) is not dict:
        raise InvalidMessage("invalid_message", "message must be a JSON object")
    kind = single_type or item.get("type")
    if type(kind) is not str or kind not in MESSAGE_TYPES:
        raise InvalidMessage(
            "invalid_type", "type must be one of " + ", ".join(sorted(MESSAGE_TYPES))
        )
    max_id_chars = limits.max_message_id_chars
    # One pass over the fields the message has, with the checks inlined: this runs for
    # every message received.
    for name, value in item.items():
        if value is None:
            continue
        expected = _TYPED_FIELDS.get(name)
        if expected is not None:
            if type(value) is not expected:
                raise InvalidMessage("invalid_field", f"{name} must be {_TYPE_NAMES[expected]}")
        elif name in _ID_FIELDS:
            if not _is_id(value):
                raise InvalidMessage("invalid_field", f"{name} must be a non-empty string")
        elif name == "messageId" and not (type(value) is str and 0 < len(value) <= max_id_chars):
            raise InvalidMessage(
                "invalid_field", f"messageId must be a string of 1..{max_id_chars} characters"
            )
    _check_required(item, kind)
    return kind
