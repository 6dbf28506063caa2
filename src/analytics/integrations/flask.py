"""Flask extension: request context for every event tracked while a request is handled.

::

    app = Flask(__name__)
    Analytics(app, user_id=lambda request: session.get("user_id"))

The block opens in a ``before_request`` hook and closes in ``teardown_request`` (which runs
even when the view raises). Hooks run in the order they were registered, so create `Analytics`
after the hooks that load the user (e.g. a ``before_app_request`` that sets ``g.user``) when
the resolver reads what they set; events tracked in hooks that run before ours carry no request
context. Resolvers get Flask's ``request`` (the request context is active: ``session``, ``g``
and Flask-Login's ``current_user`` work).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask import Flask, Request, g, request

from analytics.integrations._request import (
    EnvironHeaders,
    Settings,
    page_url,
    request_context,
    wsgi_path,
)

__all__ = ["Analytics"]

_BLOCK = "_analytics_context_block"


class Analytics:
    """The extension: ``Analytics(app, ...)`` or ``Analytics(...)`` then ``init_app(app)``.

    Args:
        app: the Flask application (or None, to call `init_app` later).
        user_id: ``resolver(request) -> id or None``: who the signed-in user is.
        anonymous_id: ``resolver(request) -> id or None``: the visitor's anonymous id.
        capture_ip: put the client's address in ``context.ip`` (personal data: off by default).
        proxy_count: how many of your reverse proxies stand in front of the application
            (``X-Forwarded-For`` is read only when this is above 0; leave it 0 if werkzeug's
            ``ProxyFix`` already sets ``remote_addr``).
    """

    def __init__(
        self,
        app: Flask | None = None,
        *,
        user_id: Callable[[Request], Any] | None = None,
        anonymous_id: Callable[[Request], Any] | None = None,
        capture_ip: bool = False,
        proxy_count: int = 0,
    ) -> None:
        """Check the options now; register with ``app`` if given."""
        self.settings: Settings[Request] = Settings(user_id, anonymous_id, capture_ip, proxy_count)
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask) -> None:
        """Register the hooks that open and close each request's context block."""
        app.before_request(self._enter)
        app.teardown_request(self._exit)
        app.extensions["analytics"] = self

    def _enter(self) -> None:
        current: Request = request._get_current_object()  # type: ignore[attr-defined]
        environ = current.environ
        path = wsgi_path(environ)
        query = environ.get("QUERY_STRING", "")
        fields = request_context(
            self.settings,
            url=page_url(current.scheme, current.host, path, query),
            path=path,
            query=query,
            headers=EnvironHeaders(environ),
            peer=current.remote_addr,
        )
        block = self.settings.context(current, fields)
        block.__enter__()
        setattr(g, _BLOCK, block)

    def _exit(self, exc: BaseException | None) -> None:
        block = g.pop(_BLOCK, None)
        if block is not None:
            block.__exit__(None, None, None)
