""":func:`run`, the blocking collector of ``analytics serve``, alone or with worker processes.

``run()`` serves until SIGINT or SIGTERM, then stops gracefully: no new connections, in-flight
requests finish and are committed.

``analytics serve --workers N``: N processes serve one port and write one SQLite file (or one
PostgreSQL database, each process over its own connection, without the lock below).

Why: one collector process is bound by its GIL (JSON parsing, validation and enrichment hold
it about two thirds of the time), so it cannot use a second CPU. Separate processes can.

How: the process ``analytics serve`` started binds the port with ``SO_REUSEPORT`` and serves
like a single collector; it starts ``N - 1`` worker processes (``spawn``: its threads are
never forked) that bind the same port the same way, and the kernel spreads new connections
among all N. Each process has its own store connection, writer thread and checkpointer; a
lock shared by all of them makes their transactions take turns (without SQLite's busy-wait
sleeps), and dedupe stays exact because it is the database's own unique index. ``/health``
answers with the counters (and the ``pid``) of the process that took the connection.

Stopping: SIGINT or SIGTERM to the first process (a Ctrl-C reaches them all) stops every
process gracefully: each stops accepting, finishes its in-flight requests and commits them.
Worker processes ignore the signals themselves; they stop when the first process closes a
pipe they wait on, which also happens when it dies. A worker that dies is logged and
replaced; the write lock is an ``flock`` (``<db>-writers``), which the kernel releases when
its holder dies. Linux only (``SO_REUSEPORT`` spreads connections only there).
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import signal
import socket
import sqlite3
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection
from multiprocessing.context import SpawnProcess
from os import PathLike
from pathlib import Path
from types import TracebackType
from typing import Any

from analytics.collector._auth import KeyPolicy, check_bind
from analytics.collector._db import check_retention, is_url, open_store
from analytics.collector._logs import LOG_FORMAT, LogSettings, configure, current
from analytics.collector._metrics import for_workers, mark_process_dead
from analytics.collector._refusal_ring import RefusalRing
from analytics.collector._schema import SchemaError
from analytics.collector._server import CollectorServer
from analytics.collector._store import Store, StoreError

if sys.platform != "win32":
    import fcntl

__all__ = ["LOG_FORMAT", "ProcessLock", "Workers", "check_workers", "run"]

log = logging.getLogger("analytics.collector")

_POLL = 0.5  # seconds between the first process's checks of its workers
_READY_TIMEOUT = 60.0
_ctx = multiprocessing.get_context("spawn")


def check_workers(workers: int) -> None:
    """Raise ``ValueError`` unless ``workers`` processes can serve here."""
    if workers < 1:
        raise ValueError("--workers must be at least 1")
    if workers > 1 and not sys.platform.startswith("linux"):
        raise ValueError("--workers above 1 needs Linux (SO_REUSEPORT)")


class ProcessLock:
    """An exclusive lock between processes: ``flock`` on ``<db>-writers``.

    The kernel releases it when its holder dies, so a killed worker never leaves the others
    waiting (a ``multiprocessing.Lock`` would stay taken). Each process (and each store) opens
    its own; waiting blocks the writer thread only (the GIL is released).
    """

    def __init__(self, db: str | PathLike[str]) -> None:
        self.path = Path(f"{os.fspath(db)}-writers")
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)

    def __enter__(self) -> ProcessLock:
        fcntl.flock(self._fd, fcntl.LOCK_EX)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        fcntl.flock(self._fd, fcntl.LOCK_UN)

    def close(self) -> None:
        """Close the lock file (idempotent)."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


@dataclass(frozen=True)
class _Config:
    host: str
    port: int
    db: str
    write_keys: list[str] | None
    options: dict[str, Any]
    log: LogSettings


