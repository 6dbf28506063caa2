"""The spool buffer: queued messages go to an SQLite file (`analytics._spool`) before they are sent.

It implements the `analytics._buffer.Buffer` protocol, so the sender loop treats it like the
memory buffer. The calling thread never touches the disk: `put()` appends to a memory queue,
which is *staged* into the spool (one chunk per future batch) by the spooler thread every
``interval`` seconds, by the sender before it takes a batch, by a flush, and at shutdown. What a
SIGKILL can lose is the memory queue: at most the last ``interval`` of messages.

Trouble with the file:

- **Contention** (another process held the SQLite lock past the busy timeout): nothing is
  disabled. The messages stay in memory and staging is tried again with backoff (from
  ``interval`` doubling to `MAX_BACKOFF`); reads and acks are retried on the next round.
- **A broken file** (read-only, corrupt, disk full, cannot be opened): said once at ERROR. New
  messages stay in memory and are sent from there (counted in ``unspooled``); the file is probed
  again every `REPROBE` seconds, and used again when it works, including chunks an earlier
  process left in it. A spool that cannot be opened at start is probed the same way.
- Leased chunks are released when this process stops using the file (close, or a broken file).
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Callable
from typing import cast

from analytics._buffer import Batch, MemoryBuffer
from analytics._log import ClientLog
from analytics._spool import Spool, SpoolBusy, SpoolError

__all__ = ["REPROBE", "SpoolBuffer"]


#: Seconds between two probes of a spool that failed (broken file, not contention).
REPROBE = 30.0
#: The longest wait between two staging attempts while the file stays locked by others.
MAX_BACKOFF = 30.0

DropHook = Callable[[str, list[bytes]], None]


class SpoolBuffer:
    """A `Buffer` whose messages wait in a `Spool` file until they are delivered."""

    blocking = True

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        max_size: int,
        max_bytes: int,
        spool_max_bytes: int,
        fsync: bool,
        interval: float,
        on_drop: DropHook,
        log: ClientLog,
    ) -> None:
        """Open (or plan to probe) the spool; nothing is staged until the first `put`."""
        self.max_size = max_size
        self.unspooled = 0
        self.log = log
        self._path = path
        self._max_stored = spool_max_bytes
        self._fsync = fsync
        self._interval = interval
        self._on_drop = on_drop
        self._memory = MemoryBuffer(max_size, max_bytes, compact_at=2**62)
        self._init()
        self._probe(time.monotonic(), log=True)

    def _init(self) -> None:
        self._lock = threading.RLock()  # serializes staging, leases and acks of this process
        self._spool: Spool | None = None
        self._broken = False  # True after a broken-file error: memory only until a probe works
        self._told = False  # the user was told at ERROR once; later breaks log at DEBUG
        self._probe_at = 0.0
        self._stage_at = 0.0  # no staging before this (contention backoff)
        self._backoff = self._interval
        self._disk_ready = 0  # messages this buffer knows wait on disk (for the wake-up)
        self._stopping = threading.Event()
        self._spooler: threading.Thread | None = None

    # --- the calling thread ---------------------------------------------------------------------

    def put(self, data: bytes) -> int:
        """Append to memory (never touches the disk); the spooler stages it within ``interval``."""
        if self._spooler is None:
            self._start_spooler()
        return self._memory.put(data)

    def ready(self) -> int:
        """Messages waiting in memory or known to wait on disk."""
        return self._memory.ready() + self._disk_ready

    def full(self) -> bool:
        """True when the memory queue (what waits to be staged) is full."""
        return self._memory.full()

    def pending(self) -> int:
        """Messages in memory and in the file (every process's), never raising."""
        stored = 0
        spool = self._spool
        if spool is not None:
            try:
                stored = spool.pending()
            except SpoolError:  # a read for a counter never degrades the spool
                stored = self._disk_ready
        return self._memory.pending() + stored

    def mark(self) -> object:
        """Stage memory to disk, then note the newest chunk and the memory queue."""
        self.stage(force=True)
        with self._lock:
            newest = -1
            spool = self._usable()
            if spool is not None:
                try:
                    newest = spool.newest_chunk_id()
                except SpoolError:
                    newest = -1
            # Messages left in memory may reach the disk later, after `newest`: then the
            # flush waits for every chunk, whatever its id (conservative, never early).
            spill = spool is not None and self._memory.ready() > 0
            return (newest, spill, self._memory.mark())

    def outstanding(self, mark: object) -> int:
        """Messages before ``mark`` not settled; at least 1 while the file cannot say."""
        newest, spill, memory_mark = cast(tuple[int, bool, object], mark)
        left = self._memory.outstanding(memory_mark)
        if newest < 0 and not spill:
            return left
        spool = self._spool
        if spool is None:
            return left + 1  # unknown while the file is unusable: not done
        try:
            through = spool.newest_chunk_id() if spill else int(newest)
            return left + spool.pending_through(through)
        except SpoolError:
            return left + 1

    # --- the sender -----------------------------------------------------------------------------

    def take(self) -> Batch | None:
        """Stage memory, then lease the oldest chunk; from memory while the file is broken."""
        self.stage()
        with self._lock:
            spool = self._usable()
            if spool is not None:
                try:
                    leased = spool.lease()
                except SpoolBusy:
                    leased = None  # locked by another process: the next round tries again
                except SpoolError as exc:
                    self._break(exc)
                    leased = None
                if leased is not None:
                    chunk_id, items = leased
                    self._disk_ready = max(0, self._disk_ready - len(items))
                    return Batch(items, chunk_id)
                self._disk_ready = 0
            if self._spool is not None and not self._broken:
                return None  # memory waits for the spool (contention)
        batch = self._memory.take()
        if batch is not None:
            self.unspooled += len(batch.items)
        return batch

    def ack(self, batch: Batch) -> None:
        """Delete a settled chunk (kept and sent again if the file refuses: at least once)."""
        if not batch.key:
            self._memory.ack(batch)
            return
        with self._lock:
            spool = self._spool
            if spool is None:
                return
            try:
                spool.ack(batch.key)
            except SpoolError as exc:
                self.log.warning("analytics: could not delete a delivered chunk: %s", exc)

    def release(self, batch: Batch) -> bool:
        """Give a cut chunk back to the file (True); a memory batch is lost (False)."""
        if not batch.key:
            return self._memory.release(batch)
        with self._lock:
            spool = self._spool
            if spool is not None:
                try:
                    spool.release(batch.key)
                except SpoolError as exc:  # reclaimed by another process once this one exits
                    self.log.warning("analytics: could not release a spooled chunk: %s", exc)
        return True

    def keeps(self, batch: Batch) -> bool:
        """A chunk of the file is kept; a batch sent from memory is not."""
        return batch.key != 0

    def evict(self) -> list[bytes]:
        """At shutdown: stage what memory holds; return what the file could not take."""
        self.stage(force=True)
        return self._memory.evict()

    def delivery_started(self, since: float | None) -> None:
        """Nothing to do: the spool takes the backlog off memory."""

    def close(self) -> int:
        """Stop the spooler, stage memory, release this process's leases, close the file.

        Returns:
            The messages that stay in the file for a later process.
        """
        self._stopping.set()
        self.stage(force=True)
        with self._lock:
            spool, self._spool = self._spool, None
            if spool is None:
                return 0
            try:
                left = spool.pending()
            except SpoolError:
                left = 0
            spool.close()
        if left:
            self.log.warning(
                "analytics: %d message(s) stay in the spool %s for the next start", left, spool.path
            )
        return left

    def after_fork_in_child(self) -> None:
        """The child starts with an empty memory queue and its own connection and leases."""
        spool = self._spool
        self._memory.after_fork_in_child()
        self._init()
        self._spool = spool
        if spool is not None:
            spool.after_fork_in_child()

    # --- staging (the spooler thread, the sender, flush, shutdown) ------------------------------

    def stage(self, *, force: bool = False) -> None:
        """Move the memory queue into the file, one chunk per batch.

        Contention leaves the rest in memory and backs off (``force`` ignores the backoff
        once, for flush and shutdown); a broken file switches to memory until a probe works.
        """
        now = time.monotonic()
        if not force and now < self._stage_at:
            return
        with self._lock:
            spool = self._usable(now)
            while spool is not None and not self._broken:
                batch = self._memory.take()
                if batch is None:
                    self._backoff = self._interval
                    return
                try:
                    dropped = spool.append(batch.items)
                except SpoolBusy as exc:
                    self._memory.unget(batch)
                    self._contended(now, exc)
                    return
                except SpoolError as exc:
                    self._memory.unget(batch)
                    self._break(exc)
                    return
                self._memory.ack(batch)
                self._disk_ready += len(batch.items)
                if dropped:
                    self._disk_ready = max(0, self._disk_ready - len(dropped))
                    self._dropped(dropped)

    def _dropped(self, items: list[bytes]) -> None:
        self.log.warning(
            "analytics: the spool is over its size bound; dropped the %d oldest messages",
            len(items),
        )
        self._on_drop("spool_full", items)

    def _contended(self, now: float, exc: SpoolError) -> None:
        self.log.info("analytics: %s; retrying in %.1f s", exc, self._backoff)
        self._stage_at = now + self._backoff
        self._backoff = min(MAX_BACKOFF, self._backoff * 2)

    def _usable(self, now: float | None = None) -> Spool | None:
        """The open spool, probing a broken or unopened one when its time has come."""
        if self._spool is not None and not self._broken:
            return self._spool
        now = time.monotonic() if now is None else now
        if now >= self._probe_at and not self._stopping.is_set():
            self._probe(now, log=False)
        return self._spool if not self._broken else None

    def _probe(self, now: float, *, log: bool) -> None:
        """Open the file (or check a broken one with a read); on success use it again."""
        self._probe_at = now + REPROBE
        try:
            if self._spool is None:
                self._spool = Spool(self._path, max_bytes=self._max_stored, fsync=self._fsync)
            self._disk_ready = self._spool.pending()
        except SpoolBusy as exc:  # locked by another process: try again soon, quietly
            self.log.info("analytics: %s; the spool is tried again shortly", exc)
            self._probe_at = now + self._interval
            self._broken = True
            return
        except SpoolError as exc:
            if log:
                self._told = True
                self.log.error(
                    "analytics: cannot use the spool (%s); events are kept in memory and the "
                    "file is tried again every %.0f s",
                    exc,
                    REPROBE,
                )
            self._broken = True
            return
        self._broken = False

    def _break(self, exc: SpoolError) -> None:
        """A broken-file error: memory only until a probe works; said once."""
        if not self._told:
            self._told = True
            self.log.error(
                "analytics: the spool failed (%s); new events are kept in memory and the file "
                "is tried again every %.0f s",
                exc,
                REPROBE,
            )
        else:
            self.log.debug("analytics: the spool failed again: %s", exc)
        self._broken = True
        self._probe_at = time.monotonic() + REPROBE
        spool = self._spool
        if spool is not None:
            with contextlib.suppress(SpoolError):  # our leases back: another process sends them
                spool.release_all()

    # --- the spooler thread ---------------------------------------------------------------------

    def start(self) -> None:
        """Start the spooler thread now (an asyncio client does, before its loop needs it)."""
        self._start_spooler()

    def _start_spooler(self) -> None:
        with self._lock:
            if self._spooler is not None or self._stopping.is_set():
                return
            thread = threading.Thread(target=self._run_spooler, name="analytics-spooler")
            thread.daemon = True
            self._spooler = thread
            try:
                thread.start()
            except RuntimeError:  # interpreter shutting down: shutdown stages what is left
                return

    def _run_spooler(self) -> None:
        while not self._stopping.wait(self._interval):
            try:
                self.stage()
            except Exception:  # never let a bug stop the spooler silently
                self.log.exception("analytics spooler: unexpected error; continuing")
