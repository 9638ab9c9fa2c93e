"""The RedisServer launcher: start, restart keeping or losing the data set, stop."""

from __future__ import annotations

import pytest

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
