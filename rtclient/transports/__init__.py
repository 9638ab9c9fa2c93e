"""Transports: thin adapters that open connections (see :mod:`.base`)."""

from .aiohttp_ws import AiohttpConnection, AiohttpTransport
from .base import Connection, Transport
from .memory import MemoryConnection, MemoryTransport
from .socketio import SocketIOTransport
from .websocket import WebSocketTransport

__all__ = [
    "AiohttpConnection",
    "AiohttpTransport",
    "Connection",
    "MemoryConnection",
    "MemoryTransport",
    "SocketIOTransport",
    "Transport",
    "WebSocketTransport",
]
