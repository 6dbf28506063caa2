"""Where queued messages wait: the `Buffer` protocol and the memory buffer.

A buffer holds encoded messages (the bytes the caller made) until the sender settles them.
The sender loop (`analytics._sender`) knows only this protocol; the memory buffer here and the
spool buffer (`analytics._spoolbuffer`) implement it:

| method           | thread      | does                                                            |
|------------------|-------------|-----------------------------------------------------------------|
| `put(data)`      | any caller  | append, never blocks; the new length, or -1 when full            |
| `ready()`        | any         | messages waiting to be taken (for the ``flush_at`` wake-up)      |
| `full()`         | any         | True when `put` would refuse                                    |
| `take()`         | the sender  | the next batch (within the SPEC §3 limits), or None             |
| `ack(batch)`     | the sender  | the batch is settled (delivered or failed): forget it           |
| `release(batch)` | the sender  | the batch was cut at shutdown: True if kept for a later process |
| `mark()`         | a flusher   | a point in the buffer's history: everything put before now      |
| `outstanding(m)` | a flusher   | messages put before mark ``m`` that are not settled yet         |
| `pending()`      | any         | messages held: waiting, taken, or (spool) on disk               |
| `evict()`        | shutdown    | take every message still in memory (the sender fails them)      |
| `close()`        | shutdown    | stop and close; returns how many messages stay durably stored   |

`release` says whether it kept the batch (the spool) or whether a cut batch is lost and must be
reported failed (memory).

The memory buffer is a bounded deque of bytes. When its backlog grows past ``compact_at`` while
delivery is stalled (`STALL_AFTER`), a background thread keeps the oldest messages as zlib
blocks, one future batch per block (about a fifth of their size; zlib releases the GIL).
"""

from __future__ import annotations

import threading
import time
import zlib
from collections import deque
from dataclasses import dataclass
from typing import Protocol, cast

from analytics._batch import fitting, take_batch

__all__ = ["COMPACT_AT", "STALL_AFTER", "Batch", "Buffer", "MemoryBuffer"]

#: A backlog longer than this (an outage, a slow collector) is compressed in the background.
COMPACT_AT = 10_000
#: ... but only while one batch has been in flight or retrying for this long: a draining burst
#: to a healthy collector is left alone (compressing it would only cost CPU).
STALL_AFTER = 0.25


@dataclass(slots=True)
class Batch:
    """Messages taken together for one request; ``key`` identifies a spooled chunk (0: none)."""

    items: list[bytes]
    key: int = 0


class Buffer(Protocol):
    """What the sender loop needs of a buffer (see the module docstring for the contract)."""

    max_size: int
    #: True when take/ack/release/mark/outstanding/evict/close may do disk I/O (the spool):
    #: an asyncio sender runs them on a worker thread, never on its loop
    blocking: bool
    #: messages delivered from memory because a spool could not take them (0 for memory)
    unspooled: int

    def put(self, data: bytes) -> int:
        """Append one encoded message; the new length, or -1 when there is no room."""
        ...

    def ready(self) -> int:
        """Messages waiting to be taken."""
        ...

    def full(self) -> bool:
        """True when `put` would refuse a message."""
        ...

    def take(self) -> Batch | None:
        """The next batch, oldest first, or None when nothing waits."""
        ...

    def ack(self, batch: Batch) -> None:
        """The batch is settled: forget it."""
        ...

    def release(self, batch: Batch) -> bool:
        """The batch was cut at shutdown: keep it for a later process; False if it is lost."""
        ...

    def keeps(self, batch: Batch) -> bool:
        """Would `release` keep this batch? (Answered without I/O.)"""
        ...

    def mark(self) -> object:
        """A point after every message put so far."""
        ...

    def outstanding(self, mark: object) -> int:
        """Messages put before ``mark`` and not yet settled."""
        ...

    def pending(self) -> int:
        """Messages held: waiting, taken, or stored."""
        ...

    def evict(self) -> list[bytes]:
        """Remove and return every message still waiting in memory."""
        ...

    def delivery_started(self, since: float | None) -> None:
        """The sender took a batch at ``since`` (monotonic), or settled it (None)."""
        ...

    def close(self) -> int:
        """Stop any thread of the buffer; return how many messages stay durably stored."""
        ...

    def after_fork_in_child(self) -> None:
        """Forget the parent's messages, threads and connections."""
        ...


