"""What every integration takes from a request: page, user agent, locale, request id, IP, user.

Framework-neutral: each integration reads its framework's request into `request_context` and
hands the result to `analytics.context` through `Settings.context`, so the rules (which header
wins, when the IP is kept, how the locale is chosen) exist once.
"""

from __future__ import annotations

import functools
import ipaddress
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar
from urllib.parse import quote

from analytics._context import context
from analytics._message import new_message_id

__all__ = [
    "EnvironHeaders",
    "Headers",
    "Settings",
    "client_ip",
    "page_url",
    "preferred_locale",
    "request_context",
    "request_id",
    "wsgi_path",
]

logger = logging.getLogger("analytics")

R = TypeVar("R")
Id = str | int | None

MAX_REQUEST_ID = 200  # a longer X-Request-ID is not an id we should copy into every event
MAX_LANGUAGES = 32  # bound the work an Accept-Language header can ask for
MAX_CACHED_HEADER = 256  # Accept-Language values repeat: the parse of short ones is cached
PATH_SAFE = "/:@!$&'()*+,;=-._~"  # RFC 3986 pchar and "/": left as they are in page.path


class Headers(Protocol):
    """Header lookup by lower-case name (`EnvironHeaders` for WSGI, a dict for ASGI)."""

    def get(self, key: str, /) -> str | None:
        """The header's value, or None."""


class EnvironHeaders:
    """A WSGI environ (or Django's ``request.META``) read as headers: ``user-agent`` is
    ``HTTP_USER_AGENT``. Cheaper than the frameworks' header objects for the five we read."""

    __slots__ = ("_environ",)

    def __init__(self, environ: Mapping[str, Any]) -> None:
        """Wrap ``environ`` (not copied)."""
        self._environ = environ

    def get(self, key: str, /) -> str | None:
        """The header's value, or None."""
        value = self._environ.get("HTTP_" + key.upper().replace("-", "_"))
        return value if isinstance(value, str) else None


def page_url(scheme: str, host: str, path: str, query: str) -> str:
    """``scheme://host/path?query`` (no ``?`` without a query)."""
    return f"{scheme}://{host}{path}?{query}" if query else f"{scheme}://{host}{path}"


def wsgi_path(environ: Mapping[str, Any]) -> str:
    """The request path as the client sent it (percent-encoded), from a WSGI environ.

    PEP 3333 servers give ``SCRIPT_NAME`` and ``PATH_INFO`` decoded, as latin-1 strings of the
    raw bytes; encoding them back keeps ``page.path`` the same as the ASGI middleware's.
    """
    raw = environ.get("SCRIPT_NAME", "") + environ.get("PATH_INFO", "")
    return quote(raw.encode("latin-1", "replace"), safe=PATH_SAFE) or "/"


@dataclass(frozen=True, slots=True)
class Settings(Generic[R]):
    """An integration's options, checked once when the application sets it up.

    Args:
        user_id: ``resolver(request) -> id or None``: who the signed-in user is.
        anonymous_id: ``resolver(request) -> id or None``: the visitor's anonymous id.
        capture_ip: put the client's IP in ``context.ip`` (personal data: off by default).
        proxy_count: how many reverse proxies of yours stand in front of the application. Each
            appends the address it received from to ``X-Forwarded-For``, so the client is the
            ``proxy_count``-th address from the right; 0 (the default) ignores the header,
            which any client can forge.
    """

    user_id: Callable[[R], Any] | None = None
    anonymous_id: Callable[[R], Any] | None = None
    capture_ip: bool = False
    proxy_count: int = 0

    def __post_init__(self) -> None:
        """Refuse a wrong option at setup, not at the first request."""
        for name in ("user_id", "anonymous_id"):
            value = getattr(self, name)
            if value is not None and not callable(value):
                raise TypeError(f"{name} must be a function of the request, not {value!r}")
        if not isinstance(self.capture_ip, bool):
            raise TypeError(f"capture_ip must be True or False, not {self.capture_ip!r}")
        count = self.proxy_count
        if isinstance(count, bool) or not isinstance(count, int) or count < 0:
            raise TypeError(f"proxy_count must be a whole number >= 0, not {count!r}")

    def context(self, request: R, fields: dict[str, Any]) -> context:
        """The `analytics.context` block for one request (ids from the resolvers, if any)."""
        return context(
            user_id=as_id(call(self.user_id, request, "user_id")),
            anonymous_id=as_id(call(self.anonymous_id, request, "anonymous_id")),
            context=fields,
        )


