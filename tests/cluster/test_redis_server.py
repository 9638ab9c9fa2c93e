"""The RedisServer launcher: start, restart keeping or losing the data set, stop."""

from __future__ import annotations

import asyncio

import pytest

from rtclient.testing import wait_until
from rtclient.testing.redis_server import RedisServer

pytestmark = pytest.mark.cluster


async def test_restart_keeps_or_loses_the_data_set() -> None:
    async with RedisServer() as redis:
        assert (await redis.command("SET", "k", "v")).startswith(b"+OK")
        await redis.restart()
        assert await redis.command("EXISTS", "k") == b":1\r\n"
        await redis.restart(keep_data=False)
        assert await redis.command("EXISTS", "k") == b":0\r\n"
    assert not redis.running


async def test_a_restart_keeping_data_loses_no_acknowledged_write() -> None:
    """Was: SAVE, then SIGKILL: every write acknowledged between the two was lost."""
    import redis.asyncio as aioredis

    async with RedisServer() as redis:
        client = aioredis.Redis.from_url(redis.url)
        acked = 0
        stop = asyncio.Event()

        async def write() -> None:
            nonlocal acked
            while not stop.is_set():
                try:
                    acked = max(acked, await client.incr("n"))
                except (aioredis.ConnectionError, OSError):
                    return  # the server went away: what was acked so far counts

        writers = [asyncio.create_task(write()) for _ in range(4)]  # more writes in flight
        await wait_until(lambda: acked >= 100, 5.0)
        await redis.restart()
        stop.set()
        await asyncio.gather(*writers)
        await client.aclose()
        async with aioredis.Redis.from_url(redis.url) as again:
            value = int(await again.get("n") or 0)
        assert value >= acked, f"{acked} increments acknowledged, {value} kept"
