"""The service's pipelined Redis client: replies reach their own callers, scripts survive a restart."""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path

import pytest

from kabuguard.service.redis_client import Redis, ReplyError
from test_service_support import RedisServer, redis_url  # noqa: F401 (fixture)


def test_concurrent_commands_on_one_connection_each_get_their_own_reply(redis_url: str) -> None:
    prefix = f"kgtest:{uuid.uuid4().hex[:8]}:"

    async def run() -> tuple[list[bytes | None], list[int]]:
        client = Redis(redis_url)
        await asyncio.gather(*(client.execute("SET", f"{prefix}{n}", f"value-{n}", "EX", 60) for n in range(200)))
        got = await asyncio.gather(*(client.execute("GET", f"{prefix}{n}") for n in reversed(range(200))))
        deleted = await asyncio.gather(*(client.execute("DEL", f"{prefix}{n}") for n in range(200)))
        await client.aclose()
        return got, deleted

    got, deleted = asyncio.run(run())
    assert got == [f"value-{n}".encode() for n in reversed(range(200))]
    assert deleted == [1] * 200


def test_a_caller_that_gave_up_does_not_shift_the_replies_of_the_next(redis_url: str) -> None:
    """A timed-out caller's reply arrives later and is dropped, not handed to the next caller."""
    slow = Redis(redis_url)

    async def run() -> tuple[bool, bytes]:
        key = f"kgtest:{uuid.uuid4().hex[:8]}"
        await slow.execute("SET", key, "mine", "EX", 60)
        timed_out = False
        try:
            async with asyncio.timeout(0.01):
                # The script busy-waits 100 ms inside Redis: the caller gives up first.
                await slow.execute("EVAL", "local t = redis.call('TIME') local s = t[1] * 1e6 + t[2] "
                                   "repeat local n = redis.call('TIME') until n[1] * 1e6 + n[2] > s + 100000 "
                                   "return 'late'", 0)
        except TimeoutError:
            timed_out = True
        value = await slow.execute("GET", key)
        await slow.execute("DEL", key)
        await slow.aclose()
        return timed_out, value

    timed_out, value = asyncio.run(run())
    assert timed_out and value == b"mine"


def test_a_second_event_loop_gets_a_connection_of_its_own(redis_url: str) -> None:
    """A test client (or a restarted loop) runs the app on another loop than the first."""
    client = Redis(redis_url)
    assert asyncio.run(client.execute("PING")) == b"PONG"
    assert asyncio.run(client.execute("PING")) == b"PONG"


def test_scripts_are_sent_again_after_redis_forgot_them(redis_url: str) -> None:
    async def run() -> tuple[int, int]:
        client = Redis(redis_url)
        script = client.register_script("return tonumber(ARGV[1]) + 1")
        first = await script(args=[1])
        await client.execute("SCRIPT", "FLUSH")  # what a restart does to the script cache
        second = await script(args=[41])
        await client.aclose()
        return first, second

    assert asyncio.run(run()) == (2, 42)


def test_error_replies_raise_and_the_connection_goes_on(redis_url: str) -> None:
    async def run() -> bytes:
        client = Redis(redis_url)
        with pytest.raises(ReplyError, match="unknown command"):
            await client.execute("NO-SUCH-COMMAND")
        pong = await client.execute("PING")
        await client.aclose()
        return pong

    assert asyncio.run(run()) == b"PONG"


def test_redis_stopped_fails_fast_then_reconnects_when_it_is_back(tmp_path: Path) -> None:
    server = RedisServer(tmp_path)
    server.start()

    async def run() -> tuple[bytes, float, bytes]:
        client = Redis(server.url, socket_timeout=0.5, socket_connect_timeout=0.5)
        before = await client.execute("PING")
        server.stop()
        started = time.monotonic()
        with pytest.raises(OSError):
            await client.execute("PING")
        with pytest.raises(OSError):  # the next command tries a new connection, refused
            await client.execute("PING")
        failed_in = time.monotonic() - started
        server.start()
        after = await client.execute("PING")
        await client.aclose()
        return before, failed_in, after

    try:
        before, failed_in, after = asyncio.run(run())
    finally:
        server.stop()
    assert before == b"PONG" and after == b"PONG"
    assert failed_in < 1.0
