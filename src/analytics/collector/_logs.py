"""The log lines of ``analytics serve``: human-readable (default) or one JSON object per line.

``--log-format json`` writes, per record, ``{"time", "level", "logger", "message", "pid"}``
plus, on a request's line, ``route``, ``status``, ``duration_ms`` and ``messages`` (and
``exception`` with the traceback when there is one), for log shippers that parse JSON.

Secrets never reach a line in either format: every configured secret (write keys, the admin
token, the password of the ``--db`` URL) is replaced with ``***`` in the formatted text, any
URL with credentials loses its password (``postgresql://user@host/db``, as
:func:`._db.redact` shows it), and credentials recognised by their form (``Authorization``
values, ``writeKey=...``: :func:`._logfilter.redact`) are replaced too. The collector does not log them on purpose; this is the
guarantee that a later message, an exception text or a repr cannot leak one.

Worker processes (``--workers``) call :func:`configure` with the :func:`current` settings of
the process that started them, so every process writes the same format.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from datetime import datetime, timezone

import orjson

from analytics.collector._db import is_url, redact, scrub
from analytics.collector._logfilter import redact as redact_credentials

__all__ = [
    "FORMATS",
    "LOG_FORMAT",
    "JsonFormatter",
    "LogSettings",
    "TextFormatter",
    "configure",
    "current",
    "request_fields",
]

#: The human-readable lines; the pid tells the processes of ``--workers`` apart.
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s[%(process)d]: %(message)s"
FORMATS = ("text", "json")
#: The fields a request's record may carry (``extra=request_fields(...)``).
REQUEST_FIELDS = ("route", "status", "duration_ms", "messages")
#: A URL that carries credentials (``scheme://user:password@`` or a ``password=`` parameter).
_URL_WITH_SECRET = re.compile(
    r"[a-zA-Z][a-zA-Z0-9+.-]*://(?:[^\s/@'\"]*@|[^\s'\"]*password=)[^\s'\"]*"
)
_current: LogSettings | None = None


@dataclass(frozen=True)
class LogSettings:
    """What :func:`configure` was given; picklable, handed to worker processes."""

    level: int
    format: str = "text"
    secrets: tuple[str, ...] = ()  # write keys, the admin token
    db: str = ""  # the --db value: a PostgreSQL URL's password is removed too


def request_fields(
    route: str, status: int, duration_ms: float, messages: int | None
) -> dict[str, object]:
    """The ``extra`` of a request's log record."""
    return {
        "route": route,
        "status": status,
        "duration_ms": round(duration_ms, 3),
        "messages": messages,
    }


class _Redacting(logging.Formatter):
    """Removes the configured secrets and URL passwords from every formatted line."""

    def __init__(self, settings: LogSettings, fmt: str | None = None) -> None:
        super().__init__(fmt)
        # Longest first, so a secret that contains another is replaced whole.
        self._secrets = sorted({s for s in settings.secrets if s}, key=len, reverse=True)
        self._db = settings.db if is_url(settings.db) else ""

    def redact(self, text: str) -> str:
        """``text`` without any secret."""
        if self._db:
            text = scrub(text, self._db)
        for secret in self._secrets:
            text = text.replace(secret, "***")
        text = _URL_WITH_SECRET.sub(lambda match: redact(match.group()), text)
        # Keys nobody configured (an open collector takes any): by their form.
        return redact_credentials(text)

    def format(self, record: logging.LogRecord) -> str:
        return self.redact(super().format(record))


class TextFormatter(_Redacting):
    """The default lines: :data:`LOG_FORMAT`."""

    def __init__(self, settings: LogSettings) -> None:
        super().__init__(settings, LOG_FORMAT)


class JsonFormatter(_Redacting):
    """One JSON object per record (see the module docstring)."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, timezone.utc).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname,
            "logger": record.name,
            "message": self.redact(record.getMessage()),
            "pid": record.process,
        }
        for name in REQUEST_FIELDS:
            value = record.__dict__.get(name)
            if value is not None:
                line[name] = self.redact(value) if isinstance(value, str) else value
        if record.exc_info:
            line["exception"] = self.redact(self.formatException(record.exc_info))
        return orjson.dumps(line).decode()


def configure(settings: LogSettings) -> None:
    """Send the root logger's records to stderr in ``settings.format`` at ``settings.level``.

    Replaces the handlers the root logger had; the collector's logger gets the level too.
    """
    global _current
    if settings.format not in FORMATS:
        raise ValueError(f"the log format must be one of {FORMATS}, not {settings.format!r}")
    formatter = JsonFormatter(settings) if settings.format == "json" else TextFormatter(settings)
    handler = logging.StreamHandler()
    handler.setFormatter(formatter)
    root = logging.getLogger()
    for old in root.handlers[:]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(settings.level)
    logging.getLogger("analytics.collector").setLevel(settings.level)
    _current = settings


def current() -> LogSettings | None:
    """The settings of the last :func:`configure` in this process (None before any)."""
    return _current
