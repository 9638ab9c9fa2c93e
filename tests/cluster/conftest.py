"""Fixtures: a real redis-server and fast FakeServer nodes on it (in-process).

Timings are scaled down: node liveness 0.6 s (a dead node's members leave within about
that), Redis command timeout 0.3 s, cut-off 1.5 s.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from fake_server import FakeServer
from rtclient.testing.plugin import need_program
from rtclient.testing.programs import ProgramMissing, in_ci
from rtclient.testing.redis_server import RedisServer

from ..server.conftest import ADMIN, SECRET, connect

__all__ = ["connect"]  # the /ws test client fixture, shared with tests/server

MakeNode = Callable[..., Awaitable[FakeServer]]

FAST: dict[str, Any] = {
    "secret": SECRET,
    "admin_token": ADMIN,
    "auth_timeout": 1.0,
    "close_timeout": 1.0,
    "token_leeway": 0.0,
    "node_ttl": 0.6,
    "redis_timeout": 0.3,
    "redis_retry_after": 0.5,
    "redis_cutoff": 1.5,
}


@pytest.fixture
async def redis() -> AsyncIterator[RedisServer]:
    """A real redis-server on a free port: skipped off CI when it is not installed,
    installed (or failing) under ``CI=true``."""
    try:
        server = RedisServer()
    except ProgramMissing as exc:
        if in_ci():
            raise
        pytest.skip(str(exc))
    async with server:
        yield server


@pytest.fixture
async def make_node(redis: RedisServer) -> AsyncIterator[MakeNode]:
    """Start cluster nodes on ``redis`` (or ``redis_url=``); all stopped at teardown."""
    nodes: list[FakeServer] = []

    async def make(**overrides: Any) -> FakeServer:
        settings = {**FAST, "redis_url": redis.url, **overrides}
        node = FakeServer(**settings)
        await node.start()
        nodes.append(node)
        return node

    yield make
    for node in nodes:
        await node.stop()


@pytest.fixture(autouse=True)
def _redis_server_installed() -> None:
    """Every test here runs redis-server: a skip off CI, a failure under CI=true."""
    need_program("redis-server")
