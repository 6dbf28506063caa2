"""What `Client` and `AsyncClient` share: the options, the six calls, counters and callbacks.

The calls validate, build and encode on the calling thread and hand the bytes to the client's
sender (DESIGN §3-§5), which delivers them from a buffer (memory, or a spool file). They never
wait on the network and never raise for delivery problems; only a programmer error (a bad
argument) raises, as a ValueError or TypeError subclass. Callbacks and the drop log are in
`._reporting`. The threaded lifecycle is `analytics._client.Client`, the asyncio one
`analytics._async.AsyncClient`: each makes its own sender with `_make_sender`.
"""

from __future__ import annotations

import atexit
import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from analytics._batch import MAX_BATCH_BYTES, envelope_size
from analytics._buffer import Buffer, MemoryBuffer
from analytics._calls import Calls, Id, Result, Timestamp
from analytics._clock import Clock, SystemClock
from analytics._config import DEFAULT_FLUSH_AT, Config, resolve_aliases
from analytics._core import Core
from analytics._exceptions import ConfigError
from analytics._log import ClientLog
from analytics._message import (
    load_encoder,
    reseed_ids,
)
from analytics._reporting import (
    ErrorCallback,
    FailureCallback,
    Message,
    Reporter,
    SuccessCallback,
)
from analytics._retry import RetryPolicy
from analytics._segment import SegmentAttributes, check_segment_options
from analytics._transport import AsyncTransport, Transport

if TYPE_CHECKING:
    from typing_extensions import TypedDict, Unpack

    #: The seed's ``async`` keyword (a Python keyword: passed as ``**{"async": False}``).
    AsyncOption = TypedDict("AsyncOption", {"async": bool}, total=False)

__all__ = ["AsyncOption", "BaseClient", "Id", "Result", "Stats", "Timestamp"]


@dataclass(frozen=True, slots=True)
class Stats:
    """A snapshot of a client's counters (since it started, or since a fork in a child)."""

    queued: int
    sent: int
    failed: int
    retried: int
    dropped: dict[str, int] = field(default_factory=dict)
    #: messages the spool could not take (kept in memory instead)
    unspooled: int = 0


#: The clients of this process that were not shut down: the exit hook drains each (so a
#: client dropped without shutdown still delivers at exit, as the README promises) and the
#: fork hook resets each. A client leaves the set at shutdown and may then be collected.
_live: set[BaseClient] = set()
_logger = logging.getLogger("analytics")


