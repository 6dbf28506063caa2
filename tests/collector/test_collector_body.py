"""Bounded body decoding and write-key parsing (no server)."""

from __future__ import annotations

import asyncio
import base64
import gzip
import zlib

import pytest

from analytics.collector._auth import KeyPolicy, basic_auth_key, check_bind, is_loopback
from analytics.collector._body import Inflater, encoding_of, read_body
from analytics.collector._messages import RequestError

CAP = 10_000


def gzip_of_zeros(size: int) -> bytes:
    """gzip of ``size`` zero bytes, built in chunks so the test never holds ``size`` bytes."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    chunk = bytes(1 << 20)
    parts = [compressor.compress(chunk) for _ in range(size >> 20)]
    return b"".join(parts) + compressor.flush()


def inflate(encoding: str, data: bytes, cap: int = CAP, step: int = 1000) -> bytes:
    inflater = Inflater(encoding, cap)
    for start in range(0, len(data), step):
        inflater.feed(data[start : start + step])
    return inflater.finish()


@pytest.mark.parametrize(
    ("encoding", "pack"),
    [
        ("gzip", gzip.compress),
        ("deflate", zlib.compress),
        ("deflate", lambda d: zlib.compress(d, wbits=-zlib.MAX_WBITS)),
    ],
)
def test_inflater_decodes_in_pieces(encoding: str, pack: object) -> None:
    payload = b'{"batch": []}' * 500
    assert callable(pack)
    assert inflate(encoding, pack(payload)) == payload


def test_inflater_decodes_concatenated_gzip_members() -> None:
    assert inflate("gzip", gzip.compress(b"abc") + gzip.compress(b"def")) == b"abcdef"


def test_gzip_bomb_is_refused_without_inflating_past_the_cap() -> None:
    bomb = gzip_of_zeros(64 << 20)  # 64 MiB of zeros in about 64 KB
    assert len(bomb) < 100_000
    inflater = Inflater("gzip", CAP)

    def feed_all() -> None:
        for start in range(0, len(bomb), 65536):
            inflater.feed(bomb[start : start + 65536])

    with pytest.raises(RequestError) as info:
        feed_all()
    assert (info.value.status, info.value.code) == (400, "payload_too_large")
    assert inflater.size <= CAP + 1


@pytest.mark.parametrize(
    ("encoding", "data", "code"),
    [
        ("gzip", b"not gzip at all", "invalid_encoding"),
        ("gzip", gzip.compress(b"x" * 1000)[:-12], "invalid_encoding"),
        ("deflate", zlib.compress(b"abc") + b"junk", "invalid_encoding"),
    ],
)
def test_broken_streams_are_refused(encoding: str, data: bytes, code: str) -> None:
    with pytest.raises(RequestError) as info:
        inflate(encoding, data)
    assert (info.value.status, info.value.code) == (400, code)


def test_encodings() -> None:
    assert encoding_of(None) is None
    assert encoding_of(" GZIP ") == "gzip"
    assert encoding_of("identity") is None
    with pytest.raises(RequestError) as info:
        encoding_of("br")
    assert info.value.status == 415


class Chunks:
    def __init__(self, *chunks: bytes) -> None:
        self.chunks = list(chunks)

    async def readany(self) -> bytes:
        return self.chunks.pop(0) if self.chunks else b""


def read(stream: Chunks, *, length: int | None = None, cap: int = CAP) -> bytes:
    return asyncio.run(
        read_body(stream, content_length=length, encoding=None, cap=cap, wire_cap=cap, timeout=5.0)
    )


def test_read_body_enforces_declared_and_actual_sizes() -> None:
    assert read(Chunks(b"ab", b"cd")) == b"abcd"
    with pytest.raises(RequestError):
        read(Chunks(b"x"), length=CAP + 1)
    with pytest.raises(RequestError) as info:
        read(Chunks(b"x" * CAP, b"y"))  # chunked upload with no length
    assert info.value.code == "payload_too_large"


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


@pytest.mark.parametrize(
    ("header", "key"),
    [
        (None, None),
        ("", None),
        (f"Basic {b64('abc123:')}", "abc123"),
        (f"Basic {b64('abc123')}", "abc123"),
        (f"basic {b64('abc123:ignored-password')}", "abc123"),
        (f"Basic {b64(':')}", None),
        ("Bearer some.jwt.token", None),
    ],
)
def test_basic_auth_key(header: str | None, key: str | None) -> None:
    assert basic_auth_key(header) == key


def test_malformed_basic_auth_is_401() -> None:
    with pytest.raises(RequestError) as info:
        basic_auth_key("Basic !!!not-base64")
    assert info.value.status == 401


def test_key_policy() -> None:
    assert KeyPolicy(None).allows("anything")
    assert not KeyPolicy(None).allows("")
    policy = KeyPolicy(["k1", "k2"])
    assert policy.allows("k2")
    assert not policy.allows("k3")
    with pytest.raises(RequestError) as missing:
        policy.require(None)
    assert missing.value.code == "missing_write_key"
    with pytest.raises(RequestError) as unknown:
        policy.require("k3")
    assert unknown.value.code == "unknown_write_key"
    with pytest.raises(TypeError):
        KeyPolicy("k1")
    with pytest.raises(ValueError, match="non-empty"):
        KeyPolicy([""])


def test_open_policy_only_binds_to_loopback() -> None:
    for host in ("127.0.0.1", "127.0.0.2", "::1", "localhost"):
        assert is_loopback(host)
        check_bind(host, KeyPolicy(None))
    for host in ("0.0.0.0", "192.168.1.10", "example.com", "::"):
        assert not is_loopback(host)
        with pytest.raises(ValueError, match="without a write key"):
            check_bind(host, KeyPolicy(None))
    check_bind("0.0.0.0", KeyPolicy(["k"]))
