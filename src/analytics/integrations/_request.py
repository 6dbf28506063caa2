"""What every integration takes from a request: page, user agent, locale, request id, IP, user.

Framework-neutral: each integration reads its framework's request into `request_context` and
hands the result to `analytics.context` through `Settings.context`, so the rules (which header
wins, when the IP is kept, how the locale is chosen) exist once.
"""

from __future__ import annotations

import ipaddress
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

from analytics._context import context

__all__ = ["Headers", "Settings", "client_ip", "preferred_locale", "request_context", "request_id"]

logger = logging.getLogger("analytics")

R = TypeVar("R")
Id = str | int | None

MAX_REQUEST_ID = 200  # a longer X-Request-ID is not an id we should copy into every event
MAX_LANGUAGES = 32  # bound the work an Accept-Language header can ask for


class Headers(Protocol):
    """Case-insensitive header lookup (Django's ``request.headers``, werkzeug's, ours for ASGI)."""

    def get(self, key: str, /) -> str | None:
        """The header's value, or None."""


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
    """The request's ``X-Request-ID`` when it is a sane one, else a new UUID4."""
    if header and len(header) <= MAX_REQUEST_ID and header.isprintable() and header.isascii():
        return header.strip() or str(uuid.uuid4())
    return str(uuid.uuid4())


def preferred_locale(header: str | None) -> str | None:
    """The language the client prefers most (highest ``q``, first on a tie), e.g. ``en-US``."""
    if not header:
        return None
    best, best_q = "", 0.0
    for item in header.split(",", MAX_LANGUAGES)[:MAX_LANGUAGES]:
        tag, _, params = item.partition(";")
        tag = tag.strip().replace("_", "-")
        q = _quality(params)
        if q > best_q and tag != "*" and _is_tag(tag):
            best, best_q = tag, q
    return _canonical(best) if best else None


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
