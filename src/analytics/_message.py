"""Building and encoding messages: pure code that runs on the calling thread.

Every call (`track()`, `identify()` ...) validates its arguments, builds the message dict of
SPEC §5-§6 and encodes it once to compact JSON bytes (DESIGN §3). Nothing here does I/O or
takes a lock, so the cost of a call is the cost of these functions plus one deque append.

Rules that users can rely on (also in the README):

- The message rules (ids, required fields, timestamps, sizes) are `analytics._wire`'s, shared
  with the collector: a call it would refuse raises `InvalidEventError` here, at the call.
- ``userId``/``anonymousId``/``groupId``/``previousId`` may be non-empty strings or finite
  numbers; numbers are sent as strings. ``None`` fields are left out.
- Timestamps are sent in UTC, ISO-8601 with milliseconds (``2024-05-01T12:00:00.123Z``). A naive
  ``datetime`` (no tzinfo) is taken to be UTC, everywhere in the message; the first time a naive
  ``timestamp`` argument is seen, one warning is logged. A datetime whose tzinfo fails (or
  answers an offset of 24 hours or more) is refused, never passed to orjson as it is.
- Values: orjson encodes str, int, float, bool, None, dict, list, tuple, UUID, Enum and
  dataclasses natively; datetime, date and time come to `_default`, which checks their tzinfo
  and has orjson write the checked value (same text as before). Decimal becomes a float, set and frozenset a list, bytes a
  UTF-8 string (base64 when not UTF-8). NaN and infinities become ``null``. Non-string dict keys
  are converted to strings. Anything else raises `UnserializableError` naming the argument.
- A message whose JSON is larger than 32,000 bytes raises `MessageTooLargeError`.
"""

from __future__ import annotations

import base64
import datetime as dt
import decimal
import itertools
import logging
import os
import time
from collections.abc import Mapping
from typing import Any

from analytics._context import _current
from analytics._exceptions import InvalidEventError, MessageTooLargeError, UnserializableError
from analytics._version import __version__
from analytics._wire import (
    MAX_MESSAGE_BYTES,
    MAX_MESSAGE_ID_CHARS,
    InvalidMessage,
    check_message,
    id_text,
    timestamp_text,
)

_current_frame = _current.get  # the innermost ``analytics.context`` block's frame, or None

__all__ = [
    "MAX_MESSAGE_BYTES",
    "build",
    "encode",
    "format_timestamp",
    "new_message_id",
    "normalize_message",
    "now_iso",
    "reseed_ids",
]

logger = logging.getLogger("analytics")

LIBRARY: dict[str, str] = {"name": "analytics-python", "version": __version__}

_UTC = dt.timezone.utc
_naive_warned = False


# --- message ids -------------------------------------------------------------------------------
# A messageId is a random prefix drawn once per process (80 bits, hex) plus a counter in hex:
# ``3f2a9c1e-5b7d-4e0a-9c3b-1000000000abcd``. uuid.uuid4() costs several µs a call; this costs
# a fifth of a µs. Ids stay unique across processes through the random prefix, which is drawn
# again in a forked child (reseed_ids, called from the fork hook). SPEC §5.1 asks only for a
# unique string of at most 100 characters; this one has 38.


def _random_prefix() -> str:
    h = os.urandom(10).hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:]}-"


def _new_counter() -> itertools.count[int]:
    # Starting at 2**52 keeps every id 14 hex digits long; the random start adds 40 bits.
    return itertools.count((1 << 52) + int.from_bytes(os.urandom(5), "big"))


_id_prefix = _random_prefix()
_id_counter = _new_counter()


def reseed_ids() -> None:
    """Draw a new random id prefix; called in a forked child so ids never repeat the parent's."""
    global _id_prefix, _id_counter
    _id_prefix = _random_prefix()
    _id_counter = _new_counter()


def new_message_id() -> str:
    """A new unique messageId."""
    return _id_prefix + "%x" % next(_id_counter)  # noqa: UP031  (fastest formatting here)


# --- timestamps ---------------------------------------------------------------------------------

_second_cache: tuple[int, str] = (-1, "")
_milli_cache: tuple[int, str] = (-1, "")


def now_iso() -> str:
    """The current UTC time as ISO-8601 with milliseconds, e.g. ``2024-05-01T12:00:00.123Z``."""
    global _second_cache, _milli_cache
    ms = time.time_ns() // 1_000_000
    cached_ms, text = _milli_cache
    if ms == cached_ms:  # under load many calls share a millisecond: format it once
        return text
    sec, milli = divmod(ms, 1000)
    cached_sec, prefix = _second_cache
    if sec != cached_sec:
        prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sec))
        _second_cache = (sec, prefix)
    text = f"{prefix}.{milli:03d}Z"
    _milli_cache = (ms, text)
    return text


