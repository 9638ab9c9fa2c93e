"""The heartbeat of one connection: ping on an interval, drop a link that stops answering.

The RTT samples and the verdict on a missed pong go to the session (quality, RTO);
this module only sleeps, pings and aborts. One exception: while the reader has stopped
reading (backpressure from slow handlers), an unanswered ping proves nothing, since
the pong may be waiting unread; :class:`ReadPauses` tells the heartbeat so.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass

from .errors import RtClientError
from .session import Session
from .transports.base import Connection

__all__ = ["ReadPauses", "heartbeat"]

log = logging.getLogger("rtclient")


@dataclass(slots=True)
class ReadPauses:
    """Whether the connection's reader has stopped reading, and how often it began to."""

    paused: bool = False
    begun: int = 0


async def heartbeat(
    conn: Connection,
    *,
    interval: float,
    timeout: float,
    pauses: ReadPauses,
    session: Session,
    pump: Callable[[], None],
    counters: dict[str, int],
) -> None:
    """Ping every ``interval``; no pong within ``timeout`` drops the link.

    Returns when the link was dropped or the connection ended (the reader reports how).
    """
    while True:
        await asyncio.sleep(interval)
        begun = pauses.begun
        try:
            async with asyncio.timeout(timeout):
                rtt = await conn.ping()
            if rtt is None:
                continue  # the transport's own heartbeat watches this link
        except TimeoutError:
            if pauses.paused or begun != pauses.begun:
                # We stopped reading (backpressure): the pong may be waiting unread.
                counters["pongs_unread"] += 1
                continue
            counters["dead_links"] += 1
            log.warning("no pong within %.3g s: dropping a dead link", timeout)
            session.pong_missed()
            pump()
            conn.abort()
            return
        except RtClientError:
            return  # the reader reports how the connection ended
        session.pong(rtt)
        pump()
