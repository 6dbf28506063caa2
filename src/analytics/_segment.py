"""Segment analytics-python 2.x compatibility of `Client`: its read-only attributes and options.

Code written for Segment's client reads a client's configuration (``client.write_key`` in
multi-tenant code, ``analytics.default_client.queue.empty()`` in scripts). `SegmentAttributes`
gives `Client` those attributes, read-only, from its `Config`. `check_segment_options` takes the
Segment 2.4 options that have no field of their own here: ``log_handler`` (added to the
``analytics`` logger, as Segment adds it to its own) and the ``oauth_*`` family (refused: see the
message).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from analytics._exceptions import ConfigError

if TYPE_CHECKING:
    from analytics._config import Config
    from analytics._reporting import ErrorCallback, Reporter
    from analytics._sender import Sender

__all__ = ["ConsumerView", "QueueView", "SegmentAttributes", "check_segment_options"]

#: Segment's OAuth options that turn OAuth on; the other two (server, scope) have defaults.
OAUTH_KEYS = ("oauth_client_id", "oauth_client_key", "oauth_key_id")


class QueueView:
    """What Segment code reads of ``client.queue``: ``qsize()``, ``empty()``, ``full()``,
    ``maxsize``. Counts every message not yet settled (waiting, in flight, or spooled)."""

    def __init__(self, sender: Sender, maxsize: int) -> None:
        """A live view of ``sender``'s buffer."""
        self._sender = sender
        self.maxsize = maxsize

    def qsize(self) -> int:
        """Messages not yet delivered or failed."""
        return self._sender.pending()

    def empty(self) -> bool:
        """True when nothing is waiting."""
        return self._sender.pending() == 0

    def full(self) -> bool:
        """True when a new message would be dropped."""
        return self._sender.buffer.full()


class ConsumerView:
    """Segment's ``client.consumers[0]``: the sender thread's settings and liveness."""

    def __init__(self, sender: Sender, config: Config) -> None:
        """A live view of the sender thread of one client."""
        self._sender = sender
        self.timeout = config.timeout
        self.retries = config.max_retries
        self.upload_size = config.flush_at
        self.upload_interval = config.flush_after

    def is_alive(self) -> bool:
        """True while the sender thread runs."""
        return self._sender.alive()


class SegmentAttributes:
    """Segment 2.x's client attributes, read-only views of the `Config` (a mixin of `Client`)."""

    config: Config
    _sender: Sender
    _reports: Reporter

    @property
    def write_key(self) -> str:
        """The write key."""
        return self.config.write_key

    @property
    def host(self) -> str:
        """The collector's base URL."""
        return self.config.host

    @property
    def debug(self) -> bool:
        """True when this client logs at DEBUG."""
        return self.config.log_level <= logging.DEBUG

    @property
    def send(self) -> bool:
        """False for a client that validates and encodes but sends nothing."""
        return self.config.send

    @property
    def sync_mode(self) -> bool:
        """True when calls deliver on the calling thread."""
        return self.config.sync_mode

    @property
    def gzip(self) -> bool:
        """True when request bodies are gzipped."""
        return self.config.gzip

    @property
    def timeout(self) -> float:
        """The connect and read timeout of each request, in seconds."""
        return self.config.timeout

    @property
    def proxies(self) -> Any:
        """The proxy URL or mapping, if any."""
        return self.config.proxies

    @property
    def max_queue_size(self) -> int:
        """Messages held before new ones are dropped."""
        return self.config.max_queue_size

    @property
    def max_retries(self) -> int:
        """Retries of a batch after its first attempt."""
        return self.config.max_retries

    @property
    def upload_size(self) -> int:
        """Segment's name for ``flush_at``."""
        return self.config.flush_at

    @property
    def upload_interval(self) -> float:
        """Segment's name for ``flush_after``, in seconds."""
        return self.config.flush_after

    @property
    def max_total_backoff_duration(self) -> float:
        """Seconds after which a batch that keeps failing is given up."""
        return self.config.max_total_backoff_duration

    @property
    def max_rate_limit_duration(self) -> float:
        """Seconds a batch may spend rate-limited (429 with Retry-After) before it is given up."""
        return self.config.max_rate_limit_duration

    @property
    def on_error(self) -> ErrorCallback | None:
        """The first ``on_error`` callback, if any."""
        return self._reports.error[0] if self._reports.error else None

    @property
    def log(self) -> logging.Logger:
        """The ``analytics`` logger (Segment's clients have ``log``, the ``segment`` logger)."""
        return logging.getLogger("analytics")

    @property
    def consumers(self) -> list[ConsumerView] | None:
        """Segment's consumer threads: one view of the sender thread; None in sync mode."""
        if self.config.sync_mode:
            return None
        return [ConsumerView(self._sender, self.config)]

    @property
    def queue(self) -> QueueView:
        """A live view with ``qsize()``, ``empty()``, ``full()`` and ``maxsize``."""
        return QueueView(self._sender, self.config.max_queue_size)


def check_segment_options(log_handler: logging.Handler | None, oauth: dict[str, object]) -> None:
    """Refuse OAuth; add ``log_handler`` to the ``analytics`` logger (once)."""
    given = [name for name in OAUTH_KEYS if oauth.get(name) is not None]
    if given:
        raise ConfigError(
            f"{', '.join(given)}: OAuth is not supported; authenticate with the write key "
            "(Basic auth), which Segment, RudderStack and the analytics collector all accept"
        )
    if log_handler is None:
        return
    if not isinstance(log_handler, logging.Handler):
        raise ConfigError(f"log_handler must be a logging.Handler, not {log_handler!r}")
    target = logging.getLogger("analytics")
    if log_handler not in target.handlers:
        target.addHandler(log_handler)  # asked for by the application, as Segment does
