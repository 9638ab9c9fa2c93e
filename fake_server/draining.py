"""Draining: a server that goes away on purpose sends its clients elsewhere, losing nothing.

:func:`drain_peers` is what :meth:`FakeServer.drain` does before it stops (the steps are
in docs/protocol.md, "Draining"): refuse new handshakes (503 + ``Retry-After``), give
every authenticated connection a ``server:draining`` event, then close each with 1012
(Service Restart, ``retryAfter=<s>``) behind the acks it is owed (on a Redis node:
behind the requests its lane is still carrying out) — all at once, or
spread over ``spread`` seconds so that a big fleet does not arrive at the other nodes
in the same instant (NATS's lame-duck mode does the same) — and wait, bounded, for the
closes to complete, cutting what is left.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any

from .connection import Connection
from .endpoint import Endpoint
from .envelope import event
from .errors import CloseCode
from .faults import FaultState, Rejection
from .handshake import retry_reason
from .hub import Hub
from .peer import QueuedPeer

__all__ = ["drain_peers"]

log = logging.getLogger("fake_server")


async def drain_peers(
    hub: Hub,
    endpoints: Sequence[Endpoint],
    faults: FaultState,
    *,
    timeout: float,
    retry_after: float,
    spread: float = 0.0,
) -> bool:
    """Refuse newcomers, tell and close every connection; True if all left in time.

    Handshakes stay refused afterwards (until ``faults.draining`` is cleared): the
    caller stops the server next.
    """
    if not (timeout >= 0 and retry_after >= 0 and spread >= 0):
        raise ValueError("timeout, retry_after and spread must be >= 0")
    log.info("draining: timeout=%.3fs retryAfter=%g spread=%gs", timeout, retry_after, spread)
    faults.draining = Rejection(503, retry_after)
    reason = retry_reason(retry_after)
    loop = asyncio.get_running_loop()
    conns = list(hub.connections.values())
    notice = event("server:draining", {"retryAfter": retry_after, "reason": "draining"})
    for conn in conns:
        conn.peer.send(notice)
    queued: list[asyncio.Future[None]] = []
    step = spread / len(conns) if spread > 0 and conns else 0.0
    try:
        for conn in conns:
            if step:
                await asyncio.sleep(step)
            if (waiting := _close_behind_requests(conn, reason)) is not None:
                queued.append(waiting)
        deadline = loop.time() + timeout
        if queued:
            await asyncio.wait(queued, timeout=timeout)
    finally:  # also when the drain is cancelled (a second signal)
        for waiting in queued:
            waiting.cancel()
    # Everything else (the unauthenticated too, and a lane that did not get there in time).
    closing = [(e, e.close_all(CloseCode.SERVICE_RESTART, reason)) for e in endpoints]
    left = max(0.0, deadline - loop.time())
    in_time = await asyncio.gather(*(e.wait_finished(ps, left) for e, ps in closing))
    for (_, closed), done in zip(closing, in_time, strict=True):
        if not done:
            _cut(closed)
    if not all(in_time):
        # A cut connection's reader may wait for room on its lane, behind requests
        # that wait for Redis (each up to redis_timeout): drop them, so that its
        # handler ends now, not after the lane (the stop that follows waits for it).
        for conn in list(hub.connections.values()):
            if conn.lane is not None:
                conn.lane.close()
    log.info("drained: %s", "every connection left in time" if all(in_time) else "cut some")
    return all(in_time)


def _close_behind_requests(conn: Connection, reason: str) -> asyncio.Future[None] | None:
    """Queue ``conn``'s close 1012 behind the requests it has sent so far.

    Inline (in memory) they are all answered already: the close is queued now (None).
    On a lane (Redis) the close is queued by the lane itself once the requests ahead
    of it are carried out and answered; the future is done then. The requests read
    after that are not carried out (the lane's work checks the close first:
    ``Intake._after_close``).
    """
    lane, peer = conn.lane, conn.peer
    if lane is None or lane.closed or not len(lane) or not isinstance(peer, QueuedPeer):
        peer.close(CloseCode.SERVICE_RESTART, reason)
        return None
    queued = asyncio.Event()

    async def close() -> None:
        peer.close(CloseCode.SERVICE_RESTART, reason)
        queued.set()

    async def queued_or_gone() -> None:
        # A connection that goes meanwhile drops its lane, this close with it.
        waits = {asyncio.ensure_future(queued.wait()), asyncio.ensure_future(peer.finished.wait())}
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for wait in waits:
                wait.cancel()

    lane.submit(close())
    return asyncio.ensure_future(queued_or_gone())


def _cut(peers: list[QueuedPeer[Any]]) -> None:
    for peer in peers:
        peer.abort()
