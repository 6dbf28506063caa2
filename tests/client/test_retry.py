"""The retry policy (SPEC §4.2): a pure value, tested with exact numbers."""

from __future__ import annotations

import email.utils

import pytest

from analytics._retry import Outcome, RetryPolicy, RetryState, parse_retry_after

POLICY = RetryPolicy()


@pytest.mark.parametrize("status", [200, 201, 202, 204, 299])
def test_success_statuses_are_delivered(status: int) -> None:
    """Only a 2xx ends the attempt as delivered."""
    _, delay, reason = POLICY.decide(RetryState(0.0), Outcome(status), 0.0, 0.5)
    assert (delay, reason) == (None, "")
    assert Outcome(status).delivered


@pytest.mark.parametrize("status", [300, 301, 302, 303, 304, 307, 308])
def test_a_redirect_is_a_final_http_error(status: int) -> None:
    """Behaviour changed on purpose: a 3xx used to count as delivered. Redirects are never
    followed, so a 3xx is a final failure (http_error), not a delivery and not retried."""
    _, delay, reason = POLICY.decide(RetryState(0.0), Outcome(status), 0.0, 0.5)
    assert (delay, reason) == (None, "http_error")
    assert not Outcome(status).delivered


@pytest.mark.parametrize("status", [408, 410, 429, 460, 500, 502, 503, 504, 599, None])
def test_retryable_statuses_and_network_errors_retry(status: int | None) -> None:
    """408, 410, 429, 460, 5xx (but 501/505/511) and network errors are retried."""
    _, delay, _ = POLICY.decide(RetryState(0.0), Outcome(status), 0.0, 0.5)
    assert delay == pytest.approx(0.5)


@pytest.mark.parametrize("status", [400, 401, 403, 404, 413, 501, 505, 511])
def test_other_statuses_are_final(status: int) -> None:
    """Other 4xx and 501/505/511 are not retried."""
    _, delay, reason = POLICY.decide(RetryState(0.0), Outcome(status), 0.0, 0.5)
    assert (delay, reason) == (None, "http_error")


def test_backoff_doubles_with_jitter_and_a_cap() -> None:
    """0.5 s doubling, capped at 60 s, jitter within ±10 %."""
    assert [POLICY.backoff(n, 0.5) for n in range(9)] == [0.5, 1, 2, 4, 8, 16, 32, 60, 60]
    assert POLICY.backoff(0, 0.0) == pytest.approx(0.45)
    assert POLICY.backoff(0, 0.999999) == pytest.approx(0.55)


def test_retries_stop_after_max_retries() -> None:
    """After max_retries retries the batch is given up."""
    policy = RetryPolicy(max_retries=3)
    state = RetryState(0.0)
    delays = []
    for _ in range(10):
        state, delay, reason = policy.decide(state, Outcome(503), 0.0, 0.5)
        if delay is None:
            break
        delays.append(delay)
    assert delays == [0.5, 1.0, 2.0]
    assert reason == "retries_exhausted"
    assert state.attempts == 4


def test_retry_after_is_honoured_clamped_and_not_counted() -> None:
    """Retry-After sets the wait (clamped to [1, 300] s) and does not use up max_retries."""
    policy = RetryPolicy(max_retries=0, max_rate_limited=2)
    state = RetryState(0.0)
    state, delay, _ = policy.decide(state, Outcome(429, retry_after=7.0), 0.0, 0.5)
    assert delay == 7.0
    state, delay, _ = policy.decide(state, Outcome(429, retry_after=9999.0), 0.0, 0.5)
    assert delay == 300.0
    state, delay, reason = policy.decide(state, Outcome(429, retry_after=0.0), 0.0, 0.5)
    assert (delay, reason) == (None, "retries_exhausted")
    _, delay, _ = RetryPolicy().decide(RetryState(0.0), Outcome(429, retry_after=0.0), 0.0, 0.5)
    assert delay == 1.0


def test_total_time_is_capped() -> None:
    """No retry starts after max_total seconds from the first attempt."""
    _, delay, reason = POLICY.decide(RetryState(0.0), Outcome(503), 12 * 3600.0, 0.5)
    assert (delay, reason) == (None, "retries_exhausted")


def test_parse_retry_after() -> None:
    """Seconds or an HTTP date; anything else is ignored."""
    assert parse_retry_after("120", 0.0) == 120.0
    assert parse_retry_after(" 5 ", 0.0) == 5.0
    assert parse_retry_after(None, 0.0) is None
    assert parse_retry_after("soon", 0.0) is None
    now = 1_700_000_000.0
    date = email.utils.formatdate(now + 30, usegmt=True)
    assert parse_retry_after(date, now) == pytest.approx(30.0)
