"""The sender: one thread that runs the delivery state machine over a buffer.

It knows a `Buffer` (memory or spool: `analytics._buffer`), a `Transport` (`analytics._transport`)
and the pure state machine (`analytics._delivery`); it only loops, waits on one `Condition` and
counts. Flush, shutdown and exit accounting are written here once, for every buffer.

Lifecycle contract (each row is tested over both buffers):

| call                 | blocks?                  | effect                                                |
|----------------------|--------------------------|-------------------------------------------------------|
| `put()` (track ...)  | never                    | append, or refuse (the client counts the drop)        |
| `flush(timeout)`     | at most ``timeout``      | send what is queued now within the retry schedule (a  |
|                      |                          | backoff or Retry-After is never cut short); True when |
|                      |                          | all of it was delivered                               |
| `shutdown(timeout)`  | ``timeout`` + `GRACE`    | refuse new messages, deliver within the deadline, cut |
|                      |                          | the rest (a spool keeps it on disk; from memory it is |
|                      |                          | reported failed), stop, close; True if all delivered  |
| fork (child)         | -                        | fresh lock, buffer and pool; the thread restarts lazily |

The thread starts with the first `put()` (a client never used costs nothing; a forked child
starts its own) and sends at once. After that it wakes when ``flush_at`` messages wait, when
``flush_after`` seconds pass, on `flush()` and on shutdown, and sends everything waiting, in
batches as large as the limits allow.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from typing import Any

from analytics._batch import envelope
from analytics._buffer import Batch, Buffer
from analytics._clock import Clock
from analytics._delivery import (
    CUT,
    Delivered,
    Failed,
    Result,
    Wait,
    after_attempt,
    next_step,
    start,
)
from analytics._exceptions import DeliveryError
from analytics._message import now_iso
from analytics._reporting import Reporter
from analytics._retry import Outcome, RetryPolicy
from analytics._transport import Transport

__all__ = ["GRACE", "Sender"]


#: How long past its deadline `shutdown` waits for a request already on the wire (the request
#: itself is given at most the time left before the deadline as its timeout).
GRACE = 0.1
#: Flush re-reads a spool this often: another process sharing the file may deliver a chunk.
FLUSH_POLL = 0.05


class Sender:
    """Owns the thread and the delivery loop of one `Client` over its buffer."""

    def __init__(
        self,
        buffer: Buffer,
        *,
        transport_factory: Callable[[], Transport],
        write_key_json: bytes,
        flush_at: int,
        flush_after: float,
        policy: RetryPolicy,
        clock: Clock,
        reporter: Reporter,
    ) -> None:
        """Set up an idle sender; the thread starts on the first `put()`, or now when the
        buffer already holds messages (a spool left by an earlier process)."""
        self.buffer = buffer
        self._transport_factory = transport_factory
        self._write_key_json = write_key_json
        self.flush_at = flush_at
        self.flush_after = flush_after
        self.policy = policy
        self.clock = clock
        self.reporter = reporter
        self.log = reporter.log
        self._init_state()
        if buffer.ready():
            self._start()

    def _init_state(self) -> None:
        """(Re)create everything a forked child must not share with its parent."""
        self._cond = threading.Condition(threading.Lock())
        self._thread: threading.Thread | None = None
        self._transport: Transport | None = None
        self._wake_pending = False  # a notify is on its way: put() need not send another
        self._flush_asked = False
        self.closed = False
        self._deadline: float | None = None
        self._deadline_seq = 0  # changes when a deadline is set: ends a retry wait
        self._failed_at_close = 0
        self._finished = False  # buffer and transport closed
        self._stored_left = 0  # messages a durable buffer kept at close
        self.sent = 0
        self.failed = 0
        self.retried = 0

    # --- the calling thread ---------------------------------------------------------------------

    def put(self, data: bytes) -> str | None:
        """Queue one encoded message. Never blocks.

        Returns:
            None when queued, else why not: ``"queue_full"`` or ``"shut_down"``.
        """
        if self.closed:
            return "shut_down"
        n = self.buffer.put(data)
        if n < 0:
            return "queue_full"
        if self._thread is None:
            self._start()
        elif n >= self.flush_at and not self._wake_pending:
            with self._cond:  # the flag is reset by the thread under this lock: no lost wake-up
                self._wake_pending = True
                self._cond.notify()
        return None

    def wait_for_room(self, timeout: float) -> bool:
        """Block up to ``timeout`` until the buffer has room (bulk imports only)."""
        buffer = self.buffer
        end = time.monotonic() + timeout
        with self._cond:
            self._flush_asked = True
            self._cond.notify_all()
            while buffer.full() and self._alive():
                left = end - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(min(left, FLUSH_POLL))
        return not buffer.full()

    def pending(self) -> int:
        """Messages waiting, in flight, or stored."""
        return self.buffer.pending()

    def flush(self, timeout: float | None) -> bool:
        """Ask for what is queued now to be sent; with a timeout, wait (real time) that long.

        Never cuts a retry wait short. True when everything queued before the call was
        delivered (for ``timeout=None``: when nothing was pending).
        """
        with self._cond:
            failed_before = self.failed
        mark = self.buffer.mark()
        if self._thread is None and self.buffer.outstanding(mark):
            self._start()
        with self._cond:
            self._flush_asked = True
            self._cond.notify_all()
            if timeout is None:
                return self.buffer.outstanding(mark) == 0 and self.failed == failed_before
            end = time.monotonic() + timeout
            while True:
                left = self.buffer.outstanding(mark)
                remaining = end - time.monotonic()
                if left == 0 or remaining <= 0 or not self._alive():
                    break
                self._cond.wait(min(remaining, FLUSH_POLL))
            return left == 0 and self.failed == failed_before

    def begin_shutdown(self, deadline: float) -> None:
        """Refuse new messages and make delivery end by ``deadline`` (monotonic)."""
        with self._cond:
            if not self.closed:
                self.closed = True
                self._failed_at_close = self.failed
            if self._deadline is None or deadline < self._deadline:
                self._deadline = deadline
                self._deadline_seq += 1
            self._cond.notify_all()

    def finish_shutdown(self, deadline: float) -> bool:
        """Wait for the thread until ``deadline`` (+ `GRACE`), cut what is left, close.

        Returns:
            True when everything queued was delivered.
        """
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(max(0.0, deadline - self.clock.monotonic()) + GRACE)
        if thread is None:
            self._drain()  # never started: deliver here, bounded by the deadline
        done = thread is None or not thread.is_alive()
        if done:
            self._close()
        else:  # a request outlived the grace: the thread closes when it returns
            self.log.warning("analytics: shutdown deadline passed with a request in flight")
        self._fail(self.buffer.evict(), "shutdown_timeout", "shutdown deadline reached")
        with self._cond:
            failed = self.failed != self._failed_at_close
            return done and not failed and self._stored_left == 0

    def shutdown(self, timeout: float) -> bool:
        """`begin_shutdown` then `finish_shutdown`, ``timeout`` seconds from now."""
        deadline = self.clock.monotonic() + timeout
        self.begin_shutdown(deadline)
        return self.finish_shutdown(deadline)

    def deliver_now(self, data: bytes) -> bool:
        """Sync mode: deliver one message on the calling thread (same limits and retries)."""
        result = self._deliver(Batch([data]), owned=False)
        return isinstance(result, Delivered) and not result.refused

    def after_fork_in_child(self) -> None:
        """Forget the parent's thread, lock, queue and connection (they belong to the parent)."""
        self._init_state()
        self.buffer.after_fork_in_child()

    def alive(self) -> bool:
        """True while the sender thread runs."""
        return self._alive()

    def _alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _start(self) -> None:
        with self._cond:
            if self._thread is not None or self.closed:
                return
            self._flush_asked = True  # the first round sends at once (the seed's first flush)
            thread = threading.Thread(target=self._run, name="analytics-sender")
            thread.daemon = True
            try:
                thread.start()
            except RuntimeError:  # interpreter shutting down: shutdown() drains on its thread
                self.log.log(logging.DEBUG, "could not start the sender thread", exc_info=True)
                return
            self._thread = thread

    # --- the thread -----------------------------------------------------------------------------

    def _run(self) -> None:
        stalled = False  # the last round could take nothing (a spool locked by others)
        try:
            while True:
                with self._cond:
                    if not stalled:
                        self._wake_pending = False  # else put() need not wake us again
                    if not self._due(stalled):
                        self._cond.wait(self.flush_after)
                    stopping = self._deadline is not None
                try:
                    stalled = self._drain() == 0 and not stopping
                except BaseException:  # a bug (or a stray exit) must not end delivery
                    self.log.exception("analytics sender: unexpected error; continuing")
                if stopping:
                    return
        finally:
            if self._deadline is not None:
                self._close()

    def _due(self, stalled: bool) -> bool:
        if self._deadline is not None or self._flush_asked:
            return True
        return not stalled and self.buffer.ready() >= self.flush_at

    def _drain(self) -> int:
        """Send what waits now, batch by batch; return how many batches were taken.

        What arrives meanwhile goes in the same round only while ``flush_at`` or more wait (or
        when stopping), so a steady trickle leaves in batches of ``flush_at``.
        """
        with self._cond:
            self._flush_asked = False
        owed = self.buffer.ready()
        taken = 0
        while True:
            deadline = self._deadline
            if deadline is not None and self.clock.monotonic() >= deadline:
                return taken  # finish_shutdown cuts what is left
            if deadline is None and owed <= 0 and self.buffer.ready() < self.flush_at:
                return taken
            batch = self.buffer.take()
            if batch is None:
                return taken
            taken += 1
            owed -= len(batch.items)
            self._deliver(batch)

    def _deliver(self, batch: Batch, *, owned: bool = True) -> Result | None:
        """Run the state machine for one batch until it is settled (or cut: None)."""
        clock = self.clock
        state = start(clock.monotonic())
        self.buffer.delivery_started(time.monotonic())
        try:
            while True:
                now = clock.monotonic()
                step = next_step(state, now, self._deadline)
                if step is CUT:
                    self._cut(batch, owned)
                    return None
                if isinstance(step, Wait):
                    self._wait(step.until - now)
                    continue
                deadline = self._deadline
                remaining = None if deadline is None else deadline - now
                outcome = self._attempt(batch.items, state.retry.attempts, remaining)
                state, result = after_attempt(
                    self.policy,
                    state,
                    outcome,
                    clock.monotonic(),
                    random.random(),
                    len(batch.items),
                )
                if result is not None:
                    self._settle(batch, result, outcome, owned)
                    return result
                with self._cond:
                    self.retried += 1
                self.log.debug(
                    "batch of %d not delivered (%s); next attempt in %.2fs",
                    len(batch.items),
                    outcome.error or outcome.status,
                    state.next_at - clock.monotonic(),
                )
        finally:
            self.buffer.delivery_started(None)

    def _wait(self, seconds: float) -> None:
        """A retry wait: only a (new) shutdown deadline ends it early, never a flush."""
        seq = self._deadline_seq
        with self._cond:
            self.clock.wait(self._cond, seconds, lambda: self._deadline_seq != seq)

    def _attempt(self, items: list[bytes], attempts: int, remaining: float | None) -> Outcome:
        try:
            transport = self._transport
            if transport is None:
                with self._cond:
                    transport = self._transport = self._transport or self._transport_factory()
            body = envelope(items, now_iso(), self._write_key_json)
            return transport.send(body, attempts, remaining)
        except Exception as exc:  # a transport bug: a final failure, never a silent loss
            self.log.exception("analytics: unexpected error while sending")
            return Outcome(400, error=f"internal_error: {exc!r}")

    def _settle(self, batch: Batch, result: Result, outcome: Outcome, owned: bool) -> None:
        """Count, tell, then forget: a flush that sees the batch settled also sees its
        failures counted and its callbacks called."""
        items = batch.items
        refused = result.refused if isinstance(result, Delivered) else ()
        failed = len(items) if isinstance(result, Failed) else len(refused)
        with self._cond:
            self.sent += len(items) - failed
            self.failed += failed
        try:
            self._report(items, result, refused, outcome)
        finally:
            if owned:
                self.buffer.ack(batch)
            with self._cond:
                self._cond.notify_all()

    def _report(self, items: list[bytes], result: Result, refused: Any, outcome: Outcome) -> None:
        if isinstance(result, Failed):
            self.log.warning(
                "analytics: %d message(s) not delivered: %s", len(items), result.detail
            )
            self.reporter.failed(items, DeliveryError(result.reason, result.detail, result.status))
            return
        if refused:
            self._report_refused(items, refused, outcome)
            skip = {r.index for r in refused}
            items = [item for i, item in enumerate(items) if i not in skip]
        if items:
            self.reporter.sent(items, outcome)

    def _report_refused(self, items: list[bytes], refused: Any, outcome: Outcome) -> None:
        self.log.warning(
            "analytics: the collector refused %d message(s) of a batch of %d (first: %s %s)",
            len(refused),
            len(items),
            refused[0].code,
            refused[0].reason,
        )
        by_code: dict[str, list[int]] = {}
        for r in refused:
            by_code.setdefault(r.code, []).append(r.index)
        for code, indexes in by_code.items():
            reason = next(r.reason for r in refused if r.code == code)
            error = DeliveryError(code, reason, outcome.status)
            self.reporter.failed([items[i] for i in indexes], error)

    def _cut(self, batch: Batch, owned: bool) -> None:
        """The deadline came first: a spool keeps the batch; from memory it is reported."""
        if owned and self.buffer.release(batch):
            return
        self._fail(batch.items, "shutdown_timeout", "shutdown deadline reached")

    def _fail(self, items: list[bytes], reason: str, detail: str) -> None:
        if not items:
            return
        with self._cond:
            self.failed += len(items)
            self._cond.notify_all()
        self.log.warning("analytics: %d message(s) not delivered: %s", len(items), detail)
        self.reporter.failed(items, DeliveryError(reason, detail))

    def _close(self) -> None:
        """Close the buffer and the transport, once (whoever ends last: thread or caller)."""
        with self._cond:
            if self._finished:
                return
            self._finished = True
        self._stored_left = self.buffer.close()
        if self._transport is not None:
            self._transport.close()
