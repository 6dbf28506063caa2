"""Fixtures for the command-line tests."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest


@pytest.fixture
def closed_port_url() -> Iterator[str]:
    """An http URL on 127.0.0.1 where nothing listens, for the whole test.

    The port stays bound (never listening) by this fixture until the test ends: a port only
    released could be taken by another server of a busy machine meanwhile, or be picked as
    the client's own source port and connect to itself; a bound one is refused at once.
    """
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