class MemoryBuffer:
    """A bounded FIFO of encoded messages in memory, with backlog compaction."""

    unspooled = 0
    blocking = False

    def __init__(self, max_size: int, max_bytes: int, compact_at: int = COMPACT_AT) -> None:
        """Hold at most ``max_size`` messages; batches of at most ``max_bytes`` bytes."""
        self.max_size = max_size
        self.max_bytes = max_bytes
        self.compact_at = compact_at
        self._init()

    def _init(self) -> None:
        self.queue: deque[bytes] = deque()
        # Compressed blocks of the oldest messages: (count, zlib of b"\n".join(items)).
        self._blocks: deque[tuple[int, bytes]] = deque()
        self._blocked = 0  # messages in _blocks, or taken by the compactor for the next block
        self._taken = 0  # messages taken and not yet settled
        self._settled = 0  # messages settled since the start (for marks)
        self._lock = threading.Lock()
        self._compactor: threading.Thread | None = None
        self._compact_wake = threading.Event()
        self._compact_asked = False
        self._stopping = False
        self._sending_since: float | None = None

    # --- the calling thread ---------------------------------------------------------------------

    def put(self, data: bytes) -> int:
        """Append; never blocks. The new length, or -1 when ``max_size`` are held."""
        queue = self.queue
        n = len(queue) + self._blocked
        if n >= self.max_size:
            return -1
        queue.append(data)
        if n >= self.compact_at and not self._compact_asked:
            self._compact_asked = True
            self._start_compactor()
        return n + 1

    def ready(self) -> int:
        """Messages waiting (raw or compressed). Under the lock, like `full` and `pending`: the
        compactor moves a batch from the queue to a block under it, so a reader sees every
        message exactly once (only `put`, on the caller's path, reads without it)."""
        with self._lock:
            return len(self.queue) + self._blocked

    def full(self) -> bool:
        """True when ``max_size`` messages wait."""
        with self._lock:
            return len(self.queue) + self._blocked >= self.max_size

    def pending(self) -> int:
        """Messages waiting or taken."""
        with self._lock:
            return self._pending()

    def _pending(self) -> int:
        return len(self.queue) + self._blocked + self._taken

    def mark(self) -> object:
        """Everything put so far: settled ones plus the ones held."""
        with self._lock:
            return self._settled + self._pending()

    def outstanding(self, mark: object) -> int:
        """Messages before ``mark`` not yet settled (FIFO: they settle in order)."""
        return max(0, cast(int, mark) - self._settled)

    # --- the sender -----------------------------------------------------------------------------

    def take(self) -> Batch | None:
        """The oldest block, else a batch of the oldest raw messages."""
        with self._lock:
            if self._blocks:
                count, data = self._blocks.popleft()
                self._blocked -= count
                self._taken += count
            else:
                items = take_batch(self.queue, self.max_bytes)
                self._taken += len(items)
                return Batch(items) if items else None
        return Batch(zlib.decompress(data).split(b"\n"))

    def ack(self, batch: Batch) -> None:
        """Settled: counted for marks."""
        with self._lock:
            self._taken -= len(batch.items)
            self._settled += len(batch.items)

    def release(self, batch: Batch) -> bool:
        """Memory keeps nothing past the process: False, the sender reports the batch failed."""
        self.ack(batch)
        return False

    def keeps(self, batch: Batch) -> bool:
        """Memory keeps nothing past the process."""
        return False

    def unget(self, batch: Batch) -> None:
        """Put a taken batch back at the head, unsettled (a spool could not take it)."""
        with self._lock:
            self.queue.extendleft(reversed(batch.items))
            self._taken -= len(batch.items)

    def evict(self) -> list[bytes]:
        """Every message still waiting (compressed ones decompressed), oldest first."""
        with self._lock:
            blocks, self._blocks = list(self._blocks), deque()
            raw, self.queue = list(self.queue), deque()
            self._blocked = 0
            self._settled += len(raw) + sum(count for count, _ in blocks)
        items = [item for _, data in blocks for item in zlib.decompress(data).split(b"\n")]
        return items + raw

    def delivery_started(self, since: float | None) -> None:
        """Tell the compactor whether delivery is stalled."""
        self._sending_since = since

    def close(self) -> int:
        """Stop the compactor (it ends within one block); nothing is stored durably."""
        self._stopping = True
        self._compact_wake.set()
        return 0

    def after_fork_in_child(self) -> None:
        """The child starts empty, with its own lock and no compactor."""
        self._init()

    # --- the compactor thread -------------------------------------------------------------------

    def _start_compactor(self) -> None:
        with self._lock:
            if self._compactor is None and not self._stopping:
                thread = threading.Thread(target=self._compact, name="analytics-compactor")
                thread.daemon = True
                try:
                    thread.start()
                except RuntimeError:  # interpreter shutting down: the backlog stays as it is
                    return
                self._compactor = thread
        self._compact_wake.set()

    def _compact(self) -> None:
        """Compress the oldest part of a stalled backlog, one batch per block (zlib level 1).

        Leaves the newest half of ``compact_at`` as they are; runs beside the application on
        another core (zlib releases the GIL).
        """
        while not self._stopping:
            self._compact_wake.wait(1.0)
            self._compact_wake.clear()
            self._compact_asked = False
            while len(self.queue) > self.compact_at // 2 and not self._stopping:
                since = self._sending_since
                if since is None or time.monotonic() - since < STALL_AFTER:
                    # Draining: look again soon. Cleared first: put() set it, and a set Event
                    # would make this loop spin.
                    self._compact_wake.clear()
                    self._compact_wake.wait(STALL_AFTER / 2)
                    continue
                # Under the lock, so a take() never overtakes the block being made (order is
                # kept); put() does not take the lock, and zlib releases the GIL meanwhile.
                with self._lock:
                    count = fitting(self.queue, self.max_bytes)
                    self._blocked += count  # first: readers without the lock never undercount
                    items = [self.queue.popleft() for _ in range(count)]
                    self._blocks.append((count, zlib.compress(b"\n".join(items), 1)))
