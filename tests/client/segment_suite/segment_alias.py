"""A pytest plugin that runs Segment analytics-python's own tests against ``analytics``.

Loaded with ``-p segment_alias`` in a venv that has segment-analytics-python 2.4.0 (for its test
files and their ``mock`` dependency) and this project. It does three things, none of which
changes how ``analytics`` behaves:

- Names only: ``segment.analytics`` and ``segment.analytics.client`` are ``analytics`` itself
  (our ``Client`` lives there), and ``segment.analytics.version.VERSION`` is
  ``analytics.__version__``. Segment's internal modules (``consumer``, ``request``) are not
  mapped: tests that patch them test Segment's internals.
- Loopback only: Segment's tests send to their default host, api.segment.io, which no test of
  ours may reach. Name resolution of any host that is not a loopback address fails at once, as
  it does on a machine without network; each refused host is recorded with the test that was
  running (uploads happen on a sender thread, so an attempt may land during a later test).
- A report: the outcome of every test, with the last line of its failure, and the refused
  hosts, as JSON in the file named by ``SEGMENT_SUITE_REPORT``.
"""

from __future__ import annotations

import ipaddress
import json
import os
import socket
import sys
import types
from typing import Any

import pytest

import analytics

_REAL_GETADDRINFO = socket.getaddrinfo
_results: dict[str, dict[str, Any]] = {}
_refused: list[dict[str, str]] = []
_current = {"test": "(outside any test)"}


def _alias() -> None:
    segment = types.ModuleType("segment")
    segment.__path__ = []
    version = types.ModuleType("segment.analytics.version")
    version.VERSION = analytics.__version__  # type: ignore[attr-defined]
    segment.analytics = analytics  # type: ignore[attr-defined]
    sys.modules.update(
        {
            "segment": segment,
            "segment.analytics": analytics,
            "segment.analytics.client": analytics,
            "segment.analytics.version": version,
        }
    )


def _loopback(host: Any) -> bool:
    if host is None or host == "localhost":
        return True
    text = host.decode() if isinstance(host, bytes) else str(host)
    try:
        return ipaddress.ip_address(text.strip("[]")).is_loopback
    except ValueError:
        return False


def _guarded_getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
    if not _loopback(host):
        _refused.append({"host": str(host), "test": _current["test"]})
        raise socket.gaierror(socket.EAI_NONAME, f"{host}: no network in Segment's suite here")
    return _REAL_GETADDRINFO(host, *args, **kwargs)


_alias()
socket.getaddrinfo = _guarded_getaddrinfo


def pytest_runtest_setup(item: pytest.Item) -> None:
    _current["test"] = item.nodeid


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    entry = _results.setdefault(report.nodeid, {"outcome": "passed", "cause": ""})
    if report.failed and entry["outcome"] != "failed":
        crash = getattr(report.longrepr, "reprcrash", None)
        entry["outcome"] = "failed"
        entry["cause"] = crash.message.splitlines()[0] if crash else str(report.longrepr)[-300:]
    elif report.skipped and entry["outcome"] == "passed":
        entry["outcome"] = "skipped"


def pytest_sessionfinish(session: pytest.Session) -> None:
    path = os.environ.get("SEGMENT_SUITE_REPORT")
    if path:
        with open(path, "w", encoding="utf-8") as file:
            json.dump({"results": _results, "refused": _refused}, file, indent=1)
