"""Validation of request bodies and messages (pure functions, no I/O).

Request level (raises :class:`RequestError`, the whole request is refused):
  - the body is not UTF-8 JSON (400 ``invalid_json`` / ``invalid_utf8``) or has the wrong
    shape, e.g. a batch body that is not an object with a ``batch`` list (400 ``invalid_body``);
  - batch-level ``context``/``integrations`` not objects, ``sentAt`` not ISO-8601, ``writeKey``
    not a string (400 ``invalid_field``);
  - more messages than :attr:`Limits.max_batch_messages` (400 ``too_many_messages``);
  - batch-level ``context``/``integrations`` that, merged into every message, would store more
    than :attr:`Limits.max_stored_request_bytes` (400 ``payload_too_large``): one 510 KB
    request once became 975 MB of rows.

Message level (SPEC 6; raises :class:`InvalidMessage`, only that message is refused): the
rules of :mod:`analytics._wire`, which the client applies at the call.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson

from analytics import _wire
from analytics._wire import InvalidMessage, check_message, parse_timestamp
from analytics.collector._limits import Limits

__all__ = [
    "MESSAGE_TYPES",
    "Envelope",
    "InvalidMessage",
    "RequestError",
    "check_message",
    "check_stored_size",
    "parse_json",
    "read_envelope",
]

MESSAGE_TYPES = frozenset(_wire.MESSAGE_TYPES)
_BOM = b"\xef\xbb\xbf"


class RequestError(Exception):
    """The whole request is refused with ``status`` and a JSON error ``code``/``message``."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


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


def _encoded_size(value: dict[str, Any] | None, name: str) -> int:
    if not value:
        return 0
    try:
        return len(orjson.dumps(value))
    except orjson.JSONEncodeError as exc:  # parsed up to 1,024 levels deep, written up to 254
        raise RequestError(400, "invalid_field", f"batch-level {name!r}: {exc}") from None


def check_stored_size(env: Envelope, body_bytes: int, limits: Limits) -> None:
    """Refuse, before any work, a request whose batch-level context/integrations would be
    stored more than :attr:`Limits.max_stored_request_bytes` once merged into its messages.

    The bound is an upper one (a message's own keys win over the batch's, so a merge only
    adds at most the batch's size), so a request under it is never refused by mistake.

    Raises:
        RequestError: 400 ``payload_too_large`` (or ``invalid_field`` for a batch context
            nested too deep to be written back).
    """
    shared = _encoded_size(env.context, "context") + _encoded_size(env.integrations, "integrations")
    if not shared:
        return
    bound = body_bytes + len(env.items) * (shared + _wire.STORED_ALLOWANCE)
    if bound > limits.max_stored_request_bytes:
        raise RequestError(
            400,
            "payload_too_large",
            f"the batch-level context/integrations ({shared:,} bytes) merged into its"
            f" {len(env.items):,} messages would store up to {bound:,} bytes; the limit is"
            f" {limits.max_stored_request_bytes:,}",
        )
