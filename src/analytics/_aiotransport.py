"""The asyncio transport of `AsyncClient`: one POST of a prepared batch body with aiohttp.

aiohttp is already the collector's dependency (the ``collector``/``async`` extras), has a C HTTP
parser and keep-alive pooling. This module (and aiohttp, ~0.1 s to import) is loaded when an
`AsyncClient` is made, never on its loop's first batch, and never by ``import analytics``. The request is the same as `HTTPTransport`'s:
Basic auth, the body ``writeKey`` (in the body already), ``X-Retry-Count`` on retries, gzip level 1
(compressed on a worker thread: zlib on a 475 KB body would hold the loop for milliseconds).
"""

from __future__ import annotations

import asyncio
import time
import zlib
from typing import Any

import aiohttp

from analytics._retry import Outcome, parse_retry_after
from analytics._transport import GZIP_LEVEL, MAX_ANSWER_BYTES, batch_url, request_headers

__all__ = ["AioHTTPTransport"]


class AioHTTPTransport:
    """POSTs batch bodies to ``{host}/v1/batch`` from the event loop (one session, keep-alive)."""

    def __init__(
        self, host: str, write_key: str, *, timeout: float, gzip: bool, proxy: str | None
    ) -> None:
        """Prepare the headers; the session is made on the loop by the first `send`."""
        self.url = batch_url(host)
        self.timeout = timeout
        self.gzip = gzip
        self.proxy = proxy
        self._headers = request_headers(write_key, gzip=gzip)
        self._session: Any = None

    async def send(self, body: bytes, retry_count: int, timeout: float | None = None) -> Outcome:
        """Send one body; return the outcome. Never raises for network or HTTP problems."""
        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=1), auto_decompress=True
            )
        headers = self._headers
        if retry_count:
            headers = {**headers, "X-Retry-Count": str(retry_count)}
        if self.gzip:
            body = await asyncio.to_thread(_gzip, body)
        limit = self.timeout if timeout is None else max(0.001, min(self.timeout, timeout))
        try:
            async with self._session.post(
                self.url,
                data=body,
                headers=headers,
                timeout=aiohttp.ClientTimeout(total=limit),
                allow_redirects=False,
                proxy=self.proxy,
            ) as resp:
                status = resp.status
                keep = MAX_ANSWER_BYTES if 200 <= status < 300 else 2048
                data = await resp.content.read(keep)
                retry_after = None
                if status == 429 or status >= 500:
                    retry_after = parse_retry_after(resp.headers.get("Retry-After"), time.time())
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            return Outcome(None, error=f"{type(exc).__name__}: {exc}")
        return Outcome(status, retry_after=retry_after, body=data)

    async def close(self) -> None:
        """Close the session and its connections."""
        session, self._session = self._session, None
        if session is not None:
            await session.close()


def _gzip(body: bytes) -> bytes:
    compressor = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, 31)  # 31: gzip framing
    return compressor.compress(body) + compressor.flush()
