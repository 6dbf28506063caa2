"""The six calls of a client (identify, track, page, screen, group, alias) and `enqueue`.

`Calls` is a mixin of `analytics._base.BaseClient`: each call validates its arguments, builds
the message (`analytics._message.build`, which also applies the current ``analytics.context``
block) and hands it to `_put`, which encodes it once and queues the bytes. Only a programmer
error raises, as `InvalidEventError` or `UnserializableError`, naming the argument.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping
from typing import Any

from analytics._exceptions import InvalidEventError
from analytics._message import _id, _mapping, _text, build, encode, normalize_message
from analytics._reporting import Message

__all__ = ["Calls", "Id", "Result", "Timestamp"]

Result = tuple[bool, Message]
Id = str | int | None
#: A datetime (naive = UTC), a date, or an ISO-8601 string; None for "now".
Timestamp = dt.datetime | dt.date | str | None


def _dict(value: object, argument: str) -> dict[str, Any]:
    """A mapping argument as a dict ({} for None); a plain dict is taken as it is."""
    if type(value) is dict:
        return value
    return _mapping(value, argument) or {}


class Calls:
    """The public calls; the client provides `_put_bytes`, `_tap`, `_sender` and `_drop`."""

    _put_bytes: Callable[[bytes], str | None] | None
    _tap: Callable[[bytes], object] | None
    _sender: Any

    def _drop(self, reason: str, msg: Message) -> None:
        raise NotImplementedError

    # --- the calls ------------------------------------------------------------------------------

    def identify(
        self,
        user_id: Id = None,
        traits: Mapping[str, Any] | None = None,
        context: Mapping[str, Any] | None = None,
        timestamp: Timestamp = None,
        anonymous_id: Id = None,
        integrations: Mapping[str, Any] | None = None,
        message_id: str | None = None,
        *,
        session_id: Id = None,
    ) -> Result:
        """Record who the user is and their traits. Returns ``(queued, message)``."""
        fields = {"traits": _dict(traits, "traits")}
        anon = _anonymous(anonymous_id, session_id)
        return self._put(
            build("identify", fields, user_id, anon, context, timestamp, integrations, message_id)
        )

    def track(
        self,
        user_id: Id = None,
        event: str | None = None,
        properties: Mapping[str, Any] | None = None,
        context: Mapping[str, Any] | None = None,
        timestamp: Timestamp = None,
        anonymous_id: Id = None,
        integrations: Mapping[str, Any] | None = None,
        message_id: str | None = None,
        *,
        session_id: Id = None,
    ) -> Result:
        """Record an action the user performed. Returns ``(queued, message)``."""
        if type(event) is not str or not event:
            raise InvalidEventError("track() needs event, a non-empty string")
        props = properties if type(properties) is dict else _dict(properties, "properties")
        fields = {"event": event, "properties": props}
        anon = anonymous_id if session_id is None else _anonymous(anonymous_id, session_id)
        return self._put(
            build("track", fields, user_id, anon, context, timestamp, integrations, message_id)
        )

    def page(
        self,
        user_id: Id = None,
        category: str | None = None,
        name: str | None = None,
        properties: Mapping[str, Any] | None = None,
        context: Mapping[str, Any] | None = None,
        timestamp: Timestamp = None,
        anonymous_id: Id = None,
        integrations: Mapping[str, Any] | None = None,
        message_id: str | None = None,
        *,
        session_id: Id = None,
    ) -> Result:
        """Record a page view. Returns ``(queued, message)``."""
        return self._view(
            "page",
            user_id,
            category,
            name,
            properties,
            context,
            timestamp,
            _anonymous(anonymous_id, session_id),
            integrations,
            message_id,
        )

    def screen(
        self,
        user_id: Id = None,
        category: str | None = None,
        name: str | None = None,
        properties: Mapping[str, Any] | None = None,
        context: Mapping[str, Any] | None = None,
        timestamp: Timestamp = None,
        anonymous_id: Id = None,
        integrations: Mapping[str, Any] | None = None,
        message_id: str | None = None,
        *,
        session_id: Id = None,
    ) -> Result:
        """Record a screen view in an app. Returns ``(queued, message)``."""
        return self._view(
            "screen",
            user_id,
            category,
            name,
            properties,
            context,
            timestamp,
            _anonymous(anonymous_id, session_id),
            integrations,
            message_id,
        )

    def _view(
        self,
        kind: str,
        user_id: Id,
        category: object,
        name: object,
        properties: object,
        context: object,
        timestamp: object,
        anonymous_id: object,
        integrations: object,
        message_id: object,
    ) -> Result:
        fields: dict[str, Any] = {}
        for key, value in (
            ("name", _text(name, "name")),
            ("category", _text(category, "category")),
        ):
            if value is not None:
                fields[key] = value
        fields["properties"] = _dict(properties, "properties")
        return self._put(
            build(kind, fields, user_id, anonymous_id, context, timestamp, integrations, message_id)
        )

    def group(
        self,
        user_id: Id = None,
        group_id: Id = None,
        traits: Mapping[str, Any] | None = None,
        context: Mapping[str, Any] | None = None,
        timestamp: Timestamp = None,
        anonymous_id: Id = None,
        integrations: Mapping[str, Any] | None = None,
        message_id: str | None = None,
        *,
        session_id: Id = None,
    ) -> Result:
        """Associate the user with a group (an account, a company). Returns ``(queued, message)``."""
        gid = _id(group_id, "group_id")
        if not gid:
            raise InvalidEventError("group() needs group_id")
        fields = {"groupId": gid, "traits": _dict(traits, "traits")}
        anon = _anonymous(anonymous_id, session_id)
        return self._put(
            build("group", fields, user_id, anon, context, timestamp, integrations, message_id)
        )

    def alias(
        self,
        previous_id: Id = None,
        user_id: Id = None,
        context: Mapping[str, Any] | None = None,
        timestamp: Timestamp = None,
        integrations: Mapping[str, Any] | None = None,
        message_id: str | None = None,
    ) -> Result:
        """Say that ``previous_id`` and ``user_id`` are the same user. Returns ``(queued, message)``."""
        pid = _id(previous_id, "previous_id")
        if not pid:
            raise InvalidEventError("alias() needs previous_id")
        if user_id is None:
            raise InvalidEventError("alias() needs user_id")
        fields = {"previousId": pid}
        return self._put(
            build("alias", fields, user_id, None, context, timestamp, integrations, message_id)
        )

    def enqueue(self, message: Mapping[str, Any], *, timeout: float = 0.0) -> Result:
        """Queue a message given in SPEC form (camelCase keys), e.g. one read from a file.

        It is validated like the calls (raising `InvalidEventError` naming the field), and
        ``messageId``, ``timestamp`` and ``context.library`` are filled in when missing. When the
        queue is full it waits up to ``timeout`` seconds for room (for bulk imports) before
        dropping; with the default 0 it never waits.
        """
        return self._put(normalize_message(message), wait=timeout)

    def _put(self, msg: Message, wait: float = 0.0) -> Result:
        """Encode and queue ``msg``; when the queue is full, wait up to ``wait`` s for room.

        The returned message has the keys Segment 2.x's has (``userId``/``anonymousId`` as None
        when not given, ``integrations``); what is sent leaves None fields out.
        """
        data = encode(msg)
        if "anonymousId" not in msg:
            msg["anonymousId"] = None
        elif "userId" not in msg:
            msg["userId"] = None
        if "integrations" not in msg:
            msg["integrations"] = {}
        put = self._put_bytes
        if put is not None:
            refused = put(data)
            if refused is None:
                return True, msg
            if refused == "queue_full" and wait > 0 and self._sender.wait_for_room(wait):
                refused = put(data)
                if refused is None:
                    return True, msg
            self._drop(refused, msg)
            return False, msg
        if self._tap is not None:
            self._tap(data)
            return True, msg
        if self._sender.closed:
            self._drop("shut_down", msg)
            return False, msg
        # Sync mode: on this thread, with the same limits and retries; this call's own result.
        return self._sender.deliver_now(data), msg


def _anonymous(anonymous_id: Id, session_id: Id) -> Id:
    """The seed's ``session_id`` is today's ``anonymous_id``; both may be given if equal."""
    if session_id is None:
        return anonymous_id
    if anonymous_id is not None and anonymous_id != session_id:
        raise InvalidEventError("give anonymous_id or session_id (the same thing), not both")
    return session_id
