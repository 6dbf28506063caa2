"""The benchmark workload (shared/ANCHORS.md): `track` with a user id, an event name and 10
properties of every common kind, a fresh dict per call."""

from __future__ import annotations

import datetime
from typing import Any

EVENT = "Played a Song"
USER_IDS = [f"user-{i}" for i in range(1000)]
_PLAYED_AT = datetime.datetime(2024, 5, 1, 12, 30, 15, 250000, tzinfo=datetime.timezone.utc)


def properties(i: int) -> dict[str, Any]:
    """10 properties: str, int, float, bool, list, nested dict and a tz-aware datetime."""
    return {
        "title": f"Song {i}",
        "artist": "The Benchmarks",
        "plays": i,
        "duration": 215.5 + (i % 7),
        "explicit": i % 2 == 0,
        "tags": ["rock", "live", "2024"],
        "album": {"name": "Loopback", "year": 1999, "label": {"id": 7, "name": "127 Records"}},
        "played_at": _PLAYED_AT,
        "bitrate": 320,
        "source": "playlist",
    }
