"""The PostgreSQL store against a real server: dedupe, partitions, schema, retention, secrets."""

from __future__ import annotations

import random
import re
import string
import threading
import uuid
from collections.abc import Callable, Iterable, Iterator
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_collector_store import row

from analytics.collector import StoreError
from analytics.collector._db import is_url, open_store, redact, scrub
from analytics.collector._validated import Message, to_message

psycopg = pytest.importorskip("psycopg")
from analytics.collector import _pg, _pg_copy  # noqa: E402
from analytics.collector._pg import PostgresStore, SchemaTooNew, _Turns  # noqa: E402
from analytics.collector._pg_schema import dedupe_key  # noqa: E402


@pytest.fixture
def url(postgres_url: Callable[[], str]) -> str:
    return postgres_url()


@pytest.fixture
def store(url: str) -> Iterator[PostgresStore]:
    s = PostgresStore(url)
    yield s
    s.close()


def sql(url: str, query: str) -> list[tuple[object, ...]]:
    with psycopg.connect(url, autocommit=True) as conn:
        cur = conn.execute(query)
        return cur.fetchall() if cur.description else []


def test_write_counts_new_messages_per_batch_and_ignores_duplicates(store: PostgresStore) -> None:
    assert store.write([[row(1), row(2)], [row(2), row(3)], [row(1, key="other")]]) == [2, 1, 1]
    assert store.write([[row(1), row(2)]]) == [0]
    assert store.write([[], [row(1), row(4), row(4)]]) == [0, 1]
    assert store.count() == 5
    assert store.message_ids() == ["m1", "m2", "m3", "m1", "m4"]


def test_events_filters_and_limit_like_sqlite(store: PostgresStore) -> None:
    store.write([[row(i) for i in range(10)] + [row(10, kind="identify")]])
    assert [m["messageId"] for m in store.events()][-2:] == ["m9", "m10"]
    assert [m["messageId"] for m in store.events(type="identify")] == ["m10"]
    assert [m["messageId"] for m in store.events(user_id="u1", event="E1")] == ["m1", "m7"]
    assert [m["messageId"] for m in store.events(limit=3)] == ["m8", "m9", "m10"]
    since = store.events(since="2024-05-01T12:00:08Z")
    assert [m["messageId"] for m in since] == ["m8", "m9", "m10"]
    assert store.events(user_id="x' OR '1'='1") == []
    assert store.events(limit=0) == []


def test_typed_columns_and_jsonb_body(store: PostgresStore, url: str) -> None:
    msg = {
        "type": "track",
        "event": "Bought",
        "userId": 42,
        "anonymousId": "anon",
        "messageId": "m-typed",
        "timestamp": "2024-05-01T11:59:58.500Z",
        "receivedAt": "2024-05-01T12:00:00.000Z",
        "properties": {"price": 9.5, "tags": ["a", "b"]},
    }
    assert store.write([[to_message(msg, "k", orjson.dumps(msg))]]) == [1]
    (got,) = sql(
        url,
        "SELECT type, user_id, anonymous_id, event, timestamp, received_at,"
        " body->'properties'->>'price' FROM events",
    )
    assert got == (
        "track",
        "42",
        "anon",
        "Bought",
        datetime(2024, 5, 1, 11, 59, 58, 500000, tzinfo=timezone.utc),
        datetime(2024, 5, 1, 12, tzinfo=timezone.utc),
        "9.5",
    )
    assert store.events() == [msg]


def test_nul_characters_are_stored_as_replacement_characters(store: PostgresStore) -> None:
    msg = {"type": "identify", "userId": "a\0b", "messageId": "m\0", "traits": {"k\0": "\0"}}
    msg["receivedAt"] = msg["timestamp"] = "2024-05-01T12:00:00.000Z"
    assert store.write([[to_message(msg, "k", orjson.dumps(msg))]]) == [1]
    (stored,) = store.events(user_id="a\ufffdb")
    assert stored["messageId"] == "m\ufffd"
    assert stored["traits"] == {"k\ufffd": "\ufffd"}


def test_one_partition_per_receive_day(store: PostgresStore, url: str) -> None:
    days = ["2024-05-01T23:59:59.999Z", "2024-05-02T00:00:00.000Z", "2024-05-03T10:00:00.000Z"]
    store.write([[row(i, received=day) for i, day in enumerate(days)]])
    counts = sql(url, "SELECT tableoid::regclass::text, count(*) FROM events GROUP BY 1 ORDER BY 1")
    assert counts == [("events_20240501", 1), ("events_20240502", 1), ("events_20240503", 1)]


