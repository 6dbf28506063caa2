"""What every sender shares: delivery of a batch as a generator, and the accounting.

Two shells run it: the thread of `Client` (`analytics._sender`) and the asyncio task of
`AsyncClient` (`analytics._async`). A shell only waits and does I/O; everything that decides is
here or in the pure state machine (`analytics._delivery`), written once:

- `Core.delivery(batch)` is a generator: it yields an `Attempt` (send this body, with this
  timeout) or a `Wait` (until a monotonic time), receives the attempt's `Outcome`, and returns
  the batch's result after it has settled it (or None when a shutdown deadline cut it);
- settling counts first, reports (callbacks) second, acks the buffer last, so a flush that sees
  a batch settled also sees its failures counted and its callbacks called;
- a cut batch is kept by a durable buffer (the spool), or reported failed (memory);
- shutdown state (refuse new messages, a deadline, what was failed since) and the result of a
  flush or a shutdown are computed here.

Every message is counted once: sent, failed (final HTTP answer, refusal in a 2xx, retries
exhausted, cut at shutdown), or dropped (by the client, before the buffer).
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Generator
from dataclasses import dataclass
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

__all__ = ["GRACE", "Attempt", "Core", "Delivery"]

#: How long past its deadline a shutdown waits for a request already on the wire (the request
#: itself is given at most the time left before the deadline as its timeout).
GRACE = 0.1


@dataclass(frozen=True, slots=True)
class Attempt:
    """Send ``body`` now (``retry_count`` attempts before), within ``timeout`` seconds."""

    body: bytes
    retry_count: int
    timeout: float | None


Delivery = Generator[Attempt | Wait, Outcome | None, Result | None]


class Core:
    """The state and accounting of one sender; the shells subclass it."""

    def __init__(
        self,
        buffer: Buffer,
        *,
        write_key_json: bytes,
        flush_at: int,
        flush_after: float,
        policy: RetryPolicy,
        clock: Clock,
        reporter: Reporter,
    ) -> None:
        """Set up the accounting; the shell starts delivery."""
        self.buffer = buffer
        self._write_key_json = write_key_json
        self.flush_at = flush_at
        self.flush_after = flush_after
        self.policy = policy
        self.clock = clock
        self.reporter = reporter
        self.log = reporter.log
        self._init_core()

    def _init_core(self) -> None:
        """(Re)create the accounting (a forked child starts its own)."""
        self._lock = threading.Lock()  # counters and shutdown state
        self.closed = False
        self._deadline: float | None = None
        self._deadline_seq = 0  # changes when a deadline is set: ends a retry wait
        self._failed_at_close = 0
        self._finished = False  # buffer and transport closed
        self._stored_left = 0  # messages a durable buffer kept at close
        self._flush_asked = False
        self._cut_once = False  # a batch was cut at the deadline: take no more
        self.sent = 0
        self.failed = 0
        self.retried = 0

    def _notify(self) -> None:
        """Wake whoever waits for a settlement (the shell's flush); called after each one."""
        raise NotImplementedError

    # --- one batch ------------------------------------------------------------------------------

    def delivery(self, batch: Batch, *, owned: bool = True) -> Delivery:
        """Deliver one batch: yields what the shell must do, returns the settled result.

        ``owned`` is False for a sync-mode message that never was in the buffer.
        """
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
                    yield step
                    continue
                deadline = self._deadline
                body = envelope(batch.items, now_iso(), self._write_key_json)
                outcome = yield Attempt(
                    body, state.retry.attempts, None if deadline is None else deadline - now
                )
                if outcome is None:  # the shell could not send: a bug, never a silent loss
                    outcome = Outcome(None, error="no outcome", internal=True)
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
                with self._lock:
                    self.retried += 1
                self.log.debug(
                    "batch of %d not delivered (%s); next attempt in %.2fs",
                    len(batch.items),
                    outcome.error or outcome.status,
                    state.next_at - clock.monotonic(),
                )
        finally:
            self.buffer.delivery_started(None)

    def retry_wait_over(self, seq: int) -> Callable[[], bool]:
        """The stop condition of a retry wait begun at ``seq``: a (new) shutdown deadline."""
        return lambda: self._deadline_seq != seq

    # --- settling -------------------------------------------------------------------------------

    def _settle(self, batch: Batch, result: Result, outcome: Outcome, owned: bool) -> None:
        """Count, tell, then forget (see the module docstring for why in that order)."""
        items = batch.items
        refused = result.refused if isinstance(result, Delivered) else ()
        failed = len(items) if isinstance(result, Failed) else len(refused)
        with self._lock:
            self.sent += len(items) - failed
            self.failed += failed
        try:
            self._report(items, result, refused, outcome)
        finally:
            if owned:
                self._ack(batch)
            self._notify()

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
        grouped: dict[tuple[str, str], list[int]] = {}
        for r in refused:  # one on_failure call per distinct (code, reason)
            grouped.setdefault((r.code, r.reason), []).append(r.index)
        for (code, reason), indexes in grouped.items():
            error = DeliveryError(code, reason, outcome.status)
            self.reporter.failed([items[i] for i in indexes], error)

    def _cut(self, batch: Batch, owned: bool) -> None:
        """The deadline came first: a spool keeps the batch; from memory it is reported."""
        self._cut_once = True  # what is left waits (spool) or is failed: never re-taken now
        if owned and self._release(batch):
            return
        self._fail(batch.items, "shutdown_timeout", "shutdown deadline reached")

    def _ack(self, batch: Batch) -> None:
        """Forget a settled batch (a shell whose loop must not touch the disk overrides it)."""
        self.buffer.ack(batch)

    def _release(self, batch: Batch) -> bool:
        """Give a cut batch back; True when the buffer keeps it (see `_ack`)."""
        return self.buffer.release(batch)

    def _fail(self, items: list[bytes], reason: str, detail: str) -> None:
        if not items:
            return
        with self._lock:
            self.failed += len(items)
        self.log.warning("analytics: %d message(s) not delivered: %s", len(items), detail)
        self.reporter.failed(items, DeliveryError(reason, detail))
        self._notify()

    # --- flush and shutdown accounting ----------------------------------------------------------

    def due(self, stalled: bool) -> bool:
        """Should the shell start a round now (stopping, a flush, ``flush_at`` reached)?"""
        if self._deadline is not None or self._flush_asked:
            return True
        return not stalled and self.buffer.ready() >= self.flush_at

    def take_round(self) -> int:
        """Start a round: clear the flush request; how many messages are owed to it (a flush
        is owed one take at least: what it waits for may be a spool chunk another sender
        gave back, which this one does not count as ready)."""
        with self._lock:
            asked, self._flush_asked = self._flush_asked, False
        return max(self.buffer.ready(), int(asked))

    def keep_taking(self, owed: int) -> bool:
        """Take another batch in this round? What arrives during a round goes in it only
        while ``flush_at`` or more wait (or when stopping): a trickle leaves in batches of
        ``flush_at``. Never past the shutdown deadline (the shell cuts what is left)."""
        deadline = self._deadline
        if deadline is not None:
            return self.clock.monotonic() < deadline and not self._cut_once
        return owed > 0 or self.buffer.ready() >= self.flush_at

    def begin_shutdown(self, deadline: float) -> None:
        """Refuse new messages and make delivery end by ``deadline`` (monotonic)."""
        with self._lock:
            if not self.closed:
                self.closed = True
                self._failed_at_close = self.failed
            if self._deadline is None or deadline < self._deadline:
                self._deadline = deadline
                self._deadline_seq += 1
        self._notify()

    def claim_close(self) -> bool:
        """True for the one caller (thread or shell) that must close buffer and transport."""
        with self._lock:
            if self._finished:
                return False
            self._finished = True
            return True

    def shutdown_result(self, done: bool) -> bool:
        """Fail what memory still holds; True when everything queued was delivered."""
        self._fail(self.buffer.evict(), "shutdown_timeout", "shutdown deadline reached")
        with self._lock:
            failed = self.failed != self._failed_at_close
        return done and not failed and self._stored_left == 0
