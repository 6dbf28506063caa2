"""Write-key handling (SPEC 2): where a key is read from and which keys are accepted.

Order of precedence for a request: the Basic auth user name (with or without the colon, a
password is ignored), then the body's top-level ``writeKey`` (also what OAuth ``Bearer``
clients send), then, only when the request carries neither, each message's own ``writeKey``.
A missing or unknown key is answered 401 with a JSON error (the RudderStack choice SPEC 2
recommends for a local collector). Key values are never logged.

With no configured keys the collector accepts any non-empty key, and it then only binds to a
loopback address (:func:`check_bind`).
"""

from __future__ import annotations

import binascii
import ipaddress
from base64 import b64decode
from collections.abc import Sequence

from analytics.collector._validate import RequestError

__all__ = ["KeyPolicy", "basic_auth_key", "check_bind", "host_of", "is_loopback"]


def basic_auth_key(header: str | None) -> str | None:
    """The write key of an ``Authorization: Basic ...`` header, or None for no/other auth.

    Raises:
        RequestError: 401 ``invalid_authorization`` for a malformed Basic header.
    """
    if not header:
        return None
    scheme, _, credentials = header.strip().partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = b64decode(credentials.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        raise RequestError(
            401, "invalid_authorization", "Authorization: Basic value is not base64 UTF-8"
        ) from None
    key = decoded.partition(":")[0]
    return key or None


class KeyPolicy:
    """The accepted write keys; ``None`` or empty means any non-empty key."""

    def __init__(self, write_keys: Sequence[str] | None) -> None:
        if isinstance(write_keys, str):
            raise TypeError("write_keys must be a sequence of keys, not a single string")
        keys = frozenset(write_keys or ())
        if any(not isinstance(key, str) or not key for key in keys):
            raise ValueError("write keys must be non-empty strings")
        if any(":" in key for key in keys):
            # Basic auth sends "user:password" and the key is the user name: the collector
            # would cut such a key at its first colon and refuse every client that uses it.
            raise ValueError(
                "a write key cannot contain ':' (it is sent as the Basic auth user name, "
                "which ends at the first colon)"
            )
        self._keys = keys

    @property
    def open(self) -> bool:
        """True when any key is accepted (no keys configured)."""
        return not self._keys

    def __len__(self) -> int:
        return len(self._keys)

    def allows(self, key: str) -> bool:
        """Whether ``key`` is accepted."""
        return bool(key) and (not self._keys or key in self._keys)

    def require(self, key: str | None) -> None:
        """Raise a 401 :class:`RequestError` unless ``key`` is present and accepted."""
        if key is None:
            raise RequestError(
                401,
                "missing_write_key",
                "no write key: use Basic auth (key as user name) or a body writeKey",
            )
        if not self.allows(key):
            raise RequestError(401, "unknown_write_key", "the write key is not accepted")


def host_of(host_header: str) -> str:
    """The host part of a ``Host`` header (``[::1]:8088`` -> ``::1``)."""
    value = host_header.strip()
    if value.startswith("["):
        return value[1:].partition("]")[0]
    if value.count(":") == 1:
        return value.partition(":")[0]
    return value


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback IP literals (127.0.0.0/8, ::1)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_bind(host: str, policy: KeyPolicy) -> None:
    """Refuse to listen on a non-loopback address without configured write keys.

    Raises:
        ValueError: naming the host and how to fix it.
    """
    if policy.open and not is_loopback(host):
        raise ValueError(
            f"refusing to listen on {host!r} without a write key: with no keys the collector "
            "accepts any key, which is only allowed on a loopback address (127.0.0.1). "
            "Give at least one write key (--write-key KEY) or bind to 127.0.0.1."
        )
