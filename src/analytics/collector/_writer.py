"""The writer thread(s): group commit of many requests' rows into the store.

Request handlers (on the event loop) call :meth:`GroupCommitWriter.submit` with their rows and
a callback. A writer thread takes every job waiting in the queue (up to ``max_rows`` rows),
writes them in one transaction with one commit, then calls each job's callback with the number
of new rows (duplicates excluded) or with the :class:`~analytics.collector._store.StoreError`.
A handler answers 200 only after its callback reported success, so an acknowledged event is
committed.

One thread, unless the store says more may write at once (a ``writers`` attribute: SQLite has
one writer; PostgreSQL copies one transaction while the previous one commits, see
:mod:`._pg`). The threads share the queue.

:meth:`stop` lets the threads finish every job submitted before it, then joins them.

For the metrics: :attr:`GroupCommitWriter.queued_rows` is the rows submitted and not yet
committed, and ``on_commit`` is called after each commit with its duration and outcome.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from analytics.collector._store import Message, Store, StoreError

__all__ = ["Done", "GroupCommitWriter"]

log = logging.getLogger("analytics.collector")

#: Called on the writer thread with the new-row count or the error.
Done = Callable[[int | StoreError], None]
#: Called on the writer thread after each commit: its seconds, and True when it succeeded.
OnCommit = Callable[[float, bool], None]


@dataclass(frozen=True, slots=True)
class _Job:
    rows: Sequence[Message]
    done: Done


class GroupCommitWriter:
    """One thread that owns the store's write side. Thread-safe ``submit``."""

    def __init__(
        self, store: Store, *, max_rows: int = 50_000, on_commit: OnCommit | None = None
    ) -> None:
        self._store = store
        self._on_commit = on_commit
        self._queued_rows = 0
        self._max_rows = max_rows
        self._queue: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._closed = False
        writers = getattr(store, "writers", 1)
        self._threads = [
            threading.Thread(target=self._run, name=f"analytics-collector-writer-{n}", daemon=True)
            for n in range(writers if isinstance(writers, int) and writers > 1 else 1)
        ]

    @property
    def store(self) -> Store:
        """The store this writer writes to (its read methods are safe from any thread)."""
        return self._store

    @property
    def queued_rows(self) -> int:
        """Rows submitted and not yet committed (nor failed)."""
        return self._queued_rows

    def start(self) -> None:
        """Start the threads."""
        for thread in self._threads:
            thread.start()

    def submit(self, rows: Sequence[Message], done: Done) -> None:
        """Queue ``rows``; ``done`` is called on the writer thread once they are committed.

        Raises:
            RuntimeError: the writer was stopped.
        """
        with self._lock:
            if self._closed:
                raise RuntimeError("the collector writer is stopped")
            self._queued_rows += len(rows)
            self._queue.put(_Job(rows, done))

    def stop(self, timeout: float) -> bool:
        """Finish the queued jobs and stop the threads; True when they ended within
        ``timeout``."""
        with self._lock:
            if not self._closed:
                self._closed = True
                for _ in self._threads:
                    self._queue.put(None)  # each thread ends at the first it takes
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            if thread.is_alive():
                thread.join(max(0.0, deadline - time.monotonic()))
        return not any(thread.is_alive() for thread in self._threads)

    def _run(self) -> None:
        running = True
        while running:
            job = self._queue.get()
            if job is None:
                break
            jobs, running = self._take_more(job)
            self._commit(jobs)

    def _take_more(self, first: _Job) -> tuple[list[_Job], bool]:
        """Collect what else is already queued, so one commit serves many requests."""
        jobs, rows = [first], len(first.rows)
        while rows < self._max_rows:
            try:
                job = self._queue.get_nowait()
            except queue.Empty:
                break
            if job is None:
                return jobs, False
            jobs.append(job)
            rows += len(job.rows)
        return jobs, True

    def _commit(self, jobs: list[_Job]) -> None:
        results: Sequence[int | StoreError]
        started = time.perf_counter()
        try:
            results = self._store.write([job.rows for job in jobs])
            if len(results) != len(jobs):
                raise StoreError(f"store returned {len(results)} counts for {len(jobs)} batches")
        except StoreError as exc:
            log.error("collector store write failed: %s", exc)
            results = [exc] * len(jobs)
        except Exception as exc:  # a store bug must not kill the thread or hang handlers
            log.exception("collector store write crashed")
            results = [StoreError(f"{type(exc).__name__}: {exc}")] * len(jobs)
        self._committed(jobs, time.perf_counter() - started, results)
        for job, result in zip(jobs, results, strict=True):
            try:
                job.done(result)
            except Exception:
                log.exception("collector writer callback failed")

    def _committed(
        self, jobs: list[_Job], seconds: float, results: Sequence[int | StoreError]
    ) -> None:
        with self._lock:
            self._queued_rows -= sum(len(job.rows) for job in jobs)
        if self._on_commit is not None:
            ok = not any(isinstance(result, StoreError) for result in results)
            try:
                self._on_commit(seconds, ok)
            except Exception:
                log.exception("collector commit hook failed")
