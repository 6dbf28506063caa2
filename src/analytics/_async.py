"""`AsyncClient`: the client for asyncio applications, delivering from a task on their loop.

The calls (`track` ...) are the same plain methods as `Client`'s (`analytics._base`): they
validate, encode and queue, and never block the loop. Delivery is a task on the loop the first
call was made in (the client *binds* to it), running the shared core (`analytics._core`: the
same state machine, buffers, retry policy, callbacks and counters as `Client`) through an
asyncio transport (`analytics._aiotransport`, aiohttp). Nothing here is a copy of the threaded
shell: this module only waits and does I/O, the asyncio way.

- Calls from other threads (or other loops) are handed over safely: the buffer is thread-safe
  and the task is woken with ``call_soon_threadsafe``. The *first* call must be made inside a
  running loop (``RuntimeError`` otherwise). `flush`/`shutdown` awaited on another loop run on
  the bound one and are awaited from there.
- A spool's disk I/O runs on a worker thread of the client's own (started with the client, as
  is the spooler thread: starting a thread from the loop waits for it to run, which on a busy
  machine held the loop for ~0.1 s), never on the loop.
- When the loop shuts down (``asyncio.run`` cancels the task), the task drains for at most
  ``exit_timeout`` before it ends (a task cancelled before it ever ran cannot: its messages
  wait). The next call on a new loop binds it and sends what waits; at process exit, a client
  whose loop is gone delivers what is left from the exit hook's thread, with the blocking
  transport, within ``exit_timeout``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import functools
import inspect
import threading
import time
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from analytics._base import BaseClient, _live
from analytics._buffer import Batch, Buffer
from analytics._core import GRACE, Attempt, Core
from analytics._delivery import Result
from analytics._exceptions import ConfigError
from analytics._retry import Outcome
from analytics._sender import Sender
from analytics._transport import AsyncTransport, HTTPTransport, Transport, pick_proxy

__all__ = ["AsyncClient"]

#: How often a flush re-reads a spool (another process sharing it may deliver a chunk).
FLUSH_POLL = 0.05
T = TypeVar("T")


class AsyncSender(Core):
    """The asyncio shell of the delivery core: one task on the bound loop."""

    def __init__(
        self,
        buffer: Buffer,
        *,
        transport_factory: Callable[[], AsyncTransport],
        blocking_transport: Callable[[], Transport],
        exit_timeout: float,
        **core: Any,
    ) -> None:
        """Set up an idle sender; it binds to a loop at the first call."""
        super().__init__(buffer, **core)
        self._core_options = core
        self._transport_factory = transport_factory
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None
        if buffer.blocking:
            self._start_io_thread()
        self._blocking_transport = blocking_transport
        self.exit_timeout = exit_timeout
        self._init_state()

    def _init_state(self) -> None:
        self._init_core()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread = 0
        self._task: asyncio.Task[None] | None = None
        self._wake: asyncio.Event | None = None  # made on the bound loop
        self._changed: asyncio.Event | None = None
        self._transport: AsyncTransport | None = None
        self._wake_pending = False
        self._background: set[asyncio.Future[Any]] = set()  # spool acks on worker threads
        self._in_flight: Batch | None = None  # the batch being delivered
        self._stalled = False  # idle after a round that took nothing (see Sender._init_state)

    # --- any thread -----------------------------------------------------------------------------

    def put(self, data: bytes) -> str | None:
        """Queue one encoded message. Never blocks; the first call binds the running loop."""
        if self.closed:
            return "shut_down"
        task = self._task
        if task is None or task.done():  # first call, or the bound loop has ended
            self._bind(first=task is None)
        n = self.buffer.put(data)
        if n < 0:
            return "queue_full"
        if n >= self.flush_at and not self._wake_pending:
            self._wake_pending = True
            self._signal(self._wake)
        return None

    def wait_for_room(self, timeout: float) -> bool:
        """An asyncio client never blocks its caller: True only if there is room now."""
        return not self.buffer.full()

    def pending(self) -> int:
        """Messages waiting, in flight, or stored."""
        return self.buffer.pending()

    def alive(self) -> bool:
        """True while the delivery task runs."""
        return self._task is not None and not self._task.done()

    def after_fork_in_child(self) -> None:
        """A forked child has no loop yet: it binds at its first call, with an empty buffer."""
        self._init_state()
        self.buffer.after_fork_in_child()
        if self.buffer.blocking:
            self._start_io_thread()

    def _start_io_thread(self) -> None:
        """The one thread that does the spool's disk I/O, and the spooler, started now."""
        self._executor = concurrent.futures.ThreadPoolExecutor(1, "analytics-spool-io")
        self._executor.submit(int).result()  # the thread exists before any loop needs it
        start = getattr(self.buffer, "start", None)
        if start is not None:
            start()

    def _notify(self) -> None:
        """A settlement or a deadline: wakes flush waits, retry waits and the idle task."""
        self._signal(self._changed)
        self._signal(self._wake)

    def _signal(self, event: asyncio.Event | None) -> None:
        loop = self._loop
        if loop is None or event is None or loop.is_closed():
            return
        if threading.get_ident() == self._loop_thread:
            event.set()
            return
        with contextlib.suppress(RuntimeError):  # the loop closed meanwhile: exit delivers
            loop.call_soon_threadsafe(event.set)

    def _bind(self, *, first: bool = True) -> None:
        """Bind to the running loop (again, if the loop bound before has ended: then a call
        made outside any loop just queues, and the exit hook or the next loop delivers)."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            if not first:
                return
            raise RuntimeError(
                "AsyncClient: make the first call inside a running event loop (the client "
                "delivers from a task on that loop); later calls may come from any thread"
            ) from None
        self._loop, self._loop_thread = loop, threading.get_ident()
        self._wake, self._changed = asyncio.Event(), asyncio.Event()
        self._flush_asked = True  # the first round sends at once (the seed's first flush)
        self._task = loop.create_task(self._run(), name="analytics-sender")

    # --- the task -------------------------------------------------------------------------------

    async def _run(self) -> None:
        stalled = False
        try:
            while True:
                if not stalled:
                    self._wake_pending = False
                await self._wait_for_work(stalled)
                stopping = self._deadline is not None
                try:
                    stalled = await self._drain() == 0 and not stopping
                except Exception:  # a bug must not end delivery
                    self.log.exception("analytics sender: unexpected error; continuing")
                if stopping:
                    return
        except asyncio.CancelledError:  # the loop is shutting down: drain, bounded
            # In a task of its own: this one may be cancelled again while it waits.
            final = asyncio.get_running_loop().create_task(self._final_drain())
            while not final.done():
                with contextlib.suppress(asyncio.CancelledError):
                    await asyncio.shield(final)
        finally:
            await self._close()
            self._task = None

    async def _final_drain(self) -> None:
        if self._deadline is None:
            self.begin_shutdown(self.clock.monotonic() + self.exit_timeout)
        batch, self._in_flight = self._in_flight, None
        if batch is not None:  # its request was cut by the cancel: at least once, not lost
            await self._deliver(batch)
        await self._drain()
        await self._io(self.shutdown_result, True)

    async def _wait_for_work(self, stalled: bool) -> None:
        wake = self._wake
        if wake is None or self.due(stalled):
            return
        wake.clear()
        if not self.due(stalled):
            self._stalled = stalled
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(wake.wait(), self.flush_after)
            self._stalled = False

    async def _drain(self) -> int:
        owed = self.take_round()
        taken = 0
        while self.keep_taking(owed):
            batch = await self._io(self._take)
            if batch is None:
                break
            taken += 1
            owed -= len(batch.items)
            await self._deliver(batch)
            self._in_flight = None
        return taken

    def _take(self) -> Batch | None:
        """Take a batch and note it in flight in the same step (on the I/O thread with a
        spool): a cancel or a closed loop, even one that ends before the task reads what the
        I/O thread took, leaves it in ``_in_flight``, and it is sent again."""
        batch = self._in_flight = self.buffer.take()
        return batch

    async def _deliver(self, batch: Batch) -> Result | None:
        delivery = self.delivery(batch)
        try:
            action = next(delivery)
            while True:
                if isinstance(action, Attempt):
                    action = delivery.send(await self._send(action))
                else:
                    await self._wait(action.until)
                    action = delivery.send(None)
        except StopIteration as stop:
            result: Result | None = stop.value
            return result

    async def _send(self, attempt: Attempt) -> Outcome:
        try:
            if self._transport is None:
                self._transport = self._transport_factory()
            return await self._transport.send(attempt.body, attempt.retry_count, attempt.timeout)
        except Exception as exc:  # a transport bug: a final failure, never a silent loss
            self.log.exception("analytics: unexpected error while sending")
            return Outcome(None, error=repr(exc), internal=True)

    async def _wait(self, until: float) -> None:
        """A retry wait: only a (new) shutdown deadline ends it early, never a flush."""
        stop = self.retry_wait_over(self._deadline_seq)
        changed = self._changed
        while not stop() and changed is not None:
            remaining = until - self.clock.monotonic()
            if remaining <= 0:
                return
            changed.clear()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(changed.wait(), remaining)

    def _ack(self, batch: Batch) -> None:
        if self.buffer.blocking and self._on_loop():
            self._in_background(self.buffer.ack, batch)
        else:
            self.buffer.ack(batch)

    def _release(self, batch: Batch) -> bool:
        if not (self.buffer.blocking and self._on_loop() and self.buffer.keeps(batch)):
            return self.buffer.release(batch)
        self._in_background(self.buffer.release, batch)
        return True

    def _on_loop(self) -> bool:
        return self._loop is not None and threading.get_ident() == self._loop_thread

    def _in_background(self, fn: Callable[[Batch], object], batch: Batch) -> None:
        """Disk I/O off the loop, not awaited (shutdown waits for it before closing)."""
        loop = self._loop
        if loop is None:
            fn(batch)
            return
        future = loop.run_in_executor(self._executor, fn, batch)
        self._background.add(future)
        future.add_done_callback(self._background.discard)

    async def _io(self, fn: Callable[..., T], *args: Any) -> T:
        """Call ``fn``: on a worker thread when the buffer does disk I/O, else here."""
        if self.buffer.blocking:
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(self._executor, functools.partial(fn, *args))
        return fn(*args)

    async def _close(self) -> None:
        if self._background:
            await asyncio.gather(*self._background, return_exceptions=True)
        if not self.claim_close():
            return
        self._stored_left = await self._io(self.buffer.close)
        if self._transport is not None:
            await self._transport.close()

    # --- flush and shutdown ---------------------------------------------------------------------

    async def flush(self, timeout: float | None) -> bool:
        """Send what is queued now; wait up to ``timeout`` s for it (never cutting a retry)."""
        if self._elsewhere():
            return await self._hand_over(self.flush(timeout))
        failed_before = self.failed
        mark = await self._io(self.buffer.mark)
        if self._task is None:
            if not await self._io(self.buffer.outstanding, mark):
                return self.failed == failed_before
            self._bind()
        self._flush_asked = True
        self._signal(self._wake)
        end = time.monotonic() + (timeout or 0.0)
        while True:
            left = await self._io(self.buffer.outstanding, mark)
            remaining = end - time.monotonic()
            if left == 0 or timeout is None or remaining <= 0 or not self.alive():
                return left == 0 and self.failed == failed_before
            if self._stalled:  # a spool chunk held elsewhere may be free now: take again
                self._flush_asked = True  # (only while something is owed: see Sender.flush)
                self._signal(self._wake)
            changed = self._changed
            if changed is None:
                return False
            changed.clear()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(changed.wait(), min(remaining, FLUSH_POLL))

    async def shutdown(self, timeout: float) -> bool:
        """Refuse new messages, deliver within ``timeout`` (+ `GRACE`), cut the rest, close."""
        if self._elsewhere():
            return await self._hand_over(self.shutdown(timeout))
        deadline = self.clock.monotonic() + timeout
        self.begin_shutdown(deadline)
        task = self._task
        if task is None:  # never bound: deliver here (what a spool holds, say), bounded
            await self._drain()
            await self._close()
            done = True
        else:
            with contextlib.suppress(asyncio.TimeoutError):
                remaining = max(0.0, deadline - self.clock.monotonic()) + GRACE
                await asyncio.wait_for(asyncio.shield(task), remaining)
            done = task.done()
            if not done:
                self.log.warning("analytics: shutdown deadline passed with a request in flight")
        ok = await self._io(self.shutdown_result, done)
        if self._executor is not None and done:
            self._executor.shutdown(wait=False)  # its thread ends once idle
        return ok

    def _elsewhere(self) -> bool:
        """True when awaited on a loop other than the bound one, while that one runs."""
        loop = self._loop
        if loop is None or loop.is_closed() or not loop.is_running():
            return False
        return asyncio.get_running_loop() is not loop

    async def _hand_over(self, coro: Coroutine[Any, Any, bool]) -> bool:
        loop = self._loop
        if loop is None:  # unbound meanwhile: nothing runs elsewhere
            return await coro
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, loop))

    def exit_drain(self, deadline: float) -> None:
        """At process exit: end delivery by ``deadline`` on the loop if it still runs, else on
        this thread with the blocking transport."""
        loop, task = self._loop, self._task
        remaining = max(0.0, deadline - self.clock.monotonic())
        if loop is not None and task is not None and loop.is_running() and not self._on_loop():
            future = asyncio.run_coroutine_threadsafe(self.shutdown(remaining), loop)
            with contextlib.suppress(Exception):
                future.result(remaining + 2 * GRACE)
            return
        if self.closed or not self.buffer.pending():
            return
        self.closed = True  # the drain below is the last: new messages are refused
        if self._executor is not None:  # a take it still runs (bounded) ends in _in_flight
            self._executor.shutdown(wait=True)
        sender = Sender(
            self.buffer, transport_factory=self._blocking_transport, **self._core_options
        )
        batch, self._in_flight = self._in_flight, None
        sender.begin_shutdown(deadline)
        if batch is not None:  # the loop closed during its request: send it again
            sender.deliver_taken(batch)
        sender.finish_shutdown(deadline)
        with self._lock:  # what the exit drain settled is this client's (its stats)
            self.sent += sender.sent
            self.failed += sender.failed
            self.retried += sender.retried


class AsyncClient(BaseClient):
    """Sends analytics messages from a task on the application's event loop.

    The same options, defaults and calls as `Client`; ``await client.flush()``,
    ``await client.shutdown()`` and ``async with AsyncClient(...) as client:``. See the README's
    asyncio section.
    """

    _sender: AsyncSender

    def _make_sender(self, buffer: Buffer, **core: Any) -> AsyncSender:
        cfg = self.config
        if cfg.sync_mode:
            raise ConfigError(
                "AsyncClient has no sync mode: its calls never block the loop; "
                "await client.flush() to wait for delivery"
            )
        given = self._transport
        if given is not None and not inspect.iscoroutinefunction(getattr(given, "send", None)):
            raise ConfigError("transport: AsyncClient needs an AsyncTransport (async def send)")
        if given is None:
            import analytics._aiotransport  # noqa: F401, PLC0415  (aiohttp: not on the loop later)
        _live.add(self)
        return AsyncSender(
            buffer,
            transport_factory=self._make_transport,
            blocking_transport=self._make_blocking_transport,
            exit_timeout=cfg.exit_timeout,
            **core,
        )

    def _make_transport(self) -> AsyncTransport:
        if self._transport is not None:
            return self._transport  # type: ignore[return-value]
        from analytics._aiotransport import AioHTTPTransport  # noqa: PLC0415  (loaded already)

        cfg = self.config
        proxy = pick_proxy(cfg.proxies, cfg.host)
        return AioHTTPTransport(
            cfg.host, cfg.write_key, timeout=cfg.timeout, gzip=cfg.gzip, proxy=proxy
        )

    def _make_blocking_transport(self) -> Transport:
        cfg = self.config
        return HTTPTransport(
            cfg.host, cfg.write_key, timeout=cfg.timeout, gzip=cfg.gzip, proxies=cfg.proxies
        )

    async def flush(self, timeout: float | None = None) -> bool:
        """Send what is queued now and wait up to ``timeout`` (default ``flush_timeout``).

        True when everything queued before the call was delivered. Never raises, never cuts a
        retry wait short.
        """
        return await self._sender.flush(self.config.flush_timeout if timeout is None else timeout)

    async def shutdown(self, timeout: float | None = None) -> bool:
        """Refuse new messages, deliver what is queued within ``timeout`` (default
        ``flush_timeout``), stop the task. What is cut is reported (memory) or kept (spool)."""
        limit = self.config.flush_timeout if timeout is None else timeout
        ok = await self._sender.shutdown(limit)
        _live.discard(self)
        self._log_drops()
        return ok

    async def __aenter__(self) -> AsyncClient:
        """Use the client in an ``async with`` block: it is shut down at the end."""
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        """Shut down, delivering what is queued (bounded by ``flush_timeout``)."""
        await self.shutdown()

    def _begin_exit(self) -> Callable[[], None] | None:
        """At exit: drain on a thread of its own (on the loop if it still runs), bounded."""
        if not self.config.flush_at_exit or self._sender.closed:
            return None
        deadline = self._sender.clock.monotonic() + self.config.exit_timeout
        thread = threading.Thread(
            target=self._sender.exit_drain, args=(deadline,), name="analytics-exit", daemon=True
        )
        thread.start()
        return thread.join  # bounded: exit_drain ends by the deadline


AsyncClient.__module__ = "analytics"
