"""Following delivery from the shell: callbacks that count what the collector acknowledged,
and the words for what went wrong.

The client calls `on_success`/`on_failure` on its worker thread; `DeliveryTracker` only counts
and queues there, and the command's main thread reports. "Sent" always means acknowledged
by the collector (it answers 200 only after committing), so a count reported as sent is stored.
"""

from __future__ import annotations

import collections
import re
import threading
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from analytics import DeliveryError

__all__ = [
    "NO_RESPONSE_REASONS",
    "DeliveryTracker",
    "compact_ranges",
    "describe_failure",
    "is_refusal",
    "is_unreachable",
    "short_detail",
]

# DeliveryError reasons that are about this process, not about the collector's answer.
LOCAL_REASONS = frozenset({"queue_full", "shut_down", "shutdown_timeout", "encode_error"})
NO_RESPONSE_REASONS = frozenset({"network_error", "connection_error", "timeout"})


def is_refusal(error: DeliveryError) -> bool:
    """True for a message the collector refused inside a 2xx answer (its reason is the
    collector's code; the client reports each such message to ``on_failure``)."""
    return error.status is not None and 200 <= error.status < 300


def is_unreachable(error: DeliveryError) -> bool:
    """True when the collector never answered (down, wrong port, DNS, timeout)."""
    if error.status is not None:
        return False
    return error.reason not in LOCAL_REASONS


_ERRNO = re.compile(r"\[Errno -?\d+\] [^'\")\]]+")


def short_detail(detail: str) -> str:
    """The OS error inside a urllib3 error, e.g. `[Errno 111] Connection refused`."""
    found = _ERRNO.search(detail)
    return found.group(0).strip() if found else detail


def describe_failure(error: DeliveryError, host: str) -> str:
    """One sentence for a person: what happened and, when it helps, what to do."""
    detail = f": {short_detail(error.detail)}" if error.detail else ""
    status = error.status
    if is_refusal(error):
        return f"the collector refused it{detail}"
    if status in (401, 403):
        return (
            f"the collector at {host} refused the write key (HTTP {status}){detail};"
            " check --write-key or ANALYTICS_WRITE_KEY"
        )
    if status is not None:
        return f"the collector at {host} refused the batch (HTTP {status}{detail})"
    if error.reason in LOCAL_REASONS:
        return f"not sent ({error.reason}{detail})"
    return (
        f"could not reach the collector at {host} ({error.reason}{detail});"
        " is it running? (start one with `analytics serve`)"
    )


def compact_ranges(numbers: Iterable[int]) -> list[tuple[int, int]]:
    """Sorted, merged inclusive ranges: [5, 1, 2, 3, 9] -> [(1, 3), (5, 5), (9, 9)]."""
    ranges: list[tuple[int, int]] = []
    for number in sorted(set(numbers)):
        if ranges and number == ranges[-1][1] + 1:
            ranges[-1] = (ranges[-1][0], number)
        else:
            ranges.append((number, number))
    return ranges


class DeliveryTracker:
    """Counters and a failure queue fed by the client's callbacks.

    Thread-safety: the callbacks run on the clients' sender threads (one per client) and
    update the counters under a lock, once per batch; the main thread reads the counters and
    pops failures (deque operations are atomic).
    """

    def __init__(self, ids: dict[str, Any] | None = None) -> None:
        """Start with nothing sent; `ids` (messageId -> anything) loses acknowledged ids."""
        self.ids = ids
        self._lock = threading.Lock()
        self.sent = 0
        self.failed = 0
        self.unreachable = False
        self.last_error: DeliveryError | None = None
        self.failures: collections.deque[tuple[Sequence[Mapping[str, Any]], DeliveryError]] = (
            collections.deque()
        )

    def on_success(self, data: Sequence[Mapping[str, Any]], response: object) -> None:
        """Count delivered messages (worker thread). The client passes only the delivered
        ones: those the collector refused inside its 2xx go to `on_failure`, keeping their id,
        so the main thread reports each by its line."""
        with self._lock:
            self.sent += len(data)
        ids = self.ids
        if ids:
            for message in data:
                ids.pop(str(message.get("messageId")), None)

    def on_failure(self, data: Sequence[Mapping[str, Any]], error: DeliveryError) -> None:
        """Count and queue a batch given up on (worker thread)."""
        with self._lock:
            self.failed += len(data)
        self.last_error = error
        if is_unreachable(error):
            self.unreachable = True
        self.failures.append((data, error))

    def pop_failures(self) -> list[tuple[Sequence[Mapping[str, Any]], DeliveryError]]:
        """Take the failures queued so far (main thread)."""
        taken = []
        while self.failures:
            taken.append(self.failures.popleft())
        return taken