def format_timestamp(value: object, argument: str = "timestamp") -> str:
    """Format a datetime, date or ISO-8601 string as UTC ISO-8601 with milliseconds.

    The rules are `analytics._wire`'s (the collector's). A naive datetime or string is taken to
    be UTC (one warning per process). A string already in the canonical form
    (``2012-10-17T18:58:57.911Z``) is checked and kept as it is.

    Raises:
        InvalidEventError: the value is not a datetime, date or ISO-8601 string, is out of range
            once in UTC, or its tzinfo fails.
    """
    text, naive = timestamp_text(value, argument)
    if naive:
        _warn_naive(argument)
    return text


def _warn_naive(argument: str) -> None:
    global _naive_warned
    if not _naive_warned:
        _naive_warned = True
        logger.warning(
            "%s is a naive datetime (no tzinfo); it is taken to be UTC. Pass an aware datetime, "
            "e.g. datetime.now(timezone.utc), to avoid this warning.",
            argument,
        )


# --- validation ---------------------------------------------------------------------------------


def _id(value: object, argument: str) -> str | None:
    if value is None or (type(value) is str and value):
        return value
    return id_text(value, argument)


def _mapping(value: object, argument: str) -> dict[str, Any] | None:
    if value is None or type(value) is dict:
        return value
    if isinstance(value, Mapping):
        try:
            return dict(value)
        except Exception as exc:  # a Mapping of the application's own that fails
            raise InvalidEventError(f"{argument} could not be read as a dict: {exc!r}") from None
    raise InvalidEventError(f"{argument} must be a dict, not {type(value).__name__}")


def _text(value: object, argument: str) -> str | None:
    if value is None or isinstance(value, str):
        return value
    raise InvalidEventError(f"{argument} must be a string, not {type(value).__name__}")


def _message_id(value: object) -> str:
    if value is None:
        return new_message_id()
    text = id_text(value, "message_id")
    if len(text) > MAX_MESSAGE_ID_CHARS:
        raise InvalidEventError(
            f"message_id must be a non-empty string of at most {MAX_MESSAGE_ID_CHARS} characters"
        )
    return text


def build(
    kind: str,
    fields: dict[str, Any],
    user_id: object,
    anonymous_id: object,
    context: object,
    timestamp: object,
    integrations: object,
    message_id: object,
) -> dict[str, Any]:
    """Validate the common arguments and return the full message dict of one call.

    Args:
        kind: the message type (``track``, ``identify`` ...).
        fields: the type's own fields, already validated, in camelCase (``event``, ``traits`` ...).
        user_id, anonymous_id, context, timestamp, integrations, message_id: the call's arguments.

    The ids and context of the current ``analytics.context`` block complete the call's (its
    explicit arguments win): see `analytics._context`.

    Raises:
        InvalidEventError: an argument is missing or of the wrong type; the message names it.
    """
    frame = _current_frame()
    if frame is not None and (context is None or isinstance(context, Mapping)):
        user_id, anonymous_id, context = frame.fill(user_id, anonymous_id, context)  # type: ignore[arg-type]
    uid = user_id if type(user_id) is str and user_id else _id(user_id, "user_id")
    message_id = (
        _id_prefix + "%x" % next(_id_counter)  # noqa: UP031  (new_message_id, inlined)
        if message_id is None
        else _message_id(message_id)
    )
    timestamp = now_iso() if timestamp is None else format_timestamp(timestamp)
    if anonymous_id is None and context is None and integrations is None and uid is not None:
        # The common call, as one dict display (0.05 µs less than the general path).
        return {
            "type": kind,
            "messageId": message_id,
            "timestamp": timestamp,
            "userId": uid,
            **fields,
            "context": {"library": LIBRARY},
        }
    aid = anonymous_id if anonymous_id is None else _id(anonymous_id, "anonymous_id")
    if uid is None and aid is None and kind != "alias":
        raise InvalidEventError(f"{kind}() needs a user_id or an anonymous_id (session_id)")
    msg: dict[str, Any] = {"type": kind, "messageId": message_id, "timestamp": timestamp}
    if uid is not None:
        msg["userId"] = uid
    if aid is not None:
        msg["anonymousId"] = aid
    msg.update(fields)
    if context is None:
        msg["context"] = {"library": LIBRARY}
    else:
        msg["context"] = {**(_mapping(context, "context") or {}), "library": LIBRARY}
    if integrations is not None:
        msg["integrations"] = _mapping(integrations, "integrations")
    return msg


