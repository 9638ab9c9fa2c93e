"""Server configuration: every knob of the fake server, with the protocol's defaults."""

from __future__ import annotations

import dataclasses
import secrets
import urllib.parse
from dataclasses import dataclass
from typing import Any

__all__ = ["ServerConfig"]


@dataclass(frozen=True, slots=True)
class ServerConfig:
    """Immutable settings of a :class:`~fake_server.server.FakeServer`.

    Durations are seconds, sizes are bytes or characters.  The defaults are those of
    ``docs/protocol.md``; tests scale the timings down (millisecond heartbeats, short
    token lifetimes).  Derive a variant with :meth:`replace`.
    """

    secret: str | None = None
    """HS256 signing key.  ``None``: the server makes a random one (use ``issue_token``)."""
    admin_token: str | None = None
    """Bearer token of the ``/admin`` endpoints; ``None`` disables them (404)."""
    allow_query_token: bool = False
    """Accept ``?token=`` on the upgrade URL (off by default: URLs end up in logs)."""

    ping_interval: float = 25.0
    ping_timeout: float = 20.0
    auth_timeout: float = 10.0
    token_warning: float = 300.0
    token_leeway: float = 2.0
    typing_timeout: float = 5.0
    close_timeout: float = 5.0
    """How long a close handshake may take before the TCP connection is cut."""

    max_message_size: int = 100 * 1024
    """Largest frame, after decompression (larger: close 1009)."""
    compression: bool = True
    socketio_serializer: str = "default"
    """``"default"`` (JSON) or ``"msgpack"`` (socket.io-msgpack-parser compatible)."""
    """Accept permessage-deflate when a client offers it (windows as the client asks)."""
    max_text_length: int = 8000
    sync_page_default: int = 100
    sync_page_max: int = 500

    retention_count: int = 10_000
    retention_seconds: float = 86_400.0
    dedupe_ttl: float = 86_400.0
    dedupe_max: int = 100_000

    rate_per_second: float = 20.0
    rate_burst: int = 50
    """``chat:send`` and ``dm:send`` per user (token bucket)."""
    ephemeral_per_second: float = 10.0
    ephemeral_burst: int = 20
    """``typing:start``/``typing:stop`` and ``message:read`` per user (token bucket)."""
    query_per_second: float = 50.0
    query_burst: int = 500
    """``room:join``/``room:leave``, ``room:members`` and ``sync:messages`` per user."""

    max_rooms_per_connection: int = 200
    """Rooms one connection may be in (its inbox not counted); more: ``FORBIDDEN``."""
    max_rooms_per_user: int = 1000
    """Room memberships of all of one user's connections together; more: ``FORBIDDEN``."""
    max_syncs_in_flight: int = 8
    """``sync:messages`` replies queued and not yet written, per connection."""
    max_queued_frames: int = 4096
    max_queued_bytes: int = 4 * 1024 * 1024
    """A connection's outgoing queue; beyond either: close 1013 ``slow consumer``."""
    header_timeout: float = 10.0
    """Seconds from TCP accept to a complete request head (and between keep-alive
    requests), and for a Socket.IO long-polling ``POST`` body; a connection that is
    slower is cut."""
    max_connections_per_address: int = 256
    """Open TCP connections per client IP address; more: HTTP 503 and closed."""

    redis_url: str | None = None
    """``redis://HOST:PORT/DB``: run as a cluster node sharing logs, dedupe, presence,
    rate limits and fan-out with every node on that Redis (``docs/cluster.md``).
    ``None``: the in-memory single node (no Redis needed)."""
    node_id: str | None = None
    """This node's name in the cluster (``/health``, presence); ``None``: a random one."""
    redis_prefix: str = "rtclient"
    """Prefix of every Redis key and channel the nodes use."""
    node_ttl: float = 10.0
    """A node whose heartbeat stopped this long is dead: its members leave every room."""
    redis_timeout: float = 2.0
    """Longest wait for one Redis command before the request gets a retry reply."""
    redis_max_connections: int = 50
    """Redis commands one node runs at once (its connection pool holds a few more, for
    the fan-out subscriber); a request past that waits its turn, up to ``redis_timeout``,
    then gets a retry reply ``STORE_BUSY`` (load, not an outage)."""
    redis_retry_after: float = 1.0
    """The ``retryAfter`` cap sent with a request refused because Redis is unreachable."""
    redis_cutoff: float = 15.0
    """A node cut off from Redis this long closes its clients with 1013 (go elsewhere)
    and refuses new ones with HTTP 503 until Redis is back."""

    def __post_init__(self) -> None:
        positive = (
            "ping_interval",
            "ping_timeout",
            "auth_timeout",
            "typing_timeout",
            "close_timeout",
            "max_message_size",
            "max_text_length",
            "sync_page_default",
            "sync_page_max",
            "retention_count",
            "retention_seconds",
            "dedupe_ttl",
            "dedupe_max",
            "rate_per_second",
            "rate_burst",
            "ephemeral_per_second",
            "ephemeral_burst",
            "query_per_second",
            "query_burst",
            "max_rooms_per_connection",
            "max_rooms_per_user",
            "max_syncs_in_flight",
            "max_queued_frames",
            "max_queued_bytes",
            "header_timeout",
            "max_connections_per_address",
            "node_ttl",
            "redis_timeout",
            "redis_max_connections",
            "redis_retry_after",
            "redis_cutoff",
        )
        for name in positive:
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be > 0")
        if self.token_warning < 0 or self.token_leeway < 0:
            raise ValueError("token_warning and token_leeway must be >= 0")
        if self.sync_page_default > self.sync_page_max:
            raise ValueError("sync_page_default must be <= sync_page_max")

    def __repr__(self) -> str:
        # Secrets never appear in reprs (they end up in logs and tracebacks).
        fields = []
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name in ("secret", "admin_token") and value is not None:
                value = "***"
            elif f.name == "redis_url" and value is not None:
                value = _masked_url(value)
            fields.append(f"{f.name}={value!r}")
        return f"ServerConfig({', '.join(fields)})"

    def replace(self, **changes: Any) -> ServerConfig:
        """Return a copy with ``changes`` applied; unknown names raise ``TypeError``."""
        return dataclasses.replace(self, **changes)

    def with_secret(self) -> ServerConfig:
        """Return this config, with a random secret filled in when none was given."""
        if self.secret is not None:
            return self
        return self.replace(secret=secrets.token_urlsafe(32))


def _masked_url(url: str) -> str:
    """``url`` without its password (``redis://user:***@host``)."""
    parts = urllib.parse.urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rpartition("@")[2]
    user = parts.username or ""
    return urllib.parse.urlunsplit(parts._replace(netloc=f"{user}:***@{netloc}"))
