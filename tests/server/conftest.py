"""Fixtures: a fast FakeServer on port 0 and connected test clients."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from fake_server import FakeServer

from .helpers import WsClient, bearer, open_ws

SECRET = "tests-server-secret-" + "0123456789abcdef" * 4
ADMIN = "admin-token-for-tests"

MakeServer = Callable[..., Awaitable[FakeServer]]
Connect = Callable[..., Awaitable[WsClient]]


@pytest.fixture
async def make_server() -> AsyncIterator[MakeServer]:
    """Start FakeServers with test-speed settings; all are stopped at teardown."""
    servers: list[FakeServer] = []

    async def make(**overrides: Any) -> FakeServer:
        settings: dict[str, Any] = {
            "secret": SECRET,
            "admin_token": ADMIN,
            "auth_timeout": 1.0,
            "close_timeout": 1.0,
            "token_leeway": 0.0,
        }
        settings.update(overrides)
        server = FakeServer(**settings)
        await server.start()
        servers.append(server)
        return server

    yield make
    for server in servers:
        await server.stop()


@pytest.fixture
async def server(make_server: MakeServer) -> FakeServer:
    return await make_server()


@pytest.fixture
async def connect() -> AsyncIterator[Connect]:
    """Open an authenticated client: ``await connect(server, "alice")``; closed at teardown."""
    clients: list[WsClient] = []

    async def open_client(
        srv: FakeServer, user: str, *, roles: tuple[str, ...] = (), ttl: float = 3600.0
    ) -> WsClient:
        token = srv.issue_token(user, ttl=ttl, roles=roles)
        client = await open_ws(srv.ws_url, bearer(token))
        client.welcome = await client.expect("connected")
        clients.append(client)
        return client

    yield open_client
    for client in clients:
        await client.ws.close()
