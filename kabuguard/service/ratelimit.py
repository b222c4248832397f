"""Rate limits per API key: a token bucket per key, shared by every worker when state is in Redis.

A key's limit is the firm's contract with the service, so with `--workers N` it must hold for
the deployment, not per process. With Redis the bucket lives there (GCRA: one timestamp a key,
updated atomically by a script on Redis's own clock, so workers on several machines agree).
If Redis cannot answer within a small share of the deadline, the worker falls back to its own
bucket and asks Redis again a second later: a limiter must never turn a Redis outage into
refused, failed or late decisions.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, Protocol

log = logging.getLogger("kabuguard.service")


def _capacity(rate: float) -> float:
    """Bursts of up to one second's worth of requests, and never fewer than one."""
    return max(rate, 1.0)


class RateLimiter(Protocol):
    async def take(self, key: str, rate: float) -> float:
        """0 when the request may go; otherwise the seconds until it may."""


class TokenBuckets:
    """`rate` requests per second per key, in this process alone."""

    def __init__(self) -> None:
        self._buckets: dict[str, list[float]] = {}

    async def take(self, key: str, rate: float) -> float:
        return self.take_now(key, rate)

    def take_now(self, key: str, rate: float) -> float:
        now = time.monotonic()
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = [_capacity(rate), now]
        tokens = min(_capacity(rate), bucket[0] + (now - bucket[1]) * rate)
        bucket[1] = now
        if tokens >= 1.0:
            bucket[0] = tokens - 1.0
            return 0.0
        bucket[0] = tokens
        return (1.0 - tokens) / rate if rate > 0 else 1.0


# GCRA: the key holds the theoretical arrival time (TAT, µs on Redis's clock) of the next request.
# A request may go when, counting it, the TAT stays within the burst tolerance of now.
_GCRA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local tolerance = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local next_tat = tat + interval
local over = next_tat - now - tolerance
if over > 0 then return over end
redis.call('SET', KEYS[1], next_tat, 'PX', math.ceil((tolerance + interval) / 1000))
return 0
"""


class RedisBuckets:
    """The same buckets in Redis, shared by every worker that uses the same prefix."""

    retry_after_s = 1.0

    def __init__(self, client: Any, prefix: str, timeout_s: float) -> None:
        self._script = client.register_script(_GCRA)
        self._prefix = prefix + "ratelimit:"
        self._timeout_s = timeout_s
        self._local = TokenBuckets()
        self._retry_at = 0.0  # while degraded: when to ask Redis again

    async def take(self, key: str, rate: float) -> float:
        if rate <= 0:
            return 1.0
        if self._retry_at and time.monotonic() < self._retry_at:
            return self._local.take_now(key, rate)
        interval = 1e6 / rate
        try:
            async with asyncio.timeout(self._timeout_s):
                over = await self._script(keys=[self._prefix + key],
                                          args=[round(interval), round(_capacity(rate) * interval)])
        except Exception as exc:  # Redis down or slow: this worker's own bucket, logged once per outage
            if not self._retry_at:
                log.warning("rate limits fall back to each worker's own bucket: Redis unreachable",
                            extra={"error": type(exc).__name__})
            self._retry_at = time.monotonic() + self.retry_after_s
            return self._local.take_now(key, rate)
        self._retry_at = 0.0
        return int(over) / 1e6
