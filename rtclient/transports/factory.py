"""Build a transport from the name a :class:`~rtclient.Client` was given.

Lives with the transports so that a new built-in transport is added in one package:
its module and one branch here. The Client only calls :func:`make_transport`.
"""

from __future__ import annotations

from collections.abc import Sequence
from urllib.parse import urlsplit

from ..adapters.base import Adapter
from ..adapters.envelope import JsonEnvelope
from ..codec import Codec
from .adapted import AdaptedTransport
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
    adapter: Adapter | None = None,
    token_query: str | None = None,
) -> Transport:
    """Build the transport named by ``transport`` after checking the URL (every URL) fits it.

    Generic mode on a raw transport wraps it in an :class:`AdaptedTransport` speaking
    ``adapter`` (default: the seed's JSON envelope).
    """
    urls = (url,) if isinstance(url, str) else tuple(url)
    if protocol not in ("rooms", "generic"):
        raise ValueError(f"protocol is 'rooms' or 'generic', not {protocol!r}")
    raw = transport in ("websocket", "aiohttp")
    if (adapter is not None or token_query) and not (protocol == "generic" and raw):
        raise ValueError(
            "adapter= and token_query= are for protocol='generic' on transport='websocket'"
            " or 'aiohttp'"
        )
    if raw:
        for one in urls:
            if not one.startswith(("ws://", "wss://")):
                raise ValueError(f"a WebSocket url starts with ws:// or wss://, not {one[:16]!r}")
            _check_host_and_port(one)
        if protocol == "generic":
            if codec is not None:
                raise ValueError("in generic mode the adapter encodes frames: no codec=")
            inner: Transport = (
                AiohttpTransport(compression=compression, protocols=())
                if transport == "aiohttp"
                else WebSocketTransport(compression=compression, subprotocols=None)
            )
            return AdaptedTransport(inner, adapter or JsonEnvelope(), token_query=token_query)
        if transport == "aiohttp":
            return AiohttpTransport(codec=codec, compression=compression)
        return WebSocketTransport(codec=codec, compression=compression)
    if transport == "socketio":
        for one in urls:
            if not one.startswith(("http://", "https://", "ws://", "wss://")):
                raise ValueError(
                    f"a Socket.IO url starts with http(s):// or ws(s)://: {one[:16]!r}"
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


def _check_host_and_port(url: str) -> None:
    """ValueError now for a URL no connection can use (a port that is not a number, no
    host), rather than from each attempt, where the URL may carry the token
    (``token_query``). The message does not repeat the URL."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 (ValueError for a port that is not a number 0-65535)
    except ValueError as exc:
        raise ValueError(f"not a usable WebSocket url: {exc}") from None
    if not parts.hostname:
        raise ValueError("a WebSocket url names a host: ws://host[:port]/path")
