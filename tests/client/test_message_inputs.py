"""Hostile arguments to the calls: only InvalidEventError or UnserializableError leave a call,
and nothing a caller passes can crash or corrupt the host process (issue 14, items 12-13)."""

from __future__ import annotations

import contextlib
import datetime as dt
import math
import subprocess
import sys
import textwrap
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import analytics
from analytics import InvalidEventError, UnserializableError
from analytics._message import encode

UTC = dt.timezone.utc


class RaisingTz(dt.tzinfo):
    """A tzinfo of the application's own whose utcoffset() fails."""

    def utcoffset(self, moment: dt.datetime | None) -> dt.timedelta:
        raise RuntimeError("tz database unavailable")

    def dst(self, moment: dt.datetime | None) -> dt.timedelta | None:
        return None


class ThirtyHours(dt.tzinfo):
    """A tzinfo that answers an offset Python itself refuses (|offset| must be < 24 h)."""

    def utcoffset(self, moment: dt.datetime | None) -> dt.timedelta:
        return dt.timedelta(hours=30)

    def dst(self, moment: dt.datetime | None) -> dt.timedelta | None:
        return None


class LyingStr(str):
    def __str__(self) -> str:
        raise RuntimeError("__str__ of a str subclass")


class LyingInt(int):
    def __str__(self) -> str:
        raise RuntimeError("__str__ of an int subclass")

    __repr__ = __str__


@pytest.fixture
def client() -> analytics.Client:
    return analytics.Client("key", send=False, flush_at_exit=False)


def call(client: analytics.Client, **kwargs: Any) -> dict[str, Any]:
    kwargs.setdefault("user_id", "u1")
    ok, msg = client.track(event="Played", **kwargs)
    assert ok
    return msg


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"user_id": ""}, "user_id must not be an empty string"),
        ({"user_id": "", "anonymous_id": "a1"}, "user_id must not be an empty string"),
        ({"anonymous_id": "", "user_id": "u"}, "anonymous_id must not be an empty string"),
        ({"user_id": math.nan}, "user_id must be a finite number"),
        ({"user_id": -math.inf}, "user_id must be a finite number"),
        ({"user_id": True}, "user_id must be a string or a number"),
        ({"user_id": 10**5000}, "user_id is an integer too large"),
        ({"message_id": ""}, "message_id must not be an empty string"),
    ],
)
def test_ids_the_collector_refuses_are_refused_at_the_call(
    client: analytics.Client, kwargs: dict[str, Any], words: str
) -> None:
    with pytest.raises(InvalidEventError, match=words):
        call(client, **kwargs)


def test_empty_group_and_previous_ids_are_refused(client: analytics.Client) -> None:
    with pytest.raises(InvalidEventError, match="group_id must not be an empty string"):
        client.group("u1", group_id="")
    with pytest.raises(InvalidEventError, match="previous_id"):
        client.alias(previous_id="", user_id="u1")


def test_str_and_int_subclasses_are_read_without_their_str(client: analytics.Client) -> None:
    """A subclass whose __str__ raises leaked RuntimeError; its value is the id."""
    assert call(client, user_id=LyingStr("user-7"))["userId"] == "user-7"
    assert call(client, user_id=LyingInt(42))["userId"] == "42"
    assert call(client, user_id=2.5)["userId"] == "2.5"


@pytest.mark.parametrize(
    "timestamp",
    [
        dt.datetime(1, 1, 1, tzinfo=dt.timezone(dt.timedelta(hours=1))),
        dt.datetime(9999, 12, 31, 23, 59, 59, tzinfo=dt.timezone(dt.timedelta(hours=-1))),
        "0001-01-01T00:00:00+01:00",
        "9999-12-31T23:59:59-01:00",
    ],
)
def test_out_of_range_timestamps_are_invalid_events(
    client: analytics.Client, timestamp: object
) -> None:
    """They raised OverflowError."""
    with pytest.raises(InvalidEventError, match="out of range once converted to UTC"):
        call(client, timestamp=timestamp)


def test_a_timestamp_whose_tzinfo_fails_is_an_invalid_event(client: analytics.Client) -> None:
    """It leaked RuntimeError (and ValueError for 30 hours)."""
    with pytest.raises(InvalidEventError, match="tzinfo failed"):
        call(client, timestamp=dt.datetime(2024, 5, 1, tzinfo=RaisingTz()))
    with pytest.raises(InvalidEventError, match="tzinfo failed"):
        call(client, timestamp=dt.datetime(2024, 5, 1, tzinfo=ThirtyHours()))


