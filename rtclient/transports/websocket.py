"""Raw WebSocket transport on the ``websockets`` library (asyncio implementation).

The token goes in the ``Authorization: Bearer`` header of the upgrade request, never
in the URL. websockets' own reconnection is not used (one ``connect`` is one
attempt) and its exceptions are mapped to :mod:`rtclient.errors` here, by one
:class:`~rtclient.transports.boundary.Boundary`.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import websockets
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import (
    ConnectionClosed,
    InvalidHandshake,
    InvalidMessage,
    InvalidStatus,
    InvalidURI,
)

from ..codec import Codec, negotiated, offered_subprotocols
from ..errors import (
    ConnectionLost,
    HandshakeRejected,
    ProtocolError,
    RtClientError,
    TransportError,
)
from ..hints import parse_delay
from ..redact import RedactingLogger, redact
from .boundary import Boundary, bearer_headers
from .deflate import deflate_factory

__all__ = ["WebSocketConnection", "WebSocketTransport"]


class WebSocketTransport:
    """Opens WebSocket connections.

    :param codec: the codec to use (``"json"``, ``"msgpack"`` or a Codec), offered as the
        subprotocol ``rtclient.v1.<name>``; or ``codecs``: several names, in order of
        preference, for the server to choose from. A server that chooses none gets JSON.
    :param compression: offer permessage-deflate; messages under
        ``compression_threshold`` bytes are sent uncompressed, windows are at most
        ``compression_window_bits``; decompressed size is bounded by ``max_size``.
    :param max_size: largest incoming frame, in bytes.
    :param ping_interval: seconds between keepalive pings of the websockets library;
        off by default because the Client runs its own heartbeat (it measures RTT).
    :param ping_timeout: close the connection if a pong takes longer than this.
    :param options: passed on to :func:`websockets.asyncio.client.connect`.

    The library's logger is wrapped so that headers and frames it logs at DEBUG level
    never show the token.
    """

    def __init__(
        self,
        *,
        codec: Codec | str | None = None,
        codecs: tuple[str, ...] | None = None,
        compression: bool = True,
        compression_threshold: int = 256,
        compression_window_bits: int = 15,
        max_size: int | None = 1024 * 1024,
        ping_interval: float | None = None,
        ping_timeout: float | None = None,
        close_timeout: float = 5.0,
        **options: Any,
    ) -> None:
        self._codecs = offered_subprotocols(codec, codecs)
        self._options: dict[str, Any] = {
            "subprotocols": list(self._codecs),
            "compression": None,
            "extensions": (
                [
                    deflate_factory(
                        threshold=compression_threshold, window_bits=compression_window_bits
                    )
                ]
                if compression
                else None
            ),
            "max_size": max_size,
            "ping_interval": ping_interval,
            "ping_timeout": ping_timeout,
            "close_timeout": close_timeout,
            "logger": RedactingLogger(logging.getLogger("websockets.client")),
            **options,
        }

    async def connect(
        self, url: str, *, token: str | None, open_timeout: float
    ) -> WebSocketConnection:
        """Open one connection; see :class:`rtclient.transports.base.Transport`."""
        headers = bearer_headers(token, self)
        with _BOUNDARY.connecting(url):
            ws = await websockets.connect(
                url, additional_headers=headers, open_timeout=open_timeout, **self._options
            )
        codec = negotiated(self._codecs, ws.subprotocol)
        return WebSocketConnection(ws, codec)


class WebSocketConnection:
    """An open WebSocket connection; see :class:`rtclient.transports.base.Connection`."""

    batchable = True
    """It carries the raw protocol's ``batch`` frames (when the server offers them)."""

    def __init__(self, ws: ClientConnection, codec: Codec) -> None:
        self._ws = ws
        self.codec = codec

    async def send(self, envelope: dict[str, Any]) -> None:
        """Encode and send one envelope."""
        frame = self.codec.encode(envelope)
        try:  # not `with _BOUNDARY`: this runs per message, a try costs nothing
            await self._ws.send(frame)
        except Exception as exc:
            raise _BOUNDARY.error(exc) from exc

    async def recv(self) -> object:
        """Wait for the next frame and decode it (ProtocolError if it is malformed)."""
        try:
            frame = await self._ws.recv()
        except Exception as exc:
            raise _BOUNDARY.error(exc) from exc
        return self.codec.decode(frame)

    async def close(self, code: int = 1000, reason: str = "") -> None:
        """Close with a closing handshake."""
        with _BOUNDARY:
            await self._ws.close(code, reason)

    def abort(self) -> None:
        """Drop the TCP connection without a closing handshake."""
        self._ws.transport.abort()

    async def ping(self) -> float:
        """Send a ping frame; return the round-trip time in seconds."""
        with _BOUNDARY:
            waiter = await self._ws.ping()
            return await waiter

    @property
    def latency(self) -> float:
        """The last round-trip time measured by the library's keepalive pings."""
        return self._ws.latency


def _websockets_error(exc: Exception) -> RtClientError | None:
    """The rtclient exception for a websockets or network one (None: not known here)."""
    if isinstance(exc, ConnectionClosed):
        frame = exc.rcvd
        if frame is None:
            return ConnectionLost(None, "")
        return ConnectionLost(frame.code, frame.reason)
    if isinstance(exc, InvalidStatus):
        response = exc.response
        return HandshakeRejected(
            response.status_code,
            retry_after=parse_delay(response.headers.get("Retry-After"), now=time.time()),
        )
    if isinstance(exc, InvalidURI):
        return ProtocolError(f"invalid WebSocket URL: {redact(str(exc))}")
    if isinstance(exc, InvalidMessage) and isinstance(exc.__cause__, EOFError | OSError):
        # No valid HTTP response because the connection ended first (a TCP proxy in
        # front of a restarting server): a network failure, not a protocol mismatch.
        return TransportError(f"connection lost during the handshake: {_said(exc.__cause__)}")
    if isinstance(exc, InvalidHandshake):
        return ProtocolError(f"WebSocket handshake failed: {exc}")
    if isinstance(exc, TimeoutError | OSError | EOFError):
        return TransportError(f"connection failed: {_said(exc)}")
    return None


_BOUNDARY = Boundary("websockets", _websockets_error)


def _said(exc: BaseException) -> str:
    """An exception's text for a person (``TimeoutError()`` says nothing: its name)."""
    return str(exc) or type(exc).__name__
