"""One adapter per client: how to build it ("tuned" for throughput runs or "defaults"), the
timed call loop, and a bounded flush. Each client's `track` is called directly in its loop
so that no adapter layer is timed."""

from __future__ import annotations

import importlib.metadata
import threading
import time
from array import array
from collections.abc import Callable
from typing import Any

from workload import EVENT, USER_IDS, properties

WRITE_KEY = "bench-write-key"


def _loop_tuple(track: Callable[..., Any], n: int, times: array[int]) -> int:
    """Calls `track(user_id=, event=, properties=)` n times; returns how many were refused
    (the call returned `(False, msg)`)."""
    pc = time.perf_counter_ns
    props = properties
    uids = USER_IDS
    refused = 0
    for i in range(n):
        p = props(i)
        uid = uids[i % 1000]
        t0 = pc()
        ok, _ = track(user_id=uid, event=EVENT, properties=p)
        times[i] = pc() - t0
        if not ok:
            refused += 1
    return refused


def _loop_posthog(capture: Callable[..., Any], n: int, times: array[int]) -> int:
    """Calls posthog's `capture(event, distinct_id=, properties=)`; None means dropped."""
    pc = time.perf_counter_ns
    props = properties
    uids = USER_IDS
    refused = 0
    for i in range(n):
        p = props(i)
        uid = uids[i % 1000]
        t0 = pc()
        r = capture(EVENT, distinct_id=uid, properties=p)
        times[i] = pc() - t0
        if r is None:
            refused += 1
    return refused


def _bounded(fn: Callable[[], Any], timeout: float) -> bool:
    """Runs a flush that has no timeout of its own on a daemon thread, waits at most
    `timeout` seconds; True when it returned."""
    t = threading.Thread(target=fn, daemon=True)
    t.start()
    t.join(timeout)
    return not t.is_alive()


class Adapter:
    name = ""
    dist = ""
    module = ""

    def __init__(self, url: str, mode: str, n: int) -> None:
        self.client: Any = self.build(url, mode, n)

    def build(self, url: str, mode: str, n: int) -> Any:
        raise NotImplementedError

    def loop(self, n: int, times: array[int]) -> int:
        return _loop_tuple(self.client.track, n, times)

    def flush(self, timeout: float) -> bool:
        return _bounded(self.client.flush, timeout)

    def reported_drops(self) -> int | None:
        return None

    @classmethod
    def version(cls) -> str:
        return importlib.metadata.version(cls.dist)


class Segment(Adapter):
    name, dist, module = "segment", "segment-analytics-python", "segment.analytics"

    def build(self, url: str, mode: str, n: int) -> Any:
        from segment.analytics import Client

        if mode == "defaults":
            return Client(WRITE_KEY, host=url)
        return Client(WRITE_KEY, host=url, upload_size=500, max_queue_size=n, gzip=False)


class Rudder(Adapter):
    name, dist, module = "rudder", "rudder-sdk-python", "rudderstack.analytics"

    def build(self, url: str, mode: str, n: int) -> Any:
        from rudderstack.analytics import Client

        if mode == "defaults":
            return Client(WRITE_KEY, host=url)
        return Client(WRITE_KEY, host=url, upload_size=500, max_queue_size=n, gzip=False)


class PostHog(Adapter):
    name, dist, module = "posthog", "posthog", "posthog"

    def build(self, url: str, mode: str, n: int) -> Any:
        from posthog import Posthog

        if mode == "defaults":
            return Posthog(WRITE_KEY, host=url)
        return Posthog(WRITE_KEY, host=url, flush_at=500, max_queue_size=n, gzip=False)

    def loop(self, n: int, times: array[int]) -> int:
        return _loop_posthog(self.client.capture, n, times)

    def flush(self, timeout: float) -> bool:
        return _bounded(lambda: self.client.flush(timeout_seconds=timeout), timeout + 1)


class Ours(Adapter):
    name, dist, module = "ours", "analytics", "analytics"

    def build(self, url: str, mode: str, n: int) -> Any:
        import analytics

        if mode == "defaults":
            return analytics.Client(WRITE_KEY, host=url)
        if mode.startswith("spool:"):
            spool = mode.split(":", 1)[1]
            return analytics.Client(
                WRITE_KEY, host=url, flush_at=500, max_queue_size=n, gzip=False, spool=spool
            )
        return analytics.Client(WRITE_KEY, host=url, flush_at=500, max_queue_size=n, gzip=False)

    def flush(self, timeout: float) -> bool:
        return bool(self.client.flush(timeout=timeout))

    def reported_drops(self) -> int | None:
        stats = getattr(self.client, "stats", None)
        dropped = getattr(stats, "dropped", None)
        return sum(dropped.values()) if isinstance(dropped, dict) else None


ADAPTERS: dict[str, type[Adapter]] = {a.name: a for a in (Ours, Segment, PostHog, Rudder)}
