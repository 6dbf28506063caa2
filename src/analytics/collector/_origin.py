"""An open collector (no write key) takes requests from local programs only, not web pages.

Why: with no ``--write-key`` the collector accepts any key, and it then listens on loopback
only. A web page the developer visits can still reach it: a no-cors ``fetch`` (``text/plain``,
no preflight) from ``http://evil.example`` is delivered to ``127.0.0.1``, and a page whose own
name was re-pointed at 127.0.0.1 (DNS rebinding) can even read the answers. Measured before
this module: such a POST was stored.

The rule, for an open collector only (with write keys a browser page is a legitimate client:
analytics.js sends from the site's origin with its key):

- ``Origin``, when present, must be the collector's own (``http://`` + a loopback host + its
  port). Programs (our client, curl, server SDKs) send no ``Origin``; browsers always do on a
  cross-origin POST. Refused: 403 ``forbidden_origin``.
- ``Host`` must name a loopback address (``127.0.0.1``, ``[::1]``, ``localhost``), as it does
  for any local program; a rebinding page sends its own domain. Refused: 403 ``forbidden_host``.
"""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import urlsplit

from analytics.collector._auth import host_of, is_loopback
from analytics.collector._validate import RequestError

__all__ = ["LocalOnly"]


class LocalOnly:
    """The check for an open collector; ``port`` is set once the socket is bound."""

    def __init__(self, port: int = 0) -> None:
        self.port = port

    def check(self, headers: Mapping[str, str]) -> None:
        """Raise a 403 :class:`RequestError` for a foreign ``Host`` or ``Origin``."""
        host = headers.get("Host")
        if host is None or not is_loopback(host_of(host)):
            raise RequestError(
                403,
                "forbidden_host",
                "without a write key the collector answers only requests addressed to a "
                "loopback host (127.0.0.1, [::1], localhost)",
            )
        origin = headers.get("Origin")
        if origin is not None and not self._own(origin):
            raise RequestError(
                403,
                "forbidden_origin",
                "without a write key the collector refuses requests from web pages of other "
                "origins; start it with --write-key to accept browser clients",
            )

    def _own(self, origin: str) -> bool:
        try:
            parts = urlsplit(origin.strip())
            port = parts.port
        except ValueError:
            return False
        return (
            parts.scheme == "http"
            and parts.hostname is not None
            and is_loopback(parts.hostname)
            and port == self.port
        )
