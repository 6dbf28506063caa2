"""The spool shared by real processes: exclusive leases, reclaim from dead holders, fork."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

from analytics._spool import Spool

from .test_spool_basics import items

HELPER = str(Path(__file__).with_name("spool_proc.py"))
TIMEOUT = 30


def start(command: str, path: Path) -> subprocess.Popen[str]:
    """Run spool_proc.py COMMAND PATH with pipes."""
    return subprocess.Popen(
        [sys.executable, HELPER, command, str(path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )


def read_line(proc: subprocess.Popen[str]) -> str:
    """The next line the process prints (blocks until it prints or exits)."""
    assert proc.stdout is not None
    return proc.stdout.readline().strip()


def test_lease_is_exclusive_across_processes(tmp_path: Path) -> None:
    """Three processes draining one file at once get every chunk exactly once between them."""
    path = tmp_path / "s.db"
    spool = Spool(path)
    chunks = 300
    for i in range(chunks):
        spool.append(items(f"c{i}", 3))
    spool.close()
    procs = [start("drain", path) for _ in range(3)]
    outputs: list[list[str]] = []
    try:
        assert [read_line(p) for p in procs] == ["ready"] * 3
        for p in procs:  # all start leasing together
            assert p.stdin is not None
            p.stdin.write("go\n")
            p.stdin.flush()
        outputs = [p.communicate(timeout=TIMEOUT)[0].split("\n") for p in procs]
    finally:
        for p in procs:
            p.kill()
            p.wait(TIMEOUT)
            p.__exit__(None, None, None)  # close the pipes
    got = [line.split()[1] for out in outputs for line in out if line not in ("", "done")]
    per_process = [sum(1 for line in out if line not in ("", "done")) for out in outputs]
    assert sorted(got) == sorted(items(f"c{i}", 3)[0].decode() for i in range(chunks))
    assert len(set(got)) == chunks, "a chunk was leased by two processes"
    assert all(out[-2] == "done" for out in outputs)
    assert sum(per_process) == chunks
    assert Spool(path).pending() == 0


def test_lease_of_a_dead_process_is_reclaimed(tmp_path: Path) -> None:
    """A chunk leased by a process that exited without ack or release is sent again, first."""
    path = tmp_path / "s.db"
    spool = Spool(path)
    try:
        spool.append(items("a", 2))
        spool.append(items("b", 2))
        child = subprocess.run(
            [sys.executable, HELPER, "die", str(path)],
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
            check=True,
        )
        leased = int(child.stdout)
        got = spool.lease()
        assert got is not None
        assert (got[0], got[1]) == (leased, items("a", 2))  # the oldest, reclaimed
    finally:
        spool.close()


def test_lease_of_a_live_process_is_kept_until_it_is_killed(tmp_path: Path) -> None:
    """A live holder keeps its chunk; once SIGKILLed (and reaped) the chunk is reclaimed."""
    path = tmp_path / "s.db"
    spool = Spool(path)
    with start("hold", path) as child:
        _held_then_killed(spool, child)
    spool.close()


def _held_then_killed(spool: Spool, child: subprocess.Popen[str]) -> None:
    try:
        spool.append(items("a", 2))
        spool.append(items("b", 2))
        # The child may start before or after the appends; it leases what is there.
        held = int(read_line(child))
        assert held > 0
        got = spool.lease()
        assert got is not None
        assert got[0] != held
        assert spool.lease() is None  # the child's chunk is not reclaimable while it lives
        child.send_signal(signal.SIGKILL)
        child.wait(TIMEOUT)
        again = spool.lease()
        assert again is not None
        assert again[0] == held
    finally:
        child.kill()
        child.wait(TIMEOUT)


def test_zombie_and_reused_pid_do_not_hold_leases(tmp_path: Path) -> None:
    """A lease whose pid is a zombie, or whose pid now belongs to another process, is freed."""
    path = tmp_path / "s.db"
    spool = Spool(path)
    try:
        spool.append(items("a", 1))
        spool.append(items("b", 1))
        pid = os.fork()
        if pid == 0:
            os._exit(0)
        # Not reaped yet: a zombie. Wait (bounded) until the kernel shows it as one.
        for _ in range(2000):
            with open(f"/proc/{pid}/stat") as f:
                if f.read().rsplit(")", 1)[1].split()[0] == "Z":
                    break
            os.sched_yield()
        conn = sqlite3.connect(path)
        with conn:
            conn.execute("UPDATE chunks SET lease = ? WHERE id = 1", (f"{pid}:1:zombie",))
            # Our own pid with another start time: the pid was reused by this process.
            conn.execute("UPDATE chunks SET lease = ? WHERE id = 2", (f"{os.getpid()}:1:old",))
        conn.close()
        first, second = spool.lease(), spool.lease()
        os.waitpid(pid, 0)
        assert first is not None
        assert second is not None
        assert (first[1], second[1]) == (items("a", 1), items("b", 1))
    finally:
        spool.close()


def test_forked_child_never_takes_the_parents_chunk(tmp_path: Path) -> None:
    """After fork the parent's lease stays the parent's; the child leases only free chunks."""
    path = tmp_path / "s.db"
    spool = Spool(path)
    try:
        spool.append(items("a", 2))
        spool.append(items("b", 2))
        held = spool.lease()
        assert held is not None
        read_end, write_end = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: report what it can lease, then exit without cleanup
            os.close(read_end)
            code = 1
            try:
                first = spool.lease()
                second = spool.lease()
                spool.append(items("child", 1))
                report = f"{first and first[0]} {second and second[0]} {spool.pending()}"
                os.write(write_end, report.encode())
                code = 0
            finally:
                os._exit(code)
        os.close(write_end)
        with os.fdopen(read_end) as f:
            report = f.read()
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        child_first, child_second, child_pending = report.split()
        assert child_first == str(held[0] + 1)  # "b", not the parent's "a"
        assert child_second == "None"
        assert child_pending == "5"
        # The child died holding "b": the parent reclaims it; the parent still holds "a".
        got = spool.lease()
        assert got is not None
        assert got[1] == items("b", 2)
        spool.ack(held[0])
        spool.ack(got[0])
        last = spool.lease()
        assert last is not None
        assert last[1] == items("child", 1)
    finally:
        spool.close()
