"""When to retry a failed attempt, and after how long (pure: randomness is passed in).

The delay after attempt ``n`` (1-based) grows exponentially,
``initial_interval * backoff ** (n - 1)``, capped at ``max_interval``, with *equal
jitter*: half of it fixed, half spread by ``rand`` in ``[0, 1)``, so workers that
failed together do not come back together, yet none retries sooner than half the
nominal delay. A ``Retry-After`` from the target is a floor: the delay is the
larger of the two, and may exceed ``max_interval`` up to the Retry-After bound
(one day).
"""

from __future__ import annotations

from typing import Protocol

from service.domain.workflow import RetryPolicy

MAX_RETRY_AFTER_S = 86_400.0
"""A ``Retry-After`` is honoured up to one day; anything longer is clamped."""


class AttemptEnd(Protocol):
    """What the retry decision needs to know of an attempt's result."""

    @property
    def ok(self) -> bool: ...

    @property
    def retryable(self) -> bool: ...


def backoff_ms(policy: RetryPolicy, attempt: int) -> float:
    """The nominal (unjittered) delay after ``attempt``, capped at ``max_interval``."""
    if attempt < 1:
        raise ValueError(f"attempt must be 1 or more, not {attempt}")
    cap = float(policy.max_interval)
    delay = float(policy.initial_interval)
    # multiply step by step and stop at the cap: no float overflow for large attempts
    for _ in range(attempt - 1):
        if delay >= cap:
            break
        delay *= policy.backoff
    return min(delay, cap)


def retry_delay_ms(
    policy: RetryPolicy, attempt: int, rand: float, retry_after_s: float | None = None
) -> int:
    """Milliseconds to wait before the attempt after ``attempt``."""
    rand = min(max(rand, 0.0), 1.0)
    nominal = backoff_ms(policy, attempt)
    delay = nominal / 2 + rand * nominal / 2
    if retry_after_s is not None:
        bound = max(float(policy.max_interval), MAX_RETRY_AFTER_S * 1000)
        delay = min(max(delay, max(retry_after_s, 0.0) * 1000), bound)
    return round(delay)


def should_retry(policy: RetryPolicy, attempt: int, result: AttemptEnd) -> bool:
    """Whether a failed ``attempt`` (1-based) gets another one."""
    return not result.ok and result.retryable and attempt < policy.max_attempts