def test_schema_is_versioned_and_a_newer_one_is_refused(url: str) -> None:
    PostgresStore(url).close()
    assert sql(url, "SELECT version FROM analytics_schema") == [(1,)]
    PostgresStore(url).close()  # migrating again is a no-op
    sql(url, "UPDATE analytics_schema SET version = 99")
    with pytest.raises(SchemaTooNew, match="schema 99; this version knows up to 1"):
        PostgresStore(url)
    with pytest.raises(SchemaTooNew):
        PostgresStore(url, readonly=True)


def test_collectors_starting_together_migrate_once(url: str) -> None:
    errors: list[BaseException] = []
    barrier = threading.Barrier(4)

    def start() -> None:
        try:
            barrier.wait(10)
            store = PostgresStore(url)
            store.write([[row(1)]])
            store.close()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=start) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    assert sql(url, "SELECT version FROM analytics_schema") == [(1,)]
    assert PostgresStore(url, readonly=True).count() == 1


def test_readonly_needs_an_existing_schema(url: str) -> None:
    with pytest.raises(StoreError, match="no collector schema"):
        PostgresStore(url, readonly=True)


def test_retention_drops_whole_partitions_and_their_keys(url: str) -> None:
    writer = PostgresStore(url)
    days = ["2024-05-01", "2024-05-02", "2024-05-03", "2024-05-04"]
    writer.write([[row(i, received=f"{day}T12:00:00.000Z") for i, day in enumerate(days)]])
    writer.close()
    today = datetime(2024, 5, 4, 8, tzinfo=timezone.utc)
    store = PostgresStore(url, retention_days=2, clock=lambda: today)  # keeps 05-03 and 05-04
    try:
        partitions = sql(url, "SELECT tableoid::regclass::text FROM events ORDER BY 1")
        assert partitions == [("events_20240503",), ("events_20240504",)]
        keys = {(k.bytes, at) for k, at in sql(url, "SELECT * FROM event_keys")}  # type: ignore[attr-defined]
        assert keys == {
            (dedupe_key("k", "m2"), datetime(2024, 5, 3, 12, tzinfo=timezone.utc)),
            (dedupe_key("k", "m3"), datetime(2024, 5, 4, 12, tzinfo=timezone.utc)),
        }
        assert store.apply_retention() == []
        # A retry of a dropped day's message is stored again (into today's partition).
        assert store.write([[row(0, received="2024-05-04T09:00:00.000Z")]]) == [1]
    finally:
        store.close()


def test_a_lost_connection_fails_one_write_and_the_next_reconnects(
    store: PostgresStore, url: str
) -> None:
    assert store.write([[row(1)]]) == [1]
    sql(
        url,
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
        " WHERE application_name = 'analytics-collector' AND pid <> pg_backend_pid()",
    )
    with pytest.raises(StoreError):
        store.write([[row(2)]])
    assert store.write([[row(2), row(1)]]) == [1]
    assert store.message_ids() == ["m1", "m2"]


def test_urls_and_paths() -> None:
    assert is_url("postgresql://h/db")
    assert is_url("postgres://h/db")
    assert not is_url("events.db")
    assert not is_url("postgresql-data/events.db")


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql://u:s3cret@h:5432/db", "postgresql://u@h:5432/db"),
        (
            "postgresql://u@h/db?password=s3cret&sslmode=require",
            "postgresql://u@h/db?sslmode=require",
        ),
        ("postgresql://:s3cret@h/db", "postgresql://h/db"),
        ("postgresql://h/db", "postgresql://h/db"),
    ],
)
def test_redact_removes_the_password(url: str, shown: str) -> None:
    assert redact(url) == shown
    if "s3cret" in url:
        assert scrub(f"failed for {url}: s3cret", url) == f"failed for {shown}: ***"


def test_errors_and_repr_never_show_the_password() -> None:
    from pgcluster import free_port

    url = f"postgresql://u:s3cret@127.0.0.1:{free_port()}/db"
    with pytest.raises(StoreError) as caught:
        open_store(url, connect_timeout=1)
    assert "s3cret" not in str(caught.value)
    assert "postgresql://u@127.0.0.1" in str(caught.value)


def test_health_names_the_store_and_its_reachability(store: PostgresStore, url: str) -> None:
    health = store.health()
    assert health["store"] == "postgresql"
    assert health["reachable"] is True
    assert store.health()["reachable"] is True  # over the same kept connection
    backends = (
        "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'analytics-collector'"
    )
    assert sql(url, backends) == [(1,)]
    sql(
        url,
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
        " WHERE application_name = 'analytics-collector'",
    )
    assert store.health()["reachable"] is True  # a lost connection is simply made again


