"""The retry policy (SPEC §4.2): an immutable value that decides, never sleeps.

`RetryPolicy.decide(state, outcome, now, rand)` answers "deliver again after d seconds" or
"give up, because ...". `analytics._delivery` runs it for each batch;
the sender loop does the waiting, which only a shutdown deadline cuts short.

Rules:
- Only a 2xx is delivered. A 3xx is a final ``http_error``: redirects are never followed (a
  collector that moved must be given its new ``host``), and never counted as sent.
- 408, 410, 429, 460 and every 5xx except 501, 505 and 511 are retried, as are network errors
  and timeouts (the message ids make a retried batch idempotent at a deduplicating collector).
- Every other status (400, 401, 413 ...) is final: the batch is reported as failed.
- Backoff is exponential from 0.5 s, capped at 60 s, with ±10 % jitter; at most `max_retries`
  retries (10), and never more than 12 hours from the first attempt.
- A ``Retry-After`` header (seconds or an HTTP date) is honoured, clamped to [1 s, 300 s]. Such
  waits do not use up `max_retries` but are limited to `max_rate_limited` (20) of their own, and
  to `max_rate_limit_total` seconds (30 min, Segment 2.4's ``max_rate_limit_duration``) from the
  first one; past either, the batch is given up (``retries_exhausted``).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

__all__ = ["Outcome", "RetryPolicy", "RetryState", "parse_retry_after"]

RETRYABLE_STATUS = frozenset({408, 410, 429, 460})
NON_RETRYABLE_5XX = frozenset({501, 505, 511})


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one attempt produced: a status and body, or a network error (status None).

    This is the ``response`` that ``on_success(data, response)`` receives.
    """

    status: int | None
    retry_after: float | None = None
    error: str = ""
    body: bytes = b""
    #: the attempt failed inside this library (a bug): final, reason ``internal_error``
    internal: bool = False

    @property
    def delivered(self) -> bool:
        """True for 2xx answers only (a redirect is not a delivery)."""
        return self.status is not None and 200 <= self.status < 300

    @property
    def retryable(self) -> bool:
        """True for network errors and the statuses SPEC §4.2 says to retry."""
        s = self.status
        if s is None:
            return True
        return s in RETRYABLE_STATUS or (500 <= s < 600 and s not in NON_RETRYABLE_5XX)


@dataclass(frozen=True, slots=True)
class RetryState:
    """How many attempts a batch has had, and since when (monotonic seconds)."""

    started: float
    attempts: int = 0
    retries: int = 0
    rate_limited: int = 0
    rate_limited_since: float | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class RetryPolicy:
    """Exponential backoff with jitter, Retry-After, and caps; see the module docstring."""

    max_retries: int = 10
    backoff_base: float = 0.5
    backoff_cap: float = 60.0
    jitter: float = 0.1
    retry_after_min: float = 1.0
    retry_after_cap: float = 300.0
    max_rate_limited: int = 20
    max_rate_limit_total: float = 1800.0
    max_total: float = 12 * 3600.0

    def backoff(self, retries: int, rand: float) -> float:
        """The wait before retry number ``retries + 1``; ``rand`` is uniform in [0, 1)."""
        base = min(self.backoff_cap, self.backoff_base * (2.0**retries))
        return base * (1.0 - self.jitter + 2.0 * self.jitter * rand)

    def decide(
        self, state: RetryState, outcome: Outcome, now: float, rand: float
    ) -> tuple[RetryState, float | None, str]:
        """Decide what follows an attempt.

        Returns:
            ``(new_state, delay, reason)``: ``delay`` is the wait before the next attempt, or
            None when there is none (delivered, or given up); ``reason`` says why it stops
            (``""`` when delivered or retrying).
        """
        state = dataclasses.replace(state, attempts=state.attempts + 1)
        if outcome.delivered:
            return state, None, ""
        if outcome.internal or not outcome.retryable:
            return state, None, "internal_error" if outcome.internal else "http_error"
        if now - state.started >= self.max_total:
            return state, None, "retries_exhausted"
        if outcome.retry_after is not None and state.rate_limited < self.max_rate_limited:
            return self._rate_limited(state, outcome.retry_after, now)
        if state.retries >= self.max_retries:
            return state, None, "retries_exhausted"
        delay = self.backoff(state.retries, rand)
        return dataclasses.replace(state, retries=state.retries + 1), delay, ""

    def _rate_limited(
        self, state: RetryState, retry_after: float, now: float
    ) -> tuple[RetryState, float | None, str]:
        """Wait as the collector asked, unless the batch has been rate-limited too long."""
        since = now if state.rate_limited_since is None else state.rate_limited_since
        if now - since > self.max_rate_limit_total:
            return state, None, "retries_exhausted"
        delay = min(self.retry_after_cap, max(self.retry_after_min, retry_after))
        limited = dataclasses.replace(
            state, rate_limited=state.rate_limited + 1, rate_limited_since=since
        )
        return limited, delay, ""


def parse_retry_after(value: str | None, now_wall: float) -> float | None:
    """Seconds to wait from a Retry-After header (integer seconds or an HTTP date), or None."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    import email.utils  # noqa: PLC0415  (rare path: keep it out of import time)

    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - now_wall)
