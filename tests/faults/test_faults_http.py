"""Faults on the wire, through a scripted proxy in front of our collector: 503s, 429 with
Retry-After, connections reset mid-request, answers slower than the client's timeout."""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from .harness import Outcome, Producer, outcome
from .proxy import FORWARD, Action, FaultProxy

PACE = ("--rate", "1000", "--every", "100", "--flush-at", "100", "--flush-after", "0.5")


class Phases:
    """A proxy plan switched by the test: ``phases.fault`` applies until ``end()``."""

    def __init__(self, fault: Callable[[int], Action]) -> None:
        """Start forwarding everything; ``start()`` turns the fault on."""
        self.fault = fault
        self.on = False
        self.times: list[tuple[float, str]] = []  # (monotonic time, action kind) per request
        self._lock = threading.Lock()

    def __call__(self, n: int) -> Action:
        """The action for request ``n``."""
        action = self.fault(n) if self.on else FORWARD
        with self._lock:
            self.times.append((time.monotonic(), action.kind + str(action.status)))
        return action

    def start(self) -> None:
        """Turn the fault on."""
        self.on = True

    def end(self) -> float:
        """Turn the fault off; returns the wall time it ended."""
        self.on = False
        return time.time()


@pytest.fixture
def through_proxy(
    collector: Any, tmp_path: Path, record: Any, cleanup: list[Any]
) -> Callable[..., tuple[Outcome, Phases, int]]:
    """Run one case: the producer sends through a proxy with a fault on for ~``seconds``."""

    def run(
        name: str, fault: Callable[[int], Action], *, count: int = 3000, extra: tuple[str, ...] = ()
    ) -> tuple[Outcome, Phases, int]:
        phases = Phases(fault)
        proxy = FaultProxy(collector.url, phases)
        cleanup.append(proxy)
        ids = tmp_path / "ids"
        producer = Producer(proxy.url, ids, "--count", str(count), *PACE, *extra)
        cleanup.append(producer)
        producer.wait_tracked(500)
        phases.start()
        producer.wait_tracked(count - 500)  # the fault lasts while ~count-1000 events are tracked
        ended = phases.end()
        producer.wait_line("flushed")
        assert producer.finish() == 0, producer.stderr
        out = outcome(ids, collector.store)
        resent = collector.stats.snapshot().duplicates
        counts = ", ".join(f"{k} x{v}" for k, v in sorted(proxy.counts.items()))
        row = record(name, out, resent=resent, recover=out.recover(ended), note=counts)
        assert len(out.sent) == count
        assert not out.lost
        assert not out.unexpected
        assert row.twice == 0
        return out, phases, resent

    return run


def test_one_in_five_requests_answered_503(through_proxy: Callable[..., Any]) -> None:
    """Case 3a: 20% of requests get 503 for ~2 s; retried, nothing lost or stored twice."""
    _, phases, _ = through_proxy(
        "3a 20% of requests 503 (~2 s)",
        lambda n: Action("status", 503) if n % 5 == 0 else FORWARD,
    )
    assert any(kind == "status503" for _, kind in phases.times)


def test_all_requests_answered_503(through_proxy: Callable[..., Any]) -> None:
    """Case 3b: every request gets 503 for ~2 s; the backlog is delivered afterwards."""
    _, phases, _ = through_proxy("3b 100% of requests 503 (~2 s)", lambda _n: Action("status", 503))
    assert sum(kind == "status503" for _, kind in phases.times) >= 2


def test_429_with_retry_after_is_honoured(through_proxy: Callable[..., Any]) -> None:
    """Case 3c: 429 + Retry-After: 1 for ~2 s; the client waits at least that long each time."""
    _, phases, _ = through_proxy(
        "3c 429 Retry-After: 1 (~2 s)",
        lambda _n: Action("status", 429, {"Retry-After": "1"}),
    )
    times = phases.times
    gaps = [later[0] - t for (t, kind), later in itertools.pairwise(times) if kind == "status429"]
    assert gaps
    assert min(gaps) >= 0.9, gaps


def test_connections_reset_mid_request(through_proxy: Callable[..., Any]) -> None:
    """Case 4a: one request in three is reset after part of its body; retried, nothing lost."""
    _, phases, _ = through_proxy(
        "4a reset mid-request (1 in 3, ~2 s)",
        lambda n: Action("reset") if n % 3 == 0 else FORWARD,
    )
    assert any(kind == "reset200" for _, kind in phases.times)


def test_reset_after_the_collector_stored_the_batch(through_proxy: Callable[..., Any]) -> None:
    """Case 4b: the batch is stored but the answer is lost; the resend is deduplicated."""
    _, _, resent = through_proxy(
        "4b reset after storing (1 in 3, ~2 s)",
        lambda n: Action("forward_then_reset") if n % 3 == 0 else FORWARD,
    )
    assert resent > 0  # the collector saw the resends, and stored them once


def test_answers_slower_than_the_client_timeout(through_proxy: Callable[..., Any]) -> None:
    """Case 4c: answers come 2 s late to a client with a 1 s timeout; resends deduplicated."""
    _, _, resent = through_proxy(
        "4c answer 2 s > timeout 1 s (1 in 2, ~2 s)",
        lambda n: Action("forward_slowly", delay=2.0) if n % 2 == 0 else FORWARD,
        extra=("--timeout", "1"),
    )
    assert resent > 0
