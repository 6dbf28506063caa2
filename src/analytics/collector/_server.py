"""Running the collector: :class:`CollectorServer` (a background thread) and :func:`run`.

``CollectorServer`` owns three things: the store, the writer thread, and an event-loop thread
running the aiohttp application. ``start()`` returns once the socket is bound (port 0 picks a
free port, readable as ``.port``/``.url``). ``stop()`` stops accepting connections, lets
in-flight requests finish (their commits included), stops the writer after it has committed
everything queued, and closes the store: every event answered 200 is in the database.

:func:`analytics.collector.run` (in :mod:`._run`) is the blocking form used by ``analytics
serve``.

Garbage collector: while a server runs, the process's cyclic GC is tuned for ingest (gen-0
threshold raised to 100,000 and the start-up heap frozen with ``gc.freeze()``; measured 15-20%
more events/s). ``start()`` applies it, ``stop()`` of the last running server restores the
previous thresholds and unfreezes, so a host process (tests, the demo) is left as it was. Pass
``tune_gc=False`` to leave the GC alone. Details in :mod:`._gc`.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import socket
import threading
import time
from collections.abc import Sequence
from os import PathLike
from types import TracebackType
from typing import Any

from aiohttp import web

from analytics.collector import _gc, _logfilter
from analytics.collector._admin import AdminAccess
from analytics.collector._app import AppState, make_app
from analytics.collector._auth import KeyPolicy, check_bind
from analytics.collector._db import open_store
from analytics.collector._debugger import Debugger
from analytics.collector._guard import (
    DEFAULT_SERVER_LIMITS,
    Guard,
    ServerLimits,
    listen,
    raise_fd_limit,
)
from analytics.collector._limits import DEFAULT_LIMITS, Limits
from analytics.collector._metrics import CollectorMetrics
from analytics.collector._origin import LocalOnly
from analytics.collector._refusal_ring import RefusalRing
from analytics.collector._stats import Counters, Stats
from analytics.collector._store import Store
from analytics.collector._writer import GroupCommitWriter

__all__ = ["CollectorServer"]

log = logging.getLogger("analytics.collector")

_SETTLE_ITERATIONS = 20
_BACKLOG = 1024  # connections the kernel queues before they are accepted
#: aiohttp's request handler options (the handlers are made by ._guard's protocol factory).
_HANDLER_ARGS: dict[str, Any] = {
    "access_log": None,
    "auto_decompress": False,  # we decompress ourselves, under the size cap
    "lingering_time": 2.0,
}


def _summary(counters: Counters) -> str:
    c = counters
    return (
        f"collector: {c.requests} requests ({c.rejected} rejected, {c.failed} failed, "
        f"{c.aborted} aborted), {c.received} messages received, {c.stored} stored, "
        f"{c.duplicates} duplicates, {c.refused} refused"
    )


def _cancel_leftovers(loop: asyncio.AbstractEventLoop) -> None:
    """Cancel tasks still running after a stop deadline, so their connections close."""
    tasks = [task for task in asyncio.all_tasks(loop) if not task.done()]
    for task in tasks:
        task.cancel()
    if tasks:
        loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))


class CollectorServer:
    """The collector on its own event loop in a background thread.

    Args:
        db: a SQLite file path or a ``postgresql://`` URL (the server opens and closes the
            store, :mod:`._db`) or a :class:`Store` (the caller keeps ownership).
        host: the address to bind; without ``write_keys`` it must be a loopback address.
        port: the port; 0 picks a free one.
        write_keys: the accepted write keys; ``None`` or empty accepts any key (loopback only).
        read_timeout: seconds a client has to send its whole body (else 408, nothing stored).
        shutdown_timeout: seconds ``stop()`` lets in-flight requests run before cancelling them.
        limits: size and count limits.
        summary_interval: seconds between info summary lines (only when something changed).
        tune_gc: tune the process's garbage collector while the server runs (see the module
            docstring); restored when it stops.
        reuse_port: bind with ``SO_REUSEPORT`` (Linux), so servers in several processes
            share the port and the kernel spreads connections among them (``--workers``).
        admin_token: the token the admin pages require (see :mod:`._admin`); without one
            they are open on a loopback address and off on any other.
        server_limits: connection cap, body bytes in flight, header and idle timeouts
            (:mod:`._guard`). Without write keys, requests from other web origins and to
            non-loopback ``Host`` names are refused (:mod:`._origin`).
        debug_ring: the refusal ring of the live debugger page, when several processes
            share one (``--workers``); by default the server has its own.

    Raises:
        ValueError: non-loopback ``host`` without write keys, an invalid key, or an admin
            token that is too short.
    """

    def __init__(
        self,
        db: str | PathLike[str] | Store,
        host: str = "127.0.0.1",
        port: int = 0,
        write_keys: Sequence[str] | None = None,
        *,
        read_timeout: float = 10.0,
        shutdown_timeout: float = 10.0,
        limits: Limits = DEFAULT_LIMITS,
        summary_interval: float = 60.0,
        tune_gc: bool = True,
        reuse_port: bool = False,
        admin_token: str | None = None,
        server_limits: ServerLimits = DEFAULT_SERVER_LIMITS,
        debug_ring: RefusalRing | None = None,
    ) -> None:
        self._policy = KeyPolicy(write_keys)
        check_bind(host, self._policy)
        self._admin = AdminAccess(host, admin_token)
        self._host = host
        self._port = port
        self._owns_store = isinstance(db, (str, PathLike))
        self._store: Store = open_store(db) if isinstance(db, (str, PathLike)) else db
        self._read_timeout = read_timeout
        self._shutdown_timeout = shutdown_timeout
        self._limits = limits
        self._summary_interval = summary_interval
        self._tune_gc = tune_gc
        self._reuse_port = reuse_port
        self._gc_tuned = False
        self.stats = Stats()
        self.metrics = CollectorMetrics()
        self._writer = GroupCommitWriter(self._store, on_commit=self.metrics.committed)
        self.debugger = Debugger(self._store, debug_ring or RefusalRing(), self._admin)
        self._lock = threading.Lock()
        self._phase = "new"
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._sock: socket.socket | None = None
        self._listener: asyncio.AbstractServer | None = None
        self._server_limits = server_limits
        self._fd_limit = 0
        self._guard: Guard | None = None
        self._background: list[asyncio.Task[None]] = []  # summaries, metrics sampling
        self._thread = threading.Thread(target=self._main, name="analytics-collector", daemon=True)

    # -- properties -------------------------------------------------------------------------

    @property
    def host(self) -> str:
        """The bound host."""
        return self._host

    @property
    def port(self) -> int:
        """The bound port (the real one after ``start()``, also when 0 was asked for)."""
        return self._port

    @property
    def url(self) -> str:
        """``http://HOST:PORT`` of the running server."""
        host = f"[{self._host}]" if ":" in self._host else self._host
        return f"http://{host}:{self._port}"

    @property
    def store(self) -> Store:
        """The store events are written to (its read methods work at any time)."""
        return self._store

    def __repr__(self) -> str:
        return f"CollectorServer({self.url!r}, {self._phase})"

    # -- lifecycle --------------------------------------------------------------------------

    def start(self, timeout: float = 10.0) -> CollectorServer:
        """Start serving; return once the socket is bound.

        Raises:
            RuntimeError: already started.
            OSError: the address could not be bound (e.g. the port is in use).
            TimeoutError: the server was not ready within ``timeout`` seconds.
        """
        with self._lock:
            if self._phase != "new":
                raise RuntimeError(f"the collector was already started ({self._phase})")
            self._phase = "starting"
        _logfilter.install()
        self._fd_limit = raise_fd_limit()
        self._writer.start()
        self._thread.start()
        if not self._ready.wait(timeout):
            self.stop(timeout=1.0)
            raise TimeoutError(f"the collector did not start within {timeout:g} s")
        if self._error is not None:
            self._writer.stop(timeout)
            self._close_store()
            with self._lock:
                self._phase = "stopped"
            raise self._error
        with self._lock:
            self._phase = "running"
        if self._tune_gc:
            _gc.acquire()
            self._gc_tuned = True
        self._log_start()
        return self

    def _log_start(self) -> None:
        log.info("analytics collector listening on %s (store: %r)", self.url, self._store)
        if self._policy.open:
            log.info("no write keys configured: accepting any write key (loopback only)")
        else:
            log.info("accepting %d configured write key(s)", len(self._policy))
        if self._guard is not None:
            limits = self._guard.limits
            log.info(
                "at most %d connections (open-file limit %d), %d MiB of bodies in flight; "
                "header timeout %g s, idle timeout %g s",
                self._guard.max_connections,
                self._fd_limit,
                limits.max_body_bytes // (1024 * 1024),
                limits.header_timeout,
                limits.idle_timeout,
            )

    def _main(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._serve())
        except BaseException as exc:
            self._error = exc
            self._ready.set()
            loop.close()
            return
        self._ready.set()
        try:
            loop.run_forever()
        finally:
            _cancel_leftovers(loop)
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    async def _serve(self) -> None:
        guard = self._guard = Guard(self._server_limits, self._fd_limit)
        local = LocalOnly() if self._policy.open else None
        state = AppState(
            writer=self._writer,
            policy=self._policy,
            limits=self._limits,
            read_timeout=self._read_timeout,
            stats=self.stats,
            admin=self._admin,
            guard=guard,
            local=local,
            debugger=self.debugger,
            metrics=self.metrics,
        )
        runner = web.AppRunner(
            make_app(state),
            handle_signals=False,
            shutdown_timeout=self._shutdown_timeout,
            **_HANDLER_ARGS,
        )
        await runner.setup()
        self._runner = runner
        try:
            # Our own listening socket, so shutdown can stop accepting before closing it.
            family = socket.AF_INET6 if ":" in self._host else socket.AF_INET
            self._sock = socket.create_server(
                (self._host.strip("[]"), self._port),
                family=family,
                backlog=_BACKLOG,
                reuse_port=self._reuse_port,
            )
            if runner.server is None:  # setup() sets it
                raise RuntimeError("the aiohttp runner has no server")
            factory = guard.protocol_factory(runner.server, _HANDLER_ARGS)
            self._listener = await listen(self._sock, factory, _BACKLOG)
        except BaseException:
            if self._sock is not None:
                self._sock.close()
            await runner.cleanup()
            raise
        self._port = int(self._sock.getsockname()[1])
        if local is not None:
            local.port = self._port
        loop = asyncio.get_running_loop()
        self._background = [
            loop.create_task(self._summaries()),
            loop.create_task(self.metrics.keep_sampled(self._writer, guard)),
        ]

    async def _summaries(self) -> None:
        last = self.stats.snapshot()
        while True:
            await asyncio.sleep(self._summary_interval)
            now = self.stats.snapshot()
            if now != last:
                log.info("%s", _summary(now))
                last = now

    async def _shutdown(self) -> None:
        for task in self._background:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        runner = self._runner
        if runner is None:
            return
        if self._sock is not None:
            asyncio.get_running_loop().remove_reader(self._sock.fileno())
        # Stop accepting first, then let the connections accepted just before settle: on
        # Python 3.11 a connection whose transport is created after the server closed is
        # leaked (never answered, never closed), and aiohttp's pre-shutdown only wakes
        # connections already waiting for a request. A few loop iterations cover both.
        for _ in range(_SETTLE_ITERATIONS):
            await asyncio.sleep(0)
        await runner.cleanup()
        if self._listener is not None:
            self._listener.close()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop gracefully: no new connections, finish in-flight requests, commit, close.

        Idempotent; safe to call on a server that never started.
        """
        with self._lock:
            if self._phase in ("new", "stopped"):
                self._phase = "stopped"
                return
            self._phase = "stopped"
        deadline = time.monotonic() + timeout
        self._stop_loop(deadline)
        # The writer gets at least a second even past the deadline: what it still holds was
        # not acknowledged, but committing it spares the clients a retry.
        if not self._writer.stop(max(1.0, deadline - time.monotonic())):
            log.warning("collector writer did not finish within %g s", timeout)
        self._close_store()
        if self._gc_tuned:
            self._gc_tuned = False
            _gc.release()
        log.info("%s", _summary(self.stats.snapshot()))

    def _stop_loop(self, deadline: float) -> None:
        loop = self._loop
        if loop is None or loop.is_closed() or not self._thread.is_alive():
            return
        future = asyncio.run_coroutine_threadsafe(self._shutdown(), loop)
        try:
            future.result(max(0.0, deadline - time.monotonic()))
        except concurrent.futures.TimeoutError:
            log.warning("collector requests were still running at the stop deadline")
            future.cancel()
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(loop.stop)
        self._thread.join(max(0.0, deadline - time.monotonic()))

    def _close_store(self) -> None:
        if self._owns_store:
            self._store.close()

    def __enter__(self) -> CollectorServer:
        if self._phase == "new":
            self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
