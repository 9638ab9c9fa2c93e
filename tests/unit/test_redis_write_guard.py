"""fake_server.redis_link's write guard keeps the pool's connection class (TCP, TLS, Unix
socket): what the URL asks for, with the guard before every write."""

from __future__ import annotations

import pytest
from redis.asyncio.connection import Connection, SSLConnection, UnixDomainSocketConnection

from fake_server.config import ServerConfig
from fake_server.redis_link import RedisLink, _WriteGuard, write_guarded
from fake_server.stats import Counters


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("redis://127.0.0.1:6379/0", Connection),
        ("rediss://127.0.0.1:6380/0", SSLConnection),
        ("unix:///tmp/redis.sock?db=0", UnixDomainSocketConnection),
    ],
)
async def test_the_pool_keeps_its_connection_class_under_the_guard(
    url: str, expected: type[Connection]
) -> None:
    link = RedisLink(ServerConfig(redis_url=url), node_id="n1", counters=Counters())
    try:
        cls = link.client.connection_pool.connection_class
        assert issubclass(cls, expected) and issubclass(cls, _WriteGuard)
        assert cls.__mro__.index(_WriteGuard) < cls.__mro__.index(expected)
        assert write_guarded(cls) is cls  # guarded once, however often it is asked
        conn = cls(**link.client.connection_pool.connection_kwargs)
        assert type(conn).send_packed_command is _WriteGuard.send_packed_command
    finally:
        await link.client.aclose()
