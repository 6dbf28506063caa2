"""The framework-neutral rules of analytics.integrations._request (pure functions)."""

from __future__ import annotations

import uuid

import pytest

from analytics.integrations._request import as_id, preferred_locale, request_id


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("en-US,en;q=0.9", "en-US"),
        ("da, en-gb;q=0.8, en;q=0.7", "da"),
        ("en;q=0.5, fr;q=0.9", "fr"),  # the highest q wins, not the first
        ("en;q=0.8, de;q=0.8", "en"),  # on a tie, the first
        ("*;q=1, nl;q=0.1", "nl"),  # the wildcard names no language
        ("zh-hant-tw", "zh-Hant-TW"),
        ("en_us", "en-US"),
        ("fr;q=0, de;q=bad", None),  # q=0 means "not acceptable"
        ("<script>", None),
        ("", None),
        (None, None),
    ],
)
def test_preferred_locale(header: str | None, expected: str | None) -> None:
    assert preferred_locale(header) == expected


@pytest.mark.parametrize("header", [None, "", "   ", "x" * 201, "bad\nid", "é-id"])
def test_unusable_request_id_header_gets_a_fresh_id(header: str | None) -> None:
    """A fresh id (the messageId generator's: 38 characters, unique), not the header."""
    first, second = request_id(header), request_id(header)
    assert first != second
    assert len(first) == 38
    assert not (header or "").strip() or header not in first


def test_sane_request_id_header_is_kept() -> None:
    assert request_id("a1b2-C3D4_e5") == "a1b2-C3D4_e5"


def test_ids_from_resolvers() -> None:
    """A UUID primary key becomes its text; an empty string is no id; numbers stay numbers."""
    key = uuid.uuid4()
    assert as_id(key) == str(key)
    assert as_id("") is None
    assert as_id(7) == 7
    assert as_id(None) is None
