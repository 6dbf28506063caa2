"""``analytics serve --workers N``: several processes, one port, one database, exactly once."""

from __future__ import annotations

import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from click.testing import CliRunner
from collector_http import batch, post, request, track
from test_collector_cli import start_serve
from test_collector_store import row

from analytics.collector import SQLiteStore
from analytics.collector._cli import MAX_DEFAULT_WORKERS, serve_command
from analytics.collector._run import ProcessLock

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="--workers needs SO_REUSEPORT (Linux)"
)


def serving_pids(url: str, connections: int = 64) -> set[int]:
    """The pids answering ``/health`` on ``connections`` fresh connections."""
    pids = set()
    for _ in range(connections):
        reply = request(url, "GET", "/health")
        assert reply.status == 200
        pids.add(int(reply.json["pid"]))
    return pids


def wait_ended(pid: int, timeout: float) -> bool:
    """True once process ``pid`` (not our child) has ended, within ``timeout`` seconds."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return True
    try:
        return bool(select.select([fd], [], [], timeout)[0])
    finally:
        os.close(fd)


def stop(proc: subprocess.Popen[str], sig: signal.Signals = signal.SIGTERM) -> str:
    proc.send_signal(sig)
    try:
        _, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=10)
    return stderr


def test_every_process_serves_and_a_batch_is_stored_once(tmp_path: Path) -> None:
    db = tmp_path / "w.db"
    proc, url = start_serve(db, "--workers", "3")
    try:
        pids = serving_pids(url)
        assert proc.pid in pids
        assert len(pids) == 3  # 64 connections all missing one process: p ~ 1e-11
        # The same batch 12 times at once on fresh connections: stored once, in one process.
        same = batch([track(i) for i in range(200)])
        others = [batch([track(1000 + 100 * j + i) for i in range(100)]) for j in range(12)]
        with ThreadPoolExecutor(6) as pool:
            replies = list(pool.map(lambda b: post(url, "/v1/batch", b), [same] * 12 + others))
        assert [r.status for r in replies] == [200] * 24
        assert sum(r.json["stored"] for r in replies[:12]) == 200
        assert sum(r.json["duplicates"] for r in replies[:12]) == 11 * 200
        assert [r.json["stored"] for r in replies[12:]] == [100] * 12
    finally:
        stderr = stop(proc)
    assert proc.returncode == 0, stderr
    assert SQLiteStore(db, readonly=True).count() == 200 + 12 * 100
    for pid in pids:
        assert wait_ended(pid, timeout=10), f"process {pid} still runs after the stop"


def test_a_killed_worker_is_replaced_and_serving_goes_on(tmp_path: Path) -> None:
    proc, url = start_serve(tmp_path / "k.db", "--workers", "2")
    try:
        before = serving_pids(url)
        (worker,) = before - {proc.pid}
        os.kill(worker, signal.SIGKILL)
        assert wait_ended(worker, timeout=10)
        sent = 0
        replacement: set[int] = set()
        # Bounded by time, not by a count of requests: spawning a worker (a new interpreter
        # importing the collector) took longer than 200 requests on a loaded 2-core machine.
        deadline = time.monotonic() + 60.0
        while time.monotonic() < deadline:  # the parent checks its workers twice a second
            reply = post(url, "/v1/batch", batch([track(sent)]))
            assert reply.status == 200  # the first process answers meanwhile
            sent += 1
            replacement = serving_pids(url, 8) - before
            if replacement:
                break
        assert replacement, "no new worker process answered"
    finally:
        stderr = stop(proc, signal.SIGINT)
    assert proc.returncode == 0, stderr
    assert f"collector worker process {worker} ended" in stderr
    assert SQLiteStore(tmp_path / "k.db", readonly=True).count() == sent


def test_workers_end_when_the_first_process_is_killed(tmp_path: Path) -> None:
    proc, url = start_serve(tmp_path / "o.db", "--workers", "2")
    try:
        workers = serving_pids(url) - {proc.pid}
        assert len(workers) == 1
    finally:
        proc.kill()
        proc.communicate(timeout=10)
    for pid in workers:
        assert wait_ended(pid, timeout=15), f"worker {pid} outlived the first process"


def test_serve_runs_one_process_per_cpu_by_default(tmp_path: Path) -> None:
    expected = min(MAX_DEFAULT_WORKERS, len(os.sched_getaffinity(0)))
    proc, url = start_serve(tmp_path / "d.db")
    try:
        pids = serving_pids(url, 16 * expected)  # all missing one of them: p < 1e-4
    finally:
        stderr = stop(proc)
    assert proc.returncode == 0, stderr
    assert len(pids) == expected


def test_a_port_in_use_is_refused_even_by_a_port_sharing_listener(tmp_path: Path) -> None:
    """SO_REUSEPORT would let a second server share a busy port: serve must refuse it."""
    with socket.socket() as other:
        other.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        other.bind(("127.0.0.1", 0))
        other.listen()
        port = other.getsockname()[1]
        result = CliRunner().invoke(
            serve_command,
            ["--port", str(port), "--db", str(tmp_path / "p.db"), "--workers", "2"],
        )
    assert result.exit_code == 1
    assert f"cannot serve on 127.0.0.1:{port}" in result.output
    assert not (tmp_path / "p.db").exists()


def test_workers_must_be_at_least_one(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        serve_command, ["--port", "0", "--db", str(tmp_path / "x.db"), "--workers", "0"]
    )
    assert result.exit_code == 2
    assert "--workers" in result.output
    assert not (tmp_path / "x.db").exists()


# -- the shared write lock (no server) -------------------------------------------------------


def test_stores_sharing_a_lock_take_turns(tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    locks = [ProcessLock(db), ProcessLock(db)]
    stores = [SQLiteStore(db, write_lock=lock) for lock in locks]
    errors: list[BaseException] = []

    def write(store: SQLiteStore, start: int) -> None:
        try:
            for i in range(start, start + 500, 50):
                assert store.write([[row(j) for j in range(i, i + 50)]]) == [50]
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(s, 500 * n)) for n, s in enumerate(stores)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    try:
        assert not errors
        assert stores[0].count() == 1000
        assert stores[0].write([[row(7), row(999)]]) == [0]  # dedupe spans both writers
    finally:
        for store, lock in zip(stores, locks, strict=True):
            store.close()
            lock.close()


HOLD = """
import sys
from analytics.collector._run import ProcessLock
with ProcessLock(sys.argv[1]):
    print("held", flush=True)
    sys.stdin.read()
"""


def test_the_lock_of_a_killed_process_is_released(tmp_path: Path) -> None:
    db = tmp_path / "h.db"
    lock = ProcessLock(db)
    store = SQLiteStore(db, write_lock=lock)
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(db)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    done = threading.Event()
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline() == "held\n"
        writer = threading.Thread(target=lambda: (store.write([[row(1)]]), done.set()))
        writer.start()
        assert not done.wait(0.5)  # the write waits for the other process's lock
        holder.kill()
        assert done.wait(10)
        writer.join(10)
        assert store.count() == 1
    finally:
        if holder.poll() is None:
            holder.kill()
        holder.communicate(timeout=10)
        store.close()
        lock.close()
