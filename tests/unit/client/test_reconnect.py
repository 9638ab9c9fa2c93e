"""Backoff schedules of a Client over MemoryTransport, in the loop's virtual time."""

from __future__ import annotations

import pytest

from rtclient import Backoff, ConnectionState
from rtclient.errors import TransportError

from .harness import gaps, harness, let_time_pass, now

pytestmark = pytest.mark.looptime


async def test_refused_attempts_back_off_exponentially_up_to_the_cap() -> None:
    async with harness() as h:
        for _ in range(6):
            h.transport.refuse_next(TransportError("refused"))
        async with h.client(backoff=Backoff(base=1.0, cap=8.0, jitter="none")) as client:
            await client.wait_for(ConnectionState.CONNECTED, timeout=60)
        assert gaps(h.transport.attempt_times) == [1.0, 2.0, 4.0, 8.0, 8.0, 8.0]
        assert h.hub.welcomed == 1


async def test_a_stable_connection_resets_the_series_and_a_quick_drop_does_not() -> None:
    backoff = Backoff(base=1.0, cap=30.0, jitter="none", first_delay=0.05, stable_after=10.0)
    async with harness() as h:
        for _ in range(3):
            h.transport.refuse_next(TransportError("refused"))
        async with h.client(backoff=backoff, ping_interval=None) as client:
            await client.wait_for(ConnectionState.CONNECTED, timeout=60)
            assert gaps(h.transport.attempt_times) == [1.0, 2.0, 4.0]
            await let_time_pass(60)  # stable: the series starts again
            dropped = now()
            h.hub.link.abort()
            await h.hub.wait_welcomed(2, timeout=60)
            assert h.transport.attempt_times[-1] - dropped <= 0.05
            # Dropped before it was stable: the delays grow again from base.
            h.hub.link.abort()
            await h.hub.wait_welcomed(3, timeout=60)
            h.hub.link.abort()
            await h.hub.wait_welcomed(4, timeout=60)
            assert gaps(h.transport.attempt_times)[-2:] == [1.0, 2.0]
            assert client.stats()["reconnects"] == 3


async def test_a_retry_after_hint_is_obeyed_but_capped() -> None:
    async with harness() as h:
        client = h.client(max_server_delay=60.0, ping_interval=None)
        async with client:
            await h.hub.link.close(1013, "retryAfter=45")
            await h.hub.wait_welcomed(2, timeout=120)
            assert gaps(h.transport.attempt_times)[-1] == pytest.approx(45.0, abs=1e-3)
            started = now()
            await h.hub.link.close(1013, "retryAfter=86400")
            await h.hub.wait_welcomed(3, timeout=120)
            assert now() - started == pytest.approx(60.0, abs=0.1)


async def test_close_during_a_backoff_sleep_returns_at_once_in_virtual_time() -> None:
    async with harness() as h:
        for _ in range(10):
            h.transport.refuse_next(TransportError("refused"))
        client = h.client(backoff=Backoff(base=20.0, cap=300.0, jitter="none"))
        await client.connect(wait=False)
        await h.transport.wait_attempts(3, timeout=600)
        started = now()
        await client.close()
        assert now() - started < 1.0
        assert client.state is ConnectionState.CLOSED
