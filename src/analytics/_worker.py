"""The sender: a bounded queue of encoded messages and the one thread that delivers them.

Lifecycle contract (each row is tested):

| call                 | blocks?              | raises? | effect                                              |
|----------------------|----------------------|---------|-----------------------------------------------------|
| `put()` (track ...)  | never                | never   | append, or refuse (the caller counts the drop)      |
| `flush(timeout)`     | at most ``timeout``  | never   | wake the thread and cut backoff short; True when    |
|                      |                      |         | everything queued before the call was delivered     |
| `shutdown(timeout)`  | at most ``timeout``  | never   | refuse new messages, drain within the deadline,     |
|                      |                      |         | report the rest as failed, join, close; idempotent  |
| fork (child)         | -                    | -       | fresh locks, queue and pool; thread restarts lazily |

The thread is started by the first `put()` (so a client that is never used costs nothing, and
a forked child starts its own), and it sends at once: the seed's "flush on the first message".
After that it wakes when ``flush_at`` messages are queued, when ``flush_after`` seconds pass,
on `flush()` and on `shutdown()`, and each time it sends everything queued, in batches as large
as the limits allow.
"""

from __future__ import annotations

import logging
import random
import threading
import time
import zlib
from collections import Counter, deque
from collections.abc import Callable
from typing import Any

from analytics._batch import MAX_BATCH_BYTES, envelope, envelope_size, take_batch
from analytics._clock import Clock
from analytics._exceptions import DeliveryError
from analytics._message import now_iso
from analytics._retry import Outcome, RetryPolicy, RetryState

__all__ = ["Sender"]

logger = logging.getLogger("analytics")

#: Called with the batch's encoded items and the final outcome or error.
SentHook = Callable[[list[bytes], Outcome], None]
FailedHook = Callable[[list[bytes], DeliveryError], None]
TransportFactory = Callable[[], Any]

#: A backlog longer than this (an outage, a slow collector) is compressed in the background,
#: one batch per block: queued messages then take about a fifth of their memory.
COMPACT_AT = 10_000
#: ... but only while delivery is stalled: one batch in flight or retrying for this long. A
#: backlog that drains (a burst to a healthy collector) is left alone: compressing it would
#: only cost CPU.
STALL_AFTER = 0.25


