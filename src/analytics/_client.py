"""`Client`: the threaded client, its lifecycle (flush, shutdown, exit) and fork safety.

The options, calls and counters are `analytics._base.BaseClient`'s; the delivery is the thread
shell `analytics._sender.Sender` over the shared core (`analytics._core`).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from analytics._base import BaseClient, Stats, _live
from analytics._buffer import Buffer
from analytics._exceptions import ConfigError
from analytics._sender import Sender
from analytics._transport import HTTPTransport, Transport

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from analytics._base import AsyncOption

__all__ = ["Client", "Stats"]

logger = logging.getLogger("analytics")

#: Guards the creation of the module-level default client (analytics.init / first call).
default_lock = threading.Lock()


class Client(BaseClient):
    """Sends analytics messages to a Segment-compatible collector from a background thread.

    Thread-safe: any number of threads may call it at once. Fork-safe: a forked child gets an
    empty queue and its own thread and connection. See the README for every option.
    """

    _sender: Sender

    def _make_sender(self, buffer: Buffer, **core: Any) -> Sender:
        if self._transport is not None and _is_async(self._transport):
            raise ConfigError(
                "transport: Client needs a blocking Transport (AsyncClient takes async)"
            )
        if self.config.send and self._transport is None:
            # urllib3 is imported here, not by `import analytics` and not on the sender thread:
            # its import (~50 ms) would otherwise delay the first delivery and hold the GIL
            # while the application makes its first calls.
            import urllib3  # noqa: F401, PLC0415
        _live.add(self)
        return Sender(buffer, transport_factory=self._make_transport, **core)

    def _make_transport(self) -> Transport:
        if self._transport is not None:
            return self._transport  # type: ignore[return-value]
        cfg = self.config
        return HTTPTransport(
            cfg.host, cfg.write_key, timeout=cfg.timeout, gzip=cfg.gzip, proxies=cfg.proxies
        )

    def flush(
        self, async_: bool = True, *, timeout: float | None = None, **options: Unpack[AsyncOption]
    ) -> bool:
        """Send what is queued now.

        The seed's semantics: ``flush()`` wakes the sender and returns at once;
        ``flush(async_=False)`` (or ``flush(**{"async": False})``) waits up to ``flush_timeout``
        (30 s); ``flush(timeout=t)`` waits up to ``t`` seconds. Never raises.

        Returns:
            True when everything queued before the call was delivered (for a call that does not
            wait: when nothing was pending).
        """
        if "async" in options:
            async_ = bool(options.pop("async"))
        if options:
            raise TypeError(f"flush() got unexpected arguments: {', '.join(options)}")
        if timeout is None and not async_:
            timeout = self.config.flush_timeout
        return self._sender.flush(timeout)

    def shutdown(self, timeout: float | None = None) -> bool:
        """Refuse new messages, deliver what is queued, stop the thread. Idempotent.

        Waits at most ``timeout`` seconds (default ``flush_timeout``, 30 s); what is not
        delivered by then is reported to ``on_failure`` with reason ``shutdown_timeout``.

        Returns:
            True when everything queued was delivered.
        """
        limit = self.config.flush_timeout if timeout is None else timeout
        ok = self._sender.shutdown(limit)
        _live.discard(self)
        self._log_drops()
        return ok

    def join(self, timeout: float | None = None) -> bool:
        """Segment 2.x's name for `shutdown`."""
        return self.shutdown(timeout)

    close = join

    def __enter__(self) -> Client:
        """Use the client in a ``with`` block: it is shut down at the end."""
        return self

    def __exit__(self, *exc_info: object) -> None:
        """Shut down, delivering what is queued (bounded by ``flush_timeout``)."""
        self.shutdown()

    def _begin_exit(self) -> Callable[[], None] | None:
        """At exit: start draining (to end ``exit_timeout`` from now); what finishes it."""
        if not self.config.flush_at_exit or self._sender.closed:
            return None
        deadline = self._sender.clock.monotonic() + self.config.exit_timeout
        self._sender.begin_shutdown(deadline)

        def finish() -> None:
            self._sender.finish_shutdown(deadline)  # it logs what it could not deliver
            self._log_drops()

        return finish


#: The keyword parameters of Client() that are options (Config fields or their aliases).


def _is_async(transport: object) -> bool:
    import inspect  # noqa: PLC0415

    return inspect.iscoroutinefunction(getattr(transport, "send", None))


# Public classes show as analytics.X (httpx's habit), not as the private module they live in.
Client.__module__ = "analytics"
