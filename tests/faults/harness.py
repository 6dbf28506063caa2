"""Helpers of the fault suite: run the producer, compare what was sent with what was stored."""

from __future__ import annotations

import contextlib
import os
import queue
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

PRODUCER = str(Path(__file__).with_name("producer.py"))


def free_port() -> int:
    """A port that was free a moment ago on 127.0.0.1 (for a collector started later)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Producer:
    """producer.py as a subprocess; its stdout lines are read on a thread (bounded waits)."""

    def __init__(self, host: str, ids: Path, *args: str) -> None:
        """Start ``producer.py --host HOST --ids IDS ARGS...``."""
        self.proc = subprocess.Popen(
            [sys.executable, PRODUCER, "--host", host, "--ids", str(ids), *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.stderr = ""
        # Each pipe has its own reader thread, and only it reads and closes that pipe (a
        # communicate() closing stdout under the stdout thread made it fail now and then).
        self._out = threading.Thread(target=self._read_stdout, daemon=True)
        self._err = threading.Thread(target=self._read_stderr, daemon=True)
        self._out.start()
        self._err.start()

    def _read_stdout(self) -> None:
        assert self.proc.stdout is not None
        with self.proc.stdout:
            for line in self.proc.stdout:
                self.lines.put(line.strip())
        self.lines.put("<eof>")

    def _read_stderr(self) -> None:
        assert self.proc.stderr is not None
        with self.proc.stderr:
            self.stderr = self.proc.stderr.read()

    def wait_line(self, prefix: str, timeout: float = 30.0) -> str:
        """Wait for the next stdout line starting with ``prefix``; fail after ``timeout``."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self.lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"producer printed no {prefix!r} in {timeout} s") from None
            if line.startswith(prefix):
                return line
            if line == "<eof>":
                raise AssertionError(f"producer exited before {prefix!r}: {self.finish()}")

    def wait_tracked(self, n: int, timeout: float = 30.0) -> None:
        """Wait until the producer has tracked at least ``n`` events."""
        deadline = time.monotonic() + timeout
        while True:
            line = self.wait_line("tracked", max(0.0, deadline - time.monotonic()))
            if line == "tracked all" or int(line.split()[1]) >= n:
                return

    def kill(self) -> float:
        """SIGKILL it; returns the wall time of the kill."""
        when = time.time()
        self.proc.kill()
        self.finish()
        return when

    def finish(self, timeout: float = 60.0) -> int:
        """Close its stdin (a ``hang`` producer then ends), wait for exit (bounded; killed
        after ``timeout``) and for its output to be read; keep stderr."""
        assert self.proc.stdin is not None
        with contextlib.suppress(OSError):  # it is gone already
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
            raise AssertionError(f"producer did not finish within {timeout} s") from None
        finally:
            self._out.join(10)
            self._err.join(10)
        return self.proc.returncode


def read_sent(ids: Path) -> dict[str, float]:
    """messageId -> wall time of its track() call, from the producer's ids file."""
    sent: dict[str, float] = {}
    if not ids.exists():
        return sent
    for line in ids.read_text().splitlines():
        mid, when = line.split("\t")
        assert mid not in sent, f"the producer made messageId {mid} twice"
        sent[mid] = float(when)
    return sent


@dataclass
class Outcome:
    """The comparison of sent and stored messageIds for one case."""

    sent: dict[str, float]
    stored: list[str]
    received: dict[str, float]  # messageId -> wall time the collector received it

    def recover(self, fault_end: float) -> float | None:
        """Seconds from ``fault_end`` until the last event tracked before it was stored."""
        times = [
            self.received[m] for m, t in self.sent.items() if t <= fault_end and m in self.received
        ]
        return max(times) - fault_end if times else None

    @property
    def lost(self) -> set[str]:
        """Sent and not stored."""
        return set(self.sent) - set(self.stored)

    @property
    def stored_twice(self) -> int:
        """Rows beyond the first per messageId (a deduplicating store keeps this at 0)."""
        return len(self.stored) - len(set(self.stored))

    @property
    def unexpected(self) -> set[str]:
        """Stored but never sent by the producer."""
        return set(self.stored) - set(self.sent)


def outcome(ids: Path, store: Any) -> Outcome:
    """Compare the producer's ids file with what the collector's store holds."""
    events = store.events()
    stored = [e["messageId"] for e in events]
    received = {e["messageId"]: _wall(e["receivedAt"]) for e in events}
    return Outcome(read_sent(ids), stored, received)


def _wall(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def mount_tmpfs(point: Path, size: str) -> None:
    """Mount a tmpfs of ``size`` at ``point`` (root only), or skip the test saying why."""
    import pytest

    if os.geteuid() != 0:
        pytest.skip("a small or read-only filesystem needs root to mount a tmpfs")
    point.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(point)],
        capture_output=True,
        text=True,
        timeout=20,
        check=False,
    )
    if done.returncode != 0:
        pytest.skip(f"mount -t tmpfs is not permitted here: {done.stderr.strip()}")


def remount(point: Path, how: str) -> None:
    """``mount -o remount,HOW`` (e.g. ``ro``)."""
    subprocess.run(["mount", "-o", f"remount,{how}", str(point)], check=True, timeout=20)


def unmount(point: Path) -> None:
    """Unmount (lazily if still busy)."""
    if subprocess.run(["umount", str(point)], check=False, timeout=20).returncode:
        subprocess.run(["umount", "-l", str(point)], check=False, timeout=20)


def wait_stored(store: Any, n: int, timeout: float) -> bool:
    """Wait (bounded) until the store holds at least ``n`` events; polls the SQLite file."""
    deadline = time.monotonic() + timeout
    while store.count() < n:
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)  # polling another process's effect on a file, bounded by the deadline
    return True
