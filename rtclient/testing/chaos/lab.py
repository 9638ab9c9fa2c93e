"""A chaos lab: a FakeServer, a FaultProxy in front of it, and bots chatting through it.

::

    async with Lab(LabConfig(bots=4, rooms=3, seed=7)) as lab:
        stop = asyncio.Event()
        senders = lab.start_senders(stop, rate=25)   # messages per second per bot
        await FAULTS["blackhole"](lab, random.Random(7))
        stop.set(); await senders
        await lab.settle(timeout=20)                # all acks in, every room synced
    report = check(lab.history)

Every bot's client reaches the server through the proxy (WebSocket ``/ws``, or Socket.IO
on the proxy's HTTP URL), gets a fresh token from the server on every attempt (so
``expire_tokens`` is survivable) and is recorded by the lab's :class:`History`.
Leaving ``async with`` closes the clients, the proxy and the server; ``leftover`` then
lists any task a client left behind.
"""

from __future__ import annotations

from collections.abc import Callable
from types import TracebackType
from typing import Self

from ..proxy import FaultProxy
from .fleet import Bot, Figures, Fleet, LabConfig, Transport, percentile, recovery_times
from .history import History

__all__ = ["Bot", "Figures", "Lab", "LabConfig", "percentile", "recovery_times"]


class Lab(Fleet):
    """Server, proxy, bots and history for one chaos run. Use ``async with``."""

    def __init__(self, config: LabConfig, history: History | None = None) -> None:
        from fake_server import FakeServer  # the lab is the one place that needs it

        super().__init__(config, history)
        self.server = FakeServer(
            rate_per_second=1_000_000.0,  # no rate limit to speak of
            rate_burst=1_000_000,
            close_timeout=1.0,
            auth_timeout=2.0,
            **config.server,
        )
        self._proxy: FaultProxy | None = None

    @property
    def proxy(self) -> FaultProxy:
        """The FaultProxy every bot connects through."""
        if self._proxy is None:
            raise RuntimeError("the lab has not been started")
        return self._proxy

    # -- lifecycle ---------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        await self.server.start()
        try:
            self._proxy = await FaultProxy(
                upstream=(self.server.host, self.server.port), seed=self.config.seed
            ).start()
            await self._start_bots()
        except BaseException:
            await self.aclose()
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close every client, the proxy and the server; fill :attr:`leftover`."""
        await self._close_bots()
        if self._proxy is not None:
            await self._proxy.close()
        await self.server.stop()

    def _url(self, transport: Transport) -> str:
        return self.proxy.url("http") if transport == "socketio" else self.proxy.url("ws", "/ws")

    def _token_for(self, user: str) -> Callable[[], str]:
        ttl = self.config.token_ttl
        return lambda: self.server.issue_token(user, ttl=ttl)

    def _head(self, room: str) -> tuple[str | None, int]:
        events = self.server.room_events(room)
        return self.server.epoch, (events[-1]["eventId"] if events else 0)