_FIELDS_BY_TYPE: dict[str, tuple[tuple[str, str], ...]] = {
    # (field, kind of check): "id" = string or number, "text" = string, "map" = dict.
    "identify": (("traits", "map"),),
    "track": (("event", "text"), ("properties", "map")),
    "page": (("name", "text"), ("category", "text"), ("properties", "map")),
    "screen": (("name", "text"), ("category", "text"), ("properties", "map")),
    "group": (("groupId", "id"), ("traits", "map")),
    "alias": (("previousId", "id"),),
}
_REQUIRED = {"track": "event", "group": "groupId", "alias": "previousId"}
_CHECKS = {"id": _id, "text": _text, "map": _mapping}
# Per type: (field, the type its check returns unchanged, the check), so a value of that
# exact type skips the call (the import path runs this for every line).
_EXACT = {"id": str, "text": str, "map": dict}
_SPECS = {
    kind: tuple((name, _EXACT[check], _CHECKS[check]) for name, check in spec)
    for kind, spec in _FIELDS_BY_TYPE.items()
}
_NOT_EXTRA = ("sentAt", "writeKey")
# The keys of each type that are never carried over as extra fields (set by build or dropped).
_KNOWN = {
    kind: frozenset(
        {
            "type",
            "messageId",
            "timestamp",
            "userId",
            "anonymousId",
            "context",
            "integrations",
            *_NOT_EXTRA,
            *(name for name, _ in spec),
        }
    )
    for kind, spec in _FIELDS_BY_TYPE.items()
}


def normalize_message(message: Mapping[str, Any]) -> dict[str, Any]:
    """Validate and complete a SPEC-format message (camelCase keys), as for bulk imports.

    Fills ``messageId``, ``timestamp`` and ``context.library`` when missing, normalizes the
    timestamp to UTC milliseconds and keeps any other field as it is. A known field that is
    ``None`` is left out, as in the calls.

    Raises:
        InvalidEventError: a required field is missing or a field has the wrong type.
    """
    if type(message) is not dict and not isinstance(message, Mapping):
        raise InvalidEventError(f"a message must be a dict, not {type(message).__name__}")
    get = message.get
    kind = get("type")
    if type(kind) is not str or kind not in _SPECS:
        raise InvalidEventError(f"type must be one of {', '.join(_FIELDS_BY_TYPE)}, not {kind!r}")
    fields: dict[str, Any] = {}
    for name, exact, check in _SPECS[kind]:
        value = get(name)
        if value is not None:
            fields[name] = value if type(value) is exact else check(value, name)
    required = _REQUIRED.get(kind)
    if required is not None and not fields.get(required):
        raise InvalidEventError(f"a {kind} message needs {required}")
    if kind == "alias" and get("userId") is None:
        raise InvalidEventError("an alias message needs userId")
    built = build(
        kind,
        fields,
        get("userId"),
        get("anonymousId"),
        get("context"),
        get("timestamp"),
        get("integrations"),
        get("messageId"),
    )
    known = _KNOWN[kind]
    if known.issuperset(message):  # the common case: nothing to carry over
        return built
    # Fields of the application's own: the collector's rules apply to those it knows
    # (originalTimestamp, an id of another type ...), so they are checked here as it will.
    extra = {k: v for k, v in message.items() if k not in known}
    out = {**built, **extra}
    try:
        check_message(out)
    except InvalidMessage as exc:
        raise InvalidEventError(exc.reason) from None
    return out


# --- encoding -----------------------------------------------------------------------------------

_orjson: Any = None
_fragment: Any = None
_dumps: Any = None
_OPTION = 0  # set by load_encoder
_NAIVE_UTC = 0


def load_encoder() -> None:
    """Import orjson (done by the first Client, not by ``import analytics``: it costs ~20 ms)."""
    global _orjson, _fragment, _dumps, _OPTION, _NAIVE_UTC
    if _orjson is None:
        import orjson  # noqa: PLC0415

        _fragment, _dumps, _NAIVE_UTC = orjson.Fragment, orjson.dumps, orjson.OPT_NAIVE_UTC
        # Datetimes come to `_default` (PASSTHROUGH): orjson calls a tzinfo's utcoffset()
        # itself without checking it, and a tzinfo that raises crashes the process, one that
        # answers 30 hours is written as a wrong offset. APPEND_NEWLINE: see `encode`.
        _OPTION = orjson.OPT_NAIVE_UTC | orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_APPEND_NEWLINE
        _set_fast_default(orjson.Fragment, orjson.dumps, orjson.OPT_NAIVE_UTC)
        _orjson = orjson


_DATETIME, _DATE, _TIME, _TIMEZONE = dt.datetime, dt.date, dt.time, dt.timezone


_fast_default: Any = None


