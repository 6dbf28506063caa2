"""Unit tests of the pure line -> message mapping used by `analytics import`."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from analytics.cli._mapping import (
    SNAKE_TO_CAMEL,
    Defaults,
    LineError,
    check_message,
    check_timestamp,
    map_csv_row,
    map_json_line,
    map_log_line,
    normalize_keys,
    parse_csv_map,
    parse_log_map,
    parse_scalar,
)

NO_DEFAULTS = Defaults()


def test_json_line_in_spec_format_is_kept_as_is() -> None:
    """A camelCase SPEC line comes through unchanged."""
    line = b'{"type":"track","userId":"u1","event":"Played","properties":{"a":1}}\n'
    assert map_json_line(line, NO_DEFAULTS) == {
        "type": "track",
        "userId": "u1",
        "event": "Played",
        "properties": {"a": 1},
    }


def test_json_line_snake_case_keys_are_renamed() -> None:
    """snake_case top-level keys (and the seed's session_id) become camelCase."""
    line = b'{"type":"alias","user_id":"u2","previous_id":"u1","message_id":"m1"}'
    assert map_json_line(line, NO_DEFAULTS) == {
        "type": "alias",
        "userId": "u2",
        "previousId": "u1",
        "messageId": "m1",
    }
    assert normalize_keys({"session_id": "s"}) == {"anonymousId": "s"}


def test_nested_snake_case_keys_are_not_touched() -> None:
    """Only top-level keys are renamed: property names are the user's."""
    line = b'{"type":"track","user_id":"u","event":"e","properties":{"user_id":7}}'
    assert map_json_line(line, NO_DEFAULTS)["properties"] == {"user_id": 7}


def test_server_set_fields_are_dropped() -> None:
    """sentAt/receivedAt/originalTimestamp/writeKey of an export are not re-sent."""
    line = (
        b'{"type":"track","userId":"u","event":"e","sentAt":"x","receivedAt":"y",'
        b'"originalTimestamp":"z","writeKey":"k","timestamp":"2012-10-17T18:58:57.911Z"}'
    )
    assert map_json_line(line, NO_DEFAULTS) == {
        "type": "track",
        "userId": "u",
        "event": "e",
        "timestamp": "2012-10-17T18:58:57.911Z",
    }


def test_conflicting_spellings_are_refused() -> None:
    """userId and user_id with different values: the line is refused, naming both."""
    with pytest.raises(LineError, match="userId"):
        map_json_line(b'{"userId":"a","user_id":"b"}', NO_DEFAULTS)


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        (b"{not json", "invalid JSON"),
        (b"[1, 2]", "got an array"),
        (b'"text"', "got a string"),
        (b"42", "got a number"),
        (b"null", "got null"),
        (b'{"a": "\xff"}', "invalid JSON"),
    ],
)
def test_bad_json_lines_say_why(line: bytes, reason: str) -> None:
    """Lines that are not a JSON object raise LineError with the reason."""
    with pytest.raises(LineError, match=reason):
        map_json_line(line, NO_DEFAULTS)


def test_defaults_fill_missing_fields_and_merge_objects() -> None:
    """--type/--event fill gaps; --properties merge under the line's own (line wins)."""
    defaults = Defaults(
        fields={"type": "track", "event": "Bought a shirt"},
        dicts={"properties": {"color": "Blue", "revenue": 17.9}},
    )
    line = b'{"userId":"u","event":"Other","properties":{"color":"Red"}}'
    assert map_json_line(line, defaults) == {
        "type": "track",
        "userId": "u",
        "event": "Other",
        "properties": {"color": "Red", "revenue": 17.9},
    }
    assert NO_DEFAULTS.or_none() is None
    assert defaults.or_none() is defaults


def test_defaults_are_not_shared_between_messages() -> None:
    """Each message gets its own copy of a default object."""
    defaults = Defaults(dicts={"properties": {"a": 1}})
    first = defaults.apply({})
    first["properties"]["a"] = 2
    assert defaults.apply({}) == {"properties": {"a": 1}}


