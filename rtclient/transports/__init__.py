"""Transports: thin adapters that open connections (see :mod:`.base`)."""

from .base import Connection, Transport
from .memory import MemoryConnection, MemoryTransport
from .socketio import SocketIOTransport
from .websocket import WebSocketTransport

__all__ = [
    "Connection",
    "MemoryConnection",
    "MemoryTransport",
    "SocketIOTransport",
    "Transport",
    "WebSocketTransport",
]
