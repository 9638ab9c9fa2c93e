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
    ConnectRefused,
    Forbidden,
    HandshakeRejected,
    InvalidState,
    MessageDropped,
    MessageExpired,
    NotJoined,
    OutboxFull,
    ProtocolError,
    ReplayTooLong,
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
from .events import (
    Ack,
    ConnectionState,
    Delivered,
    ErrorEvent,
    Event,
    Gap,
    QualityChanged,
    StateChanged,
)
from .quality import QualityLevel, QualitySnapshot
from .store import MemoryStore, SqliteStore, Store
from .tokens import HttpTokenProvider, TokenProvider


def _installed_version() -> str:
    """The version pyproject.toml gives (its one source), as installed."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("rtclient")
    except PackageNotFoundError:  # a source tree on sys.path that was never installed
        return "0+unknown"


__version__ = _installed_version()

__all__ = [
    "Ack",
    "AckTimeout",
    "AuthError",
    "Backoff",
    "Client",
    "ClientClosed",
    "ConnectRefused",
    "ConnectionFailed",
    "ConnectionLost",
    "ConnectionState",
    "Delivered",
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
    "ReplayTooLong",
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