@pytest.mark.parametrize(
    ("value", "naive"),
    [
        ("2012-10-17T18:58:57.911Z", False),
        ("2012-10-17T18:58:57.911+02:00", False),
        ("2012-10-17T18:58:57", True),
        ("2012-10-17", True),
    ],
)
def test_timestamps_are_checked_and_naive_ones_flagged(value: str, naive: bool) -> None:
    """ISO-8601 with or without a timezone; True means naive."""
    assert check_timestamp(value) is naive


@pytest.mark.parametrize("value", ["yesterday", "2012-13-45T00:00:00Z", 1350500337, None])
def test_bad_timestamps_are_refused(value: object) -> None:
    """Anything that is not an ISO-8601 string is refused."""
    with pytest.raises(LineError, match="timestamp"):
        check_timestamp(value)


def test_check_message_needs_a_known_type() -> None:
    """A missing or unknown type is refused with a hint."""
    with pytest.raises(LineError, match="--type"):
        check_message({"userId": "u"})
    with pytest.raises(LineError, match="unknown type 'click'"):
        check_message({"type": "click"})
    assert check_message({"type": "track"}) is False
    assert check_message({"type": "track", "timestamp": "2020-01-01T00:00:00"}) is True


def test_seed_log_line_maps_with_a_log_map() -> None:
    """The seed's server log line, with the event and properties given as defaults."""
    log_map = parse_log_map("timestamp,userId,properties.url")
    defaults = Defaults(
        fields={"type": "track", "event": "Bought a shirt"},
        dicts={"properties": {"color": "Blue", "revenue": 17.9}},
    )
    message = map_log_line(
        "2012-10-17T18:58:57.911Z ilya@segment.io /purchased/tshirt", log_map, defaults
    )
    assert message == {
        "type": "track",
        "event": "Bought a shirt",
        "timestamp": "2012-10-17T18:58:57.911Z",
        "userId": "ilya@segment.io",
        "properties": {"color": "Blue", "revenue": 17.9, "url": "/purchased/tshirt"},
    }


def test_last_log_field_takes_the_rest_and_dash_skips() -> None:
    """The last target gets the remainder, spaces included; `-` drops a field."""
    log_map = parse_log_map("timestamp,-,userId,event")
    message = map_log_line("2020-01-01T00:00:00Z INFO u1 Played a Song", log_map, NO_DEFAULTS)
    assert message == {
        "timestamp": "2020-01-01T00:00:00Z",
        "userId": "u1",
        "event": "Played a Song",
    }


def test_short_log_line_is_refused() -> None:
    """Fewer fields than the map names: refused, saying how many were expected."""
    with pytest.raises(LineError, match="expected 3 fields"):
        map_log_line(
            "2020-01-01T00:00:00Z u1", parse_log_map("timestamp,userId,event"), NO_DEFAULTS
        )


@pytest.mark.parametrize("spec", ["", "timestamp,when", "userId.x"])
def test_bad_log_maps_are_refused(spec: str) -> None:
    """Unknown targets, or a dotted path into a non-object, are usage errors."""
    with pytest.raises(ValueError):  # noqa: PT011 -- several messages
        parse_log_map(spec)


def test_csv_header_named_after_fields_needs_no_map() -> None:
    """Columns named like fields (either spelling, dotted paths) map themselves."""
    column_map = parse_csv_map(["type", "user_id", "event", "properties.plan", "context.ip"], [])
    message = map_csv_row(["track", "u1", "Signed Up", "pro", "10.0.0.1"], column_map, NO_DEFAULTS)
    assert message == {
        "type": "track",
        "userId": "u1",
        "event": "Signed Up",
        "properties": {"plan": "pro"},
        "context": {"ip": "10.0.0.1"},
    }


def test_csv_map_renames_and_ignores_columns() -> None:
    """--map COLUMN=FIELD renames, COLUMN=- ignores; comma lists and repeats both work."""
    column_map = parse_csv_map(
        ["who", "when", "what", "price", "junk"],
        ["who=userId,when=timestamp", "what=event", "price=properties.revenue", "junk=-"],
    )
    message = map_csv_row(
        ["u1", "2020-01-01T00:00:00Z", "Bought", "17.90", "zzz"], column_map, NO_DEFAULTS
    )
    assert message == {
        "userId": "u1",
        "timestamp": "2020-01-01T00:00:00Z",
        "event": "Bought",
        "properties": {"revenue": 17.9},
    }