def test_segment_docs_lenient_date_is_read_as_meant(client: analytics.Client) -> None:
    assert call(client, timestamp="2015-2-02T00:30:08.276Z")["timestamp"] == (
        "2015-02-02T00:30:08.276Z"
    )


def test_a_30_hour_offset_in_properties_is_refused_not_written_wrong(
    client: analytics.Client,
) -> None:
    """orjson wrote it as "+06:00"."""
    moment = dt.datetime(2024, 5, 1, tzinfo=ThirtyHours())
    with pytest.raises(UnserializableError, match="properties cannot be encoded"):
        call(client, properties={"at": moment})


def test_datetimes_in_properties_keep_orjson_s_form(client: analytics.Client) -> None:
    zone = dt.timezone(dt.timedelta(hours=5, minutes=30))
    props = {
        "utc": dt.datetime(2024, 5, 1, 12, 30, 15, 250000, tzinfo=UTC),
        "naive": dt.datetime(2024, 5, 1, 12),
        "india": dt.datetime(2024, 5, 1, 12, tzinfo=zone),
        "day": dt.date(2024, 5, 1),
        "clock": dt.time(7, 8, 9),
        "nested": [{"at": dt.datetime(2024, 5, 1, tzinfo=UTC)}],
    }
    encoded = orjson.loads(encode(call(client, properties=props)))
    assert encoded["properties"] == {
        "utc": "2024-05-01T12:30:15.250000+00:00",
        "naive": "2024-05-01T12:00:00+00:00",
        "india": "2024-05-01T12:00:00+05:30",
        "day": "2024-05-01",
        "clock": "07:08:09",
        "nested": [{"at": "2024-05-01T00:00:00+00:00"}],
    }


def test_a_raising_tzinfo_in_properties_does_not_crash_the_process() -> None:
    """orjson called the tzinfo itself and the interpreter died with SIGSEGV (exit -11)."""
    script = textwrap.dedent(
        """
        import datetime as dt
        import analytics

        class RaisingTz(dt.tzinfo):
            def utcoffset(self, moment):
                raise RuntimeError("tz database unavailable")
            def dst(self, moment):
                return None

        client = analytics.Client("key", send=False, flush_at_exit=False)
        at = dt.datetime(2024, 5, 1, tzinfo=RaisingTz())
        bare = dt.datetime(2024, 5, 1, tzinfo=dt.tzinfo())  # the abstract base: also crashed
        for kwargs in (
            {"properties": {"at": at}},
            {"context": {"deep": [{"at": at}]}},
            {"properties": {"at": bare}},
        ):
            try:
                client.track("u1", "Played", **kwargs)
            except analytics.UnserializableError as exc:
                print("refused:", exc)
        print("alive")
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, (done.returncode, done.stderr)
    assert done.stdout.count("refused:") == 3, done.stdout
    assert "tz database unavailable" in done.stdout
    assert done.stdout.rstrip().endswith("alive")


hostile_ids = st.one_of(
    st.none(),
    st.text(max_size=5),
    st.integers(),
    st.floats(),
    st.booleans(),
    st.just(10**5000),
    st.builds(LyingStr, st.text(max_size=3)),
    st.builds(LyingInt, st.integers()),
    st.lists(st.integers(), max_size=1),
)
hostile_times = st.one_of(
    st.none(),
    st.datetimes(timezones=st.timezones()),
    st.datetimes(),
    st.dates(),
    st.text(max_size=30),
    st.sampled_from(["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00", "2015-2-02T0:3Z"]),
    st.builds(lambda d: d.replace(tzinfo=RaisingTz()), st.datetimes()),
    st.builds(lambda d: d.replace(tzinfo=ThirtyHours()), st.datetimes()),
    st.integers(),
)


SHARED = analytics.Client("key", send=False, flush_at_exit=False)


@settings(max_examples=300, deadline=None)
@given(user_id=hostile_ids, anonymous_id=hostile_ids, timestamp=hostile_times, event=st.text())
def test_only_the_documented_errors_leave_a_call(
    user_id: Any, anonymous_id: Any, timestamp: Any, event: str
) -> None:
    with contextlib.suppress(InvalidEventError, UnserializableError):
        SHARED.track(user_id, event, anonymous_id=anonymous_id, timestamp=timestamp)
