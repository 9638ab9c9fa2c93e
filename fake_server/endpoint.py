"""What the server needs from an endpoint (``/ws``, Socket.IO): one interface, no special cases.

:class:`~fake_server.server.FakeServer` holds its endpoints as a tuple of
:class:`Endpoint` and closes, aborts and waits for them all the same way.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from aiohttp import web

from .peer import QueuedPeer

__all__ = ["Endpoint"]


class Endpoint(Protocol):
    """One transport's side of the server, serving its peers to the hub."""

    def __len__(self) -> int:
        """Open connections (sessions), authenticated or not."""

    def attach(self, app: web.Application) -> None:
        """Add this endpoint's routes to ``app``."""

    def start(self) -> None:
        """Start the endpoint's own background work (after the app is set up)."""

    def resumed(self) -> None:
        """The server was paused and runs again (heartbeat deadlines start over)."""

    def owns(self, peer: object) -> bool:
        """Whether ``peer`` is one of this endpoint's connections."""

    def close_all(self, code: int, reason: str) -> list[QueuedPeer[Any]]:
        """Queue a close on every connection; return their peers."""

    def abort_all(self) -> list[QueuedPeer[Any]]:
        """Cut every connection at once (no close); return their peers."""

    async def wait_finished(self, peers: Sequence[QueuedPeer[Any]], within: float) -> bool:
        """Wait until ``peers`` (this endpoint's) are gone; False after ``within`` s."""

    async def close_sessions(self, within: float) -> None:
        """Close what :meth:`close_all` does not reach (sessions that never connected)."""

    async def shutdown(self) -> None:
        """Cut what is left and end the endpoint's own tasks (after :meth:`close_all`)."""
