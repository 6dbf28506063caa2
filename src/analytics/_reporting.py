"""What a client tells the application: its callbacks, and the messages it dropped.

`Reporter` holds a client's ``on_success``/``on_failure``/``on_error`` callbacks and calls them
(on the sender thread for deliveries, on the caller's thread for drops) with the messages
decoded from their bytes; a callback that raises is logged and delivery goes on. Dropped
messages are counted by reason and logged at most once per `DROP_LOG_INTERVAL` seconds.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from analytics._exceptions import DeliveryError
from analytics._retry import Outcome

__all__ = [
    "DROP_LOG_INTERVAL",
    "ErrorCallback",
    "FailureCallback",
    "Message",
    "Reporter",
    "SuccessCallback",
]

logger = logging.getLogger("analytics")

Message = dict[str, Any]
SuccessCallback = Callable[[list[Message], Outcome], object]
FailureCallback = Callable[[list[Message], DeliveryError], object]
ErrorCallback = Callable[[Exception, list[Message]], object]
#: At most one log line about dropped messages per this many seconds.
DROP_LOG_INTERVAL = 10.0
_DROP_DETAIL = {
    "queue_full": "the queue is full (max_queue_size); the collector is slow or unreachable",
    "shut_down": "the client was shut down",
}


class Reporter:
    """One client's callbacks and drop log. Thread-safe."""

    def __init__(
        self,
        on_success: SuccessCallback | None,
        on_failure: FailureCallback | None,
        on_error: ErrorCallback | None,
        loads: Callable[[bytes], Any],
    ) -> None:
        self.success: list[SuccessCallback] = [on_success] if on_success else []
        self.failure: list[FailureCallback] = [on_failure] if on_failure else []
        self.error: list[ErrorCallback] = [on_error] if on_error else []
        self._loads = loads
        self._lock = threading.Lock()
        self._logged_at = -DROP_LOG_INTERVAL
        self._unlogged = 0

    def sent(self, items: list[bytes], outcome: Outcome) -> None:
        """A batch of encoded messages was delivered."""
        logger.debug("delivered a batch of %d (HTTP %s)", len(items), outcome.status)
        if self.success:
            self._call(self.success, self._decode(items), outcome)

    def failed(self, items: list[bytes], error: DeliveryError) -> None:
        """Encoded messages could not be delivered."""
        if self.failure or self.error:
            self._failed(self._decode(items), error)

    def dropped(self, reason: str, msg: Message, counts: dict[str, int]) -> None:
        """``msg`` was not queued; count it in ``counts`` by ``reason``, log, call back."""
        now = time.monotonic()
        with self._lock:
            counts[reason] += 1
            self._unlogged += 1
            log_now = now - self._logged_at >= DROP_LOG_INTERVAL
            if log_now:
                count, self._unlogged, self._logged_at = self._unlogged, 0, now
        if log_now:
            logger.warning(
                "analytics: dropped %d message(s) (%s); counted in client.stats.dropped. "
                "At most one such line per %.0f s.",
                count,
                reason,
                DROP_LOG_INTERVAL,
            )
        if self.failure or self.error:
            self._failed([msg], DeliveryError(reason, _DROP_DETAIL.get(reason, "")))

    def _failed(self, data: list[Message], error: DeliveryError) -> None:
        self._call(self.failure, data, error)
        for fn in self.error:
            self._call([fn], error, data)  # Segment's order: on_error(exception, batch)

    def _decode(self, items: list[bytes]) -> list[Message]:
        result: list[Message] = self._loads(b"[" + b",".join(items) + b"]")
        return result

    @staticmethod
    def _call(callbacks: list[Any], first: object, second: object) -> None:
        for fn in callbacks:
            try:
                fn(first, second)
            except Exception:  # a user's callback must not stop delivery
                logger.exception("analytics: a callback raised; delivery goes on")
