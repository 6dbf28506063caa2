"""What the collector's process logs about bad requests: one redacted line each, never a key.

Why: aiohttp logs a malformed request (a stray ``\\r`` or control character in a header, an
over-long request line) with a ~20-line traceback at ERROR, and the traceback quotes the
offending bytes: the ``Authorization`` header (a base64 write key) or a URL's
``?writeKey=``. asyncio logs a traceback for every failed ``accept()`` when the process is out
of file descriptors (20 MB of log in 17 s, measured).

:func:`install` puts :class:`OneLine` on aiohttp's server loggers (credentials redacted, the
traceback cut to its last line) and :class:`AcceptErrors` on asyncio's logger (at most one
"out of system resource" line per :data:`ACCEPT_LOG_INTERVAL`, with a count of the others).
Installing is idempotent and touches only those loggers' filters.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable

__all__ = ["ACCEPT_LOG_INTERVAL", "AcceptErrors", "OneLine", "install", "redact"]

#: Seconds between two "socket.accept() out of system resource" lines.
ACCEPT_LOG_INTERVAL = 10.0
#: aiohttp's loggers that can see a request (``aiohttp.access`` is off in the collector).
SERVER_LOGGERS = ("aiohttp.server", "aiohttp.web", "aiohttp.access", "aiohttp.internal")
_ACCEPT_ERRORS = (
    "socket.accept() out of system resource",
    # The retry asyncio scheduled after a failed accept(), run after the socket was closed.
    "Exception in callback BaseSelectorEventLoop._start_serving",
)

_SECRETS = (
    # Authorization: <scheme> <credentials>, or the credentials alone after a scheme name.
    re.compile(r"(?i)(authorization['\"]?\s*[:=,]\s*['\"]?)[^\r\n'\",]*"),
    re.compile(r"(?i)\b(basic|bearer|digest)(\s+)\S+"),
    # writeKey in a query string, a form or JSON: writeKey=..., "writeKey": "...".
    re.compile(r"(?i)(write_?key['\"]?\s*[:=]\s*['\"]?)[^&\s'\",}]*"),
)


def redact(text: str) -> str:
    """``text`` with write keys and ``Authorization`` credentials replaced by ``***``."""
    text = _SECRETS[0].sub(r"\1***", text)
    text = _SECRETS[1].sub(r"\1\2***", text)
    return _SECRETS[2].sub(r"\1***", text)


def _one_line(record: logging.LogRecord) -> str:
    text = record.getMessage()
    if record.exc_info and record.exc_info[1] is not None:
        exc = record.exc_info[1]
        text = f"{text}: {type(exc).__name__}: {exc}"
    return " ".join(redact(text).split())[:500]


class OneLine(logging.Filter):
    """Rewrite a record as one redacted line, its traceback reduced to the exception's text."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = _one_line(record)
        record.args = None
        record.exc_info = None
        record.exc_text = None
        record.stack_info = None
        return True


class AcceptErrors(logging.Filter):
    """Let at most one failed-``accept()`` line through per ``interval`` seconds, without its
    traceback; the next one says how many were left out."""

    def __init__(
        self, interval: float = ACCEPT_LOG_INTERVAL, clock: Callable[[], float] = time.monotonic
    ) -> None:
        super().__init__()
        self._interval = interval
        self._clock = clock
        self._next = float("-inf")
        self._skipped = 0

    def filter(self, record: logging.LogRecord) -> bool:
        if not str(record.msg).startswith(_ACCEPT_ERRORS):
            return True
        now = self._clock()
        if now < self._next:
            self._skipped += 1
            return False
        self._next = now + self._interval
        skipped, self._skipped = self._skipped, 0
        more = f" ({skipped} more in the last {self._interval:g} s)" if skipped else ""
        record.msg = _one_line(record) + more + "; new connections wait until one closes"
        record.args = None
        record.exc_info = None
        record.exc_text = None
        return True


def _has(logger: logging.Logger, kind: type[logging.Filter]) -> bool:
    return any(isinstance(f, kind) for f in logger.filters)


def install() -> None:
    """Put the filters on aiohttp's server loggers and asyncio's logger (idempotent)."""
    for name in SERVER_LOGGERS:
        logger = logging.getLogger(name)
        if not _has(logger, OneLine):
            logger.addFilter(OneLine())
    asyncio_logger = logging.getLogger("asyncio")
    if not _has(asyncio_logger, AcceptErrors):
        asyncio_logger.addFilter(AcceptErrors())