class Sender:
    """Owns the queue, the worker thread and the delivery loop of one `Client`."""

    def __init__(
        self,
        *,
        transport_factory: TransportFactory,
        write_key_json: bytes,
        flush_at: int,
        flush_after: float,
        max_queue_size: int,
        policy: RetryPolicy,
        clock: Clock,
        on_sent: SentHook,
        on_failed: FailedHook,
    ) -> None:
        """Set up an idle sender; nothing runs until the first `put()`."""
        self._transport_factory = transport_factory
        self._write_key_json = write_key_json
        self._max_bytes = MAX_BATCH_BYTES - envelope_size(write_key_json)
        self.flush_at = flush_at
        self.flush_after = flush_after
        self.max_queue_size = max_queue_size
        self.policy = policy
        self.clock = clock
        self._on_sent = on_sent
        self._on_failed = on_failed
        self.closed = False
        self.compact_at = COMPACT_AT
        self._init_state()

    def _init_state(self) -> None:
        """(Re)create everything a forked child must not share with its parent."""
        self.queue: deque[bytes] = deque()
        # Compressed blocks of the oldest queued messages: (count, zlib of b"\n".join(items)).
        self._blocks: deque[tuple[int, bytes]] = deque()
        self._blocked = 0  # messages in _blocks, or taken by the compactor for the next block
        self._compactor: threading.Thread | None = None
        self._compact_wakeup = threading.Event()
        self._compact_sent = False
        self._sending_since: float | None = None  # when the batch being delivered was taken
        self._lock = threading.Lock()
        self._settled = threading.Condition(self._lock)
        self._wakeup = threading.Event()
        self.idle = threading.Event()
        self._interrupt = threading.Event()  # set by flush/shutdown: cuts a backoff wait short
        self._wake_sent = False
        self._thread: threading.Thread | None = None
        self._transport: Any = None
        self._stopping = False
        self._deadline: float | None = None
        self._resolved = 0  # messages taken off the queue and settled (sent or failed)
        self._in_flight = 0
        self.sent = 0
        self.failed = 0
        self.retried = 0
        self.unspooled = 0  # messages a spool could not take (see _spooled.py)
        self.dropped: Counter[str] = Counter()

    # --- the calling thread ---------------------------------------------------------------------

    def put(self, data: bytes) -> str | None:
        """Queue one encoded message. Never blocks.

        Returns:
            None when queued, else why not: ``"queue_full"`` or ``"shut_down"``.
        """
        if self.closed:
            return "shut_down"
        queue = self.queue
        n = len(queue)
        if n + self._blocked >= self.max_queue_size:
            return "queue_full"
        queue.append(data)
        n += 1
        if self._thread is None:
            self._start()
        elif n >= self.flush_at:
            if not self._wake_sent:
                # A plain flag read first: Event.set takes a lock, so it is set once per wake-up.
                self._wake_sent = True
                self._wakeup.set()
            if n >= self.compact_at and not self._compact_sent:
                self._compact_sent = True
                self._start_compactor()
        return None

    def _start(self) -> None:
        with self._lock:
            if self._thread is not None or self._stopping:
                return
            thread = threading.Thread(target=self._run, name="analytics-sender", daemon=True)
            try:
                thread.start()
            except RuntimeError:  # interpreter shutting down: shutdown() drains on its thread
                logger.debug("could not start the sender thread", exc_info=True)
                return
            self._thread = thread

    def _start_compactor(self) -> None:
        with self._lock:
            if self._compactor is None and not self._stopping:
                thread = threading.Thread(
                    target=self._run_compactor, name="analytics-compactor", daemon=True
                )
                try:
                    thread.start()
                except RuntimeError:  # interpreter shutting down: the backlog stays as it is
                    return
                self._compactor = thread
        self._compact_wakeup.set()

    def _has_room(self) -> bool:
        return len(self.queue) + self._blocked < self.max_queue_size

    def wait_for_room(self, timeout: float) -> bool:
        """Block up to ``timeout`` until the queue has room (bulk imports only). True if it has."""
        if self._has_room():
            return True
        self._wakeup.set()
        with self._settled:
            return (
                self._settled.wait_for(lambda: self._has_room() or not self._alive(), timeout)
                and self._has_room()
            )

    def pending(self) -> int:
        """Messages queued (raw or compressed) or in flight."""
        return len(self.queue) + self._blocked + self._in_flight

    def flush(self, timeout: float | None) -> bool:
        """Wake the thread; with a timeout, wait that long for what is queued now to settle."""
        with self._lock:
            target = self._resolved + self._unsettled()
            failed_before = self.failed
        if self._thread is None and self.queue:
            self._start()
        self._interrupt.set()
        self._wakeup.set()
        if timeout is None:
            return target == self._resolved
        with self._settled:
            done = self._settled.wait_for(
                lambda: self._resolved >= target or not self._alive(), timeout
            )
        if not done or self._resolved < target:
            return False
        return self.failed == failed_before

    def _unsettled(self) -> int:
        """Messages not yet settled (called with the lock held)."""
        return self.pending()

    def _alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def shutdown(self, timeout: float) -> bool:
        """Refuse new messages, deliver what is queued within ``timeout``, stop the thread."""
        if self.closed:
            return not self.queue
        self.closed = True
        deadline = self.clock.monotonic() + timeout
        failed_before = self.failed
        with self._lock:
            self._deadline = deadline
            self._stopping = True
            thread = self._thread
        self._interrupt.set()
        self._wakeup.set()
        self._compact_wakeup.set()
        compactor = self._compactor
        if compactor is not None and compactor is not threading.current_thread():
            compactor.join(max(0.0, deadline - self.clock.monotonic()) + 0.5)
        if thread is not None and thread is not threading.current_thread():
            thread.join(max(0.0, deadline - self.clock.monotonic()) + 0.5)
        if not self._alive():
            self._drain()  # no thread (never started, died, or exiting): drain here, bounded
        self._close_storage()
        if self._transport is not None:
            self._transport.close()
        with self._lock:
            unsettled = self._unsettled()
        return unsettled == 0 and self.failed == failed_before

    def _close_storage(self) -> None:
        """Stop and close whatever holds messages besides the memory queue (nothing here)."""

    def after_fork_in_child(self) -> None:
        """Forget the parent's queue, thread, locks and connections (they belong to the parent)."""
        self._init_state()

    # --- the worker thread ----------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            self._wake_sent = False
            self._wakeup.clear()
            try:
                self._drain()
            except Exception:  # a bug must not kill delivery: log it and go on
                logger.exception("analytics sender: unexpected error; continuing")
            if self._stopping:
                return
            if len(self.queue) < self.flush_at:
                self.idle.set()  # observable by tests: the thread is waiting for work
                self._wakeup.wait(self.flush_after)
                self.idle.clear()

    def _drain(self) -> None:
        """Send what is queued now, in batches within the limits, and settle each batch.

        What arrives meanwhile is sent in the same round only while ``flush_at`` or more are
        queued (or when stopping): a steady trickle then goes out in batches of ``flush_at``,
        not in one request per message or two.
        """
        owed = len(self.queue) + self._blocked
        while True:
            with self._lock:
                waiting = len(self.queue) + self._blocked
                if owed <= 0 and waiting < self.flush_at and not self._stopping:
                    return
                block = self._blocks.popleft() if self._blocks else None
                if block is not None:
                    self._blocked -= block[0]
                    self._in_flight = block[0]
                else:
                    items = take_batch(self.queue, self._max_bytes)
                    self._in_flight = len(items)
                owed -= self._in_flight
            if block is not None:
                items = zlib.decompress(block[1]).split(b"\n")
            if not items:
                return
            self._taken(items)
            try:
                reason = self.deliver(items)
                if reason == "shutdown_timeout":
                    self._fail(items, DeliveryError(reason, "shutdown deadline reached"))
            finally:
                with self._lock:
                    self._resolved += len(items)
                    self._in_flight = 0
                    self._settled.notify_all()

    def _run_compactor(self) -> None:
        """Compress the oldest part of a long backlog, one batch per block (zlib level 1).

        zlib releases the GIL, so this runs beside the application on another core; it
        starts only when more than ``compact_at`` messages wait while delivery is stalled
        (`STALL_AFTER`), and leaves the newest half of ``compact_at`` as they are.
        """
        while not self._stopping:
            self._compact_wakeup.wait(self.flush_after)
            self._compact_wakeup.clear()
            self._compact_sent = False
            while len(self.queue) > self.compact_at // 2 and not self._stopping:
                since = self._sending_since
                if since is None or time.monotonic() - since < STALL_AFTER:
                    # Draining: look again soon. Cleared first: put() set it, and a set Event
                    # would make this loop spin (only shutdown sets it again meanwhile).
                    self._compact_wakeup.clear()
                    self._compact_wakeup.wait(STALL_AFTER / 2)
                    continue
                with self._lock:
                    items = take_batch(self.queue, self._max_bytes)
                    self._blocked += len(items)  # counted from now: flush and put see them
                block = (len(items), zlib.compress(b"\n".join(items), 1))
                with self._lock:
                    self._blocks.append(block)

    def _taken(self, items: list[bytes]) -> None:
        """Called with each batch taken from the memory queue (a hook for subclasses)."""

    def deliver(self, items: list[bytes]) -> str | None:
        """Send one batch, retrying by the policy. Never raises.

        Returns:
            None when delivered (reported as sent); ``"shutdown_timeout"`` when the shutdown
            deadline came first (not reported: the caller keeps or fails the batch); else the
            reason of a final failure, already reported as failed.
        """
        self._sending_since = time.monotonic()
        try:
            return self._deliver(items)
        finally:
            self._sending_since = None

    def _deliver(self, items: list[bytes]) -> str | None:
        clock = self.clock
        state = RetryState(started=clock.monotonic())
        while True:
            remaining = None if self._deadline is None else self._deadline - clock.monotonic()
            if remaining is not None and remaining <= 0:
                return "shutdown_timeout"
            try:
                if self._transport is None:
                    self._transport = self._transport_factory()
                body = envelope(items, now_iso(), self._write_key_json)
                outcome = self._transport.send(body, state.attempts, remaining)
            except Exception as exc:  # a bug here must not lose the batch silently
                logger.exception("analytics: unexpected error while sending")
                self._fail(items, DeliveryError("internal_error", repr(exc)))
                return "internal_error"
            state, delay, reason = self.policy.decide(
                state, outcome, clock.monotonic(), random.random()
            )
            if outcome.delivered:
                self.sent += len(items)
                self._on_sent(items, outcome)
                return None
            if delay is None:
                detail = outcome.error or f"HTTP {outcome.status}"
                self._fail(items, DeliveryError(reason, detail, outcome.status))
                return reason
            if remaining is not None and delay >= remaining:
                return "shutdown_timeout"  # the next attempt would come after the deadline
            self.retried += 1
            logger.debug(
                "batch of %d not delivered (%s); retry in %.2fs",
                len(items),
                outcome.error or outcome.status,
                delay,
            )
            clock.sleep(self._interrupt, delay)
            self._interrupt.clear()

    def _fail(self, items: list[bytes], error: DeliveryError) -> None:
        self.failed += len(items)
        logger.warning("analytics: %d messages not delivered: %s", len(items), error)
        self._on_failed(items, error)
