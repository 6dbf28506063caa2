"""The exceptions of `analytics`.

The tree::

    AnalyticsError
    ├── ConfigError(ValueError)          a bad option given to init() or Client()
    ├── InvalidEventError(ValueError)    a bad argument given to track(), identify() ...
    │   └── MessageTooLargeError         the encoded message is over the size limit
    ├── UnserializableError(TypeError)   a value that cannot be encoded to JSON
    └── DeliveryError                    reported only, never raised: passed to on_failure()

Only programmer errors raise, at the call that made them; delivery problems are counted and
reported through callbacks, never raised into the application.
"""

from __future__ import annotations

__all__ = [
    "AnalyticsError",
    "ConfigError",
    "DeliveryError",
    "InvalidEventError",
    "MessageTooLargeError",
    "UnserializableError",
]


class AnalyticsError(Exception):
    """The root of every exception this package defines."""


class ConfigError(AnalyticsError, ValueError):
    """An option given to `init()` or `Client()` is invalid; the message names it."""


class InvalidEventError(AnalyticsError, ValueError):
    """An argument of a call such as `track()` is invalid; the message names it."""


class MessageTooLargeError(InvalidEventError):
    """The message, encoded as JSON, is larger than the 32,000-byte limit of the API."""


class UnserializableError(AnalyticsError, TypeError):
    """A value in the message cannot be encoded as JSON; the message names the argument."""


class DeliveryError(AnalyticsError):
    """Why some messages were not delivered. Reported through callbacks, never raised.

    Attributes:
        reason: a short stable code: ``queue_full``, ``shut_down``, ``http_error``,
            ``retries_exhausted``, ``shutdown_timeout``, ``encode_error`` ...
        status: the HTTP status of the last attempt, when there was a response.
    """

    def __init__(self, reason: str, detail: str = "", status: int | None = None) -> None:
        """Create the error from its reason code, a human-readable detail and a status."""
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail
        self.status = status


for _cls in (
    AnalyticsError,
    ConfigError,
    DeliveryError,
    InvalidEventError,
    MessageTooLargeError,
    UnserializableError,
):
    _cls.__module__ = "analytics"
