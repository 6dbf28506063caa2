"""The log filters of the collector's process (._logfilter): redaction and rate limits."""

from __future__ import annotations

import logging

import pytest

from analytics.collector._logfilter import AcceptErrors, OneLine, redact


@pytest.mark.parametrize(
    ("text", "secret"),
    [
        ("b'Authorization: Basic c2VjcmV0OiA=\\rX'", "c2VjcmV0OiA="),
        ("Authorization: Bearer tok.en-123", "tok.en-123"),
        ("bytearray(b'/v1/batch?writeKey=sekret&pad=aaa')", "sekret"),
        ('{"writeKey": "sekret", "batch": []}', "sekret"),
        ("basic   c2Vj\\x01cmV0", "cmV0"),
    ],
)
def test_redact_removes_credentials(text: str, secret: str) -> None:
    assert secret not in redact(text)
    assert "***" in redact(text)


def _record(msg: str, exc: BaseException | None = None) -> logging.LogRecord:
    exc_info = (type(exc), exc, None) if exc is not None else None
    return logging.LogRecord("aiohttp.server", logging.ERROR, __file__, 1, msg, (), exc_info)


def test_one_line_keeps_the_exception_text_redacted_without_a_traceback() -> None:
    record = _record("Error handling request", ValueError("bad header: Basic c2VjcmV0\nmore"))
    assert OneLine().filter(record)
    assert record.exc_info is None
    assert record.getMessage() == "Error handling request: ValueError: bad header: Basic *** more"


def test_accept_errors_pass_once_per_interval_with_a_count() -> None:
    now = [100.0]
    limiter = AcceptErrors(interval=10.0, clock=lambda: now[0])
    error = OSError(24, "Too many open files")
    passed = []
    for step in range(25):  # one failed accept() every second for 25 s
        now[0] = 100.0 + step
        record = _record("socket.accept() out of system resource", error)
        if limiter.filter(record):
            passed.append(record.getMessage())
    assert len(passed) == 3  # at 0, 10 and 20 s
    assert "more" not in passed[0]
    assert "(9 more in the last 10 s)" in passed[1]
    assert all("Too many open files" in line and "\n" not in line for line in passed)
    other = _record("Unclosed connection")
    assert limiter.filter(other)
