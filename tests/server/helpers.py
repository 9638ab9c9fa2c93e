"""A plain ``websockets`` test client for fake_server, and waiting helpers.

Nothing here sleeps to synchronise: every wait is for a frame, a close or a condition,
bounded by a timeout.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import time
from collections.abc import Callable
from typing import Any

import websockets
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

WAIT = 3.0
"""Upper bound for anything that should happen "now" (generous for slow CI)."""
QUIET = 0.25
"""How long "nothing arrives" is watched for."""

_ids = itertools.count(1)


class WsClient:
    """One connection; frames that were not asked for yet are kept in ``backlog``."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.backlog: list[dict[str, Any]] = []
        self.welcome: dict[str, Any] = {}
        """The ``connected`` payload, once the fixture has read it."""

    async def send(self, obj: Any) -> None:
        await self.ws.send(obj if isinstance(obj, str | bytes) else json.dumps(obj))

    async def _recv(self, timeout: float) -> dict[str, Any]:
        async with asyncio.timeout(timeout):
            raw = await self.ws.recv()
        frame = json.loads(raw)
        assert isinstance(frame, dict)
        return frame

    async def expect(
        self,
        kind: str,
        where: Callable[[dict[str, Any]], bool] | None = None,
        timeout: float = WAIT,
    ) -> dict[str, Any]:
        """Return the payload of the next frame of type ``kind`` (matching ``where``)."""

        def matches(frame: dict[str, Any]) -> bool:
            return frame["type"] == kind and (where is None or where(frame))

        for i, frame in enumerate(self.backlog):
            if matches(frame):
                del self.backlog[i]
                return frame.get("payload", {})
        deadline = time.monotonic() + timeout
        while True:
            frame = await self._recv(max(0.0, deadline - time.monotonic()))
            if matches(frame):
                return frame.get("payload", {})
            self.backlog.append(frame)

    async def expect_ack(self, request_id: str, timeout: float = WAIT) -> dict[str, Any]:
        return await self.expect("ack", lambda f: f.get("id") == request_id, timeout)

    async def request(
        self, kind: str, payload: dict[str, Any] | None = None, *, id: str | None = None
    ) -> dict[str, Any]:
        """Send a request with an id and return its ack payload."""
        request_id = id or f"r{next(_ids)}"
        await self.send({"type": kind, "id": request_id, "payload": payload or {}})
        return await self.expect_ack(request_id)

    async def ok(self, kind: str, payload: dict[str, Any] | None = None, **kw: Any) -> Any:
        ack = await self.request(kind, payload, **kw)
        assert ack["success"] is True, ack
        return ack

    async def fails(self, kind: str, payload: dict[str, Any] | None = None, **kw: Any) -> str:
        """Send a request that must be refused; return the error code."""
        ack = await self.request(kind, payload, **kw)
        assert ack["success"] is False, ack
        return str(ack["error"]["code"])

    async def silent(self, kind: str, within: float = QUIET) -> None:
        """Assert that no frame of type ``kind`` arrives within ``within`` seconds."""
        try:
            payload = await self.expect(kind, timeout=within)
        except TimeoutError:
            return
        raise AssertionError(f"unexpected {kind}: {payload}")

    async def closed(self, timeout: float = WAIT) -> tuple[int | None, str]:
        """Wait for the connection to close; return the received (code, reason).

        ``(None, "")`` means no close frame came: the TCP connection was cut (1006).
        """
        async with asyncio.timeout(timeout):
            while True:
                try:
                    raw = await self.ws.recv()
                except ConnectionClosed as exc:
                    if exc.rcvd is None:
                        return None, ""
                    return exc.rcvd.code, exc.rcvd.reason
                self.backlog.append(json.loads(raw))

    async def join(self, room_id: str) -> dict[str, Any]:
        return await self.ok("room:join", {"roomId": room_id})

    async def say(self, room_id: str, text: str, *, id: str | None = None) -> dict[str, Any]:
        return await self.ok("chat:send", {"roomId": room_id, "text": text}, id=id)


async def open_ws(url: str, headers: dict[str, str] | None = None, **kw: Any) -> WsClient:
    ws = await websockets.connect(
        url,
        additional_headers=headers,
        ping_interval=None,
        max_size=None,
        open_timeout=WAIT,
        close_timeout=1,
        **kw,
    )
    return WsClient(ws)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def unsigned_token(header: dict[str, Any], claims: dict[str, Any], signature: bytes) -> str:
    """Assemble a JWT by hand (for ``alg: none`` and forged algorithm tests)."""

    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    return ".".join(
        [b64(json.dumps(header).encode()), b64(json.dumps(claims).encode()), b64(signature)]
    )
