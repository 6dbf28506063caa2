"""Client configuration: one frozen value, built from the seed's and Segment's option names.

The seed (analytics-python 0.x) and Segment's analytics-python 2.x name some options
differently; both spellings are accepted and mean the same thing:

| seed                      | Segment 2.x                        | meaning, default                          |
|---------------------------|------------------------------------|-------------------------------------------|
| ``flush_at``              | ``upload_size``                    | send when this many are queued, 20        |
| ``flush_after``           | ``upload_interval``/``flush_interval`` | send after this long (s or timedelta), 10 s |
| ``async_`` (``async``)    | ``sync_mode`` (inverted)           | send on a background thread, True         |
| ``log_level``             | ``debug=True`` (DEBUG)             | level of the ``analytics`` logger, INFO   |
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from analytics._batch import MAX_BATCH_COUNT
from analytics._exceptions import ConfigError

__all__ = ["DEFAULT_HOST", "Config", "resolve_aliases"]

DEFAULT_HOST = "https://api.segment.io"
DEFAULT_FLUSH_AT = 20
DEFAULT_FLUSH_AFTER = 10.0
DEFAULT_MAX_QUEUE_SIZE = 100_000
DEFAULT_TIMEOUT = 15.0
DEFAULT_MAX_RETRIES = 10
DEFAULT_EXIT_TIMEOUT = 5.0
DEFAULT_FLUSH_TIMEOUT = 30.0
DEFAULT_SPOOL_MAX_BYTES = 256 * 2**20
DEFAULT_SPOOL_INTERVAL = 1.0
#: Segment 2.4's defaults: give a batch up after 12 h of failures, or 30 min of rate limiting.
DEFAULT_MAX_TOTAL_BACKOFF = 43_200.0
DEFAULT_MAX_RATE_LIMIT = 1_800.0


@dataclass(frozen=True, slots=True, kw_only=True)
class Config:
    """The validated settings of one `Client` (see the README for each option)."""

    write_key: str
    host: str = DEFAULT_HOST
    flush_at: int = DEFAULT_FLUSH_AT
    flush_after: float = DEFAULT_FLUSH_AFTER
    max_queue_size: int = DEFAULT_MAX_QUEUE_SIZE
    sync_mode: bool = False
    send: bool = True
    gzip: bool = False
    timeout: float = DEFAULT_TIMEOUT
    max_retries: int = DEFAULT_MAX_RETRIES
    proxies: str | Mapping[str, str] | None = None
    log: bool = True
    log_level: int = logging.INFO
    flush_at_exit: bool = True
    exit_timeout: float = DEFAULT_EXIT_TIMEOUT
    flush_timeout: float = DEFAULT_FLUSH_TIMEOUT
    spool: str | os.PathLike[str] | None = None
    spool_max_bytes: int = DEFAULT_SPOOL_MAX_BYTES
    spool_interval: float = DEFAULT_SPOOL_INTERVAL
    spool_fsync: bool = False
    max_total_backoff_duration: float = DEFAULT_MAX_TOTAL_BACKOFF
    max_rate_limit_duration: float = DEFAULT_MAX_RATE_LIMIT

    def __post_init__(self) -> None:
        """Check every value and combination; raise `ConfigError` naming the option."""
        if not isinstance(self.write_key, str) or (self.send and not self.write_key):
            raise ConfigError("write_key must be a non-empty string")
        if ":" in self.write_key:
            # Basic auth sends "key:": a collector reads the user name up to the first ":",
            # so such a key could never be authenticated (analytics serve refuses it too).
            raise ConfigError("write_key must not contain ':' (Basic auth cuts the key there)")
        if not isinstance(self.host, str) or not self.host.startswith(("http://", "https://")):
            raise ConfigError(f"host must be an http:// or https:// URL, not {self.host!r}")
        for name in ("sync_mode", "send", "gzip", "log", "flush_at_exit", "spool_fsync"):
            value = getattr(self, name)
            if not isinstance(value, bool):
                raise ConfigError(f"{name} must be True or False, not {value!r}")
        _check_int("log_level", self.log_level, 0, None)
        _check_proxies(self.proxies)
        _check_int("flush_at", self.flush_at, 1, MAX_BATCH_COUNT)
        _check_int("max_queue_size", self.max_queue_size, 1, None)
        _check_int("max_retries", self.max_retries, 0, None)
        if self.flush_at > self.max_queue_size:
            raise ConfigError(
                f"flush_at ({self.flush_at}) must not exceed max_queue_size ({self.max_queue_size})"
            )
        _check_int("spool_max_bytes", self.spool_max_bytes, 1, None)
        if self.spool is not None and not isinstance(self.spool, str | os.PathLike):
            raise ConfigError(f"spool must be a file path, not {type(self.spool).__name__}")
        for name in ("max_total_backoff_duration", "max_rate_limit_duration"):
            value = getattr(self, name)
            if (
                isinstance(value, bool)
                or not isinstance(value, int | float)
                or not 0 <= value < math.inf
            ):
                raise ConfigError(f"{name} must be a non-negative number of seconds, not {value!r}")
        for name in ("flush_after", "timeout", "exit_timeout", "flush_timeout", "spool_interval"):
            value = getattr(self, name)
            if (
                isinstance(value, bool)
                or not isinstance(value, int | float)
                or not 0 < value < math.inf
            ):
                raise ConfigError(
                    f"{name} must be a positive, finite number of seconds, not {value!r}"
                )


def _check_proxies(proxies: object) -> None:
    """A proxy URL, or a requests-style mapping of scheme to proxy URL (all strings)."""
    if proxies is None or isinstance(proxies, str):
        return
    if not isinstance(proxies, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in proxies.items()
    ):
        raise ConfigError(
            "proxies must be a proxy URL or a mapping of scheme to proxy URL "
            f'(e.g. {{"https": "http://proxy:3128"}}), not {proxies!r}'
        )


def _check_int(name: str, value: object, low: int, high: int | None) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{name} must be an integer, not {type(value).__name__}")
    if value < low or (high is not None and value > high):
        bound = f"between {low} and {high}" if high is not None else f"at least {low}"
        raise ConfigError(f"{name} must be {bound}, not {value}")


def _check_bool(name: str, value: object) -> None:
    if not isinstance(value, bool):
        raise ConfigError(f"{name} must be True or False, not {value!r}")


def seconds(name: str, value: object) -> float:
    """A duration given as seconds (int or float) or a `datetime.timedelta`."""
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    raise ConfigError(f"{name} must be a number of seconds or a timedelta, not {value!r}")


# Segment 2.x and seed spellings -> Config field names.
_ALIASES = {
    "upload_size": "flush_at",
    "upload_interval": "flush_after",
    "flush_interval": "flush_after",
}


def resolve_aliases(options: dict[str, Any]) -> dict[str, Any]:
    """Map alias option names onto Config fields; refuse conflicting or unknown names."""
    out: dict[str, Any] = {}
    for name, given in options.items():
        if given is None:
            continue
        value = given
        if name in ("async", "async_"):
            _check_bool(name, given)
            field, value = "sync_mode", not given
        elif name == "debug":
            _check_bool(name, given)
            if not given:
                continue
            field, value = "log_level", logging.DEBUG
        else:
            field = _ALIASES.get(name, name)
        if field in out and out[field] != value:
            raise ConfigError(f"{name} conflicts with another option that sets {field}")
        out[field] = value
    unknown = set(out) - set(Config.__dataclass_fields__)
    if unknown:
        raise ConfigError(f"unknown option(s): {', '.join(sorted(unknown))}")
    if "flush_after" in out:
        out["flush_after"] = seconds("flush_after", out["flush_after"])
    return out
