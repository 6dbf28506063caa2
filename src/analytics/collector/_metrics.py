"""The collector's Prometheus metrics and ``GET /metrics`` (prometheus-client).

What is measured (every name starts with ``analytics_collector_``):

- ``http_requests_total{route,status}`` and ``http_request_duration_seconds{route}``: every
  request, by route pattern (``/v1/batch``; ``other`` for unknown paths, so a scanner cannot
  grow the label set) and status;
- ``http_request_bytes_total``: request body bytes as received (before decompression);
- ``messages_received_total``, ``messages_stored_total``, ``messages_duplicate_total`` and
  ``messages_refused_total{reason}`` (the refusal code of the response body);
- ``commit_duration_seconds`` (one observation per group commit) and
  ``commit_failures_total``; ``connections_refused_total`` (the connection cap of
  :mod:`._guard` was reached);
- gauges, summed over the live processes: ``writer_queue_rows`` (rows handed to the writer and
  not yet committed), ``open_connections``, ``processes``; and ``store_up``, the minimum over
  the live processes of the store's own check (the one ``/health`` shows): 1 reachable, 0 not.

A request whose client went away before its answer is counted with status 499.

Gauges are refreshed every :data:`SAMPLE_INTERVAL` seconds by each process; counters and
histograms are exact (updated before the request is answered).

Several processes (``analytics serve --workers N``): prometheus-client's multi-process mode.
:func:`use_directory` must run before prometheus-client is first imported (it picks the mode
at import), so this module imports it only when the first :class:`CollectorMetrics` is made;
``analytics serve`` calls it with a fresh directory per run, its worker processes inherit it
through the environment, and whichever process takes a scrape reads every process's files, so
``/metrics`` answers the same totals whatever process the kernel hands the connection to.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator
from os import PathLike
from typing import TYPE_CHECKING, Literal

from aiohttp import web

from analytics.collector._guard import Guard
from analytics.collector._store import Store
from analytics.collector._writer import GroupCommitWriter

if TYPE_CHECKING:
    from aiohttp.typedefs import Middleware
    from prometheus_client import CollectorRegistry, Gauge

__all__ = [
    "MULTIPROCESS_ENV",
    "SAMPLE_INTERVAL",
    "CollectorMetrics",
    "for_workers",
    "mark_process_dead",
    "route_of",
    "shared_across_processes",
    "use_directory",
]

log = logging.getLogger("analytics.collector")

#: prometheus-client's variable naming the multi-process directory.
MULTIPROCESS_ENV = "PROMETHEUS_MULTIPROC_DIR"
#: Seconds between two refreshes of the gauges in each process.
SAMPLE_INTERVAL = 1.0
_PREFIX = "analytics_collector_"
#: Request latency buckets (seconds): a commit is a few milliseconds, a slow client seconds.
_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
#: The status counted for a request whose client went away before the answer (nginx's 499).
CLIENT_CLOSED = 499
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def use_directory(path: str | PathLike[str]) -> None:
    """Keep this process's metrics (and its later child processes') in files under ``path``.

    Raises:
        RuntimeError: prometheus-client was imported already, in single-process mode.
    """
    if "prometheus_client" in sys.modules and os.environ.get(MULTIPROCESS_ENV) != os.fspath(path):
        raise RuntimeError(
            "the metrics directory must be chosen before prometheus_client is imported"
        )
    os.environ[MULTIPROCESS_ENV] = os.fspath(path)


@contextlib.contextmanager
def shared_across_processes() -> Iterator[str]:
    """A fresh metrics directory for one run's processes (its workers inherit it through the
    environment); removed, and the variable unset, on exit.

    A process that leaves this scope should not start another collector (prometheus-client
    stays in multi-process mode): ``analytics serve`` runs it once per process.
    """
    with tempfile.TemporaryDirectory(prefix="analytics-metrics-") as directory:
        use_directory(directory)
        try:
            yield directory
        finally:
            os.environ.pop(MULTIPROCESS_ENV, None)


def _multiprocess_directory() -> str | None:
    return os.environ.get(MULTIPROCESS_ENV) or None


def for_workers(workers: int) -> contextlib.AbstractContextManager[object]:
    """:func:`shared_across_processes` when ``workers`` processes serve, else nothing."""
    return shared_across_processes() if workers > 1 else contextlib.nullcontext()


def mark_process_dead(pid: int | None) -> None:
    """Drop the live gauges of a process that ended (its counters stay in the totals)."""
    directory = _multiprocess_directory()
    if directory is not None and pid is not None:
        from prometheus_client import multiprocess  # noqa: PLC0415 -- see the module docstring

        multiprocess.mark_process_dead(pid, directory)  # type: ignore[no-untyped-call]


class CollectorMetrics:
    """The metrics of one collector server; safe to update from any thread."""

    def __init__(self) -> None:
        import prometheus_client as prom  # noqa: PLC0415 -- see the module docstring

        self._prom = prom
        self._directory = _multiprocess_directory()
        # One registry per server, so servers in one process (tests, the demo) stay apart.
        self._registry = prom.CollectorRegistry(auto_describe=True)
        reg = self._registry
        self.requests = prom.Counter(
            _PREFIX + "http_requests", "Requests answered, by route and status.",
            ["route", "status"], registry=reg,
        )  # fmt: skip
        self.latency = prom.Histogram(
            _PREFIX + "http_request_duration_seconds", "Time to answer a request, by route.",
            ["route"], buckets=_BUCKETS, registry=reg,
        )  # fmt: skip
        self.bytes_in = prom.Counter(
            _PREFIX + "http_request_bytes", "Request body bytes received (on the wire).",
            registry=reg,
        )  # fmt: skip
        self.received = prom.Counter(
            _PREFIX + "messages_received", "Messages in accepted request bodies.", registry=reg
        )
        self.stored = prom.Counter(
            _PREFIX + "messages_stored", "Messages committed as new rows.", registry=reg
        )
        self.duplicates = prom.Counter(
            _PREFIX + "messages_duplicate",
            "Messages acknowledged but already stored (same write key and messageId).",
            registry=reg,
        )
        self.refused = prom.Counter(
            _PREFIX + "messages_refused", "Messages refused by validation, by reason code.",
            ["reason"], registry=reg,
        )  # fmt: skip
        self.commit_latency = prom.Histogram(
            _PREFIX + "commit_duration_seconds", "Time of one group commit to the store.",
            buckets=_BUCKETS, registry=reg,
        )  # fmt: skip
        self.commit_failures = prom.Counter(
            _PREFIX + "commit_failures", "Group commits the store refused.", registry=reg
        )
        self.connections_refused = prom.Counter(
            _PREFIX + "connections_refused",
            "Connections answered 503 at once: the connection cap was reached.",
            registry=reg,
        )
        self.queue_rows = self._gauge("writer_queue_rows", "Rows waiting for their commit.")
        self.connections = self._gauge("open_connections", "Open client connections.")
        self.processes = self._gauge("processes", "Collector processes serving.")
        self.store_up = self._gauge(
            "store_up", "1 when every process reached the store at its last check.", "livemin"
        )
        self.processes.set(1)
        self.store_up.set(1)

    def _gauge(self, name: str, doc: str, mode: Literal["livesum", "livemin"] = "livesum") -> Gauge:
        return self._prom.Gauge(
            _PREFIX + name, doc, multiprocess_mode=mode, registry=self._registry
        )

    # -- hooks ------------------------------------------------------------------------------

    def messages(self, received: int, stored: int, duplicates: int, refused: Iterable[str]) -> None:
        """Count one accepted request's messages; ``refused`` holds one code per refusal."""
        self.received.inc(received)
        self.stored.inc(stored)
        self.duplicates.inc(duplicates)
        for code in refused:
            self.refused.labels(code).inc()

    def committed(self, seconds: float, ok: bool) -> None:
        """One group commit ended after ``seconds`` (called on the writer thread)."""
        self.commit_latency.observe(seconds)
        if not ok:
            self.commit_failures.inc()

    async def keep_sampled(self, writer: GroupCommitWriter, guard: Guard) -> None:
        """Refresh what is read rather than counted, every :data:`SAMPLE_INTERVAL` seconds
        until cancelled. The store's check may block (PostgreSQL): off the loop."""
        loop = asyncio.get_running_loop()
        refused = 0
        while True:
            reachable = await loop.run_in_executor(None, _reachable, writer.store)
            self.queue_rows.set(writer.queued_rows)
            self.connections.set(guard.connections)
            self.connections_refused.inc(guard.refused - refused)
            refused = guard.refused
            self.store_up.set(1 if reachable else 0)
            await asyncio.sleep(SAMPLE_INTERVAL)

    # -- exposition -------------------------------------------------------------------------

    def exposition(self) -> bytes:
        """The text format of every metric: this process's, or every process's."""
        if self._directory is None:
            return self._prom.generate_latest(self._registry)
        from prometheus_client import multiprocess  # noqa: PLC0415 -- see the module docstring

        registry: CollectorRegistry = self._prom.CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, path=self._directory)  # type: ignore[no-untyped-call]
        return self._prom.generate_latest(registry)

    @property
    def content_type(self) -> str:
        """The exposition's Content-Type."""
        return str(self._prom.CONTENT_TYPE_LATEST)

    def middleware(self) -> Middleware:
        """An aiohttp middleware counting and timing every request."""

        @web.middleware
        async def count(request: web.Request, handler: Handler) -> web.StreamResponse:
            started = time.perf_counter()
            status = 500
            try:
                response = await handler(request)
                status = response.status
                return response
            except web.HTTPException as exc:
                status = exc.status
                raise
            except (ConnectionError, asyncio.CancelledError):
                status = CLIENT_CLOSED
                raise
            finally:
                route = route_of(request)
                self.requests.labels(route, str(status)).inc()
                self.latency.labels(route).observe(time.perf_counter() - started)
                self.bytes_in.inc(request.content.total_bytes)

        return count

    def handler(self, guard: Callable[[web.Request], None]) -> Handler:
        """``GET /metrics``; ``guard`` raises an HTTP error for a request that may not see it.

        The exposition is built off the event loop: in multi-process mode it reads files.
        """

        async def metrics(request: web.Request) -> web.StreamResponse:
            guard(request)
            body = await asyncio.get_running_loop().run_in_executor(None, self.exposition)
            return web.Response(body=body, headers={"Content-Type": self.content_type})

        return metrics


def _reachable(store: Store) -> bool:
    """The store's own check; a check that fails is "not reachable" (the sampler goes on)."""
    try:
        return bool(store.health()["reachable"])
    except Exception:
        log.exception("the store's health check failed")
        return False


def route_of(request: web.Request) -> str:
    """The route pattern a request matched (without a trailing slash), or ``other``."""
    resource = request.match_info.route.resource
    if resource is None:
        return "other"
    return resource.canonical.rstrip("/") or "/"
