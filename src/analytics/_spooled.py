"""The sender with a durable spool: queued messages go to disk before they are sent.

Two threads work on one `Spool` (see `analytics._spool` for the file and its rules):

- the *spooler* moves the memory queue into the spool every ``spool_interval`` seconds (1 s),
  whatever delivery is doing: waiting on a slow collector, backing off during an outage, idle;
- the *sender* (the `Sender` thread) moves the queue into the spool when it wakes, then leases
  the oldest chunk, delivers it with the usual retries, and acks it (deletes it) when it was
  delivered or finally refused. At the shutdown deadline it releases the chunk instead, so a
  later process sends it.

The calling thread never touches the disk: `put()` is the memory queue's. What a SIGKILL can
lose is what was still in memory: at most the last ``spool_interval`` of messages.

If writing to the spool fails (disk full, read-only, locked), the client logs it once, puts the
messages it could not write back at the head of the memory queue and keeps new ones in memory
(counted as ``unspooled``), while it still sends and acks the chunks already on disk. If reading
fails too (a corrupt file), it goes on in memory only.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from analytics._batch import take_batch
from analytics._exceptions import DeliveryError
from analytics._spool import Spool, SpoolError
from analytics._worker import Sender

__all__ = ["SpooledSender"]

logger = logging.getLogger("analytics")


class SpooledSender(Sender):
    """A `Sender` that keeps every queued message in a `Spool` until it is delivered."""

    def __init__(self, *, spool: Spool, spool_interval: float, **kwargs: Any) -> None:
        """Wrap ``spool``; if it holds messages from an earlier process, start sending them."""
        self.spool: Spool | None = spool
        self.writable = True  # False after a failed write: new events stay in memory
        self.spool_interval = spool_interval
        self._left_behind = 0  # messages left in the spool at shutdown
        super().__init__(**kwargs)
        self.compact_at = 2**62  # no compaction: the spool takes the backlog off memory
        if self._spool_pending():
            self._start()

    def _init_state(self) -> None:
        super()._init_state()
        self._spooler: threading.Thread | None = None
        self._spooler_stop = threading.Event()

    def after_fork_in_child(self) -> None:
        """The child opens its own connection and owns none of the parent's leased chunks."""
        super().after_fork_in_child()
        if self.spool is not None:
            self.spool.after_fork_in_child()

    def _start(self) -> None:
        super()._start()
        with self._lock:
            if self._spooler is not None or self._stopping or self.spool is None:
                return
            thread = threading.Thread(
                target=self._run_spooler, name="analytics-spooler", daemon=True
            )
            try:
                thread.start()
            except RuntimeError:  # interpreter shutting down: shutdown() spools what is left
                return
            self._spooler = thread

    def _run_spooler(self) -> None:
        while not self._spooler_stop.wait(self.spool_interval):
            if self.spool is None or not self.writable:
                return
            try:
                self._spool_queue()
            except Exception:  # never let a bug stop the spooler silently
                logger.exception("analytics spooler: unexpected error; continuing")

    # --- memory -> disk -------------------------------------------------------------------------

    def _spool_queue(self) -> None:
        """Move everything queued in memory into the spool, one chunk per batch."""
        while True:
            with self._lock:  # flush() reads the counters under this lock: keep them consistent
                spool = self.spool
                if spool is None or not self.writable or not self.queue:
                    return
                items = take_batch(self.queue, self._max_bytes)
                try:
                    dropped = spool.append(items)
                except SpoolError as exc:
                    self.queue.extendleft(reversed(items))
                    self._stop_writing(exc)
                    return
                if dropped:
                    self.dropped["spool_full"] += dropped
            if dropped:
                logger.warning(
                    "analytics: the spool is over its size bound; dropped the %d oldest messages",
                    dropped,
                )

    def _stop_writing(self, exc: SpoolError) -> None:
        """A write failed (disk full, read-only ...): keep new events in memory, say so once.

        The chunks already in the spool are still leased, sent and acked.
        """
        if self.writable:
            self.writable = False
            logger.error(
                "analytics: cannot write to the spool (%s); new events are kept in memory, "
                "the ones already spooled are still sent",
                exc,
            )

    def _give_up_spool(self, exc: SpoolError) -> None:
        """Reading the spool failed too: memory only from now on, said once (lock or not)."""
        if self.spool is None:
            return
        # A second line only at DEBUG when writing already failed: the user was told once.
        level = logging.ERROR if self.writable else logging.DEBUG
        logger.log(level, "analytics: the spool failed (%s); events are kept in memory only", exc)
        self.writable = False
        self.spool = None

    def _spool_pending(self) -> int:
        spool = self.spool
        if spool is None:
            return 0
        try:
            return spool.pending()
        except SpoolError as exc:  # may run under the lock (flush): do not take it here
            self._give_up_spool(exc)
            return 0

    def flush(self, timeout: float | None) -> bool:
        """Spool what is queued, then wait until every chunk stored up to now is delivered.

        Counted in chunks, not in this process's deliveries, so it holds when several
        processes share the file (any of them may deliver a chunk) and for chunks an earlier
        process left behind.
        """
        failed_before = self.failed
        self._spool_queue()  # flush may block (bounded): it writes what is queued to disk
        spool = self.spool
        if spool is None:
            return super().flush(timeout)
        try:
            newest = spool.newest_chunk_id()
        except SpoolError as exc:
            self._give_up_spool(exc)
            return super().flush(timeout)
        with self._lock:  # what the spool could not take waits in memory: count it too
            target = self._resolved + len(self.queue) + self._in_flight
        self._start()
        self._interrupt.set()
        self._wakeup.set()
        deadline = self.clock.monotonic() + (timeout or 0.0)
        with self._settled:
            while True:
                try:
                    left = spool.pending_through(newest) + max(0, target - self._resolved)
                except SpoolError:
                    return False
                remaining = deadline - self.clock.monotonic()
                if left == 0 or timeout is None or remaining <= 0 or not self._alive():
                    break
                # Woken when this process settles a chunk; another process's delivery is
                # seen on the next check.
                self._settled.wait(min(remaining, 0.05))
        return left == 0 and self.failed == failed_before

    def _unsettled(self) -> int:
        return self.pending() + self._left_behind

    # --- disk -> collector ----------------------------------------------------------------------

    def _drain(self) -> None:
        """Spool what is queued, then send chunks oldest first until the spool is empty."""
        self._spool_queue()
        while self.spool is not None:
            try:
                chunk = self.spool.lease()
            except SpoolError as exc:
                self._give_up_spool(exc)
                break
            if chunk is None:
                break
            self._send_chunk(*chunk)
            if len(self.queue) >= self.flush_at:  # else the spooler takes them within its interval
                self._spool_queue()
        if self.spool is None or not self.writable:
            super()._drain()  # what the spool could not take goes out from memory

    def _taken(self, items: list[bytes]) -> None:
        self.unspooled += len(items)  # a batch sent from memory: the spool could not keep it

    def _send_chunk(self, chunk_id: int, items: list[bytes]) -> None:
        # Not counted in _in_flight: a leased chunk is still counted by the spool's pending().
        reason = self.deliver(items)
        with self._lock:
            spool = self.spool
            try:
                if spool is not None and reason == "shutdown_timeout":
                    spool.release(chunk_id)  # kept on disk: a later process sends it
                    return
                if spool is not None:
                    spool.ack(chunk_id)
            except SpoolError as exc:  # the chunk may be sent again later: at least once
                logger.warning("analytics: could not update the spool: %s", exc)
            if spool is None and reason == "shutdown_timeout":
                self._fail(items, DeliveryError(reason, "shutdown deadline reached"))
            self._settled.notify_all()  # _resolved counts memory batches only

    def _close_storage(self) -> None:
        """Stop the spooler, write what is still in memory to disk, release leases, close."""
        self._spooler_stop.set()
        spooler = self._spooler
        if spooler is not None and spooler is not threading.current_thread():
            spooler.join(5.0)
        self._spool_queue()
        spool = self.spool
        if spool is not None:
            self._left_behind = self._spool_pending()
            if self._left_behind:
                logger.warning(
                    "analytics: %d message(s) stay in the spool %s for the next start",
                    self._left_behind,
                    spool.path,
                )
            spool.close()
            self.spool = None

    def pending(self) -> int:
        """Messages queued in memory, in flight from memory, or in the spool."""
        return len(self.queue) + self._in_flight + self._spool_pending()
