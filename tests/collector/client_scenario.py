"""The fixed scenario every real client sends, and the field-by-field check of what is stored.

30 messages, five of each of the six types, with unicode ids and names, nested properties and
traits (lists, nulls, booleans, floats), explicit past timestamps (millisecond precision, so
every client can represent them exactly), a custom context and per-message integrations. Each
message has its own ``messageId``, so a stored message is matched to what was sent without
relying on the order.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

TYPES = ("identify", "track", "page", "screen", "group", "alias")
COUNT = 30
#: The first event's time; event i happened i hours and i milliseconds later.
START = datetime(2021, 3, 4, 5, 6, 7, 123000, tzinfo=timezone.utc)


def _when(i: int) -> str:
    moment = START + timedelta(hours=i, milliseconds=i)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _properties(i: int) -> dict[str, Any]:
    return {
        "price": 12.5 + i,
        "currency": "EUR",
        "title": f"Café crème n°{i} \u2013 東京 🎉",
        "items": [{"sku": f"sku-{i}", "qty": 2, "tags": ["été", "日本"]}],
        "flags": {"gift": i % 2 == 0, "note": None, "depth": {"two": {"three": [1, 2.5, "x"]}}},
    }


def _context(client: str, i: int) -> dict[str, Any]:
    return {
        "app": {"name": "Ünïcode shop ✓", "build": str(100 + i)},
        "locale": "fr-FR",
        "scenario": {"client": client, "seq": i, "tags": ["ß", "ø", "日本語"]},
    }


def _fields(kind: str, i: int) -> dict[str, Any]:
    user = f"ユーザー-{i}"
    if kind == "identify":
        return {"userId": user, "traits": {"email": f"zoë{i}@example.com", "plan": _properties(i)}}
    if kind == "track":
        return {
            "anonymousId": f"anon-{i}-ñ",
            "event": "Ordered Crème Brûlée",
            "properties": _properties(i),
        }
    if kind == "page":
        return {"userId": user, "name": "Pâge d'accueil", "properties": _properties(i)}
    if kind == "screen":
        return {"userId": user, "name": "Écran principal", "properties": _properties(i)}
    if kind == "group":
        return {"userId": user, "groupId": f"société-{i}", "traits": {"name": "Ακμή", "size": i}}
    return {"userId": user, "previousId": f"anon-{i}-ñ"}


def scenario(client: str) -> list[dict[str, Any]]:
    """The 30 messages, in SPEC (camelCase) form, timestamps as ISO-8601 text."""
    return [
        {
            "type": TYPES[i % len(TYPES)],
            "messageId": f"{client}-{i:02d}-ü",
            **_fields(TYPES[i % len(TYPES)], i),
            "context": _context(client, i),
            "integrations": {"Amplitude": {"session_id": 1577871000 + i}, "Mixpanel": False},
            "timestamp": _when(i),
        }
        for i in range(COUNT)
    ]


def parse(text: str) -> datetime:
    """An ISO-8601 instant as sent by any of the clients."""
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def differences(sent: dict[str, Any], stored: dict[str, Any], *, device_time: bool) -> list[str]:
    """What of ``sent`` is not in ``stored`` exactly; empty when every field arrived intact.

    Every field sent must be stored with the same value, except ``context``, to which clients
    add their library, and the timestamps: ``timestamp`` is corrected for the clock skew between
    the client and the collector (the same machine here: under 5 s), and ``originalTimestamp`` is
    the sent timestamp, or, for a client that sends its own device time (``device_time``), a
    time of the test run.
    """
    problems = [
        f"{name}: sent {value!r}, stored {stored.get(name)!r}"
        for name, value in sent.items()
        if name not in ("context", "timestamp") and stored.get(name) != value
    ]
    context = stored.get("context", {})
    problems += [
        f"context.{name}: sent {value!r}, stored {context.get(name)!r}"
        for name, value in sent["context"].items()
        if context.get(name) != value
    ]
    when = parse(sent["timestamp"])
    if abs(parse(stored["timestamp"]) - when) > timedelta(seconds=5):
        problems.append(f"timestamp: sent {sent['timestamp']}, stored {stored['timestamp']}")
    original = parse(stored["originalTimestamp"])
    if device_time:
        if abs(original - parse(stored["receivedAt"])) > timedelta(minutes=5):
            problems.append(f"originalTimestamp is not a device time: {original}")
    elif original != when:
        problems.append(f"originalTimestamp: sent {when}, stored {original}")
    return problems
