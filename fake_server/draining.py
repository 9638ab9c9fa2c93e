"""Draining: a server that goes away on purpose sends its clients elsewhere, losing nothing.

:func:`drain_peers` is what :meth:`FakeServer.drain` does before it stops (the steps are
in docs/protocol.md, "Draining"): refuse new handshakes (503 + ``Retry-After``), give
every authenticated connection a ``server:draining`` event, then close each with 1012
(Service Restart, ``retryAfter=<s>``) behind the acks it is owed — all at once, or
spread over ``spread`` seconds so that a big fleet does not arrive at the other nodes
in the same instant (NATS's lame-duck mode does the same) — and wait, bounded, for the
closes to complete, cutting what is left.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any

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
    peers = [conn.peer for conn in list(hub.connections.values())]
    notice = event("server:draining", {"retryAfter": retry_after, "reason": "draining"})
    for peer in peers:
        peer.send(notice)
    if spread > 0 and peers:
        step = spread / len(peers)
        for peer in peers:
            await asyncio.sleep(step)
            peer.close(CloseCode.SERVICE_RESTART, reason)
    # Everything else (and every peer, when not spread): the unauthenticated too.
    closing = [(e, e.close_all(CloseCode.SERVICE_RESTART, reason)) for e in endpoints]
    in_time = await asyncio.gather(*(e.wait_finished(ps, timeout) for e, ps in closing))
    for (_, closed), done in zip(closing, in_time, strict=True):
        if not done:
            _cut(closed)
    log.info("drained: %s", "every connection left in time" if all(in_time) else "cut some")
    return all(in_time)


def _cut(peers: list[QueuedPeer[Any]]) -> None:
    for peer in peers:
        peer.abort()
