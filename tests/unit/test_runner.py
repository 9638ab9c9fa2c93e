"""The Client's root task (rtclient._runner): close() interrupts what the loop awaits,
and only that cancellation is absorbed. No sockets: the transport never answers."""

from __future__ import annotations

import asyncio

import pytest

from rtclient import Client, ConnectionState
from rtclient.testing import wait_until
from rtclient.transports import Connection


class NeverOpens:
    """A transport whose attempts hang (it ignores ``open_timeout``)."""

    def __init__(self) -> None:
        self.attempts = 0

    async def connect(self, url: str, *, token: str | None, open_timeout: float) -> Connection:
        self.attempts += 1
        await asyncio.get_running_loop().create_future()  # never done
        raise AssertionError("unreachable")


async def test_close_interrupts_an_attempt_that_never_ends() -> None:
    transport = NeverOpens()
    client = Client("ws://127.0.0.1:9/ws", transport=transport)
    await client.connect(wait=False)
    await wait_until(lambda: transport.attempts == 1)
    await asyncio.wait_for(client.close(), 5)
    root = client._runner.task
    assert root is not None and root.done() and not root.cancelled()
    assert client.state is ConnectionState.CLOSED
    assert transport.attempts == 1


async def test_a_cancellation_from_outside_is_not_absorbed() -> None:
    transport = NeverOpens()
    client = Client("ws://127.0.0.1:9/ws", transport=transport)
    await client.connect(wait=False)
    await wait_until(lambda: transport.attempts == 1)
    root = client._runner.task
    assert root is not None
    root.cancel()
    with pytest.raises(asyncio.CancelledError):
        await root
    assert client.state is ConnectionState.CLOSED  # its clean-up ran all the same
    assert not [t for t in asyncio.all_tasks() if t.get_name().startswith("rtclient")]
