"""The message schema: one definition of a valid message for the client, the collector and the CLI.

The client checks a call's Python arguments against these rules and refuses a bad one at the
call; the collector checks the JSON it receives against the same rules and refuses a bad message
alone, inside a 200. Because both use this module, a message the client accepts is one the
collector stores (a property test feeds the same calls to both). Pure code, no I/O; the client
loads it, so it imports nothing heavy (no aiohttp, no click, not even orjson).

The rules (also in the README, "Message rules"):

- ``type`` is one of `MESSAGE_TYPES`; track needs a non-empty ``event``, group a ``groupId``,
  alias a ``previousId`` and a ``userId``; every other type a ``userId`` or an ``anonymousId``.
- An id (``userId``, ``anonymousId``, ``groupId``, ``previousId``) is a non-empty string or an
  integer on the wire. The client also takes a finite float and sends every number as its
  decimal string; ``""``, ``nan``, infinities and booleans are not ids.
- ``messageId`` is a string of 1 to 100 characters.
- ``context``, ``integrations``, ``properties``, ``traits`` are objects; ``event``, ``name``,
  ``category`` strings; ``null`` counts as absent.
- Timestamps (``timestamp``, ``originalTimestamp``, ``sentAt``) are ISO-8601 strings in the
  extended format (``2024-05-01``, ``2024-05-01T12:00``, ``2024-05-01T12:00:00.123+02:00``) of at
  most 64 characters, ``Z`` or ``±hh[:mm]`` (none: UTC), any fraction length, whose UTC value
  lies in years 1-9999. The same on every Python version (3.11's fromisoformat alone would also
  take the basic format and week dates). Month, day, hour, minute and second may have one digit (``2015-2-02T0:30:08Z``,
  as in Segment's own HTTP API example): the date meant is not ambiguous, and refusing it would
  lose the event. Stored and sent timestamps are UTC with milliseconds
  (``2024-05-01T12:00:00.123Z``).
- Sizes: the client refuses a message over `MAX_MESSAGE_BYTES` of JSON; the collector refuses
  one whose stored JSON (batch ``context``/``integrations`` merged in, its own fields added) is
  over its per-message limit plus `STORED_ALLOWANCE`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from datetime import date, datetime, timedelta, timezone
from typing import Any

from analytics._exceptions import InvalidEventError

__all__ = [
    "ID_FIELDS",
    "MAX_MESSAGE_BYTES",
    "MAX_MESSAGE_ID_CHARS",
    "MAX_RECEIVED_MESSAGE_BYTES",
    "MAX_TIMESTAMP_CHARS",
    "MESSAGE_TYPES",
    "REQUIREMENTS",
    "STORED_ALLOWANCE",
    "InvalidMessage",
    "check_message",
    "format_timestamp",
    "id_text",
    "is_id",
    "is_naive_timestamp",
    "missing_fields",
    "parse_timestamp",
    "timestamp_text",
]

MESSAGE_TYPES = ("identify", "track", "page", "screen", "group", "alias")
_TYPES = frozenset(MESSAGE_TYPES)
ID_FIELDS = frozenset({"userId", "anonymousId", "groupId", "previousId"})
_IDENTITY = ("userId", "anonymousId")
#: What each type needs, in the order it is checked: groups of fields, each group satisfied
#: by any one of its fields (an id field by an id, another field by a non-empty value).
REQUIREMENTS: dict[str, tuple[tuple[str, ...], ...]] = {
    "identify": (_IDENTITY,),
    "track": (_IDENTITY, ("event",)),
    "page": (_IDENTITY,),
    "screen": (_IDENTITY,),
    "group": (_IDENTITY, ("groupId",)),
    "alias": (("previousId",), ("userId",)),
}
#: The collector's refusal reason when a group is missing (else alias: either of its ids).
_MISSING_REASONS = {
    _IDENTITY: "userId or anonymousId is required",
    ("event",): "track requires a non-empty event",
    ("groupId",): "group requires groupId",
}
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
_TYPE_NAMES: dict[type, str] = {dict: "a JSON object", str: "a string"}

#: The client's limit on one message's compact UTF-8 JSON (SPEC §3.1 REC client).
MAX_MESSAGE_BYTES = 32_000
#: The collector's default limit on one message as received (SPEC §3, Segment's 32 KB).
MAX_RECEIVED_MESSAGE_BYTES = 32_768
#: Room for what the collector adds to a stored message: receivedAt, sentAt (≤ 64 characters),
#: originalTimestamp (≤ 64), messageId (a UUID), timestamp and type with their keys: 311 bytes
#: at most, rounded up.
STORED_ALLOWANCE = 512
MAX_MESSAGE_ID_CHARS = 100
MAX_TIMESTAMP_CHARS = 64

_UTC = timezone.utc


class InvalidMessage(Exception):
    """One message is refused (by the collector, or by a check the client runs); the request
    goes on. ``code`` is short and stable (``missing_field``, ``invalid_timestamp`` ...)."""

    def __init__(self, code: str, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


# --- ids ----------------------------------------------------------------------------------------


def is_id(value: object) -> bool:
    """Whether a decoded JSON value is an id: a non-empty string or an integer (not a bool)."""
    kind = type(value)
    return (kind is str and value != "") or kind is int


def id_text(value: object, argument: str) -> str:
    """The wire form of an id argument: a non-empty string (numbers as their decimal text).

    Subclasses of str, int and float are read with the base type's own conversion, so a
    ``__str__`` that raises or lies is never called.

    Raises:
        InvalidEventError: ``value`` is not a non-empty string or a finite number.
    """
    if isinstance(value, str):
        text = value if type(value) is str else str.__str__(value)
    elif isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidEventError(
            f"{argument} must be a string or a number, not {type(value).__name__}"
        )
    elif isinstance(value, int):
        try:
            text = int.__repr__(value)
        except ValueError:  # more digits than sys.get_int_max_str_digits() allows
            raise InvalidEventError(f"{argument} is an integer too large to be an id") from None
    elif math.isfinite(value):
        text = float.__repr__(value)
    else:
        raise InvalidEventError(f"{argument} must be a finite number, not {value!r}")
    if not text:
        raise InvalidEventError(f"{argument} must not be an empty string")
    return text


# --- timestamps ---------------------------------------------------------------------------------

# ISO-8601 as people write it when fromisoformat does not read it: one-digit fields, any
# fraction length, "Z" (Python 3.10 reads neither), an offset with or without its colon.
_LENIENT = re.compile(
    r"(\d{4})-(\d{1,2})-(\d{1,2})"
    r"(?:[Tt ](\d{1,2}):(\d{1,2})(?::(\d{1,2})(?:[.,](\d+))?)?)?"
    r"(?:([Zz])|([+-])(\d{2}):?(\d{2})?)?"
)


def _parse_lenient(text: str) -> datetime:
    found = _LENIENT.fullmatch(text)
    if found is None:
        raise ValueError("is not ISO-8601")
    year, month, day, hour, minute, second, fraction, _z, sign, off_h, off_m = found.groups()
    tz = None
    if _z is not None:
        tz = _UTC
    elif sign is not None:
        offset = timedelta(hours=int(off_h), minutes=int(off_m or 0))
        if offset >= timedelta(hours=24):
            raise ValueError("has an offset of 24 hours or more")
        tz = timezone(-offset if sign == "-" else offset)
    micro = int((fraction + "000000")[:6]) if fraction else 0
    try:
        return datetime(
            int(year),
            int(month),
            int(day),
            int(hour or 0),
            int(minute or 0),
            int(second or 0),
            micro,
            tzinfo=tz,
        )
    except ValueError:
        raise ValueError("is not a valid date and time") from None


def _parse_local(text: str) -> datetime:
    """The datetime written in ``text``, in its own offset (naive when it has none)."""
    if not text or len(text) > MAX_TIMESTAMP_CHARS:
        raise ValueError(f"is not ISO-8601 of 1 to {MAX_TIMESTAMP_CHARS} characters")
    # fromisoformat is the fast path, for the shape every version of it reads alike
    # (YYYY-MM-DDTHH:MM:SS...); Python 3.11 reads more forms than 3.10 (basic format, week
    # dates), and the rules must not depend on the Python a client or a collector runs.
    if len(text) >= 19 and text[4] == text[7] == "-" and text[13] == text[16] == ":":
        try:
            return datetime.fromisoformat(text)
        except ValueError:
            pass
    return _parse_lenient(text.strip())


def _to_utc(moment: datetime) -> datetime:
    offset = moment.utcoffset()
    if offset is None:
        return moment.replace(tzinfo=_UTC)
    if not offset:
        return moment
    try:
        return moment.astimezone(_UTC)
    except OverflowError:
        raise ValueError("is out of range once converted to UTC (years 1-9999)") from None


def parse_timestamp(text: str) -> datetime:
    """Parse an ISO-8601 timestamp into an aware datetime in UTC (no designator: UTC).

    Raises:
        ValueError: the text is not a timestamp of these rules, or out of range in UTC; the
            message completes a sentence that starts with the field's name.
    """
    return _to_utc(_parse_local(text))


def is_naive_timestamp(text: str) -> bool:
    """True when a valid timestamp text carries no timezone (it is then taken as UTC).

    Raises:
        ValueError: as `parse_timestamp`.
    """
    moment = _parse_local(text)
    _to_utc(moment)
    return moment.tzinfo is None


def format_timestamp(moment: datetime) -> str:
    """Format a datetime (naive: taken as UTC) as ``2024-05-01T12:00:00.123Z``, in UTC.

    Raises:
        OverflowError: an aware datetime whose UTC value is outside years 1-9999 (the parsers
            of this module never return one).
    """
    if moment.tzinfo is not None and moment.utcoffset():
        moment = moment.astimezone(_UTC)
    m = moment  # %-formatting is about twice as fast as isoformat() or strftime() here
    return "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ" % (  # noqa: UP031
        m.year,
        m.month,
        m.day,
        m.hour,
        m.minute,
        m.second,
        m.microsecond // 1000,
    )


def timestamp_text(value: object, argument: str) -> tuple[str, bool]:
    """The wire form of a timestamp argument, and whether it was naive (taken as UTC).

    Takes a datetime, a date or an ISO-8601 string. A string already in the canonical form is
    checked and kept as it is (the common case of re-sent or imported messages).

    Raises:
        InvalidEventError: anything else, a date out of range once in UTC, or a datetime whose
            tzinfo fails or gives an offset of 24 hours or more.
    """
    if isinstance(value, str):
        text = value if type(value) is str else str.__str__(value)
        if len(text) == 24 and text[23] == "Z" and text[19] == "." and text[10] == "T":
            try:
                datetime.fromisoformat(text[:23])  # validates the date and the time
                return text, False
            except ValueError:
                pass
        try:
            moment = _parse_local(text)
            return format_timestamp(_to_utc(moment)), moment.tzinfo is None
        except ValueError as exc:
            raise InvalidEventError(f"{argument} {exc}: {text[:80]!r}") from None
    if isinstance(value, datetime):
        try:
            offset = value.utcoffset()  # checks the offset is a timedelta under 24 h
            if offset:
                value = value.astimezone(_UTC)
        except OverflowError:
            raise InvalidEventError(
                f"{argument} is out of range once converted to UTC (years 1-9999)"
            ) from None
        except Exception as exc:  # a tzinfo of the application's own that fails
            raise InvalidEventError(
                f"{argument}'s tzinfo failed to give its UTC offset: {exc!r}"
            ) from None
        return format_timestamp(value), offset is None
    if isinstance(value, date):
        return f"{value.isoformat()}T00:00:00.000Z", False
    raise InvalidEventError(
        f"{argument} must be a datetime, a date or an ISO-8601 string, not {type(value).__name__}"
    )


# --- one message, as JSON -----------------------------------------------------------------------


def _satisfied(group: tuple[str, ...], msg: Mapping[str, Any]) -> bool:
    for name in group:
        value = msg.get(name)
        if is_id(value) if name in ID_FIELDS else value:
            return True
    return False


def missing_fields(kind: str, msg: Mapping[str, Any]) -> list[tuple[str, ...]]:
    """The groups of `REQUIREMENTS` a message of ``kind`` lacks, in order (none: complete).

    The command line names them with its flags; `check_message` refuses the first one.
    """
    return [group for group in REQUIREMENTS[kind] if not _satisfied(group, msg)]


def _check_required(msg: dict[str, Any], kind: str) -> None:
    for group in REQUIREMENTS[kind]:
        if not _satisfied(group, msg):
            reason = _MISSING_REASONS.get(group, "alias requires previousId and userId")
            raise InvalidMessage("missing_field", reason)


def check_message(
    item: object, single_type: str | None = None, max_id_chars: int = MAX_MESSAGE_ID_CHARS
) -> str:
    """Check one decoded JSON message against the rules; return its type.

    ``single_type`` is the type given by a single-event path (``/v1/track``), which wins over
    the message's own ``type``. Timestamps are checked for type here and parsed by the caller
    that needs their value (the collector's stamping), except ``originalTimestamp``.

    Raises:
        InvalidMessage: with a short code and a readable reason.
    """
    if type(item) is not dict:
        raise InvalidMessage("invalid_message", "message must be a JSON object")
    kind = single_type or item.get("type")
    if type(kind) is not str or kind not in _TYPES:
        raise InvalidMessage("invalid_type", "type must be one of " + ", ".join(sorted(_TYPES)))
    # One pass over the fields the message has, with the checks inlined: the collector runs
    # this for every message it receives.
    for name, value in item.items():
        if value is None:
            continue
        expected = _TYPED_FIELDS.get(name)
        if expected is not None:
            if type(value) is not expected:
                raise InvalidMessage("invalid_field", f"{name} must be {_TYPE_NAMES[expected]}")
        elif name in ID_FIELDS:
            if not is_id(value):
                raise InvalidMessage(
                    "invalid_field", f"{name} must be a non-empty string or an integer"
                )
        elif name == "messageId" and not (type(value) is str and 0 < len(value) <= max_id_chars):
            raise InvalidMessage(
                "invalid_field", f"messageId must be a string of 1..{max_id_chars} characters"
            )
    _check_required(item, kind)
    original = item.get("originalTimestamp")
    if original is not None:
        try:
            parse_timestamp(original)
        except ValueError as exc:
            raise InvalidMessage("invalid_timestamp", f"originalTimestamp {exc}") from None
    return kind
