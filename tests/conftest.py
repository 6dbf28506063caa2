"""Shared fixtures: a real collector on 127.0.0.1 for any test that needs a server, and the
real third-party clients (`peer_python`, `peer_node`: see peer_env.py).

``collector`` is a started :class:`analytics.collector.CollectorServer` on a free port with a
fresh SQLite file and no write keys (any key is accepted on loopback); it is stopped after the
test. ``collector_factory(**kwargs)`` starts more servers with custom arguments (``write_keys``,
``read_timeout``, ``limits``, ``db`` ...); each gets its own database unless ``db`` is given.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from analytics.collector import CollectorServer

pytest_plugins = ["pgfixtures"]


@pytest.fixture
def collector_db(tmp_path: Path) -> Callable[[int], str | Path]:
    """The database of the n-th server ``collector_factory`` starts (override per module)."""
    return lambda n: tmp_path / f"collector-{n}.db"


@pytest.fixture
def collector_factory(
    collector_db: Callable[[int], str | Path],
) -> Iterator[Callable[..., CollectorServer]]:
    """Start collectors on demand; every one started here is stopped at teardown."""
    from analytics.collector import CollectorServer

    servers: list[CollectorServer] = []

    def start(**kwargs: Any) -> CollectorServer:
        if "db" not in kwargs:
            kwargs["db"] = collector_db(len(servers))
        kwargs.setdefault("host", "127.0.0.1")
        kwargs.setdefault("port", 0)
        server = CollectorServer(**kwargs)
        servers.append(server)
        return server.start()

    yield start
    for server in reversed(servers):
        server.stop(timeout=10.0)


@pytest.fixture
def collector(collector_factory: Callable[..., CollectorServer]) -> CollectorServer:
    """A running collector on 127.0.0.1, port 0, tmp database, accepting any write key."""
    return collector_factory()


@pytest.fixture(scope="session")
def peer_python(pytestconfig: pytest.Config) -> Path:
    """The python of a cached venv with the real Python clients and this project (peer_env)."""
    from peer_env import python_peers

    assert pytestconfig.cache is not None
    return python_peers(pytestconfig.cache.mkdir("peers"))


@pytest.fixture(scope="session")
def peer_node(pytestconfig: pytest.Config) -> Path:
    """A cached directory with the real Node.js clients in its node_modules (peer_env)."""
    from peer_env import node_peers

    assert pytestconfig.cache is not None
    return node_peers(pytestconfig.cache.mkdir("peers"))
