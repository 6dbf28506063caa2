"""ASGI middleware (Starlette, FastAPI, any ASGI application): request context for every event.

::

    app.add_middleware(AnalyticsMiddleware, user_id=lambda scope: scope["user"].identity)

Pure ASGI (no Starlette import): the context block wraps the whole call of the application,
so it covers the endpoint, code it awaits, sync endpoints run in a thread pool (they copy the
context) and background tasks run after the response. Resolvers get the ASGI ``scope`` (with
Starlette's ``AuthenticationMiddleware`` outside this one, ``scope["user"]`` is the user) and may
be ``async`` functions.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import quote

from analytics._context import context
from analytics.integrations._request import (
    Settings,
    as_id,
    call,
    logger,
    page_url,
    request_context,
)

__all__ = ["AnalyticsMiddleware"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
Resolver = Callable[[Scope], Any]  # -> id, None, or an awaitable of either

_WANTED = frozenset(
    (b"host", b"referer", b"user-agent", b"accept-language", b"x-request-id", b"x-forwarded-for")
)


class AnalyticsMiddleware:
    """Wrap an ASGI application so events tracked while it handles a request carry its context.

    Args:
        app: the ASGI application.
        user_id: ``resolver(scope)`` (or ``async``) -> the signed-in user's id, or None.
        anonymous_id: ``resolver(scope)`` (or ``async``) -> the visitor's anonymous id, or None.
        capture_ip: put the client's address in ``context.ip`` (personal data: off by default).
        proxy_count: how many of your reverse proxies stand in front of the application
            (``X-Forwarded-For`` is read only when this is above 0).
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        user_id: Resolver | None = None,
        anonymous_id: Resolver | None = None,
        capture_ip: bool = False,
        proxy_count: int = 0,
    ) -> None:
        """Check the options now, so a wrong one fails at startup."""
        self.app = app
        self._settings: Settings[Scope] = Settings(user_id, anonymous_id, capture_ip, proxy_count)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Handle HTTP and WebSocket connections inside a context block; pass the rest through."""
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        settings = self._settings
        headers = _headers(scope)
        path = _path(scope)
        query = scope.get("query_string", b"").decode("latin-1")
        client = scope.get("client")
        fields = request_context(
            settings,
            url=_url(scope, headers, path, query),
            path=path,
            query=query,
            headers=headers,
            peer=client[0] if client else None,
        )
        user_id = await _resolve(settings.user_id, scope, "user_id")
        anonymous_id = await _resolve(settings.anonymous_id, scope, "anonymous_id")
        with context(user_id=user_id, anonymous_id=anonymous_id, context=fields):
            await self.app(scope, receive, send)


async def _resolve(resolver: Resolver | None, scope: Scope, name: str) -> str | int | None:
    value = call(resolver, scope, name)
    if inspect.isawaitable(value):
        try:
            value = await value
        except Exception:
            logger.exception(
                "the %s resolver raised; this request's events carry no %s", name, name
            )
            return None
    return as_id(value)


def _headers(scope: Scope) -> dict[str, str]:
    """The headers we read, by name; repeated ones joined with ``, `` (RFC 9110).

    ASGI servers give names in lower case (the spec requires it), so they are compared as
    they are.
    """
    found: dict[str, str] = {}
    for raw_name, raw_value in scope.get("headers", ()):
        if raw_name in _WANTED:
            key, value = raw_name.decode("latin-1"), raw_value.decode("latin-1")
            found[key] = f"{found[key]}, {value}" if key in found else value
    return found


def _path(scope: Scope) -> str:
    """The path as the client sent it (percent-encoded), with the mount point's ``root_path``."""
    raw = scope.get("raw_path")
    path = bytes(raw).decode("latin-1") if raw else quote(scope.get("path", "/"))
    root = scope.get("root_path", "")
    if root and not path.startswith(root):
        path = quote(root) + path
    return path


def _url(scope: Scope, headers: dict[str, str], path: str, query: str) -> str:
    scheme = scope.get("scheme") or ("ws" if scope["type"] == "websocket" else "http")
    host = headers.get("host")
    if not host:
        server = scope.get("server")
        host = f"{server[0]}:{server[1]}" if server else "localhost"
    return page_url(scheme, host, path, query)
