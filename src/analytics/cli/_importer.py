"""The import loop: read sources, map each line, enqueue it, report what could not be sent.

`Importer` owns the counters. The hot loop (`_feed`) keeps to local variables and does its
bookkeeping every `CHECK_EVERY` lines: progress, failures reported by the client's worker,
and whether to stop (Ctrl-C, or a collector that cannot be reached).

Message ids: a line without a `messageId` gets ``import-<run>-<source>-<line>``, so a failed
batch reported by the client names its lines without a lookup table; lines that bring their
own `messageId` are remembered until acknowledged.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import analytics
from analytics.cli._delivery import DeliveryTracker, compact_ranges, describe_failure
from analytics.cli._mapping import LineError, check_message, check_timestamp
from analytics.cli._progress import Counts, Reporter

__all__ = ["CHECK_EVERY", "NAIVE_RULE", "ImportResult", "Importer", "Location"]

CHECK_EVERY = 1024  # lines between checkpoints (a power of two: tested with a bit mask)
FINISH_POLL = 0.25  # seconds between progress updates while the last batches are delivered
NAIVE_RULE = "a timestamp without a timezone is taken as UTC (the library's rule)"

Location = tuple[int, int]  # (source index, line number)
Mapper = Callable[[Any], dict[str, Any]]
Blocks = Iterable[tuple[int, Any]]  # a block of (line number, record)


class Consumed(Protocol):
    """A reader that knows how many bytes of its input it has consumed."""

    consumed: int


@dataclass(frozen=True, slots=True)
class ImportResult:
    """What an import did, for the summary and the exit code."""

    read: int
    sent: int
    refused: int
    not_delivered: int
    duration: float
    stopped: str | None  # None, "interrupted", "unreachable" or "read_error"
    last_read: str | None  # "file:line" of the last line read
    unreachable: bool  # some batch failed without any answer from the collector


class Importer:
    """Feeds sources to its clients and keeps the counts. Used from the main thread only."""

    def __init__(
        self,
        clients: Sequence[analytics.Client],
        tracker: DeliveryTracker,
        reporter: Reporter,
        *,
        host: str,
        enqueue_timeout: float,
        total_bytes: int | None,
        dry_run: bool = False,
    ) -> None:
        """Send with `clients` (built with `tracker`'s callbacks, used in turn every
        `CHECK_EVERY` lines so their requests overlap) and report through `reporter`."""
        self.clients = list(clients)
        self.tracker = tracker
        self.reporter = reporter
        self.host = host
        self.enqueue_timeout = enqueue_timeout
        self.total_bytes = total_bytes
        self.dry_run = dry_run  # nothing is sent: a line is settled once it is checked
        self.run_id = secrets.token_hex(6)
        self.own_ids: dict[str, Location] = tracker.ids if tracker.ids is not None else {}
        self.names: list[str] = []
        self.read = 0
        self.refused = 0
        self.done_bytes = 0
        self.stopped: str | None = None
        self.last: Location | None = None
        self.naive_warned = False
        self.started = time.monotonic()

    def stop(self, reason: str) -> None:
        """Ask the loop to stop at its next checkpoint (safe from a signal handler)."""
        if self.stopped is None:
            self.stopped = reason

    def add_source(self, name: str) -> int:
        """Register a source's display name; returns its index."""
        self.names.append(name)
        return len(self.names) - 1

    def refuse(self, index: int, lineno: int, reason: str) -> None:
        """Count and report one line that will not be sent."""
        self.refused += 1
        self.reporter.log(f"{self.names[index]}:{lineno}: {reason}")

    def feed(self, index: int, blocks: Iterable[Blocks], mapper: Mapper, reader: Consumed) -> None:
        """Import one source's records, given in blocks of (line number, record);
        `reader.consumed` is its byte position."""
        try:
            self._feed(index, blocks, mapper, reader)
        finally:
            self.done_bytes += reader.consumed

    def _feed(self, index: int, blocks: Iterable[Blocks], mapper: Mapper, reader: Consumed) -> None:
        # The client checks every message (type, fields, timestamp) when it is enqueued; the
        # loop checks nothing twice. A refused line is explained in the CLI's words after the
        # fact (`_reason`), and the naive-timestamp warning looks only at lines the client
        # took whose timestamp is not in UTC ("...Z"), until it has been given.
        prefix = f"import-{self.run_id}-{index}-"
        clients = self.clients
        enqueue = clients[0].enqueue
        own = self.own_ids
        timeout = self.enqueue_timeout
        read = 0
        lineno = 0
        try:
            for block in blocks:
                for lineno, payload in block:
                    read += 1
                    message = mid = None
                    try:
                        message = mapper(payload)
                        mid = message.get("messageId")
                        if mid is None:
                            message["messageId"] = prefix + str(lineno)
                        else:
                            own[str(mid)] = (index, lineno)
                        # A message the client drops (queue still full after `timeout`) comes
                        # back through on_failure, with its line, like any undelivered one.
                        enqueue(message, timeout=timeout)
                    except (LineError, ValueError, TypeError) as exc:
                        if mid is not None:
                            own.pop(str(mid), None)
                        self.refuse(index, lineno, _reason(exc, message))
                    else:
                        stamp = message.get("timestamp")
                        if not (
                            stamp is None
                            or self.naive_warned
                            or (type(stamp) is str and stamp[-1:] == "Z")
                        ):
                            self._check_naive(index, lineno, stamp)
                    if not read & (CHECK_EVERY - 1):
                        self._checkpoint(read, reader.consumed, index, lineno)
                        if self.stopped:
                            return
                        enqueue = clients[(read // CHECK_EVERY) % len(clients)].enqueue
        finally:
            self.read += read
            if read:
                self.last = (index, lineno)

    def _checkpoint(self, read: int, consumed: int, index: int, lineno: int) -> None:
        self.report_failures()
        if self.tracker.unreachable:
            self.stop("unreachable")
        self.last = (index, lineno)
        self.reporter.update(self.counts(self.read + read, self.done_bytes + consumed))

    def counts(self, read: int | None = None, position: int | None = None) -> Counts:
        """The counters now. The position is the bytes read scaled by the share of the lines
        read that are settled (sent or refused), so the bar ends when delivery does."""
        read = self.read if read is None else read
        position = self.done_bytes if position is None else position
        refused = self.refused + self.tracker.failed
        sent = self.tracker.sent
        if read and not self.dry_run:
            position = int(position * min((sent + refused) / read, 1.0))
        return Counts(read, sent, refused, position, self.total_bytes)

    def _where(self) -> str:
        """`file:line` of the last line read."""
        if self.last is None:
            return "the start"
        return f"{self.names[self.last[0]]}:{self.last[1]}"

    def _check_naive(self, index: int, lineno: int, stamp: object) -> None:
        """Warn (once) when a timestamp the client accepted has no timezone."""
        try:
            naive = check_timestamp(stamp)
        except LineError:  # not expected: the client accepted it
            return
        if naive:
            self.naive_warned = True
            self.reporter.log(
                f"warning: {self.names[index]}:{lineno}: timestamp {stamp!r}"
                f" has no timezone; {NAIVE_RULE}. Further ones are not reported."
            )

    def locate(self, message: Mapping[str, Any]) -> Location | None:
        """Which line a message came from."""
        mid = str(message.get("messageId"))
        head = f"import-{self.run_id}-"
        if mid.startswith(head):
            index, _, line = mid[len(head) :].partition("-")
            return int(index), int(line)
        return self.own_ids.pop(mid, None)

    def report_failures(self) -> None:
        """Report the batches the client gave up on, as file:line ranges with the reason."""
        for data, error in self.tracker.pop_failures():
            reason = f"not delivered: {describe_failure(error, self.host)}"
            locations = [self.locate(m) for m in data]
            for index, lines in _group_by_source(locations).items():
                for first, last in compact_ranges(lines):
                    where = f"{first}" if first == last else f"{first}-{last}"
                    self.reporter.log(f"{self.names[index]}:{where}: {reason}")
            unknown = locations.count(None)
            if unknown:  # not expected: every message sent was given a known id
                self.reporter.log(f"{unknown} message(s) of unknown origin: {reason}")

    def finish(self, timeout: float) -> ImportResult:
        """Wait (bounded) for delivery, stop the client and return the result.

        A collector that cannot be reached is not waited for. A second Ctrl-C during the
        wait (KeyboardInterrupt) stops waiting; what was acknowledged stays counted.
        """
        deadline = time.monotonic() + timeout
        if self.stopped == "interrupted":
            self.reporter.log(
                f"interrupted after {self._where()}: delivering the events already read"
                f" (at most {timeout:g}s; Ctrl-C again to stop now)"
            )
        try:
            self._wait_for_delivery(deadline)
        except KeyboardInterrupt:
            self.stop("interrupted")
        finally:
            for client in self.clients:
                client.shutdown(timeout=min(max(deadline - time.monotonic(), 0.1), 2.0))
        self.report_failures()
        duration = time.monotonic() - self.started
        sent = self.tracker.sent
        accepted = self.read - self.refused
        last = None if self.last is None else self._where()
        self.reporter.close(self.counts())
        return ImportResult(
            read=self.read,
            sent=sent,
            refused=self.refused,
            not_delivered=max(accepted - sent, 0),
            duration=duration,
            stopped=self.stopped,
            last_read=last,
            unreachable=self.tracker.unreachable,
        )

    def _wait_for_delivery(self, deadline: float) -> None:
        """Wait until nothing is pending, the deadline, or the collector proves unreachable,
        keeping the progress display and the failure reports going meanwhile."""
        while not self.tracker.unreachable:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            for client in self.clients:  # all of them send meanwhile: this only waits
                client.flush(timeout=min(FINISH_POLL, remaining))
            self.report_failures()
            self.reporter.update(self.counts())
            if not any(client.stats.queued for client in self.clients):
                return


def _reason(exc: Exception, message: Mapping[str, Any] | None) -> str:
    """Why a line is refused. The client's checks come first; when it refused the message,
    the CLI's own check names a missing or unknown type or a bad timestamp with a hint."""
    if message is not None and not isinstance(exc, LineError):
        try:
            check_message(message)
        except (LineError, TypeError) as own:
            return str(own)
    return str(exc)


def _group_by_source(locations: Iterable[Location | None]) -> dict[int, list[int]]:
    grouped: dict[int, list[int]] = {}
    for location in locations:
        if location is not None:
            grouped.setdefault(location[0], []).append(location[1])
    return grouped


def summary_lines(result: ImportResult) -> Sequence[str]:
    """Extra lines explaining an import that stopped early."""
    if result.stopped == "interrupted":
        return [
            f"interrupted: stopped after {result.last_read or 'the start'};"
            f" {result.sent:,} events were acknowledged by the collector and are stored."
        ]
    if result.stopped == "unreachable":
        return [f"stopped after {result.last_read or 'the start'}: the collector is unreachable."]
    return []
