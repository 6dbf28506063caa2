"""Pure conversion of input lines (JSON lines, CSV rows, log lines) into SPEC messages.

Nothing here does I/O. Each mapper turns one line (or CSV row) into a SPEC-format message
dict (camelCase keys, see SPEC.md §5-§6) or raises `LineError` with a reason a person can act
on; the import command adds the file name and line number. The client validates the message
again (required fields, sizes) when it is enqueued.

The hot path (one call per line, a million lines in a bench) avoids regular expressions and
per-line allocations it does not need: `orjson.loads`, a set test for snake_case keys, and a
split with a bounded count for log lines.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from analytics import _wire

__all__ = [
    "DICT_FIELDS",
    "MESSAGE_TYPES",
    "ColumnMap",
    "Defaults",
    "LineError",
    "LogMap",
    "check_message",
    "check_timestamp",
    "map_csv_row",
    "map_json_line",
    "map_log_line",
    "normalize_keys",
    "parse_csv_map",
    "parse_log_map",
    "parse_scalar",
]

MESSAGE_TYPES = _wire.MESSAGE_TYPES

# Fields whose value is a JSON object; --properties/--traits/... defaults are merged into them.
DICT_FIELDS = frozenset({"properties", "traits", "context", "integrations"})

# The top-level SPEC fields an import may set (camelCase, as sent).
TOP_FIELDS = frozenset(
    {
        "type",
        "userId",
        "anonymousId",
        "event",
        "name",
        "category",
        "groupId",
        "previousId",
        "timestamp",
        "messageId",
        *DICT_FIELDS,
    }
)

# snake_case (the Python client's argument names, the seed's `session_id`) -> camelCase.
SNAKE_TO_CAMEL = {
    "user_id": "userId",
    "anonymous_id": "anonymousId",
    "session_id": "anonymousId",
    "sessionId": "anonymousId",
    "group_id": "groupId",
    "previous_id": "previousId",
    "message_id": "messageId",
}

# Fields set by the sender or the server, never by the event: re-importing an export must not
# carry them over (SPEC §7.2), or the collector would skew-correct with a stale `sentAt`.
DROPPED_FIELDS = frozenset(
    {
        "sentAt",
        "sent_at",
        "receivedAt",
        "received_at",
        "originalTimestamp",
        "original_timestamp",
        "writeKey",
        "write_key",
        "projectId",
        "project_id",
    }
)

_RENAMED_OR_DROPPED = frozenset(SNAKE_TO_CAMEL) | DROPPED_FIELDS


class LineError(ValueError):
    """One input line cannot be turned into a message; the text says why."""


@dataclass(frozen=True, slots=True)
class Defaults:
    """Values applied to every imported message; a value on the line wins.

    `fields` are top-level fields (`type`, `event`, ...); `dicts` are objects such as
    `properties` merged key by key under the line's own object.
    """

    fields: Mapping[str, Any] = field(default_factory=dict)
    dicts: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    def or_none(self) -> Defaults | None:
        """None when there is nothing to apply (the mappers then skip the call)."""
        return self if self.fields or self.dicts else None

    def apply(self, message: dict[str, Any]) -> dict[str, Any]:
        """Fill `message` in place with the defaults it lacks and return it."""
        for key, value in self.fields.items():
            if key not in message:
                message[key] = value
        for key, base in self.dicts.items():
            own = message.get(key)
            if own is None:
                message[key] = dict(base)
            elif isinstance(own, dict):
                message[key] = {**base, **own}
        return message


def normalize_keys(obj: dict[str, Any]) -> dict[str, Any]:
    """Rename snake_case top-level keys to camelCase and drop sender/server-set fields.

    Returns the same dict when nothing needs changing (the common, fast case).
    Raises LineError when both spellings of one field are present with different values.
    """
    if _RENAMED_OR_DROPPED.isdisjoint(obj):
        return obj
    out: dict[str, Any] = {}
    for key, value in obj.items():
        if key in DROPPED_FIELDS:
            continue
        target = SNAKE_TO_CAMEL.get(key, key)
        if target in out and out[target] != value:
            raise LineError(f"both {target!r} and {key!r} are given, with different values")
        out[target] = value
    return out


def check_timestamp(value: object) -> bool:
    """Check an imported `timestamp`; return True when it has no timezone (naive).

    Raises LineError when it is not an ISO-8601 string the collector accepts (in range too).
    """
    if not isinstance(value, str):
        raise LineError(f"timestamp must be an ISO-8601 string, got {type(value).__name__}")
    try:
        return _wire.is_naive_timestamp(value)
    except ValueError as exc:
        raise LineError(f"timestamp {value[:80]!r} {exc}") from None


_TYPE_SET = frozenset(MESSAGE_TYPES)


def check_message(message: Mapping[str, Any]) -> bool:
    """Check the fields the client cannot guess; return True when `timestamp` is naive.

    Raises LineError for a missing or unknown `type` or a `timestamp` that is not ISO-8601.
    """
    kind = message.get("type")
    if kind not in _TYPE_SET:
        if kind is None:
            raise LineError('no "type": add one to the line or pass --type')
        raise LineError(f"unknown type {kind!r} (expected one of {', '.join(MESSAGE_TYPES)})")
    stamp = message.get("timestamp")
    if stamp is None or (type(stamp) is str and stamp[-1:] == "Z"):
        return False  # the common case: UTC; the client checks the rest of the text
    return check_timestamp(stamp)


def map_json_line(raw: bytes | str, defaults: Defaults | None = None) -> dict[str, Any]:
    """Turn one JSON line (SPEC camelCase or snake_case keys) into a message."""
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise LineError(f"invalid JSON: {exc}") from None
    if type(obj) is not dict:
        raise LineError(f"expected a JSON object, got {_json_kind(obj)}")
    obj = normalize_keys(obj)
    if defaults is not None:
        defaults.apply(obj)
    return obj


def _json_kind(value: object) -> str:
    kinds = {list: "an array", str: "a string", bool: "a boolean", type(None): "null"}
    return kinds.get(type(value), "a number")


def parse_scalar(text: str) -> Any:
    """A CSV cell or log field bound for properties/traits: numbers, true/false/null typed.

    Anything else (including "02134", which JSON does not allow) stays a string.
    """
    if not text:
        return text
    first = text[0]
    if first.isdigit() or first == "-" or text in ("true", "false", "null"):
        try:
            return orjson.loads(text)
        except orjson.JSONDecodeError:
            return text
    return text


# A setter puts one input value into the message being built.
Setter = Callable[[dict[str, Any], str], None]


def _target_setter(target: str) -> Setter:
    """Build the setter for a mapping target: `userId`, `user_id`, `properties.url` ..."""
    head, _, rest = target.partition(".")
    head = SNAKE_TO_CAMEL.get(head, head)
    if head not in TOP_FIELDS:
        raise ValueError(f"unknown field {target!r}")
    if not rest:
        if head in DICT_FIELDS:
            return _set_json_object(head)
        return _set_top(head)
    if head not in DICT_FIELDS:
        raise ValueError(f"{head!r} is not an object, so {target!r} cannot be set")
    return _set_nested(head, rest.split("."))


def _set_top(key: str) -> Setter:
    def setter(message: dict[str, Any], value: str) -> None:
        message[key] = value

    return setter


def _set_json_object(key: str) -> Setter:
    def setter(message: dict[str, Any], value: str) -> None:
        try:
            obj = orjson.loads(value)
        except orjson.JSONDecodeError as exc:
            raise LineError(f"{key}: invalid JSON: {exc}") from None
        if not isinstance(obj, dict):
            raise LineError(f"{key}: expected a JSON object, got {_json_kind(obj)}")
        existing = message.get(key)
        message[key] = {**obj, **existing} if isinstance(existing, dict) else obj

    return setter


def _set_nested(key: str, path: Sequence[str]) -> Setter:
    parents, leaf = tuple(path[:-1]), path[-1]

    def setter(message: dict[str, Any], value: str) -> None:
        node = message.get(key)
        if not isinstance(node, dict):
            node = message[key] = {}
        for part in parents:
            child = node.get(part)
            if not isinstance(child, dict):
                child = node[part] = {}
            node = child
        node[leaf] = parse_scalar(value)

    return setter


@dataclass(frozen=True, slots=True)
class LogMap:
    """How the whitespace-separated fields of a log line map to message fields.

    The last field takes the rest of the line, spaces included; `-` skips a field.
    """

    targets: tuple[str, ...]
    setters: tuple[Setter | None, ...]


def parse_log_map(spec: str) -> LogMap:
    """Parse `--map` for log lines: targets in order, comma-separated.

    Example: ``timestamp,userId,properties.url`` for the seed's
    ``2012-10-17T18:58:57.911Z ilya@segment.io /purchased/tshirt``.
    Raises ValueError naming an unknown target.
    """
    targets = tuple(part.strip() for part in spec.split(",") if part.strip())
    if not targets:
        raise ValueError("the log mapping names no field")
    setters = tuple(None if t == "-" else _target_setter(t) for t in targets)
    return LogMap(targets, setters)


def map_log_line(line: str, log_map: LogMap, defaults: Defaults | None = None) -> dict[str, Any]:
    """Turn one log line into a message."""
    count = len(log_map.setters)
    parts = line.split(None, count - 1)
    if len(parts) < count:
        raise LineError(
            f"expected {count} fields ({','.join(log_map.targets)}), found {len(parts)}"
        )
    message: dict[str, Any] = {}
    for setter, value in zip(log_map.setters, parts, strict=True):
        if setter is not None:
            setter(message, value)
    if defaults is not None:
        defaults.apply(message)
    return message


@dataclass(frozen=True, slots=True)
class ColumnMap:
    """The CSV columns, in header order, each with its setter (None: ignored)."""

    columns: tuple[str, ...]
    setters: tuple[Setter | None, ...]


def parse_csv_map(header: Sequence[str], mapping: Iterable[str]) -> ColumnMap:
    """Build the column mapping for a CSV header.

    `mapping` holds ``column=target`` items (`target` `-` ignores the column). Columns not
    mapped must be named after a message field (``userId``, ``user_id``, ``properties.plan``).
    Raises ValueError naming an unknown column, a mapped column missing from the header, or
    an unknown target.
    """
    explicit = _parse_pairs(mapping)
    missing = [col for col in explicit if col not in header]
    if missing:
        raise ValueError(
            f"--map names column(s) not in the header: {', '.join(map(repr, missing))}"
        )
    setters: list[Setter | None] = []
    for column in header:
        target = explicit.get(column, column)
        if target == "-":
            setters.append(None)
            continue
        try:
            setters.append(_target_setter(target))
        except ValueError:
            if column in explicit:
                raise ValueError(f"--map {column}={target}: unknown field {target!r}") from None
            raise ValueError(
                f"unknown column {column!r}: map it with --map '{column}=properties.{column}'"
                f" or ignore it with --map '{column}=-'"
            ) from None
    return ColumnMap(tuple(header), tuple(setters))


def _parse_pairs(items: Iterable[str]) -> dict[str, str]:
    pairs: dict[str, str] = {}
    for item in items:
        for part in item.split(","):
            if not part.strip():
                continue
            column, sep, target = part.partition("=")
            if not sep or not column.strip() or not target.strip():
                raise ValueError(f"--map {part!r}: expected COLUMN=FIELD")
            pairs[column.strip()] = target.strip()
    return pairs


def map_csv_row(
    row: Sequence[str], column_map: ColumnMap, defaults: Defaults | None = None
) -> dict[str, Any]:
    """Turn one CSV row into a message; empty cells are left out."""
    if len(row) != len(column_map.columns):
        raise LineError(f"expected {len(column_map.columns)} columns, found {len(row)}")
    message: dict[str, Any] = {}
    for setter, value in zip(column_map.setters, row, strict=True):
        if setter is not None and value != "":
            setter(message, value)
    if defaults is not None:
        defaults.apply(message)
    return message