def call(resolver: Callable[[R], Any] | None, request: R, name: str) -> Any:
    """The resolver's answer; a resolver that raises is logged and the request goes on without.

    The application's request must not fail because its analytics could not name the user.
    """
    if resolver is None:
        return None
    try:
        return resolver(request)
    except Exception:
        logger.exception("the %s resolver raised; this request's events carry no %s", name, name)
        return None


def as_id(value: Any) -> Id:
    """An id as the client takes it: a string or a number; a UUID or other value as its text."""
    if value is None or value == "":
        return None
    if isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool)):
        return value
    return str(value)


def request_context(
    settings: Settings[Any], *, url: str, path: str, query: str, headers: Headers, peer: str | None
) -> dict[str, Any]:
    """The ``context`` fields of one request (``query`` without its ``?``).

    ``page`` always has ``url``, ``path``, ``search`` and ``referrer`` (empty strings when the
    request has none, as analytics.js sends them); ``userAgent`` and ``locale`` only when the
    request says; ``requestId`` always; ``ip`` only with ``capture_ip``.
    """
    fields: dict[str, Any] = {
        "page": {
            "path": path,
            "referrer": headers.get("referer") or "",
            "search": f"?{query}" if query else "",
            "url": url,
        },
        "requestId": request_id(headers.get("x-request-id")),
    }
    agent = headers.get("user-agent")
    if agent:
        fields["userAgent"] = agent
    locale = preferred_locale(headers.get("accept-language"))
    if locale:
        fields["locale"] = locale
    if settings.capture_ip:
        ip = client_ip(peer, headers.get("x-forwarded-for"), settings.proxy_count)
        if ip:
            fields["ip"] = ip
    return fields


def request_id(header: str | None) -> str:
    """The request's ``X-Request-ID`` when it is a sane one, else a new unique id.

    The new id comes from the messageId generator (unique across processes and forks, 0.2 µs
    where ``uuid.uuid4()`` took 4.5 µs here).
    """
    if header and len(header) <= MAX_REQUEST_ID and header.isprintable() and header.isascii():
        return header.strip() or new_message_id()
    return new_message_id()


def preferred_locale(header: str | None) -> str | None:
    """The language the client prefers most (highest ``q``, first on a tie), e.g. ``en-US``."""
    if not header:
        return None
    if len(header) <= MAX_CACHED_HEADER:
        return _cached_locale(header)
    return _parse_locale(header)


def _parse_locale(header: str) -> str | None:
    best, best_q = "", 0.0
    for item in header.split(",", MAX_LANGUAGES)[:MAX_LANGUAGES]:
        tag, _, params = item.partition(";")
        tag = tag.strip().replace("_", "-")
        q = _quality(params)
        if q > best_q and tag != "*" and _is_tag(tag):
            best, best_q = tag, q
    return _canonical(best) if best else None


_cached_locale = functools.lru_cache(maxsize=512)(_parse_locale)


def _quality(params: str) -> float:
    for param in params.split(";"):
        name, _, value = param.partition("=")
        if name.strip().lower() == "q":
            try:
                q = float(value)
            except ValueError:
                return 0.0
            return q if 0.0 <= q <= 1.0 else 0.0
    return 1.0


def _is_tag(tag: str) -> bool:
    return 0 < len(tag) <= 35 and all(part.isalnum() and part.isascii() for part in tag.split("-"))


def _canonical(tag: str) -> str:
    """BCP 47 case: ``en-us`` -> ``en-US``, ``zh-hant-tw`` -> ``zh-Hant-TW``."""
    first, *rest = tag.split("-")
    parts = [first.lower()]
    for part in rest:
        if len(part) == 2 and part.isalpha():
            parts.append(part.upper())
        elif len(part) == 4 and part.isalpha():
            parts.append(part.title())
        else:
            parts.append(part.lower())
    return "-".join(parts)


def client_ip(peer: str | None, forwarded_for: str | None, proxy_count: int) -> str | None:
    """The client's address: from ``X-Forwarded-For`` behind ``proxy_count`` proxies, else the peer.

    With fewer addresses in the header than proxies (a request that skipped a proxy), or an
    entry that is not an IP address, the peer's address is kept, as werkzeug's ProxyFix does.
    """
    if proxy_count and forwarded_for:
        hops = [hop.strip() for hop in forwarded_for.split(",")]
        if len(hops) >= proxy_count and _is_ip(hops[-proxy_count]):
            return hops[-proxy_count]
    return peer or None


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True
