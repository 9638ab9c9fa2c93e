"""Admission of TCP connections: a cap per client address, counted before any byte is read.

aiohttp's ``web.Server`` (the protocol factory of every site) tells its manager about
each connection (``connection_made`` / ``connection_lost``).  :func:`guard` wraps those
two calls: a connection over ``max_per_address`` gets ``503 Service Unavailable`` with
``Retry-After`` and is closed before its request is read.

The header timeout needs no code here: aiohttp's ``keepalive_timeout`` is armed when
the connection opens and after each response, and closes a connection whose next
request head has not fully arrived by then (``FakeServer`` sets it to
``ServerConfig.header_timeout``).
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from typing import Any

from aiohttp import web

from .stats import Counters

__all__ = ["guard"]

log = logging.getLogger("fake_server.admission")

_REFUSAL = (
    b"HTTP/1.1 503 Service Unavailable\r\n"
    b"Retry-After: 1\r\n"
    b"Content-Type: text/plain\r\n"
    b"Content-Length: 34\r\n"
    b"Connection: close\r\n\r\n"
    b"too many connections from address\n"
)


def _address(transport: asyncio.Transport) -> str:
    peer = transport.get_extra_info("peername")
    return str(peer[0]) if isinstance(peer, tuple) and peer else "?"


def guard(server: web.Server, *, max_per_address: int, counters: Counters) -> None:
    """Cap ``server``'s open connections per client address at ``max_per_address``."""
    made = server.connection_made
    lost = server.connection_lost
    open_: Counter[str] = Counter()
    admitted: dict[Any, str] = {}

    def connection_made(handler: Any, transport: asyncio.Transport) -> None:
        made(handler, transport)
        address = _address(transport)
        if open_[address] >= max_per_address:
            counters.bump("connections_refused")
            log.info("refusing a connection from %s: %d open", address, open_[address])
            transport.write(_REFUSAL)
            transport.close()
            return
        open_[address] += 1
        admitted[handler] = address

    def connection_lost(handler: Any, exc: BaseException | None = None) -> None:
        address = admitted.pop(handler, None)
        if address is not None:
            open_[address] -= 1
            if not open_[address]:
                del open_[address]
        lost(handler, exc)

    # Instance attributes shadow the methods the protocol handlers call.
    server.connection_made = connection_made  # type: ignore[method-assign]
    server.connection_lost = connection_lost  # type: ignore[method-assign]