def test_csv_unknown_column_is_a_clear_error() -> None:
    """A column that is not a field and not mapped: the error says how to map it."""
    with pytest.raises(ValueError, match=r"unknown column 'plan'.*--map 'plan=properties.plan'"):
        parse_csv_map(["userId", "plan"], [])


def test_csv_map_naming_a_missing_column_is_an_error() -> None:
    """--map for a column the header lacks is reported."""
    with pytest.raises(ValueError, match="not in the header: 'who'"):
        parse_csv_map(["userId"], ["who=userId"])
    with pytest.raises(ValueError, match="expected COLUMN=FIELD"):
        parse_csv_map(["userId"], ["userId"])
    with pytest.raises(ValueError, match="unknown field 'nope'"):
        parse_csv_map(["a"], ["a=nope"])


def test_csv_row_width_and_json_columns() -> None:
    """Wrong cell counts are refused; a `properties` column holds JSON; empty cells are left
    out."""
    column_map = parse_csv_map(["type", "userId", "properties", "properties.b"], [])
    assert map_csv_row(["identify", "u", '{"a": 1}', "2"], column_map, NO_DEFAULTS) == {
        "type": "identify",
        "userId": "u",
        "properties": {"a": 1, "b": 2},
    }
    assert map_csv_row(["identify", "u", "", ""], column_map, NO_DEFAULTS) == {
        "type": "identify",
        "userId": "u",
    }
    with pytest.raises(LineError, match="expected 4 columns, found 2"):
        map_csv_row(["identify", "u"], column_map, NO_DEFAULTS)
    with pytest.raises(LineError, match="properties: expected a JSON object"):
        map_csv_row(["identify", "u", "[1]", ""], column_map, NO_DEFAULTS)


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("17.90", 17.9),
        ("-3", -3),
        ("true", True),
        ("null", None),
        ("02134", "02134"),
        ("1e3", 1000.0),
        ("12abc", "12abc"),
        ("pro", "pro"),
        ("", ""),
    ],
)
def test_scalars_in_properties_are_typed(text: str, value: object) -> None:
    """Numbers and true/false/null become JSON values; everything else stays text."""
    assert parse_scalar(text) == value


@given(st.binary(max_size=200))
def test_any_bytes_give_a_message_or_a_line_error(raw: bytes) -> None:
    """Whatever a JSON line holds, the mapper returns a dict or raises LineError (nothing
    else escapes to stop the import)."""
    try:
        message = map_json_line(raw)
    except LineError:
        return
    assert isinstance(message, dict)


@given(st.dictionaries(st.sampled_from([*sorted(SNAKE_TO_CAMEL), "type", "event"]), st.text()))
def test_normalized_keys_are_camel_case_and_stable(obj: dict[str, str]) -> None:
    """After normalization no snake_case key is left, and normalizing again changes nothing."""
    try:
        once = normalize_keys(dict(obj))
    except LineError:
        return
    assert not set(once) & set(SNAKE_TO_CAMEL)
    assert normalize_keys(dict(once)) == once


@given(st.text(max_size=80))
def test_any_log_line_gives_a_message_or_a_line_error(line: str) -> None:
    """Log lines of any content map or are refused with LineError."""
    log_map = parse_log_map("timestamp,userId,properties.path")
    try:
        message = map_log_line(line.strip(), log_map)
    except LineError:
        return
    assert set(message) <= {"timestamp", "userId", "properties"}


@given(st.lists(st.text(max_size=20), max_size=6))
def test_any_csv_row_gives_a_message_or_a_line_error(row: list[str]) -> None:
    """CSV rows of any width and content map or are refused with LineError."""
    column_map = parse_csv_map(["type", "userId", "properties", "properties.n"], [])
    try:
        message = map_csv_row(row, column_map)
    except LineError:
        return
    assert len(row) == 4
    assert set(message) <= {"type", "userId", "properties"}
