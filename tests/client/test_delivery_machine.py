"""The delivery state machine (analytics._delivery): pure rules, plain numbers, no threads."""

from __future__ import annotations

import orjson
import pytest

from analytics._delivery import (
    CUT,
    SEND,
    Delivered,
    Failed,
    Refusal,
    Wait,
    after_attempt,
    next_step,
    refusals,
    start,
)
from analytics._retry import Outcome, RetryPolicy

POLICY = RetryPolicy()


def test_a_new_batch_is_sent_at_once() -> None:
    assert next_step(start(10.0), 10.0, None) is SEND


@pytest.mark.parametrize("status", [200, 201, 204, 299])
def test_only_2xx_delivers(status: int) -> None:
    _, result = after_attempt(POLICY, start(0.0), Outcome(status), 0.0, 0.5, 3)
    assert result == Delivered(())


@pytest.mark.parametrize("status", [300, 301, 302, 303, 307, 308])
def test_a_redirect_is_a_final_failure(status: int) -> None:
    """A 3xx used to count as delivered (events lost while flush said True)."""
    _, result = after_attempt(POLICY, start(0.0), Outcome(status), 0.0, 0.5, 3)
    assert isinstance(result, Failed)
    assert (result.reason, result.status) == ("http_error", status)


def test_a_retryable_status_schedules_the_next_attempt_by_the_backoff() -> None:
    state, result = after_attempt(POLICY, start(0.0), Outcome(503), 0.0, 0.5, 1)
    assert result is None
    assert state.next_at == pytest.approx(0.5)  # 0.5 s base, rand 0.5 = no jitter
    assert next_step(state, 0.2, None) == Wait(pytest.approx(0.5))
    assert next_step(state, 0.5, None) is SEND


def test_retry_after_is_honoured_and_clamped() -> None:
    state, _ = after_attempt(POLICY, start(0.0), Outcome(429, retry_after=120.0), 0.0, 0.5, 1)
    assert state.next_at == 120.0
    state, _ = after_attempt(POLICY, start(0.0), Outcome(429, retry_after=9999.0), 0.0, 0.5, 1)
    assert state.next_at == 300.0


def test_the_retry_budget_ends_in_retries_exhausted() -> None:
    policy = RetryPolicy(max_retries=2)
    state, now = start(0.0), 0.0
    results = []
    for _ in range(3):
        state, result = after_attempt(policy, state, Outcome(None, error="reset"), now, 0.5, 1)
        results.append(result)
        now = state.next_at
    assert results[:2] == [None, None]
    assert isinstance(results[2], Failed)
    assert results[2].reason == "retries_exhausted"


def test_a_deadline_cuts_a_wait_that_would_end_after_it() -> None:
    state, _ = after_attempt(POLICY, start(0.0), Outcome(429, retry_after=120.0), 0.0, 0.5, 1)
    assert next_step(state, 1.0, None) == Wait(120.0)  # no deadline: wait it out (flush)
    assert next_step(state, 1.0, 5.0) is CUT  # shutdown by 5.0: the retry cannot happen
    assert next_step(state, 1.0, 200.0) == Wait(120.0)  # the retry fits before the deadline


def test_a_passed_deadline_cuts_even_a_fresh_batch() -> None:
    assert next_step(start(10.0), 10.0, 10.0) is CUT
    assert next_step(start(10.0), 10.0, 10.5) is SEND


def _body(refused: list[dict[str, object]]) -> bytes:
    return orjson.dumps({"success": True, "received": 3, "refused": refused})


def test_refusals_listed_in_a_2xx_are_per_message_failures() -> None:
    body = _body([{"index": 2, "code": "invalid_field", "reason": "userId is empty"}])
    _, result = after_attempt(POLICY, start(0.0), Outcome(200, body=body), 0.0, 0.5, 3)
    assert result == Delivered((Refusal(2, "invalid_field", "userId is empty"),))


@pytest.mark.parametrize(
    "body",
    [
        b'{"success": true}',
        b"not json",
        b'{"refused": "yes"}',
        b'["refused"]',
        _body([{"index": 7, "code": "x"}]),  # outside the batch
        _body([{"index": True, "code": "x"}]),  # a bool is not an index
        _body([{"index": "1", "code": "x"}]),
    ],
)
def test_answers_without_valid_refusals_refuse_nothing(body: bytes) -> None:
    assert refusals(body, 3) == ()


def test_refusals_are_deduplicated_sorted_and_default_their_code() -> None:
    body = _body([{"index": 1}, {"index": 0, "code": "bad"}, {"index": 1, "code": "again"}])
    assert refusals(body, 2) == (Refusal(0, "bad", ""), Refusal(1, "refused", ""))
