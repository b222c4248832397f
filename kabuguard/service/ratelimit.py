"""Rate limits per API key: a token bucket per key in each worker process."""

from __future__ import annotations

import time


class TokenBuckets:
    """`rate` requests per second per key, with bursts up to one second's worth."""

    def __init__(self) -> None:
        self._buckets: dict[str, list[float]] = {}

    def take(self, key: str, rate: float) -> float:
        """0 when the request may go; otherwise the seconds until it may."""
        now = time.monotonic()
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = [max(rate, 1.0), now]
        tokens = min(max(rate, 1.0), bucket[0] + (now - bucket[1]) * rate)
        bucket[1] = now
        if tokens >= 1.0:
            bucket[0] = tokens - 1.0
            return 0.0
        bucket[0] = tokens
        return (1.0 - tokens) / rate if rate > 0 else 1.0
