"""One function says what a failure means for the reconnect loop: retry, refresh, or stop.

The table (close codes from RFC 6455 and docs/protocol.md):

=====================================================  ==========================
failure                                                verdict
=====================================================  ==========================
network error, timeout, connection refused             retry
close 1000/1001/1005/1006/1009/1011/1013/1014          retry (the reason may carry ``retryAfter``)
close 1012 (Service Restart: the server drains)        retry, marked ``drain``: go elsewhere now
close 1002/1003/1007/1008/1010 (protocol violations)   fatal: ProtocolError
close 4001, 3000                                       fatal: Unauthorized
close 4002                                             refresh the token, retry at once
close 4003, 3003                                       fatal: Forbidden
close 4000-4999 (other application codes)              fatal: ProtocolError
HTTP 5xx, 408, 429                                     retry (``Retry-After`` respected)
Socket.IO connect_error not about credentials          retry (``data.retryAfter`` respected)
HTTP 401 / 403                                         fatal: Unauthorized / Forbidden
HTTP other 4xx, anything else                          fatal: ProtocolError
=====================================================  ==========================

What the client then does (delays, the counts behind "refresh" and "fatal", server
hints) is :mod:`rtclient.reconnect`'s decision; it turns a first 4001 into a refresh
when the token provider can hand out another token.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from .errors import (
    ConnectionLost,
    ConnectRefused,
    Forbidden,
    HandshakeRejected,
    ProtocolError,
    RtClientError,
    TokenExpired,
    TransportError,
    Unauthorized,
)
from .hints import reason_delay

__all__ = ["SERVICE_RESTART", "Action", "Verdict", "classify"]

SERVICE_RESTART = 1012
"""The close code of a server that drains (RFC 6455's registry: Service Restart)."""
_PROTOCOL_CLOSE = frozenset({1002, 1003, 1007, 1008, 1010})


class Action(enum.Enum):
    """What the reconnect loop does next."""

    RETRY = "retry"
    REFRESH = "refresh"
    FATAL = "fatal"


@dataclass(frozen=True, slots=True)
class Verdict:
    """The classification of one failure; ``error`` is what the application is told."""

    action: Action
    error: RtClientError
    retry_after: float | None = None
    """The server's hint (Retry-After, ``retryAfter=``), parsed and not yet capped."""
    drain: bool = False
    """The server is going away on purpose (close 1012, Service Restart): not the
    link's fault nor the node's, so the client moves to another URL at once."""


def classify(exc: BaseException) -> Verdict:
    """Classify a connection failure (an exception a transport raised)."""
    if isinstance(exc, ConnectionLost):
        return _classify_close(exc)
    if isinstance(exc, HandshakeRejected):
        return _classify_status(exc)
    if isinstance(exc, ConnectRefused):
        return Verdict(Action.RETRY, exc, exc.retry_after)
    if isinstance(exc, TransportError):
        return Verdict(Action.RETRY, exc)
    if isinstance(exc, RtClientError):
        return Verdict(Action.FATAL, exc)
    return Verdict(Action.FATAL, ProtocolError(f"unexpected failure: {exc!r}"))


def _classify_close(exc: ConnectionLost) -> Verdict:
    code = exc.code
    if code is None or (1000 <= code < 3000 and code not in _PROTOCOL_CLOSE):
        hint = reason_delay(exc.reason) if code is not None else None
        return Verdict(Action.RETRY, exc, hint, drain=code == SERVICE_RESTART)
    if code in _PROTOCOL_CLOSE:
        return Verdict(Action.FATAL, ProtocolError(f"server closed with {code}: {exc.reason}"))
    if code in (4001, 3000):
        return Verdict(Action.FATAL, Unauthorized(exc.reason or "invalid credentials", code=code))
    if code == 4002:
        return Verdict(Action.REFRESH, TokenExpired(exc.reason or "token expired", code=code))
    if code in (4003, 3003):
        return Verdict(Action.FATAL, Forbidden(exc.reason or "forbidden", code=code))
    if 4000 <= code < 5000:
        return Verdict(
            Action.FATAL, ProtocolError(f"server closed with application code {code}: {exc.reason}")
        )
    return Verdict(Action.RETRY, exc)


def _classify_status(exc: HandshakeRejected) -> Verdict:
    status = exc.status
    if status >= 500 or status in (408, 429):
        return Verdict(Action.RETRY, exc, exc.retry_after)
    if status == 401:
        return Verdict(Action.FATAL, Unauthorized("HTTP 401 at handshake", code=status))
    if status == 403:
        return Verdict(Action.FATAL, Forbidden("HTTP 403 at handshake", code=status))
    return Verdict(Action.FATAL, ProtocolError(f"HTTP {status} at handshake"))
