"""What both endpoints decide the same way about a handshake and a connection's end.

Pure functions (no I/O): reading a Bearer header or a query token, the HTTP refusal a
``reject_handshakes`` fault answers with, the ``retryAfter=<s>`` close reason, and the
(code, reason) the hub is told when a connection ends.  The endpoints
(:mod:`fake_server.ws_endpoint`, :mod:`fake_server.sio_endpoint`) call them so that
``/ws`` and Socket.IO cannot drift apart.
"""

from __future__ import annotations

import logging
import urllib.parse
from typing import Any

from aiohttp import web

from .faults import Rejection
from .peer import QueuedPeer

__all__ = ["bearer_token", "closed_as", "query_token", "refusal", "retry_reason", "unavailable"]

log = logging.getLogger("fake_server.handshake")


def bearer_token(header: str | None) -> str | None:
    """The token of an ``Authorization`` header.

    ``None`` when there is no header; ``""`` (refused as invalid) when the scheme is not
    ``Bearer``.
    """
    if header is None:
        return None
    scheme, _, token = header.partition(" ")
    return token if scheme.lower() == "bearer" else ""


def query_token(query_string: str, *, allowed: bool) -> str | None:
    """``?token=`` of the upgrade URL when the server accepts it, else ``None``."""
    if not allowed:
        return None
    values = urllib.parse.parse_qs(query_string, keep_blank_values=True).get("token")
    return values[0] if values else None


def retry_reason(retry_after: float | None) -> str:
    """The close reason that carries a retry hint: ``retryAfter=<seconds>`` (or "")."""
    return "" if retry_after is None else f"retryAfter={retry_after:g}"


def refusal(rejection: Rejection, endpoint: str) -> web.Response:
    """The HTTP answer to a handshake a ``reject_handshakes`` fault refuses."""
    headers = {}
    if rejection.retry_after is not None:
        headers["Retry-After"] = f"{rejection.retry_after:g}"
    log.info("%s handshake refused with HTTP %d (fault)", endpoint, rejection.status)
    return web.Response(status=rejection.status, headers=headers, text="refused by fault\n")


def unavailable(retry_after: float, endpoint: str) -> web.Response:
    """HTTP 503 to a handshake while the node cannot serve (its Redis is out of reach)."""
    log.info("%s handshake refused with HTTP 503: shared store unreachable", endpoint)
    return web.Response(
        status=503,
        headers={"Retry-After": f"{max(1, round(retry_after))}"},
        text="shared store unreachable; try another node\n",
    )


def closed_as(peer: QueuedPeer[Any], otherwise: tuple[int | None, str]) -> tuple[int | None, str]:
    """(code, reason) of a connection that ended, as the hub logs it.

    Aborted: 1006 ``aborted``; closed by this side: the code and reason it sent;
    else ``otherwise`` (what the transport saw of the peer's own close).
    """
    if peer.aborted:
        return 1006, "aborted"
    if peer.close_requested is not None:
        code, reason = peer.close_requested
        return code, reason or "closed by server"
    return otherwise
