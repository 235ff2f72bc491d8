"""Retry delays and decisions (pure)."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from hypothesis import given
from hypothesis import strategies as st

from service.domain.retry import backoff_ms, retry_delay_ms, should_retry
from service.domain.workflow import RetryPolicy


@dataclass(frozen=True)
class End:
    ok: bool
    retryable: bool


# durations given as numbers are seconds; the policy holds milliseconds
POLICY = RetryPolicy(max_attempts=5, initial_interval="1s", max_interval="10s", backoff=2.0)
RETRYABLE = End(ok=False, retryable=True)
PERMANENT = End(ok=False, retryable=False)


@pytest.mark.parametrize(
    ("attempt", "expected"), [(1, 1000), (2, 2000), (3, 4000), (4, 8000), (5, 10_000), (60, 10_000)]
)
def test_backoff_grows_exponentially_up_to_the_cap(attempt: int, expected: int) -> None:
    assert backoff_ms(POLICY, attempt) == expected


def test_backoff_of_a_hundred_attempts_does_not_overflow() -> None:
    policy = RetryPolicy(max_attempts=100, initial_interval="1s", max_interval="1d", backoff=10)
    assert backoff_ms(policy, 100) == 86_400_000


def test_initial_interval_above_the_cap_is_capped() -> None:
    policy = RetryPolicy(initial_interval="1m", max_interval="5s")
    assert retry_delay_ms(policy, 1, 0.999999) <= 5000


@pytest.mark.parametrize(("rand", "expected"), [(0.0, 2000), (0.5, 3000), (0.999999, 4000)])
def test_equal_jitter_is_half_fixed_and_half_random(rand: float, expected: int) -> None:
    assert retry_delay_ms(POLICY, 3, rand) == expected


def test_attempt_numbers_start_at_one() -> None:
    with pytest.raises(ValueError, match="attempt"):
        retry_delay_ms(POLICY, 0, 0.5)


@given(attempt=st.integers(1, 100), rand=st.floats(0, 1, exclude_max=True))
def test_delay_stays_between_half_the_nominal_delay_and_the_cap(attempt: int, rand: float) -> None:
    delay = retry_delay_ms(POLICY, attempt, rand)
    assert backoff_ms(POLICY, attempt) / 2 <= delay <= POLICY.max_interval


@given(attempt=st.integers(1, 99), rand=st.floats(0, 1, exclude_max=True))
def test_the_nominal_delay_never_shrinks(attempt: int, rand: float) -> None:
    assert backoff_ms(POLICY, attempt + 1) >= backoff_ms(POLICY, attempt)


def test_retry_after_is_a_floor() -> None:
    assert retry_delay_ms(POLICY, 1, 0.0, retry_after_s=2) == 2000
    assert retry_delay_ms(POLICY, 4, 0.0, retry_after_s=2) == 4000  # computed is larger


def test_retry_after_may_exceed_max_interval_up_to_a_day() -> None:
    assert retry_delay_ms(POLICY, 1, 0.0, retry_after_s=120) == 120_000
    assert retry_delay_ms(POLICY, 1, 0.0, retry_after_s=10**9) == 86_400_000


def test_should_retry_only_retryable_failures_before_the_last_attempt() -> None:
    assert should_retry(POLICY, 1, RETRYABLE)
    assert should_retry(POLICY, 4, RETRYABLE)
    assert not should_retry(POLICY, 5, RETRYABLE)
    assert not should_retry(POLICY, 1, PERMANENT)
    assert not should_retry(POLICY, 1, End(ok=True, retryable=False))


def test_a_single_attempt_policy_never_retries() -> None:
    assert not should_retry(RetryPolicy(max_attempts=1), 1, RETRYABLE)
