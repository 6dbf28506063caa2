"""Context that fills itself in: ``with analytics.context(user_id=..., context={...}):``.

A block sets the current user and message context through `contextvars`, so it follows the
code that runs inside it: the thread, the asyncio task (tasks copy the context they are created
in), a Celery task whose headers carried it (`analytics.integrations.celery`). Every call made
inside the block, on any `Client` or `AsyncClient`, may omit the ids:

- ``userId`` / ``anonymousId``: each taken from the block when the call gives neither; an
  explicit argument always wins;
- ``context``: the block's keys, under the call's own (the call's keys win); ``traits`` given to
  the block go to ``context.traits`` (Segment's field for the current user's traits).

Blocks nest: an inner block inherits what it does not set. Usable as ``with`` and ``async with``.
"""

from __future__ import annotations

from collections.abc import Mapping
from contextvars import ContextVar, Token
from dataclasses import dataclass
from typing import Any

from analytics._exceptions import InvalidEventError

__all__ = ["Frame", "context", "current"]

Id = str | int | None


@dataclass(frozen=True, slots=True)
class Frame:
    """What a block set: the user's ids and the context added to every message."""

    user_id: Id = None
    anonymous_id: Id = None
    context: Mapping[str, Any] | None = None

    def fill(
        self, user_id: Id, anonymous_id: Id, ctx: Mapping[str, Any] | None
    ) -> tuple[Id, Id, Mapping[str, Any] | None]:
        """The call's ids and context, completed from this frame (the call's values win)."""
        if user_id is None and anonymous_id is None:
            user_id, anonymous_id = self.user_id, self.anonymous_id
        if self.context:
            if ctx is None:
                ctx = self.context
            elif isinstance(ctx, Mapping):
                ctx = {**self.context, **ctx}
        return user_id, anonymous_id, ctx


_current: ContextVar[Frame | None] = ContextVar("analytics_context", default=None)


def current() -> Frame | None:
    """The innermost block's frame, or None outside any block."""
    return _current.get()


class context:
    """Set the current user and message context for the calls made inside the block.

    Args:
        user_id: the signed-in user, used when a call gives no id.
        anonymous_id: the visitor before sign-in, used when a call gives no id.
        traits: the user's traits, sent as ``context.traits``.
        context: fields merged into every message's ``context`` (page, userAgent, ip ...).
    """

    __slots__ = ("_own", "_tokens")

    def __init__(
        self,
        user_id: Id = None,
        anonymous_id: Id = None,
        traits: Mapping[str, Any] | None = None,
        context: Mapping[str, Any] | None = None,
    ) -> None:
        """Check the arguments now (a bad one raises here, not in every later call)."""
        for name, value in (("user_id", user_id), ("anonymous_id", anonymous_id)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, str | int)):
                raise InvalidEventError(f"{name} must be a string or a number, not {value!r}")
        for name, mapping in (("traits", traits), ("context", context)):
            if mapping is not None and not isinstance(mapping, Mapping):
                raise InvalidEventError(f"{name} must be a mapping, not {type(mapping).__name__}")
        fields: dict[str, Any] = dict(context or {})
        if traits:
            fields["traits"] = {**fields.get("traits", {}), **traits}
        self._own = Frame(user_id, anonymous_id, fields or None)
        self._tokens: list[Token[Frame | None]] = []

    def __enter__(self) -> Frame:
        """Make the block's frame current (inheriting what it does not set); returns it."""
        frame = _nest(_current.get(), self._own)
        self._tokens.append(_current.set(frame))
        return frame

    def __exit__(self, *exc_info: object) -> None:
        """Restore the frame that was current before."""
        _current.reset(self._tokens.pop())

    async def __aenter__(self) -> Frame:
        """``async with``: the same as ``with``."""
        return self.__enter__()

    async def __aexit__(self, *exc_info: object) -> None:
        """Restore the frame that was current before."""
        self.__exit__()


def _nest(parent: Frame | None, own: Frame) -> Frame:
    """``own`` inside ``parent``: ids and context keys of ``own`` win; traits are merged."""
    if parent is None:
        return own
    merged = {**(parent.context or {}), **(own.context or {})}
    if parent.context and own.context and "traits" in parent.context and "traits" in own.context:
        merged["traits"] = {**parent.context["traits"], **own.context["traits"]}
    return Frame(
        own.user_id if own.user_id is not None else parent.user_id,
        own.anonymous_id if own.anonymous_id is not None else parent.anonymous_id,
        merged or None,
    )


context.__module__ = "analytics"
