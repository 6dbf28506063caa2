"""What a client tells the application: its callbacks, and the messages it dropped.

`Reporter` holds a client's ``on_success``/``on_failure``/``on_error`` callbacks and calls them
(on the sender thread for deliveries, on the caller's thread for drops) with the messages
decoded from their bytes; a callback that raises is logged and delivery goes on. Dropped
messages are counted by reason and logged at most once per `DROP_LOG_INTERVAL` seconds.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from analytics._exceptions import DeliveryError
from analytics._log import ClientLog
from analytics._retry import Outcome

__all__ = [
    "DROP_LOG_INTERVAL",
    "ErrorCallback",
    "FailureCallback",
    "Message",
    "Reporter",
    "SuccessCallback",
]


Message = dict[str, Any]
SuccessCallback = Callable[[list[Message], Outcome], object]
FailureCallback = Callable[[list[Message], DeliveryError], object]
ErrorCallback = Callable[[Exception, list[Message]], object]
#: At most one log line about dropped messages per this many seconds.
DROP_LOG_INTERVAL = 10.0
_DROP_DETAIL = {
    "queue_full": "the queue is full (max_queue_size); the collector is slow or unreachable",
    "shut_down": "the client was shut down",
    "spool_full": "the spool is over spool_max_bytes; its oldest messages were dropped",
}


class Reporter:
    """One client's callbacks and drop log. Thread-safe."""

    def __init__(
        self,
        on_success: SuccessCallback | None,
        on_failure: FailureCallback | None,
        on_error: ErrorCallback | None,
        loads: Callable[[bytes], Any],
        log: ClientLog,
    ) -> None:
        self.success: list[SuccessCallback] = [on_success] if on_success else []
        self.failure: list[FailureCallback] = [on_failure] if on_failure else []
        self.error: list[ErrorCallback] = [on_error] if on_error else []
        self._loads = loads
        self.log = log
        self._lock = threading.Lock()  # the one lock of `dropped`
        #: messages dropped before delivery, by reason (queue_full, shut_down, spool_full)
        self.dropped: Counter[str] = Counter()
        self._logged_at = -DROP_LOG_INTERVAL
        self._unlogged = 0

    def sent(self, items: list[bytes], outcome: Outcome) -> None:
        """A batch of encoded messages was delivered."""
        self.log.debug("delivered a batch of %d (HTTP %s)", len(items), outcome.status)
        if self.success:
            self._call(self.success, self._decode(items), outcome)

    def failed(self, items: list[bytes], error: DeliveryError) -> None:
        """Encoded messages could not be delivered."""
        if self.failure or self.error:
            self._failed(self._decode(items), error)

    def drop(self, reason: str, msg: Message) -> None:
        """``msg`` was not queued: count it by ``reason``, log (rate-limited), call back."""
        self._count_drop(reason, 1)
        if self.failure or self.error:
            self._failed([msg], DeliveryError(reason, _DROP_DETAIL.get(reason, "")))

    def drop_items(self, reason: str, items: list[bytes]) -> None:
        """Encoded messages were dropped (e.g. ``spool_full``): count, log, call back."""
        self._count_drop(reason, len(items))
        if self.failure or self.error:
            self._failed(self._decode(items), DeliveryError(reason, _DROP_DETAIL.get(reason, "")))

    def _count_drop(self, reason: str, count: int) -> None:
        now = time.monotonic()
        with self._lock:
            self.dropped[reason] += count
            self._unlogged += count
            log_now = now - self._logged_at >= DROP_LOG_INTERVAL
            if log_now:
                count, self._unlogged, self._logged_at = self._unlogged, 0, now
        if log_now:
            self.log.warning(
                "analytics: dropped %d message(s) (%s); counted in client.stats.dropped. "
                "At most one such line per %.0f s.",
                count,
                reason,
                DROP_LOG_INTERVAL,
            )

    def _failed(self, data: list[Message], error: DeliveryError) -> None:
        self._call(self.failure, data, error)
        for fn in self.error:
            self._call([fn], error, data)  # Segment's order: on_error(exception, batch)

    def _decode(self, items: list[bytes]) -> list[Message]:
        result: list[Message] = self._loads(b"[" + b",".join(items) + b"]")
        return result

    def _call(self, callbacks: list[Any], first: object, second: object) -> None:
        for fn in callbacks:
            try:
                fn(first, second)
            except BaseException as exc:  # a user's callback must not stop delivery
                if isinstance(exc, KeyboardInterrupt) and _on_main_thread():
                    raise  # Ctrl-C during a callback on the application's own thread
                # SystemExit too: on the sender thread it would end delivery for good.
                self.log.exception("analytics: a callback raised; delivery goes on")


def _on_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()
