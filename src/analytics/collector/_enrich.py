"""Enrichment of valid messages (pure: ``now`` is an argument).

SPEC 5.3, 7 and 10:
  - ``receivedAt`` = now; ``messageId`` = a UUID4 when missing;
  - ``originalTimestamp`` = the client's own ``originalTimestamp`` when it sent one (a device
    time: rudder-sdk-node sends it beside an explicit ``timestamp``, and RudderStack keeps both),
    else the client's ``timestamp``;
  - ``sentAt`` = the message's own, else the batch's; ``timestamp`` = ``receivedAt - (sentAt -
    originalTimestamp)`` when both are known (unless that leaves years 1-9999: then uncorrected),
    else ``originalTimestamp``, else ``receivedAt``, where ``originalTimestamp`` means the
    client's ``timestamp`` when it sent one;
  - batch ``context`` and ``integrations`` are shallow-merged into the message's, the message's
    keys winning; every other field is kept as sent, except ``writeKey``, which is removed so the
    database and ``analytics events`` never show a secret.

A :class:`Stamper` serves one request: it computes the clock skew of the batch once and
remembers the corrected form of each distinct timestamp, since the messages of one batch often
share timestamps.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import uuid4

from analytics._wire import InvalidMessage, format_timestamp, parse_timestamp
from analytics.collector._validate import Envelope

__all__ = ["Stamper", "enrich"]


def _parse(value: str, name: str) -> datetime:
    try:
        return parse_timestamp(value)
    except ValueError as exc:
        raise InvalidMessage("invalid_timestamp", f"{name} {exc}: {value[:80]!r}") from None


class Stamper:
    """Timestamps for the messages of one request received at ``now``."""

    def __init__(self, now: datetime, env: Envelope) -> None:
        self.now = now
        self.received_at = format_timestamp(now)
        self.batch_sent_text = env.sent_at_text
        self._batch_skew = now - env.sent_at if env.sent_at is not None else None
        self._corrected: dict[tuple[str, str | None], str] = {}

    def _correct(self, original_text: str, own_sent: str | None) -> str:
        original = _parse(original_text, "timestamp")
        skew = self._batch_skew if own_sent is None else self.now - _parse(own_sent, "sentAt")
        try:
            moment = original + skew if skew is not None else original
        except OverflowError:  # a valid time at the edge of year 1 or 9999: stored uncorrected
            moment = original
        return format_timestamp(moment)

    def stamp(self, msg: dict[str, Any]) -> None:
        """Set ``receivedAt``, ``sentAt``, ``originalTimestamp`` and ``timestamp`` in ``msg``.

        Raises:
            InvalidMessage: a timestamp is not ISO-8601 or out of range.
        """
        msg["receivedAt"] = self.received_at
        original_text = msg.get("timestamp")
        if original_text is None:
            original_text = msg.get("originalTimestamp")
        own_sent = msg.get("sentAt")
        if own_sent is None and self.batch_sent_text is not None:
            msg["sentAt"] = self.batch_sent_text
        if original_text is None:
            if own_sent is not None:
                _parse(own_sent, "sentAt")
            msg.pop("originalTimestamp", None)
            msg["timestamp"] = self.received_at
            return
        if msg.get("originalTimestamp") is None:  # a client's own was checked by _wire's rules
            msg["originalTimestamp"] = original_text
        key = (original_text, own_sent)
        corrected = self._corrected.get(key)
        if corrected is None:
            corrected = self._corrected[key] = self._correct(original_text, own_sent)
        msg["timestamp"] = corrected


def _merged(batch: dict[str, Any], own: Any) -> dict[str, Any]:
    return {**batch, **own} if own else dict(batch)


def enrich(item: dict[str, Any], kind: str, env: Envelope, stamper: Stamper) -> dict[str, Any]:
    """The enriched copy of a valid message (``item`` is not modified)."""
    msg = dict(item)
    msg.pop("writeKey", None)
    msg["type"] = kind
    if msg.get("messageId") is None:
        msg["messageId"] = str(uuid4())
    if env.context:
        msg["context"] = _merged(env.context, msg.get("context"))
    if env.integrations:
        msg["integrations"] = _merged(env.integrations, msg.get("integrations"))
    stamper.stamp(msg)
    return msg