def _worker_main(config: _Config, stop: Connection, ready: Connection) -> None:
    """A worker process: serve until ``stop`` reaches EOF (the first process closed it or
    ended)."""
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_IGN)
    configure(config.log)
    lock, store = _open(config.db, workers=True)
    try:
        server = CollectorServer(
            store, config.host, config.port, config.write_keys, reuse_port=True, **config.options
        )
        server.start()
    except BaseException as exc:
        ready.send(f"{type(exc).__name__}: {exc}")
        store.close()
        if lock is not None:
            lock.close()
        return
    ready.send(None)
    ready.close()
    try:
        stop.poll(None)  # nothing is ever sent: this returns at EOF
    finally:
        server.stop()
        store.close()
        if lock is not None:
            lock.close()


def _open(
    db: str | PathLike[str], *, workers: bool, retention_days: int | None = None
) -> tuple[ProcessLock | None, Store]:
    """The store of one process, and the write lock its SQLite file shares with the others.

    PostgreSQL needs no lock: each process has its own connection and the database's own
    unique key deduplicates. Retention runs in the first process only.

    Raises:
        StoreError: one line saying why a SQLite file cannot be used (a missing directory, a
            file that is not ours or not SQLite, a full disk ...).
    """
    if is_url(db):
        return None, open_store(db, retention_days=retention_days)
    lock = None
    try:
        lock = ProcessLock(db) if workers else None
        return lock, open_store(db, write_lock=lock, retention_days=retention_days)
    except (OSError, sqlite3.Error, SchemaError) as exc:
        if lock is not None:
            lock.close()
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise StoreError(f"{os.fspath(db)}: {reason}") from None


class Workers:
    """The ``N - 1`` worker processes beside the first one (which the caller runs)."""

    def __init__(
        self,
        count: int,
        *,
        host: str,
        db: str,
        write_keys: list[str] | None,
        options: dict[str, Any],
    ) -> None:
        self.count = count
        self._host = host
        self._db = db
        self._write_keys = write_keys
        self._options = options
        # Workers wait for EOF on the read end; closing the write end (or dying) stops them.
        self._stop_reader, self._stop_writer = _ctx.Pipe(duplex=False)
        self._procs: list[SpawnProcess] = []
        self._port = 0

    def start(self, port: int) -> None:
        """Start the workers on ``port`` and wait until each one listens.

        Raises:
            RuntimeError: a worker could not start (its error is in the message).
        """
        self._port = port
        for _ in range(self.count):
            self._procs.append(self._spawn())

    def _spawn(self) -> SpawnProcess:
        config = _Config(
            self._host,
            self._port,
            self._db,
            self._write_keys,
            self._options,
            # The same log lines as this process: its settings, else its level in text.
            current() or LogSettings(logging.getLogger("analytics.collector").getEffectiveLevel()),
        )
        ready_reader, ready_writer = _ctx.Pipe(duplex=False)
        proc = _ctx.Process(
            target=_worker_main,
            args=(config, self._stop_reader, ready_writer),
            name="analytics-collector-worker",
            daemon=True,
        )
        proc.start()
        ready_writer.close()
        try:
            if not ready_reader.poll(_READY_TIMEOUT):
                error = f"not listening within {_READY_TIMEOUT:g} s"
            else:
                error = ready_reader.recv()
        except EOFError:
            error = f"ended at start (exit code {proc.exitcode})"
        finally:
            ready_reader.close()
        if error is not None:
            proc.kill()
            proc.join(5.0)
            raise RuntimeError(f"a collector worker process did not start: {error}")
        return proc

    def replace_dead(self) -> None:
        """Start a new worker for each one that died (logged)."""
        for i, proc in enumerate(self._procs):
            if proc.is_alive() or self._stop_writer.closed:
                continue
            log.error(
                "collector worker process %d ended (exit code %s); starting a new one",
                proc.pid,
                proc.exitcode,
            )
            mark_process_dead(proc.pid)
            proc.close()
            self._procs[i] = self._spawn()

    def request_stop(self) -> None:
        """Tell every worker to stop gracefully (returns at once; idempotent)."""
        if not self._stop_writer.closed:
            self._stop_writer.close()

    def stop(self, timeout: float) -> None:
        """Tell every worker to stop gracefully; wait up to ``timeout``, then kill."""
        self.request_stop()
        deadline = time.monotonic() + timeout
        for proc in self._procs:
            proc.join(max(0.0, deadline - time.monotonic()))
        for proc in self._procs:
            if proc.is_alive():
                log.warning("collector worker process %d did not stop in time; killed", proc.pid)
                proc.kill()
                proc.join(5.0)
            mark_process_dead(proc.pid)
        self._procs.clear()
        self._stop_reader.close()


