"""PostgreSQL fixtures: one throw-away cluster for the whole session, a fresh schema per use.

``postgres_cluster`` (session): a :class:`pgcluster.Cluster` started once, used by every
PostgreSQL test and by the fault tests that stop it. ``postgres_server`` (session): the URL the
tests use; ``ANALYTICS_TEST_POSTGRES`` when set, else the cluster's. ``postgres_url()``
(function): a URL whose ``search_path`` is a new, empty schema, so tests never see each
other's tables (``cluster_schema_url()``: the same on the throw-away cluster, for tests that
stop and start it). Without PostgreSQL the tests skip with one line saying why; under ``CI=true``
they fail instead (CI must run them).
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import quote

import pytest

from pgcluster import Cluster, find_bindir

ENV = "ANALYTICS_TEST_POSTGRES"


def unavailable(reason: str) -> None:
    """Skip (a developer's machine) or fail (``CI=true``) for a missing PostgreSQL."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"PostgreSQL tests must run in CI: {reason}")
    pytest.skip(f"no PostgreSQL: {reason} (install it or set {ENV}=postgresql://...)")


@pytest.fixture(scope="session")
def postgres_cluster() -> Iterator[Cluster]:
    """A started throw-away cluster (initdb + pg_ctl in a temporary directory)."""
    try:
        import psycopg  # noqa: F401
    except ImportError:
        unavailable("psycopg is not installed (pip install -e '.[dev]')")
    bindir = find_bindir()
    if bindir is None:
        unavailable("initdb and pg_ctl are not on the PATH (pg_config --bindir)")
    assert bindir is not None
    cluster = Cluster(bindir)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.remove()


@pytest.fixture(scope="session")
def postgres_server(request: pytest.FixtureRequest) -> str:
    """The URL of the server the tests use (``ANALYTICS_TEST_POSTGRES`` or the cluster)."""
    external = os.environ.get(ENV)
    if external:
        return external
    cluster: Cluster = request.getfixturevalue("postgres_cluster")
    return cluster.url


def schema_url(server: str, schema: str) -> str:
    """``server`` with ``search_path`` set to ``schema`` (libpq's ``options``)."""
    joiner = "&" if "?" in server else "?"
    return f"{server}{joiner}options={quote(f'-csearch_path={schema}')}"


def _schemas(server: str) -> Iterator[Callable[[], str]]:
    """Make URLs of new empty schemas on ``server``; drop them afterwards."""
    import psycopg

    made: list[str] = []

    def new() -> str:
        schema = f"t_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(server, autocommit=True) as conn:
            conn.execute(f"CREATE SCHEMA {schema}")  # type: ignore[call-overload]
        made.append(schema)
        return schema_url(server, schema)

    yield new
    with contextlib.suppress(psycopg.OperationalError), psycopg.connect(server) as conn:
        conn.autocommit = True
        for schema in made:
            conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")  # type: ignore[call-overload]


@pytest.fixture
def postgres_url(postgres_server: str) -> Iterator[Callable[[], str]]:
    """Make URLs of new empty schemas on the test server; they are dropped after the test."""
    yield from _schemas(postgres_server)


@pytest.fixture
def cluster_schema_url(postgres_cluster: Cluster) -> Iterator[Callable[[], str]]:
    """Like ``postgres_url``, on the throw-away cluster (for tests that stop the server)."""
    yield from _schemas(postgres_cluster.url)


@pytest.fixture(params=["sqlite", "postgresql"])
def any_collector_db(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[int], str | Path]:
    """For tests that must behave the same over both stores: the n-th server's database."""
    if request.param == "sqlite":
        return lambda n: tmp_path / f"collector-{n}.db"
    new: Callable[[], str] = request.getfixturevalue("postgres_url")
    return lambda n: new()
