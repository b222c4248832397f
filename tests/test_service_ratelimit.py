"""Rate limits per key: one bucket for the deployment with Redis, never an outage's casualty."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from kabuguard.service.ratelimit import RedisBuckets, TokenBuckets
from kabuguard.service.redis_client import Redis
from test_service_support import RedisServer, redis_prefix, redis_url  # noqa: F401 (fixtures)


async def _admitted(limiters: list, key: str, rate: float, requests: int) -> int:
    """How many of `requests`, sent round-robin over the limiters at once, may go."""
    waits = [await limiters[n % len(limiters)].take(key, rate) for n in range(requests)]
    return sum(1 for w in waits if w == 0)


def test_a_local_bucket_admits_a_burst_then_refills() -> None:
    buckets = TokenBuckets()
    assert asyncio.run(_admitted([buckets], "k", 3, 10)) == 3
    assert buckets.take_now("k", 3) > 0
    time.sleep(0.4)  # a bit more than one token's worth at 3 per second
    assert buckets.take_now("k", 3) == 0


def test_two_workers_share_one_bucket_in_redis(redis_url: str, redis_prefix: str) -> None:
    async def run() -> tuple[int, float, float, int, float]:
        clients = [Redis(redis_url) for _ in range(2)]
        workers = [RedisBuckets(c, redis_prefix, timeout_s=1.0) for c in clients]
        started = time.monotonic()
        admitted = await _admitted(workers, "key-1", 5, 20)
        wait = await workers[0].take("key-1", 5)
        elapsed = time.monotonic() - started
        started = time.monotonic()
        other = await _admitted(workers, "key-2", 5, 20)  # another key has its own bucket
        other_elapsed = time.monotonic() - started
        for c in clients:
            await c.aclose()
        return admitted, wait, elapsed, other, other_elapsed

    admitted, wait, elapsed, other, other_elapsed = asyncio.run(run())
    # Per-worker buckets would admit 5 in each worker, 10 in all; shared, the key gets its 5
    # plus what refilled (5 a second) while the 21 requests ran, which a loaded machine stretches.
    refilled = elapsed * 5
    assert 5 <= admitted and admitted + (wait == 0) <= 5 + refilled + 1
    assert 0 <= wait <= 0.2 + 1e-9  # at most one token's wait at 5 per second
    assert 5 <= other <= 5 + other_elapsed * 5 + 1


def test_redis_down_falls_back_to_the_workers_bucket_quickly(tmp_path: Path) -> None:
    server = RedisServer(tmp_path)
    server.start()

    async def run() -> tuple[int, float, int]:
        client = Redis(server.url, socket_connect_timeout=0.2)
        limiter = RedisBuckets(client, "kgtest:", timeout_s=0.05)
        before = await _admitted([limiter], "k", 4, 10)
        server.stop()
        started = time.monotonic()
        during = await _admitted([limiter], "k2", 4, 10)
        elapsed = time.monotonic() - started
        await client.aclose()
        return before, elapsed, during

    try:
        before, elapsed, during = asyncio.run(run())
    finally:
        server.stop()
    assert before == 4
    # The first request finds Redis gone within its timeout; the others do not ask it again.
    assert during == 4 and elapsed < 1.0
