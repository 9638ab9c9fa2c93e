"""A python-socketio ``AsyncClient`` wrapper for the Socket.IO endpoint tests.

Like :mod:`tests.server.helpers`, nothing sleeps to synchronise: every wait is for an
event, an ack or the disconnect, bounded by a timeout.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import socketio

from fake_server import FakeServer

from .helpers import QUIET, WAIT

_ids = itertools.count(1)


class SioUser:
    """One Socket.IO connection; events not asked for yet are kept in ``backlog``."""

    def __init__(self) -> None:
        self.client = socketio.AsyncClient(reconnection=False, handle_sigint=False)
        self.backlog: list[tuple[str, Any]] = []
        self._arrived = asyncio.Condition()
        self.welcome: dict[str, Any] = {}
        self.connect_error: Any = None
        self.disconnect_reason: str | None = None
        self._disconnected = asyncio.Event()
        self.client.on("*", self._on_event)
        self.client.on("connect_error", self._on_connect_error)
        self.client.on("disconnect", self._on_disconnect)

    async def _on_event(self, event: str, *args: Any) -> None:
        async with self._arrived:
            self.backlog.append((event, args[0] if len(args) == 1 else args))
            self._arrived.notify_all()

    async def _on_connect_error(self, data: Any = None) -> None:
        self.connect_error = data

    async def _on_disconnect(self, reason: str | None = None) -> None:
        self.disconnect_reason = reason
        self._disconnected.set()

    async def connect(
        self,
        url: str,
        *,
        auth: Any = None,
        headers: dict[str, str] | None = None,
        transports: list[str] | None = None,
    ) -> None:
        try:
            await self.client.connect(
                url,
                auth=auth,
                headers=headers or {},
                transports=transports or ["websocket"],
                wait_timeout=WAIT,
            )
        except socketio.exceptions.ConnectionError:
            # A failed engine.io handshake leaves the client's HTTP session open.
            http = getattr(self.client.eio, "http", None)
            if http is not None and not http.closed:
                await http.close()
            raise

    async def expect(
        self, kind: str, where: Callable[[Any], bool] | None = None, timeout: float = WAIT
    ) -> Any:
        """Return the data of the next event ``kind`` (matching ``where``)."""

        def take() -> tuple[bool, Any]:
            for i, (name, data) in enumerate(self.backlog):
                if name == kind and (where is None or where(data)):
                    del self.backlog[i]
                    return True, data
            return False, None

        async with asyncio.timeout(timeout), self._arrived:
            while True:
                found, data = take()
                if found:
                    return data
                await self._arrived.wait()

    async def silent(self, kind: str, within: float = QUIET) -> None:
        try:
            data = await self.expect(kind, timeout=within)
        except TimeoutError:
            return
        raise AssertionError(f"unexpected {kind}: {data}")

    async def call(self, event: str, data: Any = None, timeout: float = WAIT) -> Any:
        return await self.client.call(event, data, timeout=timeout)

    async def ok(self, event: str, data: Any = None) -> dict[str, Any]:
        ack = await self.call(event, data)
        assert isinstance(ack, dict) and ack["success"] is True, ack
        return ack

    async def fails(self, event: str, data: Any = None) -> str:
        ack = await self.call(event, data)
        assert isinstance(ack, dict) and ack["success"] is False, ack
        return str(ack["error"]["code"])

    async def join(self, room_id: str) -> dict[str, Any]:
        return await self.ok("room:join", {"roomId": room_id})

    async def say(
        self, room_id: str, text: str, *, message_id: str | None = None
    ) -> dict[str, Any]:
        message_id = message_id or f"m{next(_ids)}"
        return await self.ok(
            "chat:send", {"roomId": room_id, "text": text, "messageId": message_id}
        )

    async def disconnected(self, timeout: float = WAIT) -> str | None:
        """Wait for the disconnect; return its reason (``server disconnect`` …)."""
        async with asyncio.timeout(timeout):
            await self._disconnected.wait()
        return self.disconnect_reason

    async def close(self) -> None:
        if self.client.connected:
            await self.client.disconnect()


async def open_sio(
    server: FakeServer,
    user: str | None = None,
    *,
    token: str | None = None,
    transports: list[str] | None = None,
    ttl: float = 3600.0,
) -> SioUser:
    """Connect (auth payload) and read the ``connected`` welcome."""
    if token is None:
        assert user is not None
        token = server.issue_token(user, ttl=ttl)
    client = SioUser()
    await client.connect(server.sio_url, auth={"token": token}, transports=transports)
    client.welcome = await client.expect("connected")
    return client


OpenSio = Callable[..., Awaitable[SioUser]]


@asynccontextmanager
async def sio_users() -> AsyncIterator[OpenSio]:
    """``open_sio`` whose users are all disconnected at the end."""
    users: list[SioUser] = []

    async def open_user(server: FakeServer, user: str | None = None, **kw: Any) -> SioUser:
        client = await open_sio(server, user, **kw)
        users.append(client)
        return client

    try:
        yield open_user
    finally:
        for client in users:
            await client.close()
