"""Who may open the collector's admin pages: the live debugger (``/``) and ``/metrics``.

The rule (:meth:`AdminAccess.decide`, a pure function of the bind address, the configured
token and the request's headers):

- No admin token configured: open on a loopback bind (a developer's own machine), off (404)
  on any other address.
- An admin token configured (``analytics serve --admin-token``, env ``ANALYTICS_ADMIN_TOKEN``):
  required on every bind, loopback included, because a reverse proxy on the same host would
  otherwise publish a loopback collector to the world.
- The credential is ``Authorization: Bearer <token>`` (scripts, Prometheus) or the session
  cookie the page sets after ``/?token=<token>`` (a browser cannot add a header to a page load
  or to an ``EventSource``). The cookie holds an HMAC of the token, not the token, is
  ``HttpOnly`` and ``SameSite=Strict``; the redirect drops the token from the address bar.
  Every comparison is constant-time (``hmac.compare_digest``).
- Open mode also requires a loopback ``Host`` header: otherwise a web page the developer
  visits could rebind its own name to 127.0.0.1 (DNS rebinding) and read the stream.
- Write keys grant nothing here: they ship inside web and mobile apps, so anyone may hold one.
  Only the admin token sees events, and it sees every write key's (labelled, never shown).
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from http.cookies import CookieError, SimpleCookie
from typing import Literal

from aiohttp import web

from analytics.collector._auth import host_of, is_loopback

__all__ = ["COOKIE", "MIN_TOKEN_LENGTH", "AdminAccess", "Denied"]

#: The session cookie the page sets (its value is an HMAC of the token).
COOKIE = "analytics_admin"
MIN_TOKEN_LENGTH = 16
_SESSION = b"analytics-admin-session-v1"

Mode = Literal["open", "token", "off"]


@dataclass(frozen=True, slots=True)
class Denied:
    """Why a request may not see an admin page: the HTTP status and its reason phrase (the
    collector's JSON errors turn the phrase into the ``code``: ``admin_token_required``)."""

    status: int
    reason: str


def _bearer(authorization: str | None) -> str | None:
    if not authorization:
        return None
    scheme, _, credential = authorization.strip().partition(" ")
    if scheme.lower() != "bearer":
        return None
    return credential.strip() or None


def _cookie_value(cookie_header: str | None) -> str | None:
    if not cookie_header:
        return None
    jar: SimpleCookie = SimpleCookie()
    try:
        jar.load(cookie_header)
    except CookieError:
        return None
    morsel = jar.get(COOKIE)
    return morsel.value if morsel is not None else None


def _same(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode("utf-8"), expected.encode("utf-8"))


class AdminAccess:
    """The admin rule for one collector: its bind address and its admin token (or None).

    Raises:
        ValueError: a token shorter than :data:`MIN_TOKEN_LENGTH` characters.
    """

    def __init__(self, host: str = "127.0.0.1", token: str | None = None) -> None:
        if token is not None and len(token) < MIN_TOKEN_LENGTH:
            raise ValueError(
                f"the admin token must be at least {MIN_TOKEN_LENGTH} characters "
                "(make one with: python -c 'import secrets; print(secrets.token_urlsafe())')"
            )
        self._token = token
        self._loopback = is_loopback(host)
        self._session = (
            hmac.new(token.encode("utf-8"), _SESSION, hashlib.sha256).hexdigest() if token else ""
        )

    @property
    def mode(self) -> Mode:
        """``open`` (loopback, no token), ``token`` (the token is required) or ``off``."""
        if self._token is not None:
            return "token"
        return "open" if self._loopback else "off"

    def decide(
        self,
        *,
        host_header: str | None,
        authorization: str | None = None,
        cookie: str | None = None,
    ) -> Denied | None:
        """None when the request may see admin pages, else why not (pure)."""
        mode = self.mode
        if mode == "off":
            return Denied(404, "Not Found")  # off: serve was given no --admin-token
        if mode == "open":
            if host_header is None or not is_loopback(host_of(host_header)):
                return Denied(403, "Loopback host required")  # e.g. http://127.0.0.1:8088/
            return None
        if self.token_matches(_bearer(authorization)):
            return None
        session = _cookie_value(cookie)
        if session is not None and _same(session, self._session):
            return None
        return Denied(401, "Admin token required")  # Bearer header or /?token=...

    def token_matches(self, given: str | None) -> bool:
        """Whether ``given`` is the admin token (constant-time; False when none is set)."""
        return self._token is not None and given is not None and _same(given, self._token)

    def require(self, request: web.Request) -> None:
        """Raise the matching ``web.HTTPException`` unless ``request`` may see admin pages."""
        denied = self.decide(
            host_header=request.headers.get("Host"),
            authorization=request.headers.get("Authorization"),
            cookie=request.headers.get("Cookie"),
        )
        if denied is None:
            return
        if denied.status == 401:
            raise web.HTTPUnauthorized(reason=denied.reason, headers={"WWW-Authenticate": "Bearer"})
        if denied.status == 403:
            raise web.HTTPForbidden(reason=denied.reason)
        raise web.HTTPNotFound()

    def login(self, request: web.Request) -> web.StreamResponse | None:
        """Handle ``?token=`` on a page load: a redirect that sets the session cookie.

        Returns None when the request carries no ``token`` query parameter.

        Raises:
            web.HTTPUnauthorized: a wrong token (or admin pages off / open: nothing to log into).
        """
        given = request.query.get("token")
        if given is None:
            return None
        if not self.token_matches(given):
            raise web.HTTPUnauthorized(
                reason="Wrong admin token", headers={"WWW-Authenticate": "Bearer"}
            )
        response = web.HTTPSeeOther(request.path)
        response.set_cookie(COOKIE, self._session, httponly=True, samesite="Strict", path="/")
        return response
