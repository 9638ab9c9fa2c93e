"""Backoff schedules of a Client over MemoryTransport, in the loop's virtual time."""

from __future__ import annotations

import pytest

from rtclient import Backoff, ConnectionState
from rtclient.errors import TransportError

from .harness import harness, now

pytestmark = pytest.mark.looptime


def gaps(times: list[float]) -> list[float]:
    return [round(b - a, 3) for a, b in zip(times, times[1:], strict=False)]


async def test_refused_attempts_back_off_exponentially_up_to_the_cap() -> None:
    async with harness() as h:
        for _ in range(6):
            h.transport.refuse_next(TransportError("refused"))
        async with h.client(backoff=Backoff(base=1.0, cap=8.0, jitter="none")) as client:
            await client.wait_for(ConnectionState.CONNECTED, timeout=60)
        assert gaps(h.transport.attempt_times) == [1.0, 2.0, 4.0, 8.0, 8.0, 8.0]
        assert h.hub.welcomed == 1
