"""The delivery state machine of one batch (pure: ``now`` and outcomes are arguments).

The sender loop asks `next_step` what to do with a batch, does it (send, or wait), and feeds
each attempt's outcome to `after_attempt`, which settles the batch or schedules the next
attempt by the retry policy (`analytics._retry`). Nothing here sleeps, locks or does I/O, so
every rule is tested with plain numbers.

The rules of delivery truth:

- Only a 2xx answer delivers. A 3xx is final (``http_error``), never followed, never sent.
- A 2xx body that lists refused messages (our collector answers ``{"refused": [{"index",
  "code", "reason"}, ...]}``) delivers the others; the refused ones are failures, with the
  collector's code as their reason. Segment's ``{"success": true}`` refuses nothing.
- A wait is never cut short by `flush`: a backoff or a ``Retry-After`` is waited out. Only a
  shutdown deadline ends it: when the next attempt would come after the deadline, or the
  deadline has passed, the batch is *cut* (reason ``shutdown_timeout``): a spool keeps it on
  disk, the memory buffer reports it failed.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from analytics._retry import Outcome, RetryPolicy, RetryState

__all__ = [
    "CUT",
    "SEND",
    "Cut",
    "Delivered",
    "Failed",
    "Refusal",
    "Send",
    "Wait",
    "after_attempt",
    "next_step",
    "refusals",
    "start",
]


@dataclass(frozen=True, slots=True)
class Attempts:
    """Where a batch stands: the retry state and the time its next attempt may go."""

    retry: RetryState
    next_at: float


@dataclass(frozen=True, slots=True)
class Send:
    """Send the batch now."""


@dataclass(frozen=True, slots=True)
class Wait:
    """Wait until ``until`` (monotonic seconds), then ask again."""

    until: float


@dataclass(frozen=True, slots=True)
class Cut:
    """The shutdown deadline comes first: stop trying (the spool keeps the batch)."""


SEND = Send()
CUT = Cut()
Step = Send | Wait | Cut


@dataclass(frozen=True, slots=True)
class Refusal:
    """One message the collector refused inside a 2xx answer."""

    index: int
    code: str
    reason: str


@dataclass(frozen=True, slots=True)
class Delivered:
    """A 2xx: every message of the batch is settled, the refused ones as failures."""

    refused: tuple[Refusal, ...] = ()


@dataclass(frozen=True, slots=True)
class Failed:
    """The whole batch failed for good: ``reason`` (``http_error``, ``retries_exhausted``)."""

    reason: str
    detail: str
    status: int | None


Result = Delivered | Failed


def start(now: float) -> Attempts:
    """A new batch, to be sent at once."""
    return Attempts(RetryState(started=now), next_at=now)


def next_step(state: Attempts, now: float, deadline: float | None) -> Step:
    """What to do with the batch now; ``deadline`` is the shutdown deadline, if any."""
    if deadline is not None and (now >= deadline or state.next_at >= deadline):
        return CUT  # nothing can be sent in time: cut at once rather than wait for nothing
    if now >= state.next_at:
        return SEND
    return Wait(state.next_at)


def after_attempt(
    policy: RetryPolicy, state: Attempts, outcome: Outcome, now: float, rand: float, count: int
) -> tuple[Attempts, Result | None]:
    """Apply one attempt's outcome: the new state, and the result if the batch is settled.

    ``count`` is the number of messages in the batch (refusal indexes outside it are ignored);
    ``rand`` is uniform in [0, 1) for the backoff jitter.
    """
    retry, delay, reason = policy.decide(state.retry, outcome, now, rand)
    state = dataclasses.replace(state, retry=retry)
    if outcome.delivered:
        return state, Delivered(refusals(outcome.body, count))
    if delay is None:
        detail = outcome.error or f"HTTP {outcome.status}"
        return state, Failed(reason, detail, outcome.status)
    return dataclasses.replace(state, next_at=now + delay), None


def refusals(body: bytes, count: int) -> tuple[Refusal, ...]:
    """The messages a 2xx body lists as refused (our collector's format), by index."""
    if b'"refused"' not in body:
        return ()
    import orjson  # noqa: PLC0415  (loaded with the client already)

    try:
        parsed: Any = orjson.loads(body)
    except orjson.JSONDecodeError:
        return ()
    listed = parsed.get("refused") if isinstance(parsed, dict) else None
    if not isinstance(listed, list):
        return ()
    found: dict[int, Refusal] = {}
    for item in listed:
        if not isinstance(item, dict):
            continue
        index = item.get("index")
        if type(index) is int and 0 <= index < count and index not in found:
            code, why = item.get("code"), item.get("reason")
            found[index] = Refusal(
                index,
                code if isinstance(code, str) and code else "refused",
                why if isinstance(why, str) else "",
            )
    return tuple(found[i] for i in sorted(found))
