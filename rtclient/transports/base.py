"""What a transport must do, and nothing more.

A transport opens one connection per ``connect`` call, with the token presented for
that attempt; the connection sends and receives envelopes (``{"type", "id",
"payload"}`` dicts, see docs/protocol.md) and reports how it closed. How envelopes look
on the wire (a codec over WebSocket frames, Socket.IO events) is the transport's
business.
It never reconnects by itself: rtclient owns the loop. Exceptions of the library
underneath are mapped here, at the boundary, to :mod:`rtclient.errors`:

- a failed attempt raises :class:`~rtclient.errors.TransportError` (network),
  :class:`~rtclient.errors.HandshakeRejected` (HTTP status),
  :class:`~rtclient.errors.TLSError` (the TLS handshake failed), or
  :class:`~rtclient.errors.ProtocolError` (the peer is not a WebSocket server);
- nothing else escapes: each transport maps through one
  :class:`~rtclient.transports.boundary.Boundary`, which turns what it does not know
  into a TransportError raised from the original;
- a broken connection raises :class:`~rtclient.errors.ConnectionLost` from ``recv``
  and ``send``, with the close code (None when no close frame arrived);
- a frame that cannot be decoded makes ``recv`` raise
  :class:`~rtclient.errors.ProtocolError`; the connection stays usable.
"""

from __future__ import annotations

from typing import Any, Protocol

__all__ = ["Connection", "Transport"]


class Connection(Protocol):
    """One open connection."""

    async def send(self, envelope: dict[str, Any]) -> None:
        """Send one envelope. Raises ConnectionLost if the connection is gone."""
        ...

    async def recv(self) -> object:
        """Wait for the next envelope (as decoded: the session validates it).

        Raises ConnectionLost when the connection closes, ProtocolError for a frame
        that cannot be decoded (the connection stays usable).
        """
        ...

    async def close(self, code: int = 1000, reason: str = "") -> None:
        """Close the connection (idempotent); returns when it is closed."""
        ...

    def abort(self) -> None:
        """Drop the connection at once, without a closing handshake (a dead link)."""
        ...

    # Optional: ``batchable = True`` on a connection that carries the raw protocol's
    # ``batch`` frames (the Client then batches when the server offers it).

    async def ping(self) -> float | None:
        """Send a ping and return the round-trip time in seconds once the pong arrives.

        None: this connection cannot measure RTT (its library keeps it alive itself).
        """
        ...


class Transport(Protocol):
    """Opens connections."""

    async def connect(self, url: str, *, token: str | None, open_timeout: float) -> Connection:
        """Open a connection to ``url`` presenting ``token``; give up after ``open_timeout`` s."""
        ...
