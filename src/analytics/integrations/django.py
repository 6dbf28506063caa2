"""Django middleware: request context for every event tracked while a request is handled.

Add ``"analytics.integrations.django.AnalyticsMiddleware"`` to ``MIDDLEWARE`` after
``AuthenticationMiddleware`` (so ``request.user`` is known), and configure it, if the defaults
do not suit, with a dict in settings::

    ANALYTICS_MIDDLEWARE = {
        "user_id": lambda request: request.user.email,   # or a dotted path to a function
        "anonymous_id": "myapp.analytics.visitor_id",
        "capture_ip": True,                                # personal data: off by default
        "proxy_count": 1,                                  # your reverse proxies, for X-Forwarded-For
    }

By default the user is ``request.user.pk`` when that user is authenticated. The middleware
works in sync and async stacks (under ASGI it resolves the user in Django's sync thread, since
``request.user`` may query the database). The settings are read when Django builds its
middleware chain, once per process.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, cast

from asgiref.sync import iscoroutinefunction, markcoroutinefunction, sync_to_async
from django.conf import settings as django_settings
from django.core.exceptions import DisallowedHost, ImproperlyConfigured
from django.http import HttpRequest, HttpResponseBase
from django.utils.encoding import escape_uri_path, iri_to_uri
from django.utils.module_loading import import_string

from analytics._context import context
from analytics.integrations._request import EnvironHeaders, Settings, page_url, request_context

__all__ = ["AnalyticsMiddleware", "authenticated_user_pk"]

GetResponse = Callable[[HttpRequest], HttpResponseBase | Awaitable[HttpResponseBase]]
SETTING = "ANALYTICS_MIDDLEWARE"
_OPTIONS = frozenset(("user_id", "anonymous_id", "capture_ip", "proxy_count"))


def authenticated_user_pk(request: HttpRequest) -> Any:
    """The default user resolver: ``request.user.pk`` when the user is authenticated."""
    user = getattr(request, "user", None)
    return user.pk if user is not None and user.is_authenticated else None


class AnalyticsMiddleware:
    """Django middleware (sync and async) entering an `analytics.context` block per request."""

    sync_capable = True
    async_capable = True

    def __init__(self, get_response: GetResponse) -> None:
        """Read ``settings.ANALYTICS_MIDDLEWARE``; a wrong option fails here, at startup."""
        self.get_response = get_response
        self._settings = _from_django_settings()
        self._async = iscoroutinefunction(get_response)
        if self._async:
            markcoroutinefunction(self)

    def __call__(self, request: HttpRequest) -> Any:
        """Handle the request inside its context block (async stacks get a coroutine)."""
        if self._async:
            return self._acall(request)
        with self._block(request):
            return self.get_response(request)

    async def _acall(self, request: HttpRequest) -> HttpResponseBase:
        block = await sync_to_async(self._block, thread_sensitive=True)(request)
        with block:
            return await cast("Awaitable[HttpResponseBase]", self.get_response(request))

    def _block(self, request: HttpRequest) -> context:
        meta = request.META
        query = iri_to_uri(meta.get("QUERY_STRING", ""))
        path = escape_uri_path(request.path)
        try:
            host = request.get_host()
        except DisallowedHost:  # Django answers 400 later; our events keep what was asked
            host = meta.get("HTTP_HOST") or meta.get("SERVER_NAME", "")
        fields = request_context(
            self._settings,
            url=page_url(request.scheme or "http", host, path, query),
            path=path,
            query=query,
            headers=EnvironHeaders(meta),
            peer=meta.get("REMOTE_ADDR"),
        )
        return self._settings.context(request, fields)


def _from_django_settings() -> Settings[HttpRequest]:
    options: dict[str, Any] = dict(getattr(django_settings, SETTING, None) or {})
    unknown = set(options) - _OPTIONS
    if unknown:
        raise ImproperlyConfigured(f"{SETTING}: unknown option(s) {sorted(unknown)}")
    options.setdefault("user_id", authenticated_user_pk)
    for name in ("user_id", "anonymous_id"):
        if isinstance(options.get(name), str):
            options[name] = import_string(options[name])
    try:
        return Settings(**options)
    except TypeError as exc:
        raise ImproperlyConfigured(f"{SETTING}: {exc}") from None
