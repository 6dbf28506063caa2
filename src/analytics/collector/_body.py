"""Reading a request body under a size cap, a time limit and an optional decompression.

The cap applies to the *decompressed* bytes, and decompression is incremental with
``max_length``, so a gzip bomb is refused after inflating at most ``cap + 1`` bytes. The raw
bytes on the wire are capped too (``wire_cap``), and a ``Content-Length`` above that is refused
before anything is read.
"""

from __future__ import annotations

import asyncio
import zlib
from typing import Protocol

from analytics.collector._validate import RequestError

__all__ = ["Inflater", "encoding_of", "read_body"]

_CHUNK = 64 * 1024
_ENCODINGS = {"": None, "identity": None, "gzip": "gzip", "x-gzip": "gzip", "deflate": "deflate"}


class _Stream(Protocol):
    async def readany(self) -> bytes: ...


def _too_large(cap: int) -> RequestError:
    return RequestError(
        400, "payload_too_large", f"body is over the limit of {cap} bytes (decompressed)"
    )


def encoding_of(header: str | None) -> str | None:
    """``'gzip'``, ``'deflate'`` or ``None`` for a Content-Encoding header value.

    Raises:
        RequestError: 415 ``unsupported_encoding`` for anything else.
    """
    value = (header or "").strip().lower()
    if value not in _ENCODINGS:
        raise RequestError(
            415, "unsupported_encoding", "Content-Encoding must be gzip, deflate or identity"
        )
    return _ENCODINGS[value]


def _zlib_header(data: bytes) -> bool:
    """True when ``data`` starts with a zlib (RFC 1950) header rather than raw deflate."""
    return len(data) >= 2 and data[0] & 0x0F == 8 and ((data[0] << 8) | data[1]) % 31 == 0


class Inflater:
    """Incremental gzip/deflate decoder that refuses to produce more than ``cap`` bytes.

    ``deflate`` accepts the zlib format (RFC 1950, what HTTP means) and, as many servers do,
    raw deflate. Concatenated gzip members are decoded as one stream, as ``gzip`` does.
    """

    def __init__(self, encoding: str, cap: int) -> None:
        self._encoding = encoding
        self._cap = cap
        self._size = 0
        self._parts: list[bytes] = []
        self._started = False
        self._decoder = self._new_decoder(raw=False)

    def _new_decoder(self, *, raw: bool) -> zlib._Decompress:
        if self._encoding == "gzip":
            return zlib.decompressobj(16 + zlib.MAX_WBITS)
        return zlib.decompressobj(-zlib.MAX_WBITS if raw else zlib.MAX_WBITS)

    @property
    def size(self) -> int:
        """Decoded bytes produced so far (never more than ``cap + 1``)."""
        return self._size

    def feed(self, data: bytes) -> None:
        """Decode ``data``; raise :class:`RequestError` when invalid or over the cap."""
        if not self._started and data:
            self._started = True
            if self._encoding == "deflate" and not _zlib_header(data):
                self._decoder = self._new_decoder(raw=True)
        while data:
            try:
                out = self._decoder.decompress(data, self._cap - self._size + 1)
            except zlib.error as exc:
                raise RequestError(
                    400, "invalid_encoding", f"body is not valid {self._encoding}: {exc}"
                ) from None
            self._size += len(out)
            if self._size > self._cap:
                raise _too_large(self._cap)
            self._parts.append(out)
            data = self._decoder.unconsumed_tail or self._next_member()

    def _next_member(self) -> bytes:
        """Bytes after the end of a gzip member start the next member."""
        if self._decoder.eof and self._decoder.unused_data:
            rest = self._decoder.unused_data
            if self._encoding != "gzip":
                raise RequestError(400, "invalid_encoding", "data after the end of the stream")
            self._decoder = self._new_decoder(raw=False)
            return rest
        return b""

    def finish(self) -> bytes:
        """The decoded body; raise :class:`RequestError` when the stream is truncated."""
        if not self._decoder.eof:
            raise RequestError(400, "invalid_encoding", f"{self._encoding} body is truncated")
        return b"".join(self._parts)


async def _read_raw(stream: _Stream, wire_cap: int, inflater: Inflater | None) -> bytes:
    parts: list[bytes] = []
    size = 0
    while chunk := await stream.readany():
        size += len(chunk)
        if size > wire_cap:
            raise _too_large(wire_cap)
        if inflater is not None:
            inflater.feed(chunk)
        else:
            parts.append(chunk)
    return inflater.finish() if inflater is not None else b"".join(parts)


async def read_body(
    stream: _Stream,
    *,
    content_length: int | None,
    encoding: str | None,
    cap: int,
    wire_cap: int,
    timeout: float,
) -> bytes:
    """Read and decode a whole body within ``timeout`` seconds.

    Raises:
        RequestError: 400 over a limit or badly encoded, 408 when the client is too slow.
        ConnectionError / aiohttp payload errors: the client went away mid-body.
    """
    limit = wire_cap if encoding is not None else cap
    if content_length is not None and content_length > limit:
        raise _too_large(cap)
    inflater = Inflater(encoding, cap) if encoding is not None else None
    try:
        return await asyncio.wait_for(_read_raw(stream, limit, inflater), timeout)
    except TimeoutError:
        raise RequestError(
            408, "request_timeout", f"the body was not received within {timeout:g} s"
        ) from None
