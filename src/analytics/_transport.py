"""Transports: how a batch body reaches a collector. One POST, no retries inside.

`Transport` is the protocol the sender uses (``Client(transport=...)`` takes any object that
has it); `HTTPTransport` is the urllib3 one, made by default. `analytics.testing.MemoryTransport`
is a scriptable one for tests. urllib3 is imported when the first HTTP transport is made, so
``import analytics`` stays fast; its pool keeps one connection alive to the collector.
"""

from __future__ import annotations

import base64
import time
import zlib
from collections.abc import Mapping
from typing import Any, Protocol

from analytics._retry import Outcome, parse_retry_after
from analytics._version import __version__

__all__ = [
    "GZIP_LEVEL",
    "AsyncTransport",
    "HTTPTransport",
    "Transport",
    "batch_url",
    "pick_proxy",
    "request_headers",
]

#: zlib level for gzip bodies: 1 is several times faster than 6 and JSON still shrinks ~6x.
GZIP_LEVEL = 1
USER_AGENT = f"analytics-python/{__version__}"
#: A 2xx body is read up to this size: it may list the messages the collector refused.
MAX_ANSWER_BYTES = 4 * 2**20


class Transport(Protocol):
    """Sends one request body; must never raise for network or HTTP problems."""

    def send(self, body: bytes, retry_count: int, timeout: float | None = None) -> Outcome:
        """POST ``body`` (a ``{"batch": [...]}`` JSON object) and say what happened.

        Args:
            body: the request body, uncompressed.
            retry_count: attempts this batch had before (sent as ``X-Retry-Count``).
            timeout: at most this many seconds (a shutdown deadline), or None.
        """
        ...

    def close(self) -> None:
        """Release connections; called once, at shutdown."""
        ...


class AsyncTransport(Protocol):
    """`Transport` for `AsyncClient`: the same calls, as coroutines on the client's loop."""

    async def send(self, body: bytes, retry_count: int, timeout: float | None = None) -> Outcome:
        """POST ``body``; never raises for network or HTTP problems (see `Transport.send`)."""
        ...

    async def close(self) -> None:
        """Release connections; awaited once, at shutdown."""
        ...


class HTTPTransport:
    """POSTs batch bodies to ``{host}/v1/batch`` with Basic auth; thread-compatible, not shared."""

    def __init__(
        self,
        host: str,
        write_key: str,
        *,
        timeout: float,
        gzip: bool,
        proxies: str | Mapping[str, str] | None = None,
    ) -> None:
        """Prepare the connection pool and the constant headers (nothing is sent yet)."""
        import urllib3  # noqa: PLC0415

        self._urllib3: Any = urllib3
        self.url = batch_url(host)
        self.timeout = timeout
        self.gzip = gzip
        self._headers = request_headers(write_key, gzip=gzip)
        proxy = pick_proxy(proxies, self.url)
        if proxy:
            self._pool: Any = urllib3.ProxyManager(proxy, num_pools=1, maxsize=1, retries=False)
        else:
            self._pool = urllib3.PoolManager(num_pools=1, maxsize=1, retries=False)

    def send(self, body: bytes, retry_count: int, timeout: float | None = None) -> Outcome:
        """Send one body; return the outcome. Never raises for network or HTTP problems."""
        headers = self._headers
        if retry_count:
            headers = {**headers, "X-Retry-Count": str(retry_count)}
        if self.gzip:
            compressor = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, 31)  # 31: gzip framing
            body = compressor.compress(body) + compressor.flush()
        limit = self.timeout if timeout is None else max(0.001, min(self.timeout, timeout))
        urllib3 = self._urllib3
        try:
            resp = self._pool.request(
                "POST",
                self.url,
                body=body,
                headers=headers,
                timeout=urllib3.Timeout(connect=limit, read=limit),
                retries=False,
                redirect=False,
            )
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            return Outcome(None, error=f"{type(exc).__name__}: {exc}")
        retry_after = None
        if resp.status in (429, 503) or resp.status >= 500:
            retry_after = parse_retry_after(resp.headers.get("Retry-After"), time.time())
        keep = MAX_ANSWER_BYTES if 200 <= resp.status < 300 else 2048
        return Outcome(resp.status, retry_after=retry_after, body=resp.data[:keep])

    def close(self) -> None:
        """Close the pooled connections."""
        self._pool.clear()


def batch_url(host: str) -> str:
    """Where batches go: ``{host}/v1/batch``."""
    return host.rstrip("/") + "/v1/batch"


def request_headers(write_key: str, *, gzip: bool) -> dict[str, str]:
    """The constant headers of every batch request: JSON, Basic auth (key and a colon)."""
    token = base64.b64encode(f"{write_key}:".encode()).decode()
    headers = {
        "Content-Type": "application/json",
        "Authorization": f"Basic {token}",
        "User-Agent": USER_AGENT,
    }
    if gzip:
        headers["Content-Encoding"] = "gzip"
    return headers


def pick_proxy(proxies: str | Mapping[str, str] | None, url: str) -> str | None:
    """A proxy URL from a string, or from a requests-style ``{"https": ..., "http": ...}`` dict."""
    if proxies is None or isinstance(proxies, str):
        return proxies
    scheme = url.split("://", 1)[0]
    return proxies.get(scheme) or proxies.get("all")
