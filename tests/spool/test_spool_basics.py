"""The spool on its own: round trip, order, persistence, the size bound, misuse."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from analytics._spool import Spool, SpoolError


def items(prefix: str, n: int, size: int = 20) -> list[bytes]:
    """``n`` distinct JSON-like messages of exactly ``size`` bytes."""
    out = []
    for i in range(n):
        head = f'{{"id":"{prefix}-{i}","p":"'.encode()
        out.append(head + b"x" * (size - len(head) - 2) + b'"}')
    return out


def test_round_trip(spool: Spool) -> None:
    """What is appended is leased back byte for byte, and ack deletes it."""
    chunk = [*items("a", 5), b"{}", b'{"s":"\\n is escaped"}']
    assert spool.append(chunk) == []
    assert spool.pending() == 7
    got = spool.lease()
    assert got is not None
    assert got[1] == chunk
    assert spool.pending() == 7  # leased is still stored until acked
    assert spool.lease() is None
    spool.ack(got[0])
    assert spool.pending() == 0
    assert spool.lease() is None


def test_empty_append_stores_nothing(spool: Spool) -> None:
    """An empty chunk is not stored."""
    assert spool.append([]) == []
    assert spool.pending() == 0
    assert spool.lease() is None


def test_oldest_first_and_release_puts_back(spool: Spool) -> None:
    """Chunks come out in append order; a released chunk is again the oldest available."""
    for name in "abc":
        spool.append(items(name, 2))
    first = spool.lease()
    second = spool.lease()
    assert first is not None
    assert second is not None
    assert first[1] == items("a", 2)
    assert second[1] == items("b", 2)
    spool.release(first[0])
    again = spool.lease()
    assert again == first
    third = spool.lease()
    assert third is not None
    assert third[1] == items("c", 2)
    assert spool.lease() is None


def test_survives_reopen_and_close_releases_leases(tmp_path: Path) -> None:
    """A closed spool keeps its chunks; the chunks it held are released for the next opener."""
    path = tmp_path / "s.db"
    first = Spool(path)
    first.append(items("a", 3))
    first.append(items("b", 3))
    assert first.lease() is not None
    first.close()
    first.close()  # idempotent
    second = Spool(path)
    try:
        assert second.pending() == 6
        got = second.lease()
        assert got is not None
        assert got[1] == items("a", 3)
    finally:
        second.close()


def test_size_bound_drops_oldest_unleased_and_counts(tmp_path: Path) -> None:
    """Past max_bytes the oldest chunks no one holds are dropped, and append says how many."""
    spool = Spool(tmp_path / "s.db", max_bytes=10_000)
    try:
        chunk_bytes = len(b"\n".join(items("a", 30, 100)))  # 3,029 bytes
        assert chunk_bytes * 3 < 10_000 < chunk_bytes * 4
        assert spool.append(items("a", 30, 100)) == []
        assert spool.append(items("b", 30, 100)) == []
        assert spool.append(items("c", 30, 100)) == []
        held = spool.lease()  # "a" is held: it must survive
        assert held is not None
        assert held[1][0].startswith(b'{"id":"a-0"')
        assert spool.append(items("d", 30, 100)) == items("b", 30, 100)  # "b", not the held "a"
        assert spool.pending() == 90
        spool.release(held[0])
        seen = []
        while (got := spool.lease()) is not None:
            seen.append(got[1][0][7:8])
            spool.ack(got[0])
        assert seen == [b"a", b"c", b"d"]
    finally:
        spool.close()


def test_chunk_over_the_bound_is_dropped_itself(tmp_path: Path) -> None:
    """A chunk larger than max_bytes on its own cannot be kept: all its messages count."""
    spool = Spool(tmp_path / "s.db", max_bytes=1_000)
    try:
        assert spool.append(items("a", 5, 100)) == []
        dropped = spool.append(items("big", 20, 100))  # the older chunk first, then itself
        assert dropped == items("a", 5, 100) + items("big", 20, 100)
        assert spool.pending() == 0
        assert spool.lease() is None
    finally:
        spool.close()


def test_pending_counts_every_owner(tmp_path: Path) -> None:
    """pending() counts leased and unleased messages of every Spool on the file."""
    path = tmp_path / "s.db"
    one, two = Spool(path), Spool(path)
    try:
        one.append(items("a", 4))
        two.append(items("b", 6))
        assert one.lease() is not None
        assert one.pending() == two.pending() == 10
        got = two.lease()
        assert got is not None
        assert got[1] == items("b", 6)
        assert two.lease() is None
    finally:
        one.close()
        two.close()


def test_pending_through_tracks_what_was_appended_until_then(tmp_path: Path) -> None:
    """pending_through(last_chunk_id) falls to 0 once those chunks are acked, by any process."""
    path = tmp_path / "s.db"
    mine, other = Spool(path), Spool(path)
    try:
        assert mine.last_chunk_id == 0
        mine.append(items("a", 3))
        mine.append(items("b", 2))
        mark = mine.last_chunk_id
        mine.append(items("c", 4))  # after the mark: not counted
        assert mine.pending_through(mark) == 5
        first = other.lease()  # another Spool (process) delivers "a"
        assert first is not None
        other.ack(first[0])
        assert mine.pending_through(mark) == 2
        second = mine.lease()
        assert second is not None
        mine.ack(second[0])
        assert mine.pending_through(mark) == 0
        assert mine.pending() == 4
    finally:
        mine.close()
        other.close()


def test_calls_after_close_raise_spool_error(tmp_path: Path) -> None:
    """A closed spool says so instead of reopening behind the caller's back."""
    spool = Spool(tmp_path / "s.db")
    spool.close()
    with pytest.raises(SpoolError, match="after close"):
        spool.append(items("a", 1))


def test_invalid_max_bytes() -> None:
    """max_bytes must be positive."""
    with pytest.raises(ValueError, match="max_bytes"):
        Spool("unused.db", max_bytes=0)


def test_threads_share_one_spool(spool: Spool) -> None:
    """Several threads appending and leasing at once lose nothing and never share a chunk."""
    per_thread, threads_n = 50, 4
    leased: list[list[bytes]] = []
    lock = threading.Lock()

    def work(name: str) -> None:
        for i in range(per_thread):
            spool.append(items(f"{name}{i}", 2))
            got = spool.lease()
            if got is not None:
                with lock:
                    leased.append(got[1])
                spool.ack(got[0])

    threads = [threading.Thread(target=work, args=(f"t{n}-",)) for n in range(threads_n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    while (got := spool.lease()) is not None:
        leased.append(got[1])
        spool.ack(got[0])
    flat = [m for chunk in leased for m in chunk]
    assert len(flat) == len(set(flat)) == per_thread * threads_n * 2
    assert spool.pending() == 0