def readme_queries() -> list[str]:
    """The SQL blocks of the README's "Running on several machines" section."""
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    section = readme.split("### Running on several machines", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```sql\n(.*?)```", section, flags=re.S)


def test_the_readme_queries_answer_from_the_stored_columns(store: PostgresStore, url: str) -> None:
    now = datetime.now(timezone.utc)
    today = f"{now:%Y-%m-%d}T{now:%H:%M:%S}.000Z"
    yesterday = f"{now - timedelta(days=1):%Y-%m-%d}T12:00:00.000Z"
    messages = []
    for i, (received, plan) in enumerate([(yesterday, "Free"), (today, "Pro"), (today, "Free")]):
        msg = {"type": "track", "event": "Played a Song", "userId": "u1", "messageId": f"m{i}"}
        msg |= {"properties": {"plan": plan}, "receivedAt": received, "timestamp": received}
        messages.append(to_message(msg, "k", orjson.dumps(msg)))
    page = {"type": "page", "name": "Home", "userId": "u1", "messageId": "p"}
    later = now + timedelta(seconds=1)
    page |= {"receivedAt": today, "timestamp": f"{later:%Y-%m-%dT%H:%M:%S}.000Z"}
    messages.append(to_message(page, "k", orjson.dumps(page)))
    store.write([messages])
    per_day, timeline, plans = (sql(url, query) for query in readme_queries())
    assert per_day == [(date.fromisoformat(yesterday[:10]), 1), (date.fromisoformat(today[:10]), 3)]
    assert [what for (_, _, what) in timeline] == ["Played a Song"] * 3 + ["Home"]
    assert plans == [("Free", 2), ("Pro", 1)]


def test_long_ids_and_keys_never_fail_a_commit(store: PostgresStore) -> None:
    """No index entry may grow past PostgreSQL's B-tree limit (~2.7 kB): a long userId or
    write key is stored like any other, and deduplicated."""
    noise = random.Random(12)
    user, key = ("".join(noise.choices(string.ascii_letters, k=9000)) for _ in range(2))
    msg = {"type": "identify", "userId": user, "messageId": "m-long"}
    msg["receivedAt"] = msg["timestamp"] = "2024-05-01T12:00:00.000Z"
    message = to_message(msg, key, orjson.dumps(msg))
    assert store.write([[message, row(1)]]) == [2]
    assert store.write([[message]]) == [0]
    (stored,) = store.events(user_id=user)
    assert stored["messageId"] == "m-long"


def test_dedupe_keys_are_fixed_size_and_unambiguous() -> None:
    key = dedupe_key("k", "m1")
    assert len(key) == 16
    assert key == dedupe_key("k", "m1")
    assert dedupe_key("ab", "c") != dedupe_key("a", "bc")
    assert dedupe_key("k", "m1") != dedupe_key("k2", "m1")
    assert len(dedupe_key("x" * 100_000, "\udcff")) == 16  # any length; lone surrogates too


def test_a_write_refused_by_postgresql_is_rolled_back_whole(store: PostgresStore) -> None:
    """A body PostgreSQL refuses (not UTF-8) fails the write after its keys went in: the keys
    are rolled back too, so the same messageIds are new in the next write."""
    first, second = row(1), row(2)
    with pytest.raises(StoreError, match="UTF8"):
        store.write([[first, second._replace(body=b'{"bad": "\xff"}')]])
    assert store.write([[first, second]]) == [2]
    assert sorted(e["messageId"] for e in store.events()) == ["m1", "m2"]


def test_any_other_failure_inside_the_transaction_leaves_none_open(
    store: PostgresStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An exception that is not the driver's (here: raised while the copy data of a group with
    an already stored message is rebuilt, inside the transaction) still rolls back: the next
    write does not commit the failed one's keys."""
    assert store.write([[row(1)]]) == [1]
    calls: list[int] = []

    def failing_second_call(messages: Iterable[Message]) -> bytes:
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("a bug")
        return _pg_copy.event_data(messages)

    monkeypatch.setattr(_pg, "event_data", failing_second_call)
    with pytest.raises(RuntimeError, match="a bug"):
        store.write([[row(1), row(2), row(3)]])
    monkeypatch.undo()
    assert store.write([[row(4)]]) == [1]
    assert store.write([[row(2), row(3)]]) == [2]  # their keys were not committed by row 4's
    assert store.count() == 4


def test_two_writer_threads_store_the_same_messages_once(store: PostgresStore) -> None:
    """The store's writer threads (two connections) write overlapping batches at once: the
    key table makes each message new exactly once, whichever thread commits it."""
    assert store.writers == 2
    shared = [row(i) for i in range(600)]
    batches = [[shared[:400]], [shared[200:]]]
    barrier = threading.Barrier(2, timeout=30)
    counts: list[list[int]] = []

    def write(b: list[list[Message]]) -> None:
        barrier.wait()
        counts.append(store.write(b))

    threads = [threading.Thread(target=write, args=(b,)) for b in batches]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sum(c[0] for c in counts) == 600
    assert store.count() == 600


def test_writers_sending_the_same_keys_in_opposite_orders_never_deadlock(
    store: PostgresStore,
) -> None:
    """Keys are inserted sorted, so two transactions holding part of each other's keys cannot
    wait on each other (PostgreSQL would abort one with a deadlock error: a 503)."""
    errors: list[BaseException] = []
    new = [0, 0]
    for n in range(15):
        shared = [row(1000 * n + i) for i in range(300)]
        barrier = threading.Barrier(2, timeout=30)

        def write(slot: int, batch: list[Message], barrier: threading.Barrier = barrier) -> None:
            barrier.wait()
            try:
                new[slot] += store.write([batch])[0]
            except BaseException as exc:  # reported by the assertion below
                errors.append(exc)

        threads = [
            threading.Thread(target=write, args=(0, shared)),
            threading.Thread(target=write, args=(1, shared[::-1])),
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
    assert errors == []
    assert sum(new) == store.count() == 15 * 300


class _HeldTurns(_Turns):
    """Holds turn 0 between its copy and its commit until ``release``; says when turn 1
    starts waiting for it."""

    def __init__(self) -> None:
        super().__init__()
        self.first_copied = threading.Event()
        self.second_waits = threading.Event()
        self.release = threading.Event()

    def wait(self, turn: int, timeout: float | None = None) -> bool:
        if turn == 0:
            self.first_copied.set()
            assert self.release.wait(30)
        else:
            self.second_waits.set()
        return super().wait(turn, timeout)


def test_writer_threads_commit_in_the_order_they_copied(url: str) -> None:
    """seq order is commit order within one collector: a transaction that copied second does
    not commit before the first one (a feed reading ``seq > last`` would skip rows)."""
    store = PostgresStore(url)
    assert store.write([[row(0)]]) == [1]  # the day's partition exists
    turns = _HeldTurns()
    store._turns = turns  # the seam this test is about; the next write is turn 0
    try:
        first = threading.Thread(target=store.write, args=([[row(i) for i in range(1, 50)]],))
        first.start()
        assert turns.first_copied.wait(30)
        second = threading.Thread(target=store.write, args=([[row(i) for i in range(50, 60)]],))
        second.start()
        assert turns.second_waits.wait(30)
        assert sql(url, "SELECT count(*) FROM events") == [(1,)]  # neither committed
    finally:
        turns.release.set()
    first.join(30)
    second.join(30)
    store.close()
    rows = sql(url, "SELECT message_id, seq FROM events ORDER BY seq")
    assert [m for m, _ in rows] == [f"m{i}" for i in range(60)]


def test_turns_end_in_any_order_and_a_failed_turn_frees_the_next() -> None:
    turns = _Turns()
    assert [turns.take() for _ in range(3)] == [0, 1, 2]
    assert turns.wait(0, timeout=0)
    assert not turns.wait(2, timeout=0)
    turns.end(1)  # a failed turn ends without waiting for turn 0
    assert not turns.wait(2, timeout=0)
    turns.end(0)
    assert turns.wait(2, timeout=0)
    turns.end(2)
    assert turns.wait(turns.take(), timeout=0)


_hostile = st.text(
    alphabet=st.one_of(
        st.sampled_from(["\\", "\t", "\n", "\r", "N", ".", '"', "é", "😀", "\x1f", " "]),
        st.characters(blacklist_categories=("Cs",), blacklist_characters="\0"),
    ),
    max_size=30,
)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    ids=st.lists(st.tuples(_hostile, st.one_of(st.none(), _hostile), _hostile), max_size=5),
    kind=st.sampled_from(["track", "identify"]),
)
def test_copy_data_round_trips_any_text(
    store: PostgresStore, url: str, ids: list[tuple[str, str | None, str]], kind: str
) -> None:
    """Values full of the characters the text COPY format escapes (backslash, tab, newline,
    carriage return, a lone ``\\N``) come back from the typed columns and the body as sent."""
    write_key = f"k\t\\{uuid.uuid4()}"  # the store outlives one example: a key of its own
    messages = []
    for n, (user, event, prop) in enumerate(ids):
        msg: dict[str, object] = {"type": kind, "userId": user, "messageId": f"{n}{user}"}
        msg["event"] = event
        msg["properties"] = {prop: prop}
        msg["receivedAt"] = msg["timestamp"] = "2024-05-01T12:00:00.000Z"
        messages.append(to_message(msg, write_key, orjson.dumps(msg)))
    store.write([messages])
    with psycopg.connect(url) as conn:
        stored = conn.execute(
            "SELECT write_key, message_id, user_id, event, body FROM events WHERE write_key = %s",
            (write_key,),
        ).fetchall()
    wanted = {m.message_id: m for m in reversed(messages)}  # an id's first copy is stored
    got = {m_id: (key, user, event, body) for key, m_id, user, event, body in stored}
    assert got.keys() == wanted.keys()
    for m_id, m in wanted.items():
        assert got[m_id] == (write_key, m.user_id, m.event, orjson.loads(m.body))