class BaseClient(Calls, SegmentAttributes):
    """The options, calls, counters and callbacks of a client (see `Client`, `AsyncClient`)."""

    _sender: Any  # the subclass's sender: a Core with put(), pending(), wait_for_room()

    def __init__(
        self,
        write_key: str | None = None,
        *,
        host: str | None = None,
        flush_at: int | None = None,
        flush_after: float | Any | None = None,
        max_queue_size: int | None = None,
        async_: bool | None = None,
        sync_mode: bool | None = None,
        send: bool | None = None,
        gzip: bool | None = None,
        timeout: float | None = None,
        max_retries: int | None = None,
        proxies: str | Mapping[str, str] | None = None,
        log: bool | None = None,
        log_level: int | None = None,
        debug: bool | None = None,
        upload_size: int | None = None,
        upload_interval: float | None = None,
        flush_interval: float | None = None,
        thread: int | None = None,
        flush_at_exit: bool | None = None,
        exit_timeout: float | None = None,
        flush_timeout: float | None = None,
        spool: str | os.PathLike[str] | None = None,
        spool_max_bytes: int | None = None,
        spool_interval: float | None = None,
        spool_fsync: bool | None = None,
        on_success: SuccessCallback | None = None,
        on_failure: FailureCallback | None = None,
        on_error: ErrorCallback | None = None,
        clock: Clock | None = None,
        transport: Transport | AsyncTransport | None = None,
        max_total_backoff_duration: float | None = None,
        max_rate_limit_duration: float | None = None,
        log_handler: logging.Handler | None = None,
        oauth_client_id: str | None = None,
        oauth_client_key: str | None = None,
        oauth_key_id: str | None = None,
        oauth_auth_server: str | None = None,
        oauth_scope: str | None = None,
        **options: Unpack[AsyncOption],
    ) -> None:
        """Validate the options (raising `ConfigError`); the thread starts on the first call."""
        extra = set(options) - {"async"}
        if extra:
            raise ConfigError(f"unknown option(s): {', '.join(sorted(extra))}")
        if thread is not None and (
            isinstance(thread, bool) or not isinstance(thread, int) or thread < 1
        ):
            raise ConfigError(f"thread must be a positive integer, not {thread!r}")
        oauth = {"oauth_client_id": oauth_client_id, "oauth_client_key": oauth_client_key}
        check_segment_options(log_handler, {**oauth, "oauth_key_id": oauth_key_id})
        given = {k: v for k, v in locals().items() if k in _OPTION_NAMES}
        given.update(options)
        resolved = resolve_aliases(given)
        self._log = ClientLog()
        _clamp_flush_at(resolved, self._log)
        self.config = cfg = Config(write_key=write_key or "", **resolved)
        self._log = ClientLog(cfg.log, cfg.log_level)
        load_encoder()
        self._transport = transport
        self._tap: Callable[[bytes], object] | None = None if cfg.send else _discard
        self._sync = cfg.sync_mode
        import orjson  # noqa: PLC0415  (loaded by load_encoder above; cheap here)

        self._reports = Reporter(on_success, on_failure, on_error, orjson.loads, self._log)
        write_key_json = orjson.dumps(cfg.write_key)
        self._sender = self._make_sender(
            self._make_buffer(MAX_BATCH_BYTES - envelope_size(write_key_json)),
            write_key_json=write_key_json,
            flush_at=cfg.flush_at,
            flush_after=cfg.flush_after,
            policy=RetryPolicy(
                max_retries=cfg.max_retries,
                max_total=cfg.max_total_backoff_duration,
                max_rate_limit_total=cfg.max_rate_limit_duration,
            ),
            clock=clock or SystemClock(),
            reporter=self._reports,
        )
        self._set_tap(self._tap)

    def _set_tap(self, tap: Callable[[bytes], object] | None) -> None:
        """Where encoded messages go instead of the sender (send=False, `testing.capture`)."""
        self._tap = tap
        #: The sender's put for a client that queues (None: a tap, or sync mode).
        self._put_bytes = None if tap is not None or self._sync else self._sender.put

    def _make_sender(self, buffer: Buffer, **core: Any) -> Core:
        """The subclass's sender over ``buffer`` (it adds the client to `_live`)."""
        raise NotImplementedError

    def _begin_exit(self) -> Callable[[], None] | None:
        """At process exit: start draining; return what waits for the end (bounded)."""
        raise NotImplementedError

    def _make_buffer(self, max_bytes: int) -> Buffer:
        """A spool buffer when ``spool`` is set (and sending from a thread), else memory."""
        cfg = self.config
        if cfg.spool is None or not cfg.send or cfg.sync_mode:
            return MemoryBuffer(cfg.max_queue_size, max_bytes)
        from analytics._spoolbuffer import SpoolBuffer  # noqa: PLC0415  (sqlite3 only if used)

        return SpoolBuffer(
            cfg.spool,
            max_size=cfg.max_queue_size,
            max_bytes=max_bytes,
            spool_max_bytes=cfg.spool_max_bytes,
            fsync=cfg.spool_fsync,
            interval=cfg.spool_interval,
            on_drop=self._reports.drop_items,
            log=self._log,
        )

    def __repr__(self) -> str:
        """Show the host, never the write key."""
        return f"<analytics.{type(self).__name__} host={self.config.host!r}>"

    # --- reporting ------------------------------------------------------------------------------

    def on_success(self, fn: SuccessCallback) -> SuccessCallback:
        """Call ``fn(data, response)`` after each delivered batch (on the sender thread)."""
        self._reports.success.append(fn)
        return fn

    def on_failure(self, fn: FailureCallback) -> FailureCallback:
        """Call ``fn(data, error)`` for messages that were dropped or could not be delivered."""
        self._reports.failure.append(fn)
        return fn

    def _drop(self, reason: str, msg: Message) -> None:
        self._reports.drop(reason, msg)

    def _log_drops(self) -> None:
        dropped = dict(self._reports.dropped)
        if dropped:
            self._log.warning(
                "analytics: %d message(s) were dropped in all: %s", sum(dropped.values()), dropped
            )

    @property
    def stats(self) -> Stats:
        """A snapshot of the counters: queued, sent, failed, retried, dropped by reason."""
        s = self._sender
        return Stats(
            queued=s.pending(),
            sent=s.sent,
            failed=s.failed,
            retried=s.retried,
            dropped=dict(self._reports.dropped),
            unspooled=s.buffer.unspooled,
        )

    # --- lifecycle ------------------------------------------------------------------------------


_OPTION_NAMES = (frozenset(Config.__dataclass_fields__) - {"write_key"}) | {
    "async_",
    "debug",
    "upload_size",
    "upload_interval",
    "flush_interval",
}


def _clamp_flush_at(options: dict[str, Any], log: ClientLog) -> None:
    """Segment accepts ``max_queue_size`` below the batch size: ``flush_at`` is lowered to it."""
    size = options.get("max_queue_size")
    flush_at = options.get("flush_at", DEFAULT_FLUSH_AT)
    if isinstance(size, int) and isinstance(flush_at, int) and 0 < size < flush_at:
        log.debug("analytics: flush_at lowered from %d to max_queue_size (%d)", flush_at, size)
        options["flush_at"] = size


def _discard(data: bytes) -> None:
    """The tap of a ``send=False`` client: messages are validated and encoded, then dropped."""


def _after_fork_in_child() -> None:
    reseed_ids()
    for client in list(_live):
        client._sender.after_fork_in_child()


def _exit_all() -> None:
    """Drain every live client in parallel: the whole exit takes at most one ``exit_timeout``.

    Each client starts draining first (threads, loops and exit threads work meanwhile), then
    each is waited for, each wait bounded by that client's own deadline.
    """
    finishing = []
    for client in list(_live):
        try:
            finish = client._begin_exit()
        except Exception:
            _logger.exception("analytics: error while draining at exit")
            continue
        if finish is not None:
            finishing.append(finish)
    for finish in finishing:
        try:
            finish()
        except Exception:
            _logger.exception("analytics: error while draining at exit")


Stats.__module__ = "analytics"
os.register_at_fork(after_in_child=_after_fork_in_child)
atexit.register(_exit_all)
