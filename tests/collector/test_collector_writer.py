"""The group-commit writer: how many threads write, and that stop() finishes every job."""

from __future__ import annotations

import threading
from collections.abc import Sequence

import pytest
from test_collector_store import row

from analytics.collector._store import StoreError
from analytics.collector._validated import Message
from analytics.collector._writer import GroupCommitWriter

WAIT = 10.0  # seconds any wait of these tests may last before it fails


class _GatedStore:
    """Records which threads write; the first write is held until ``release`` is set."""

    def __init__(self, writers: int | None) -> None:
        if writers is not None:
            self.writers = writers
        self.threads: set[str] = set()
        self.written: list[str] = []
        self.first_in = threading.Event()
        self.release = threading.Event()
        self._lock = threading.Lock()

    def write(self, batches: Sequence[Sequence[Message]]) -> list[int]:
        with self._lock:
            first = not self.first_in.is_set()
            self.first_in.set()
            self.threads.add(threading.current_thread().name)
        if first and not self.release.wait(WAIT):
            raise StoreError("the test never released the first write")
        with self._lock:
            self.written += [m.message_id for batch in batches for m in batch]
        return [len(batch) for batch in batches]


def _submit(writer: GroupCommitWriter, message: Message) -> tuple[threading.Event, list[object]]:
    done, results = threading.Event(), []

    def callback(result: int | StoreError) -> None:
        results.append(result)
        done.set()

    writer.submit([message], callback)
    return done, results


def test_a_store_with_two_writers_gets_a_second_write_while_the_first_is_held() -> None:
    store = _GatedStore(writers=2)
    writer = GroupCommitWriter(store)
    writer.start()
    try:
        first, _ = _submit(writer, row(1))
        assert store.first_in.wait(WAIT)
        second, results = _submit(writer, row(2))
        assert second.wait(WAIT), "the second write waited for the first: one writer thread"
        assert results == [1]
        assert not first.is_set()
    finally:
        store.release.set()
        assert writer.stop(WAIT)
    assert first.is_set()
    assert len(store.threads) == 2
    assert sorted(store.written) == ["m1", "m2"]


@pytest.mark.parametrize("writers", [None, 1, 0, "2"])
def test_a_store_without_a_writers_count_gets_one_thread(writers: int | None) -> None:
    store = _GatedStore(writers=writers)
    writer = GroupCommitWriter(store)
    writer.start()
    first, _ = _submit(writer, row(1))
    assert store.first_in.wait(WAIT)
    second, _ = _submit(writer, row(2))
    assert not second.is_set()  # one thread, held inside the first write
    store.release.set()
    assert writer.stop(WAIT)
    assert first.is_set()
    assert second.is_set()
    assert len(store.threads) == 1


def test_stop_finishes_every_job_submitted_before_it_with_two_threads() -> None:
    store = _GatedStore(writers=2)
    store.release.set()
    writer = GroupCommitWriter(store)
    writer.start()
    pending = [_submit(writer, row(i)) for i in range(200)]
    assert writer.stop(WAIT)
    assert all(done.is_set() and results == [1] for done, results in pending)
    assert sorted(store.written) == sorted(f"m{i}" for i in range(200))
    assert writer.queued_rows == 0
    with pytest.raises(RuntimeError):
        writer.submit([row(1)], lambda result: None)
