"""The servers of the scale benchmark, and how a rolling restart goes through them.

A :class:`Nodes` has URLs for the clients, starts, restarts every node one after the
other (:meth:`Nodes.rolling_restart`: the seconds each took until it was healthy
again) and stops. :data:`NODE_KINDS` names the kinds ``benchmarks.scale --nodes``
takes:

- ``single``: one in-memory node (``python -m benchmarks.server``, a FakeServer with
  the benchmark's limits lifted); its restart is a stop (SIGTERM: every client closed
  with 1001) and a new process on the same port. Its event log dies with the process:
  the clients are told of the lost part by a ``gap`` (a new epoch), as promised.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from typing import Protocol

from .harness import ServerProcess

__all__ = ["NODE_KINDS", "Nodes", "SingleNode"]


class Nodes(Protocol):
    @property
    def urls(self) -> list[str]: ...

    async def start(self) -> None: ...

    async def rolling_restart(self, say: Callable[[str], None]) -> list[float]:
        """Restart every node in turn; the seconds each took until healthy."""
        ...

    async def stop(self) -> None: ...


class SingleNode:
    """One in-memory node: a restart loses its log (a new epoch, announced as a gap)."""

    def __init__(self) -> None:
        self.server = ServerProcess()

    @property
    def urls(self) -> list[str]:
        return [self.server.ws_url]

    async def start(self) -> None:
        await self.server.start()

    async def rolling_restart(self, say: Callable[[str], None]) -> list[float]:
        began = time.monotonic()
        await self.server.kill(signal.SIGTERM)
        await self.server.start()
        took = time.monotonic() - began
        say(f"  node 1 restarted (SIGTERM, new process) in {took:.2f} s")
        return [took]

    async def stop(self) -> None:
        await self.server.kill(signal.SIGTERM)


NODE_KINDS: dict[str, Callable[[], Nodes]] = {"single": SingleNode}
