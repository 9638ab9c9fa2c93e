"""rtclient: an asyncio client for real-time servers that loses nothing across reconnects.

The public API is re-exported here; see README.md and docs/protocol.md.
"""

from .backoff import Backoff
from .client import Client
from .errors import (
    AckTimeout,
    AuthError,
    ClientClosed,
    ConnectionFailed,
    ConnectionLost,
    Forbidden,
    HandshakeRejected,
    InvalidState,
    MessageDropped,
    MessageExpired,
    NotJoined,
    OutboxFull,
    ProtocolError,
    RequestRejected,
    RtClientError,
    StoreCorrupt,
    StoreError,
    StoreLocked,
    StoreVersionError,
    TLSError,
    TokenExpired,
    TokenProviderError,
    TransportError,
    Unauthorized,
)
from .events import Ack, ConnectionState, ErrorEvent, Event, Gap, QualityChanged, StateChanged
from .quality import QualityLevel, QualitySnapshot
from .store import MemoryStore, SqliteStore, Store
from .tokens import HttpTokenProvider, TokenProvider

__version__ = "0.1.0"

__all__ = [
    "Ack",
    "AckTimeout",
    "AuthError",
    "Backoff",
    "Client",
    "ClientClosed",
    "ConnectionFailed",
    "ConnectionLost",
    "ConnectionState",
    "ErrorEvent",
    "Event",
    "Forbidden",
    "Gap",
    "HandshakeRejected",
    "HttpTokenProvider",
    "InvalidState",
    "MemoryStore",
    "MessageDropped",
    "MessageExpired",
    "NotJoined",
    "OutboxFull",
    "ProtocolError",
    "QualityChanged",
    "QualityLevel",
    "QualitySnapshot",
    "RequestRejected",
    "RtClientError",
    "SqliteStore",
    "StateChanged",
    "Store",
    "StoreCorrupt",
    "StoreError",
    "StoreLocked",
    "StoreVersionError",
    "TLSError",
    "TokenExpired",
    "TokenProvider",
    "TokenProviderError",
    "TransportError",
    "Unauthorized",
    "__version__",
]
