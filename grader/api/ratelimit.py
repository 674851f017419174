"""A per-user request rate limit: a token bucket per user in this API process (with several API processes each
keeps its own, so the limit is per process). Over the limit: 429 with Retry-After, before any work is done."""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass

from grader.errors import TooManyRequests


@dataclass
class _Bucket:
    tokens: float
    updated: float


class RateLimiter:
    def __init__(self, *, per_minute: int, burst: int) -> None:
        self.rate = per_minute / 60.0
        self.burst = float(burst)
        self._buckets: dict[int, _Bucket] = {}
        self._lock = threading.Lock()

    def take(self, user_id: int, *, now: float | None = None) -> None:
        """Spend one request of this user's allowance, or raise TooManyRequests saying when to retry."""
        now = time.monotonic() if now is None else now
        with self._lock:
            bucket = self._buckets.get(user_id)
            if bucket is None:
                bucket = self._buckets[user_id] = _Bucket(self.burst, now)
            bucket.tokens = min(self.burst, bucket.tokens + (now - bucket.updated) * self.rate)
            bucket.updated = now
            if bucket.tokens >= 1:
                bucket.tokens -= 1
                return
            wait = math.ceil((1 - bucket.tokens) / self.rate)
        raise TooManyRequests(
            f"too many requests: at most {round(self.rate * 60)} a minute per user; try again in {wait} s",
            retry_after_s=wait,
        )