def _check_options(
    host: str,
    port: int,
    write_keys: Sequence[str] | None,
    workers: int,
    db: str | PathLike[str],
    retention_days: int | None,
) -> None:
    check_workers(workers)
    check_retention(db, retention_days)
    check_bind(host, KeyPolicy(write_keys))
    if workers > 1 and port:
        _check_port_free(host, port)


def _check_port_free(host: str, port: int) -> None:
    """Fail like a plain bind when something listens on ``port`` already.

    ``SO_REUSEPORT`` lets any socket of the same user that set it bind the same port: without
    this check a second ``analytics serve`` on a busy port would share it (and split the
    traffic between two databases) instead of failing.

    Raises:
        OSError: the address is in use.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.create_server((host.strip("[]"), port), family=family):
        pass


def _shared_options(options: dict[str, Any], workers: int) -> dict[str, Any]:
    """With several processes, one refusal ring in shared memory for all of them, so the
    debugger page shows every process's refusals (:mod:`._refusal_ring`)."""
    return {**options, "debug_ring": RefusalRing.shared()} if workers > 1 else options


def run(
    host: str = "127.0.0.1",
    port: int = 8088,
    db: str | PathLike[str] = "analytics.db",
    write_keys: Sequence[str] | None = None,
    *,
    on_ready: Callable[[CollectorServer], Any] | None = None,
    workers: int = 1,
    retention_days: int | None = None,
    **options: Any,
) -> None:
    """Serve until SIGINT or SIGTERM, then stop gracefully (blocking).

    ``options`` go to :class:`CollectorServer`; ``on_ready`` is called once every process
    listens. ``workers`` above 1 serves from that many processes (see the module docstring).
    ``db`` is a SQLite file or a ``postgresql://`` URL; ``retention_days`` (PostgreSQL only)
    drops the day partitions older than that many days.
    Signal handlers are installed only when called from the main thread.

    Raises:
        ValueError: bad options (``workers`` below 1, or above 1 off Linux).
        StoreError: the database cannot be opened or created (PostgreSQL unreachable, a
            newer schema, a file that is not ours, a missing directory, a full disk).
        OSError: the address is in use (checked before sharing it with ``SO_REUSEPORT``).
        RuntimeError: a worker process could not start.
    """
    _check_options(
        host, port, write_keys, workers, db, retention_days
    )  # before the database file is created
    keys = list(write_keys) if write_keys else None
    lock, store = _open(db, workers=workers > 1, retention_days=retention_days)
    options = _shared_options(options, workers)
    stop = threading.Event()
    previous: dict[signal.Signals, Any] = {}
    pool: Workers | None = None
    server: CollectorServer | None = None
    # Every process's /metrics counts what all of them did (see ._metrics).
    metrics_scope = contextlib.ExitStack()
    metrics_scope.enter_context(for_workers(workers))
    try:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                previous[sig] = signal.signal(sig, lambda _sig, _frame: stop.set())
        server = CollectorServer(store, host, port, keys, reuse_port=workers > 1, **options)
        server.start()
        if workers > 1:
            pool = Workers(workers - 1, host=host, db=str(db), write_keys=keys, options=options)
            pool.start(server.port)
        if on_ready is not None:
            on_ready(server)
        # A timed wait keeps the main thread responsive to signals on every platform.
        while not stop.wait(_POLL):
            if pool is not None:
                pool.replace_dead()
        log.info("collector stopping")
    finally:
        if pool is not None:
            pool.request_stop()
        if server is not None:
            server.stop()
        if pool is not None:
            pool.stop(float(options.get("shutdown_timeout", 10.0)) + 5.0)
        store.close()
        if lock is not None:
            lock.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        metrics_scope.close()
