"""The collector's log of refused messages, at most one line per interval.

A message refused inside a ``200`` (``invalid_timestamp``, ``missing_event`` ...) is reported in
the response body, which a client library reads but a person sending with curl, or a library
that ignores the body, does not. So the collector logs refusals too, as a WARNING, at most once
per :data:`REFUSAL_LOG_INTERVAL` seconds: the line shows the first refusal since the last line
(route, index, code, reason) and how many more there were, so a flood of bad events costs one
line per interval.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence

from analytics.collector._messages import Refusal

__all__ = ["REFUSAL_LOG_INTERVAL", "RefusalLog"]

log = logging.getLogger("analytics.collector")

#: At most one log line about refused messages per this many seconds.
REFUSAL_LOG_INTERVAL = 10.0


class RefusalLog:
    """Counts refused messages and logs them, rate-limited. Thread-safe.

    ``clock`` returns seconds (monotonic); tests inject their own.
    """

    def __init__(
        self,
        interval: float = REFUSAL_LOG_INTERVAL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._interval = interval
        self._clock = clock
        self._lock = threading.Lock()
        self._logged_at: float | None = None
        self._unlogged = 0

    def note(self, route: str, refused: Sequence[Refusal]) -> None:
        """Count the refusals of one request to ``route``; log when the interval has passed."""
        if not refused:
            return
        now = self._clock()
        with self._lock:
            self._unlogged += len(refused)
            due = self._logged_at is None or now - self._logged_at >= self._interval
            if not due:
                return
            count, self._unlogged, self._logged_at = self._unlogged, 0, now
        first = refused[0]
        more = f" (+{count - 1} more refused since the last such line)" if count > 1 else ""
        log.warning(
            "refused a message of POST %s: item %d: %s: %s%s; the response body lists every "
            "refusal; at most one such line per %g s",
            route,
            first.index,
            first.code,
            first.reason,
            more,
            self._interval,
        )
