"""Raw WebSocket transport on the ``websockets`` library (asyncio implementation).

The token goes in the ``Authorization: Bearer`` header of the upgrade request, never
in the URL. websockets' own reconnection is not used (one ``connect`` is one
attempt) and its exceptions are mapped to :mod:`rtclient.errors` here.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
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
from ..errors import ConnectionLost, HandshakeRejected, ProtocolError, TransportError
from ..redact import RedactingLogger
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
        headers = {"Authorization": f"Bearer {token}"} if token else None
        with _mapped():
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
        try:  # not `with _mapped()`: this runs per message, a try costs nothing
            await self._ws.send(frame)
        except (ConnectionClosed, OSError) as exc:
            raise _mapped_error(exc) from exc

    async def recv(self) -> object:
        """Wait for the next frame and decode it (ProtocolError if it is malformed)."""
        try:
            frame = await self._ws.recv()
        except (ConnectionClosed, OSError) as exc:
            raise _mapped_error(exc) from exc
        return self.codec.decode(frame)

    async def close(self, code: int = 1000, reason: str = "") -> None:
        """Close with a closing handshake."""
        with _mapped():
            await self._ws.close(code, reason)

    def abort(self) -> None:
        """Drop the TCP connection without a closing handshake."""
        self._ws.transport.abort()

    async def ping(self) -> float:
        """Send a ping frame; return the round-trip time in seconds."""
        with _mapped():
            waiter = await self._ws.ping()
            return await waiter

    @property
    def latency(self) -> float:
        """The last round-trip time measured by the library's keepalive pings."""
        return self._ws.latency


@contextmanager
def _mapped() -> Iterator[None]:
    """Translate websockets and network exceptions into rtclient's."""
    try:
        yield
    except Exception as exc:
        mapped = _mapped_error(exc)
        if mapped is exc:
            raise
        raise mapped from exc


def _mapped_error(exc: Exception) -> Exception:
    """The rtclient exception for a websockets or network one (others as they are)."""
    if isinstance(exc, ConnectionClosed):
        frame = exc.rcvd
        if frame is None:
            return ConnectionLost(None, "")
        return ConnectionLost(frame.code, frame.reason)
    if isinstance(exc, InvalidStatus):
        response = exc.response
        return HandshakeRejected(
            response.status_code,
            retry_after=retry_after_seconds(response.headers.get("Retry-After")),
        )
    if isinstance(exc, InvalidURI):
        return ProtocolError(f"invalid WebSocket URL: {exc}")
    if isinstance(exc, InvalidMessage) and isinstance(exc.__cause__, EOFError | OSError):
        # No valid HTTP response because the connection ended first (a TCP proxy in
        # front of a restarting server): a network failure, not a protocol mismatch.
        return TransportError(f"connection lost during the handshake: {_said(exc.__cause__)}")
    if isinstance(exc, InvalidHandshake):
        return ProtocolError(f"WebSocket handshake failed: {exc}")
    if isinstance(exc, TimeoutError | OSError | EOFError):
        return TransportError(f"connection failed: {_said(exc)}")
    return exc


def _said(exc: BaseException) -> str:
    """An exception's text for a person (``TimeoutError()`` says nothing: its name)."""
    return str(exc) or type(exc).__name__


def retry_after_seconds(value: str | None) -> float | None:
    """A ``Retry-After`` header in seconds; None when absent or not a number."""
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None
