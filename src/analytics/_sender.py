"""The threaded sender of `Client`: one thread that runs the shared delivery core.

Everything that decides (the state machine, settling, accounting) is in `analytics._core`; this
shell only loops, waits on one `Condition` and calls a blocking `Transport`. The same code runs
over both buffers (memory and spool: `analytics._buffer`).

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
import threading
import time
from collections.abc import Callable

from analytics._buffer import Batch, Buffer
from analytics._core import GRACE, Attempt, Core, Delivery
from analytics._delivery import Delivered, Result
from analytics._retry import Outcome
from analytics._transport import Transport

__all__ = ["GRACE", "Sender", "run_blocking"]

#: Flush re-reads a spool this often: another process sharing the file may deliver a chunk.
FLUSH_POLL = 0.05


class Sender(Core):
    """Owns the thread and the delivery loop of one `Client` over its buffer."""

    def __init__(
        self, buffer: Buffer, *, transport_factory: Callable[[], Transport], **core: object
    ) -> None:
        """Set up an idle sender; the thread starts on the first `put()`, or now when the
        buffer already holds messages (a spool left by an earlier process)."""
        super().__init__(buffer, **core)  # type: ignore[arg-type]
        self._transport_factory = transport_factory
        self._init_state()
        if buffer.ready():
            self._start()

    def _init_state(self) -> None:
        """(Re)create everything a forked child must not share with its parent."""
        self._init_core()
        self._cond = threading.Condition(self._lock)
        self._thread: threading.Thread | None = None
        self._transport: Transport | None = None
        self._wake_pending = False  # a notify is on its way: put() need not send another
        # Idle after a round that took nothing: what a flush still waits for is then held
        # elsewhere (a spool chunk another sender leased) or the file is locked, so the flush
        # asks for a round every FLUSH_POLL (a sender that stops gives its chunk back).
        self._stalled = False
        self._buffer_put = self.buffer.put

    def _notify(self) -> None:
        with self._cond:
            self._cond.notify_all()

    # --- the calling thread ---------------------------------------------------------------------

    def put(self, data: bytes) -> str | None:
        """Queue one encoded message. Never blocks.

        Returns:
            None when queued, else why not: ``"queue_full"`` or ``"shut_down"``.
        """
        if self.closed:
            return "shut_down"
        n = self._buffer_put(data)
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
        if not self._alive() and self.buffer.outstanding(mark):
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
                if self._stalled:  # see _init_state; only while something is owed: a request
                    self._flush_asked = True  # left behind would send what comes next at once
                    self._cond.notify_all()
                self._cond.wait(min(remaining, FLUSH_POLL))
            return left == 0 and self.failed == failed_before

    def finish_shutdown(self, deadline: float) -> bool:
        """Wait for the thread until ``deadline`` (+ `GRACE`), cut what is left, close.

        Returns:
            True when everything queued was delivered.
        """
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(max(0.0, deadline - self.clock.monotonic()) + GRACE)
        if thread is None or not thread.is_alive():
            # Deliver here, bounded by the deadline, what the thread did not: all of it when
            # the thread never started or died; after a normal stop, what reached the buffer
            # after its last take (a put() that passed the `closed` check just before
            # begin_shutdown) and, with a spool locked by another process through shutdown,
            # what stayed in memory (closing the spool makes take() fall back to memory).
            # Each case has a test in tests/client/test_lifecycle.py.
            self._drain()
        done = thread is None or not thread.is_alive()
        if done:
            self._close()
        else:  # a request outlived the grace: the thread closes when it returns
            self.log.warning("analytics: shutdown deadline passed with a request in flight")
        return self.shutdown_result(done)

    def shutdown(self, timeout: float) -> bool:
        """`begin_shutdown` then `finish_shutdown`, ``timeout`` seconds from now."""
        deadline = self.clock.monotonic() + timeout
        self.begin_shutdown(deadline)
        return self.finish_shutdown(deadline)

    def deliver_now(self, data: bytes) -> bool:
        """Sync mode: deliver one message on the calling thread (same limits and retries)."""
        result = self._deliver(Batch([data]), owned=False)
        return isinstance(result, Delivered) and not result.refused

    def deliver_taken(self, batch: Batch) -> None:
        """Deliver a batch already taken from the buffer (by a sender that can no longer)."""
        self._deliver(batch)

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
        """Start the thread (again, if it died: a flush restarts it)."""
        with self._cond:
            if self._alive() or self.closed:
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
                    if not self.due(stalled):
                        self._stalled = stalled
                        self._cond.wait(self.flush_after)
                        self._stalled = False
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

    def _drain(self) -> int:
        """Send what waits now, batch by batch; return how many batches were taken."""
        owed = self.take_round()
        taken = 0
        while self.keep_taking(owed):
            batch = self.buffer.take()
            if batch is None:
                break
            taken += 1
            owed -= len(batch.items)
            self._deliver(batch)
        return taken

    def _deliver(self, batch: Batch, *, owned: bool = True) -> Result | None:
        return run_blocking(self.delivery(batch, owned=owned), self._send, self._wait)

    def _send(self, attempt: Attempt) -> Outcome:
        try:
            transport = self._transport
            if transport is None:
                with self._cond:
                    transport = self._transport = self._transport or self._transport_factory()
            return transport.send(attempt.body, attempt.retry_count, attempt.timeout)
        except BaseException as exc:  # a transport bug (even SystemExit): fail, never lose
            self.log.exception("analytics: unexpected error while sending")
            return Outcome(None, error=repr(exc), internal=True)

    def _wait(self, until: float) -> None:
        """A retry wait: only a (new) shutdown deadline ends it early, never a flush."""
        stop = self.retry_wait_over(self._deadline_seq)
        with self._cond:
            self.clock.wait(self._cond, until - self.clock.monotonic(), stop)

    def _close(self) -> None:
        """Close the buffer and the transport, once (whoever ends last: thread or caller)."""
        if not self.claim_close():
            return
        self._stored_left = self.buffer.close()
        if self._transport is not None:
            self._transport.close()


def run_blocking(
    delivery: Delivery, send: Callable[[Attempt], Outcome], wait: Callable[[float], None]
) -> Result | None:
    """Drive a delivery generator with blocking I/O: ``send`` an attempt, ``wait`` until t."""
    try:
        action = next(delivery)
        while True:
            if isinstance(action, Attempt):
                action = delivery.send(send(action))
            else:
                wait(action.until)
                action = delivery.send(None)
    except StopIteration as stop:
        result: Result | None = stop.value
        return result
