"""Build a transport from the name a :class:`~rtclient.Client` was given.

Lives with the transports so that a new built-in transport is added in one package:
its module and one branch here. The Client only calls :func:`make_transport`.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..codec import Codec
from .aiohttp_ws import AiohttpTransport
from .base import Transport
from .socketio import SocketIOTransport
from .websocket import WebSocketTransport

__all__ = ["make_transport"]


def make_transport(
    url: str | Sequence[str],
    transport: str | Transport,
    codec: Codec | str | None,
    protocol: str,
    namespace: str,
    *,
    compression: bool = True,
) -> Transport:
    """Build the transport named by ``transport`` after checking the URL (every URL) fits it."""
    urls = (url,) if isinstance(url, str) else tuple(url)
    if protocol not in ("rooms", "generic"):
        raise ValueError(f"protocol is 'rooms' or 'generic', not {protocol!r}")
    if protocol == "generic" and transport in ("websocket", "aiohttp"):
        raise ValueError("generic mode is for Socket.IO servers: transport='socketio'")
    if transport in ("websocket", "aiohttp"):
        for url in urls:
            if not url.startswith(("ws://", "wss://")):
                raise ValueError(f"a WebSocket url starts with ws:// or wss://, not {url[:16]!r}")
        if transport == "aiohttp":
            return AiohttpTransport(codec=codec, compression=compression)
        return WebSocketTransport(codec=codec, compression=compression)
    if transport == "socketio":
        for url in urls:
            if not url.startswith(("http://", "https://", "ws://", "wss://")):
                raise ValueError(
                    f"a Socket.IO url starts with http(s):// or ws(s)://: {url[:16]!r}"
                )
        if codec not in (None, "json", "msgpack"):
            raise ValueError("over Socket.IO, codec= is 'json' or 'msgpack' (the serializer)")
        generic = protocol == "generic"
        return SocketIOTransport(
            serializer="msgpack" if codec == "msgpack" else "default",
            namespace=namespace,
            welcome="synthesize" if generic else "server",
            app_ping=not generic,
        )
    if isinstance(transport, str):
        raise ValueError(f"unknown transport {transport!r}: 'websocket', 'aiohttp' or 'socketio'")
    return transport
