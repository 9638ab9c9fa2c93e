"""Fault-injection tests for code built on rtclient, with plain pytest and FakeServer.

Copy this file next to your bot's tests. Each test puts the server through a fault
(a restart, lost acks, refused handshakes) and checks what your users would see.

Run: ``python examples/test_fault_injection_example.py`` (or ``pytest`` on this file; in
rtclient's clone that takes the test extra, whose pytest-xdist its settings use):
an in-process FakeServer on a free port. Against ``rtclient serve``, the faults go over
its HTTP admin API (``POST /admin/faults/<name>``)::

    export RTCLIENT_URL=ws://127.0.0.1:8765/ws RTCLIENT_ADMIN_TOKEN=…
    pytest examples/test_fault_injection_example.py
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
import pytest_asyncio

from fake_server import FakeServer
from rtclient import Backoff, Client, ConnectionState, Event

FAST = Backoff(base=0.02, cap=0.3, first_delay=0.02, stable_after=0.5)


class Lab:
    """A server to break: an in-process FakeServer, or ``rtclient serve`` over HTTP."""

    def __init__(self, server: FakeServer | None, url: str, admin: str | None = None) -> None:
        self.server = server
        self.url = url
        self.http = url.replace("ws://", "http://", 1).replace("wss://", "https://", 1)
        self.http = self.http.removesuffix("/ws")
        self._admin = admin
        self._session: aiohttp.ClientSession | None = None

    async def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                headers={"Authorization": f"Bearer {self._admin}"}
            )
        async with self._session.post(f"{self.http}{path}", json=body) as response:
            response.raise_for_status()
            result: dict[str, Any] = await response.json()
            return result

    async def token(self, user: str) -> str:
        if self.server is not None:
            return self.server.issue_token(user)
        return str((await self._post("/admin/token", {"userId": user, "ttl": 600}))["token"])

    async def restart(self, downtime: float) -> None:
        if self.server is not None:
            self.server.spawn(self.server.restart(downtime=downtime))
        else:
            await self._post("/admin/faults/restart", {"downtime": downtime})

    async def lose_next_acks(self, n: int) -> None:
        if self.server is not None:
            await self.server.lose_next_acks(n)
        else:
            await self._post("/admin/faults/lose_next_acks", {"n": n})

    async def reject_handshakes(self, n: int, status: int) -> None:
        if self.server is not None:
            await self.server.reject_handshakes(n, status)
        else:
            await self._post("/admin/faults/reject_handshakes", {"n": n, "status": status})

    async def drop_connections(self) -> None:
        if self.server is not None:
            await self.server.drop_connections()
        else:
            await self._post("/admin/faults/drop_connections", {})

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()


@pytest_asyncio.fixture
async def lab() -> AsyncIterator[Lab]:
    url = os.environ.get("RTCLIENT_URL")
    if url:
        remote = Lab(None, url, os.environ["RTCLIENT_ADMIN_TOKEN"])
        yield remote
        await remote.close()
        return
    async with FakeServer() as server:
        yield Lab(server, server.ws_url)


@pytest.fixture
def room() -> str:
    """A fresh room per test, so that runs against a shared server do not mix."""
    return f"test-{uuid.uuid4().hex[:12]}"


async def client_for(lab: Lab, user: str, room: str, **options: Any) -> Client:
    client = Client(lab.url, token=await lab.token(user), backoff=FAST, **options)
    await client.connect()
    await client.join(room)
    return client


async def received(client: Client, count: int) -> list[Event]:
    """The next ``count`` chat messages ``client`` gets (5 s at most)."""
    events: list[Event] = []
    done = asyncio.Event()

    def collect(event: Event) -> None:
        events.append(event)
        if len(events) >= count:
            done.set()

    client.on("chat:message", collect)
    try:
        await asyncio.wait_for(done.wait(), 5)
    finally:
        client.off("chat:message", collect)
    return events


@pytest.mark.asyncio
async def test_messages_sent_during_a_restart_arrive_once_in_order(lab: Lab, room: str) -> None:
    alice = await client_for(lab, "alice", room)
    bob = await client_for(lab, "bob", room)
    try:
        listening = asyncio.create_task(received(bob, 3))
        await lab.restart(downtime=0.3)
        await alice.wait_for(ConnectionState.RECONNECTING, timeout=5)
        acks = await asyncio.gather(*(alice.send(room, f"msg {i}") for i in range(3)))
        events = await listening
        assert [e.text for e in events] == ["msg 0", "msg 1", "msg 2"]
        assert [e.event_id for e in events] == [a.event_id for a in acks]
    finally:
        await alice.close()
        await bob.close()


@pytest.mark.asyncio
async def test_a_lost_ack_does_not_make_a_second_message(lab: Lab, room: str) -> None:
    alice = await client_for(lab, "alice", room, ack_timeout=0.3)
    bob = await client_for(lab, "bob", room)
    try:
        listening = asyncio.create_task(received(bob, 1))
        await lab.lose_next_acks(1)
        ack = await alice.send(room, "only once")  # resent after 0.3 s without an ack
        assert ack.duplicate  # the server recognised the resend by its message id
        assert [e.text for e in await listening] == ["only once"]
        assert alice.stats()["resent"] >= 1
    finally:
        await alice.close()
        await bob.close()


@pytest.mark.asyncio
async def test_refused_handshakes_are_retried(lab: Lab, room: str) -> None:
    alice = await client_for(lab, "alice", room)
    try:
        await lab.reject_handshakes(2, 503)
        await lab.drop_connections()
        ack = await alice.send(room, "made it")
        assert ack.event_id is not None and ack.event_id >= 1  # None: a malformed ack
        assert alice.stats()["attempts"] >= 4  # first connect, two refusals, the one that worked
    finally:
        await alice.close()


if __name__ == "__main__":
    # A fresh interpreter: pytest must import this module itself to rewrite its asserts.
    # -o addopts= : not the settings of the project around it (rtclient's clone wants
    # pytest-xdist there, which "pip install pytest pytest-asyncio" does not install).
    command = [sys.executable, "-m", "pytest", __file__, "-q", "-p", "no:cacheprovider"]
    command += ["-o", "addopts="]
    sys.exit(subprocess.call(command))