def _set_fast_default(fragment: Any, dumps: Any, naive_utc: int) -> None:
    """`_default` for `encode`, with its common case (a datetime in UTC or another fixed
    ``timezone``: one per event in the benchmark workload) in a closure: cell reads and a
    positional call instead of global lookups and a keyword (0.05 µs of 0.24 per datetime)."""
    global _fast_default
    datetime_type, timezone_type, general = _DATETIME, _TIMEZONE, _default

    def fast_default(obj: Any) -> Any:
        if type(obj) is datetime_type:
            tz = obj.tzinfo
            if tz is None or type(tz) is timezone_type:
                return fragment(dumps(obj, None, naive_utc))
        return general(obj)

    _fast_default = fast_default


def _default(obj: Any) -> Any:
    kind = type(obj)
    if kind is _DATETIME:
        tz = obj.tzinfo
        if tz is None or type(tz) is _TIMEZONE:  # offsets checked when the timezone was made
            return _fragment(_dumps(obj, option=_NAIVE_UTC))
    elif kind is _DATE:
        return _fragment(_dumps(obj))
    if isinstance(obj, dt.datetime | dt.date | dt.time):
        return _checked_datetime(obj)
    return _other(obj)


def _other(obj: Any) -> Any:
    """The JSON form of the types orjson does not know (Decimal, set, bytes ...)."""
    if isinstance(obj, decimal.Decimal):
        return float(obj) if obj.is_finite() else None
    if isinstance(obj, set | frozenset):
        return list(obj)
    if isinstance(obj, bytes | bytearray | memoryview):
        raw = bytes(obj)
        try:
            return raw.decode()
        except UnicodeDecodeError:
            return base64.b64encode(raw).decode()
    raise TypeError(f"Type is not JSON serializable: {type(obj).__name__}")


def _checked_datetime(obj: dt.datetime | dt.date | dt.time) -> Any:
    """A datetime, date or time of any tzinfo or subclass, as orjson would write a plain one.

    ``datetime.utcoffset()`` checks what the tzinfo answers (a timedelta under 24 hours); a
    tzinfo that fails makes the value unserializable instead of crashing orjson.
    """
    if isinstance(obj, dt.datetime):
        try:
            offset = obj.utcoffset()
        except Exception as exc:
            raise TypeError(f"a datetime whose tzinfo fails: {exc!r}") from None
        tz = None if offset is None else dt.timezone(offset)
        plain = dt.datetime(
            obj.year, obj.month, obj.day, obj.hour, obj.minute, obj.second, obj.microsecond, tz
        )
        return _fragment(_dumps(plain, option=_NAIVE_UTC))
    if isinstance(obj, dt.time):
        if obj.tzinfo is not None:
            raise TypeError("a time with a tzinfo cannot be encoded (use a datetime)")
        return _fragment(_dumps(dt.time(obj.hour, obj.minute, obj.second, obj.microsecond)))
    return _fragment(_dumps(dt.date(obj.year, obj.month, obj.day)))


def encode(msg: dict[str, Any]) -> bytes:
    """Encode a message to compact JSON bytes, once, and check its size.

    Raises:
        UnserializableError: a value cannot be encoded; the message names the field.
        MessageTooLargeError: the encoding is over `MAX_MESSAGE_BYTES`.
    """
    try:
        data: bytes = _dumps(msg, _fast_default, _OPTION)
    except _orjson.JSONEncodeError:
        data = _encode_slow(msg)
    # orjson's result keeps the spare capacity of its ~4 KB write buffer: 100,000 queued
    # messages held 400 MB. Slicing off the newline orjson appended makes an exact-size copy
    # and, as the queue no longer pins fresh 4 KB blocks, it makes a call under load three
    # times faster (one slice: 0.06 µs less than the slice-and-concatenate it replaces).
    data = data[:-1]
    if len(data) > MAX_MESSAGE_BYTES:
        raise MessageTooLargeError(
            f"the {msg['type']} message is {len(data):,} bytes as JSON; "
            f"the limit is {MAX_MESSAGE_BYTES:,} (SPEC §3)"
        )
    return data


def _encode_slow(msg: dict[str, Any]) -> bytes:
    """Retry with non-string dict keys allowed; otherwise name the field that cannot be encoded."""
    orjson = _orjson
    option = _OPTION | orjson.OPT_NON_STR_KEYS
    try:
        return bytes(orjson.dumps(msg, default=_default, option=option))
    except orjson.JSONEncodeError as exc:
        for key, value in msg.items():
            try:
                orjson.dumps(value, default=_default, option=option)
            except orjson.JSONEncodeError as field_exc:
                detail = field_exc.__cause__ or field_exc  # what `_default` said, when it spoke
                raise UnserializableError(f"{key} cannot be encoded as JSON: {detail}") from None
        raise UnserializableError(f"the message cannot be encoded as JSON: {exc}") from None
