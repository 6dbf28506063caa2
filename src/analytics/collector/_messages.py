"""From a decoded body to store-neutral messages: validation plus enrichment of each one.

Pure functions, ``now`` is an argument. :func:`prepare` never raises for a bad message: each
refused message becomes a :class:`Refusal` (index, code, reason) and the others become
:class:`~._validated.Message` tuples, which each store maps to its own rows.
The checks are in :mod:`._validate`, the enrichment in :mod:`._enrich`.

Size of a message: limits apply to what is stored. A message whose stored JSON (the batch's
``context``/``integrations`` merged in, the collector's fields added) is over
:attr:`Limits.max_stored_message_bytes` is refused as ``message_too_large``; the stored JSON
is made anyway, so the check is one comparison. A message that cannot be written back as JSON
(nested more than 254 levels: orjson reads 1,024) is refused as ``invalid_message``. No
message, however bad, fails the request: anything unexpected refuses that message alone
(``internal_error``, logged with its traceback).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson

from analytics.collector._auth import KeyPolicy
from analytics.collector._enrich import Stamper, enrich
from analytics.collector._limits import Limits
from analytics.collector._validate import (
    MESSAGE_TYPES,
    Envelope,
    InvalidMessage,
    RequestError,
    check_message,
    check_stored_size,
    parse_json,
    read_envelope,
)
from analytics.collector._validated import Message, to_message

logger = logging.getLogger("analytics.collector")

__all__ = [
    "MESSAGE_TYPES",
    "Envelope",
    "InvalidMessage",
    "Parsed",
    "Prepared",
    "Refusal",
    "RequestError",
    "normalize_message",
    "parse_json",
    "parse_request",
    "prepare",
    "read_envelope",
]


@dataclass(frozen=True, slots=True)
class Refusal:
    """A refused message: its index in the request, a short code and a readable reason."""

    index: int
    code: str
    reason: str

    def as_dict(self) -> dict[str, Any]:
        """The JSON form used in responses."""
        return {"index": self.index, "code": self.code, "reason": self.reason}


@dataclass(slots=True)
class Prepared:
    """Messages ready for the store, the refusals, and how many items had an acceptable key."""

    rows: list[Message] = field(default_factory=list)
    refused: list[Refusal] = field(default_factory=list)
    keyed: int = 0
    saw_item_key: bool = False


def normalize_message(
    item: Any,
    env: Envelope,
    *,
    single_type: str | None,
    now: datetime,
    limits: Limits,
) -> dict[str, Any]:
    """Validate one message and return its enriched copy (the input is not modified).

    Raises:
        InvalidMessage: with a short code and a readable reason.
    """
    kind = check_message(item, single_type, limits.max_message_id_chars)
    return enrich(item, kind, env, Stamper(now, env))


def _item_key(
    item: Any, request_key: str | None, key_allowed: Callable[[str], bool], out: Prepared
) -> str:
    """The write key a message is stored under (the request's, else its own ``writeKey``)."""
    if type(item) is not dict:
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


def _encode(msg: dict[str, Any], limit: int) -> bytes:
    """The stored JSON of an enriched message, checked against the stored-size limit."""
    try:
        body = orjson.dumps(msg)
    except orjson.JSONEncodeError as exc:
        raise InvalidMessage(
            "invalid_message", f"message cannot be stored as JSON: {exc}"
        ) from None
    if len(body) > limit:
        raise InvalidMessage(
            "message_too_large", f"message is {len(body):,} bytes as stored; the limit is {limit:,}"
        )
    return body


def prepare(
    env: Envelope,
    *,
    single_type: str | None,
    now: datetime,
    request_key: str | None,
    key_allowed: Callable[[str], bool],
    limits: Limits,
) -> Prepared:
    """Validate and enrich every message of ``env``; never raises for a bad message.

    ``request_key`` is the already accepted key of the request (Basic auth or body
    ``writeKey``), or ``None``, in which case each message must carry an accepted ``writeKey``.
    """
    out = Prepared()
    stamper = Stamper(now, env)
    limit = limits.max_stored_message_bytes
    max_id_chars = limits.max_message_id_chars
    rows, refused = out.rows, out.refused
    for index, item in enumerate(env.items):
        try:
            # The request's key covers every object item (the common case, checked inline).
            if request_key is None or type(item) is not dict:
                key = _item_key(item, request_key, key_allowed, out)
            else:
                key = request_key
            out.keyed += 1
            kind = check_message(item, single_type, max_id_chars)
            msg = enrich(item, kind, env, stamper)
            body = _encode(msg, limit)
        except InvalidMessage as exc:
            refused.append(Refusal(index, exc.code, exc.reason))
            continue
        except Exception:  # a bug must cost one message, never the request (a 500 for all)
            logger.exception("message %d of a request could not be processed; refused", index)
            refused.append(Refusal(index, "internal_error", "the collector failed on it"))
            continue
        rows.append(to_message(msg, key, body))
    return out


@dataclass(frozen=True, slots=True)
class Parsed:
    """One request, ready for the writer: its messages, its refusals, how many items it had."""

    received: int
    rows: list[Message]
    refused: list[Refusal]


def parse_request(
    body: bytes,
    *,
    single_type: str | None,
    header_key: str | None,
    now: datetime,
    policy: KeyPolicy,
    limits: Limits,
) -> Parsed:
    """Decode, authorize, validate and enrich one request body (pure: ``now`` is given).

    ``header_key`` is the Basic auth key, already accepted by the caller (or None).

    Raises:
        RequestError: the whole request is refused (bad JSON or shape, 401 key).
    """
    env = read_envelope(parse_json(body), single_type=single_type, limits=limits)
    check_stored_size(env, len(body), limits)
    request_key = header_key or env.write_key or None
    if request_key is not None:
        policy.require(request_key)
    prepared = prepare(
        env,
        single_type=single_type,
        now=now,
        request_key=request_key,
        key_allowed=policy.allows,
        limits=limits,
    )
    if request_key is None and prepared.keyed == 0:
        policy.require("" if prepared.saw_item_key else None)
    return Parsed(len(env.items), prepared.rows, prepared.refused)
