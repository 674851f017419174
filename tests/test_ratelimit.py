"""The per-user request rate limit: a burst is allowed, then requests at the rate; the refusal says when to retry."""

from __future__ import annotations

import pytest

from grader.api.ratelimit import RateLimiter
from grader.errors import TooManyRequests


def test_a_burst_then_the_rate_per_user_with_retry_after() -> None:
    limiter = RateLimiter(per_minute=60, burst=3)  # one a second after a burst of three
    for _ in range(3):
        limiter.take(1, now=100.0)
    with pytest.raises(TooManyRequests) as refused:
        limiter.take(1, now=100.0)
    assert refused.value.retry_after_s == 1 and "at most 60 a minute" in refused.value.message
    limiter.take(2, now=100.0)  # another user has their own allowance
    limiter.take(1, now=101.0)  # a second later one more is allowed
    with pytest.raises(TooManyRequests):
        limiter.take(1, now=101.5)
    for _ in range(3):
        limiter.take(1, now=1000.0)  # a quiet while refills the burst, never beyond it
    with pytest.raises(TooManyRequests):
        limiter.take(1, now=1000.0)
